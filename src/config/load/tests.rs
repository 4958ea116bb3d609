//! Unit tests of `load`.

use super::*;
use crate::config::CorsOrigins;
use std::collections::HashMap;
use std::time::Duration;

fn load_env(vars: &[(&str, &str)]) -> Result<Settings> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    load_with(&Overrides::default(), &move |k| map.get(k).cloned())
}

/// Writes `text` as the config file; the directory lives as long as the guard.
fn with_file(text: &str) -> (tempfile::TempDir, Overrides) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("authctl.toml");
    std::fs::write(&path, text).unwrap();
    let overrides = Overrides {
        config_file: Some(path),
        ..Default::default()
    };
    (dir, overrides)
}

fn config_error(r: Result<Settings>) -> String {
    match r {
        Err(Error::Config(msg)) => msg,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn defaults_match_the_spec() {
    let s = load_env(&[]).unwrap();
    assert_eq!(s.database_url.expose(), "sqlite://authctl.db");
    assert_eq!(s.bind.to_string(), "127.0.0.1:8000");
    assert_eq!(s.auth.access_token_ttl, Duration::from_secs(1800));
    assert_eq!(s.auth.refresh_token_ttl, Duration::from_secs(7 * 86400));
    assert_eq!(s.auth.bcrypt_cost, 12);
    assert_eq!(s.rate_limit.login_per_minute.get(), 10);
    assert!(s.auth.secret_key.is_none());
}

#[test]
fn the_hardening_settings_have_the_spec_defaults_and_read_file_and_env() {
    let s = load_env(&[]).unwrap();
    assert_eq!(s.edge.header_timeout, Duration::from_secs(10));
    assert_eq!(s.edge.body_timeout, Duration::from_secs(10));
    assert_eq!(s.edge.idle_timeout, Duration::from_secs(60));
    assert_eq!(s.edge.max_connections, 4096);
    assert_eq!(s.edge.shutdown_timeout, Duration::from_secs(8));
    assert_eq!(s.auth.hash_queue_timeout, Duration::from_secs(5));
    assert_eq!(s.rate_limit.ipv6_prefix, 64);

    let (_dir, overrides) = with_file(
        "[server]\nheader_timeout = \"3s\"\nbody_timeout = \"4s\"\nidle_timeout = \"2m\"\n\
         max_connections = 100\nshutdown_timeout = \"20s\"\n\
         [auth]\nhash_queue_timeout = \"1s\"\n[rate_limit]\nipv6_prefix = 56\n",
    );
    let s = load_with(&overrides, &|name| {
        (name == "AUTHCTL_MAX_CONNECTIONS").then(|| "200".to_owned())
    })
    .unwrap();
    assert_eq!(s.edge.header_timeout, Duration::from_secs(3));
    assert_eq!(s.edge.body_timeout, Duration::from_secs(4));
    assert_eq!(s.edge.idle_timeout, Duration::from_secs(120));
    assert_eq!(
        s.edge.max_connections, 200,
        "the environment beats the file"
    );
    assert_eq!(s.edge.shutdown_timeout, Duration::from_secs(20));
    assert_eq!(s.auth.hash_queue_timeout, Duration::from_secs(1));
    assert_eq!(s.rate_limit.ipv6_prefix, 56);

    for (var, bad) in [
        ("AUTHCTL_HEADER_TIMEOUT", "0s"),
        ("AUTHCTL_BODY_TIMEOUT", "soon"),
        ("AUTHCTL_IDLE_TIMEOUT", "10"),
        ("AUTHCTL_MAX_CONNECTIONS", "0"),
        ("AUTHCTL_SHUTDOWN_TIMEOUT", "-1s"),
        ("AUTHCTL_HASH_QUEUE_TIMEOUT", "never"),
        ("AUTHCTL_RATE_LIMIT_IPV6_PREFIX", "16"),
        ("AUTHCTL_RATE_LIMIT_IPV6_PREFIX", "129"),
    ] {
        let msg = config_error(load_env(&[(var, bad)]));
        assert!(msg.contains(var), "{var}={bad}: {msg}");
    }
}

#[test]
fn original_project_variable_names_work() {
    let s = load_env(&[
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "5"),
        ("REFRESH_TOKEN_EXPIRE_DAYS", "2"),
        ("DATABASE_URL", "postgres://u:p@localhost/db"),
        ("LOG_LEVEL", "DEBUG"),
        ("DB_POOL_MAX_CONN", "3"),
    ])
    .unwrap();
    assert_eq!(s.auth.access_token_ttl, Duration::from_secs(300));
    assert_eq!(s.auth.refresh_token_ttl, Duration::from_secs(2 * 86400));
    assert!(s.database_url.is_postgres());
    assert_eq!(s.log_level, "debug");
    assert_eq!(s.pool_max, 3);
}

#[test]
fn a_ttl_and_its_legacy_form_together_are_an_error() {
    let msg = config_error(load_env(&[
        ("ACCESS_TOKEN_EXPIRE_MINUTES", "5"),
        ("AUTHCTL_ACCESS_TOKEN_TTL", "10m"),
    ]));
    assert!(
        msg.contains("ACCESS_TOKEN_EXPIRE_MINUTES") && msg.contains("AUTHCTL_ACCESS_TOKEN_TTL"),
        "{msg}"
    );
}

#[test]
fn unparsable_values_name_the_variable() {
    let msg = config_error(load_env(&[("AUTHCTL_BCRYPT_COST", "99")]));
    assert!(msg.contains("AUTHCTL_BCRYPT_COST"), "{msg}");
    let msg = config_error(load_env(&[("AUTHCTL_REFRESH_TOKEN_TTL", "soon")]));
    assert!(msg.contains("AUTHCTL_REFRESH_TOKEN_TTL"), "{msg}");
    let msg = config_error(load_env(&[("AUTHCTL_TRUSTED_PROXIES", "10.0.0.0/8,nope")]));
    assert!(msg.contains("AUTHCTL_TRUSTED_PROXIES"), "{msg}");
}

#[test]
fn weak_or_placeholder_keys_are_refused_and_never_echoed() {
    let msg = config_error(load_env(&[(
        "SECRET_KEY",
        "your-secret-key-change-in-production",
    )]));
    assert!(
        msg.contains("SECRET_KEY") && msg.contains("placeholder"),
        "{msg}"
    );
    let msg = config_error(load_env(&[("SECRET_KEY", "short-key-1234")]));
    assert!(
        msg.contains("at least 32 bytes") && !msg.contains("short-key-1234"),
        "{msg}"
    );
}

#[test]
fn a_strong_key_is_accepted_and_redacted_in_debug() {
    let key = "k7Qn2vX9pL4mR8sT1wY6zB3cF5hJ0dGa";
    let s = load_env(&[("SECRET_KEY", key)]).unwrap();
    assert!(!format!("{s:?}").contains(key));
}

#[test]
fn unknown_file_keys_are_refused_with_their_name() {
    let (_dir, overrides) = with_file("[server]\nbindd = \"0.0.0.0:1\"\n");
    let msg = config_error(load_with(&overrides, &|_| None));
    assert!(msg.contains("bindd"), "{msg}");
}

#[test]
fn flags_beat_env_and_env_beats_the_file() {
    let (_dir, mut overrides) = with_file(
        "[server]\nbind = \"127.0.0.1:1111\"\n[auth]\nbcrypt_cost = 5\nissuer = \"file\"\n",
    );
    let env = |k: &str| (k == "AUTHCTL_BIND").then(|| "127.0.0.1:2222".to_string());
    let s = load_with(&overrides, &env).unwrap();
    assert_eq!(s.bind.port(), 2222);
    assert_eq!(s.auth.bcrypt_cost, 5);
    overrides.bind = Some("127.0.0.1:3333".into());
    assert_eq!(load_with(&overrides, &env).unwrap().bind.port(), 3333);
}

#[test]
fn cors_is_off_unless_origins_are_configured() {
    assert_eq!(load_env(&[]).unwrap().cors, CorsOrigins::Off);
    let any = load_env(&[("AUTHCTL_CORS_ALLOWED_ORIGINS", "*")]).unwrap();
    assert_eq!(any.cors, CorsOrigins::Any);
    let some = load_env(&[(
        "AUTHCTL_CORS_ALLOWED_ORIGINS",
        "https://App.Example.com, http://localhost:3000",
    )])
    .unwrap();
    assert_eq!(
        some.cors,
        CorsOrigins::Only(vec![
            "https://app.example.com".into(),
            "http://localhost:3000".into()
        ])
    );
    for bad in [
        "https://app.example.com/path",
        "app.example.com",
        "ftp://app.example.com",
        "*, https://app.example.com",
        "https://user@app.example.com",
    ] {
        let msg = config_error(load_env(&[("AUTHCTL_CORS_ALLOWED_ORIGINS", bad)]));
        assert!(msg.contains("AUTHCTL_CORS_ALLOWED_ORIGINS"), "{bad}: {msg}");
    }
}

#[test]
fn cors_origins_come_from_the_file_too() {
    let (_dir, overrides) = with_file("[cors]\nallowed_origins = [\"https://app.example.com\"]\n");
    let s = load_with(&overrides, &|_| None).unwrap();
    assert_eq!(
        s.cors,
        CorsOrigins::Only(vec!["https://app.example.com".into()])
    );
    std::fs::write(
        overrides.config_file.as_ref().unwrap(),
        "[cors]\nallowed_origins = [\"nope\"]\n",
    )
    .unwrap();
    let msg = config_error(load_with(&overrides, &|_| None));
    assert!(msg.contains("cors.allowed_origins"), "{msg}");
}

#[test]
fn a_file_value_of_the_wrong_type_names_its_key() {
    let (_dir, overrides) = with_file("[auth]\nbcrypt_cost = \"five\"\n");
    let msg = config_error(load_with(&overrides, &|_| None));
    assert!(
        msg.contains("auth.bcrypt_cost") && msg.contains("whole number"),
        "{msg}"
    );
    std::fs::write(
        overrides.config_file.as_ref().unwrap(),
        "[nonsense]\nx = 1\n",
    )
    .unwrap();
    let msg = config_error(load_with(&overrides, &|_| None));
    assert!(msg.contains("[nonsense]"), "{msg}");
}

#[test]
fn a_file_ttl_and_an_env_legacy_integer_together_are_an_error() {
    let (_dir, overrides) = with_file("[auth]\nrefresh_token_ttl = \"3d\"\n");
    let env = |k: &str| (k == "REFRESH_TOKEN_EXPIRE_DAYS").then(|| "2".to_string());
    let msg = config_error(load_with(&overrides, &env));
    assert!(
        msg.contains("auth.refresh_token_ttl") && msg.contains("REFRESH_TOKEN_EXPIRE_DAYS"),
        "{msg}"
    );
}

#[test]
fn metrics_are_off_unless_a_bind_is_given_in_the_file_or_the_environment() {
    assert_eq!(load_env(&[]).unwrap().metrics_bind, None);
    let s = load_env(&[("AUTHCTL_METRICS_BIND", "127.0.0.1:9100")]).unwrap();
    assert_eq!(s.metrics_bind, Some("127.0.0.1:9100".parse().unwrap()));
    let (_dir, overrides) = with_file("[metrics]\nbind = \"127.0.0.1:9101\"\n");
    let env = |name: &str| (name == "AUTHCTL_METRICS_BIND").then(|| "off".to_owned());
    assert_eq!(load_with(&overrides, &env).unwrap().metrics_bind, None);
    assert_eq!(
        load_with(&overrides, &|_| None).unwrap().metrics_bind,
        Some("127.0.0.1:9101".parse().unwrap())
    );
    let msg = config_error(load_env(&[("AUTHCTL_METRICS_BIND", "9100")]));
    assert!(msg.contains("AUTHCTL_METRICS_BIND"), "{msg}");
}

#[test]
fn every_setting_has_a_distinct_key_and_environment_variables() {
    let mut keys = std::collections::HashSet::new();
    let mut vars = std::collections::HashSet::new();
    for s in SETTINGS {
        assert!(keys.insert(s.key), "{} twice", s.key);
        assert!(s.env[0].starts_with("AUTHCTL_"), "{}", s.key);
        for v in s.env {
            assert!(vars.insert(*v), "{v} twice");
        }
    }
}
