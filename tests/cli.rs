//! The operator CLI, driven as a real process with assert_cmd, on SQLite and
//! PostgreSQL, alongside a running server where the story needs one.

mod support;

use assert_cmd::Command;
use predicates::prelude::*;
use support::cli::{add_user, authctl, migrated_db, stdout_json};
use support::{Backend, PASSWORD, TestApp, TestDb, spawn_app, spawn_app_on};

on_both_backends!(
    migrate_applies_pending_migrations_once_and_lists_them,
    a_user_added_by_the_cli_logs_in_through_the_api,
    user_add_refuses_bad_input_and_duplicates_with_documented_codes,
    user_list_prints_a_table_or_json,
    disable_enable_delete_and_set_password_manage_users_and_their_sessions,
    token_inspect_shows_what_a_token_is_and_whether_it_is_good,
    revoke_family_cuts_off_a_session_at_a_running_server,
    token_prune_reports_what_it_removed,
    health_reports_running_stopped_and_not_ready_servers,
);

async fn tokens(app: &TestApp, username: &str) -> (String, String) {
    let r = app.login(username, PASSWORD).await;
    assert_eq!(r.status(), 200);
    let b: serde_json::Value = r.json().await.unwrap();
    (
        b["access_token"].as_str().unwrap().to_owned(),
        b["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn migrate_applies_pending_migrations_once_and_lists_them(backend: Backend) {
    let db = TestDb::new(&backend).await;
    // An empty SQLite file is an empty database (a missing one is an error for every
    // command but `migrate` and `serve`: tests/cli_hygiene.rs).
    if let Some(path) = db.url.strip_prefix("sqlite://") {
        std::fs::write(path, b"").unwrap();
    }
    let out = authctl(&db.url)
        .args(["migrate", "--status", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let status = stdout_json(&out);
    let status = status.as_array().unwrap();
    assert!(status.iter().all(|m| m["applied"] == false));
    // Every migration the binary embeds is pending, and `migrate` applies them all.
    let pending = status.len();
    assert!(pending >= 1);

    // Commands other than migrate refuse an unmigrated database with a hint.
    authctl(&db.url)
        .args(["user", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("authctl migrate"));

    authctl(&db.url)
        .arg("migrate")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "applied {pending} migration(s)"
        )));
    authctl(&db.url)
        .arg("migrate")
        .assert()
        .success()
        .stdout(predicate::str::contains("up to date"));
    let out = authctl(&db.url)
        .args(["migrate", "--status", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        stdout_json(&out)
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["applied"] == true)
    );
    authctl(&db.url)
        .args(["migrate", "--status"])
        .assert()
        .success()
        .stdout(predicate::str::contains("applied").and(predicate::str::contains("initial")));
}

async fn a_user_added_by_the_cli_logs_in_through_the_api(backend: Backend) {
    let db = migrated_db(&backend).await;
    let user = add_user(&db.url, "Zoe@Example.com", "zoe");
    assert_eq!(user["username"], "zoe");
    assert_eq!(user["is_active"], true);
    // Trailing CRLF is stripped like the newline.
    authctl(&db.url)
        .args([
            "user",
            "add",
            "--email",
            "yan@example.com",
            "--username",
            "yan",
            "--password-stdin",
        ])
        .write_stdin(format!("{PASSWORD}\r\n"))
        .assert()
        .success()
        .stdout(predicate::str::contains("created user"));
    authctl(&db.url)
        .args([
            "user",
            "add",
            "--email",
            "off@example.com",
            "--username",
            "off",
            "--password-stdin",
            "--inactive",
        ])
        .write_stdin(PASSWORD)
        .assert()
        .success();

    let app = spawn_app_on(db, |_| {}).await;
    assert_eq!(app.login("zoe@example.com", PASSWORD).await.status(), 200);
    assert_eq!(app.login("yan", PASSWORD).await.status(), 200);
    assert_eq!(app.login("off", PASSWORD).await.status(), 401);
    app.shutdown().await;
}

async fn user_add_refuses_bad_input_and_duplicates_with_documented_codes(backend: Backend) {
    let db = migrated_db(&backend).await;
    add_user(&db.url, "dup@example.com", "dup");
    let add = |email: &str, username: &str, password: &str| {
        authctl(&db.url)
            .args([
                "user",
                "add",
                "--email",
                email,
                "--username",
                username,
                "--password-stdin",
            ])
            .write_stdin(format!("{password}\n"))
            .assert()
    };
    add("not-an-email", "fine", PASSWORD)
        .code(2)
        .stderr(predicate::str::contains("--email"));
    // Look-alikes (SPEC §4): a format character is refused; the decomposed form of a
    // taken address is that address.
    add("dup\u{200b}@example.com", "fine", PASSWORD)
        .code(2)
        .stderr(predicate::str::contains("--email"));
    add("bidi\u{202e}@example.com", "fine", PASSWORD)
        .code(2)
        .stderr(predicate::str::contains("--email"));
    add_user(&db.url, "r\u{e9}sum\u{e9}@example.com", "resume");
    add("re\u{301}sume\u{301}@example.com", "other", PASSWORD)
        .code(4)
        .stderr(predicate::str::contains("email"));
    add("ok@example.com", "x", PASSWORD)
        .code(2)
        .stderr(predicate::str::contains("--username"));
    add("ok@example.com", "okname", "short")
        .code(2)
        .stderr(predicate::str::contains("password"));
    add("ok@example.com", "okname", &"p".repeat(73)).code(2);
    add("DUP@example.com", "other", PASSWORD)
        .code(4)
        .stderr(predicate::str::contains("email"));
    add("new@example.com", "DUP", PASSWORD)
        .code(4)
        .stderr(predicate::str::contains("username"));
    // Without --password-stdin and without a terminal there is nobody to ask.
    authctl(&db.url)
        .args([
            "user",
            "add",
            "--email",
            "tty@example.com",
            "--username",
            "tty",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--password-stdin"));
    // Errors are one line plus a hint, never a panic.
    let out = authctl(&db.url)
        .args(["user", "disable", "ghost"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.lines().count() <= 2 && !stderr.contains("panicked"),
        "{stderr}"
    );
}

async fn user_list_prints_a_table_or_json(backend: Backend) {
    let db = migrated_db(&backend).await;
    for name in ["ann", "ben", "cat"] {
        add_user(&db.url, &format!("{name}@example.com"), name);
    }
    authctl(&db.url)
        .args(["user", "list"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("USERNAME")
                .and(predicate::str::contains("ann@example.com"))
                .and(predicate::str::contains("cat")),
        );
    let out = authctl(&db.url)
        .args(["user", "list", "--output", "json"])
        .output()
        .unwrap();
    let users = stdout_json(&out);
    let names: Vec<_> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["ann", "ben", "cat"]);
    assert!(users[0]["id"].is_i64() && users[0]["created_at"].is_string());
    assert!(users[0].get("password_hash").is_none());
    let out = authctl(&db.url)
        .args(["user", "list", "--output", "json", "--limit", "2"])
        .output()
        .unwrap();
    assert_eq!(stdout_json(&out).as_array().unwrap().len(), 2);
    authctl(&db.url)
        .args(["user", "list", "--limit", "0"])
        .assert()
        .code(2);
}

async fn disable_enable_delete_and_set_password_manage_users_and_their_sessions(backend: Backend) {
    let db = migrated_db(&backend).await;
    let user = add_user(&db.url, "gus@example.com", "gus");
    let id = user["id"].as_i64().unwrap().to_string();
    let app = spawn_app_on(db, |_| {}).await;
    let url = app.db.url.clone();
    let (access, refresh) = tokens(&app, "gus").await;

    let out = authctl(&url)
        .args(["user", "disable", "GUS", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let changed = stdout_json(&out);
    assert_eq!(changed["user"]["is_active"], false);
    assert_eq!(changed["revoked_sessions"], 1);
    assert_eq!(app.me(&access).await.status(), 401);
    assert_eq!(app.refresh(&refresh).await.status(), 401);
    assert_eq!(app.login("gus", PASSWORD).await.status(), 401);

    authctl(&url)
        .args(["user", "enable", "gus@example.com"])
        .assert()
        .success();
    let (access, _) = tokens(&app, "gus").await;
    assert_eq!(app.me(&access).await.status(), 200);

    let new_password = "a brand new password";
    authctl(&url)
        .args(["user", "set-password", &id, "--password-stdin"])
        .write_stdin(format!("{new_password}\n"))
        .assert()
        .success()
        .stdout(predicate::str::contains("1 session(s) revoked"));
    assert_eq!(app.me(&access).await.status(), 401);
    assert_eq!(app.login("gus", PASSWORD).await.status(), 401);
    assert_eq!(app.login("gus", new_password).await.status(), 200);

    authctl(&url)
        .args(["user", "delete", "gus"])
        .assert()
        .success();
    assert_eq!(app.login("gus", new_password).await.status(), 401);
    for cmd in ["disable", "enable", "delete"] {
        authctl(&url).args(["user", cmd, "gus"]).assert().code(3);
    }
    authctl(&url)
        .args(["user", "set-password", "999999", "--password-stdin"])
        .write_stdin(format!("{new_password}\n"))
        .assert()
        .code(3);
    app.shutdown().await;
}

async fn token_inspect_shows_what_a_token_is_and_whether_it_is_good(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let url = app.db.url.clone();
    let (access, refresh) = app.user_with_tokens("ivy").await;

    let out = authctl(&url)
        .args(["token", "inspect", &access, "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let a = stdout_json(&out);
    assert_eq!(a["kind"], "access");
    assert_eq!(a["valid"], true);
    assert_eq!(a["state"], "active");
    assert_eq!(a["username"], "ivy");
    assert!(a["user_id"].is_i64());
    assert!(chrono::DateTime::parse_from_rfc3339(a["expires_at"].as_str().unwrap()).is_ok());
    assert!(chrono::DateTime::parse_from_rfc3339(a["issued_at"].as_str().unwrap()).is_ok());
    assert_eq!(a["claims"]["iss"], "authctl");
    let family = a["family_id"].as_str().unwrap().to_owned();
    assert_eq!(a["claims"]["sid"], family.as_str());

    let out = authctl(&url)
        .args(["token", "inspect", &refresh, "--output", "json"])
        .output()
        .unwrap();
    let r = stdout_json(&out);
    assert_eq!(
        (
            r["kind"].as_str(),
            r["state"].as_str(),
            r["valid"].as_bool()
        ),
        (Some("refresh"), Some("active"), Some(true))
    );
    assert_eq!(r["family_id"], family.as_str());
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&refresh),
        "never print the secret"
    );

    // After a rotation the old token is `rotated` (exit 5), the new one active.
    let next: serde_json::Value = app.refresh(&refresh).await.json().await.unwrap();
    let out = authctl(&url)
        .args(["token", "inspect", &refresh, "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(stdout_json(&out)["state"], "rotated");
    authctl(&url)
        .args(["token", "inspect", next["refresh_token"].as_str().unwrap()])
        .assert()
        .success()
        .stdout(predicate::str::contains("active").and(predicate::str::contains("ivy")));

    // Revoked: exit 5 with state revoked, for both kinds.
    assert_eq!(
        app.revoke(next["refresh_token"].as_str().unwrap())
            .await
            .status(),
        204
    );
    for token in [access.as_str(), next["refresh_token"].as_str().unwrap()] {
        let out = authctl(&url)
            .args(["token", "inspect", token, "--output", "json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(5));
        assert_eq!(stdout_json(&out)["state"], "revoked");
    }

    // Garbage is exit 5; a well-formed but unknown refresh token is exit 3.
    authctl(&url)
        .args(["token", "inspect", "garbage"])
        .assert()
        .code(5);
    authctl(&url)
        .args(["token", "inspect", "a.b.c"])
        .assert()
        .code(5);
    authctl(&url)
        .args([
            "token",
            "inspect",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ])
        .assert()
        .code(3);
    // A token signed with another key is refused.
    let mut other = Command::new(support::authctl_bin());
    other
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("DATABASE_URL", &url)
        .env("SECRET_KEY", "another-key-0123456789abcdefghijklmnopqrst")
        .args(["token", "inspect", &access])
        .assert()
        .code(5);
    // `-` reads the token from stdin.
    authctl(&url)
        .args(["token", "inspect", "-", "--output", "json"])
        .write_stdin(format!("{access}\n"))
        .assert()
        .code(5)
        .stdout(predicate::str::contains("revoked"));
    app.shutdown().await;
}

async fn revoke_family_cuts_off_a_session_at_a_running_server(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let url = app.db.url.clone();
    let (access, refresh) = app.user_with_tokens("jack").await;
    let out = authctl(&url)
        .args(["token", "inspect", &access, "--output", "json"])
        .output()
        .unwrap();
    let family = stdout_json(&out)["family_id"].as_str().unwrap().to_owned();

    authctl(&url)
        .args(["token", "revoke-family", &family])
        .assert()
        .success()
        .stdout(predicate::str::contains(&family));
    assert_eq!(app.me(&access).await.status(), 401);
    assert_eq!(app.refresh(&refresh).await.status(), 401);

    // --token takes an access or a refresh token.
    let (access2, refresh2) = tokens(&app, "jack").await;
    authctl(&url)
        .args(["token", "revoke-family", "--token", &refresh2])
        .assert()
        .success();
    assert_eq!(app.me(&access2).await.status(), 401);
    let (access3, _) = tokens(&app, "jack").await;
    authctl(&url)
        .args(["token", "revoke-family", "--token", &access3])
        .assert()
        .success();
    assert_eq!(app.me(&access3).await.status(), 401);

    // --user revokes every session of the user.
    let (a, _) = tokens(&app, "jack").await;
    let (b, _) = tokens(&app, "jack").await;
    let out = authctl(&url)
        .args([
            "token",
            "revoke-family",
            "--user",
            "jack",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout_json(&out)["count"], 2);
    assert_eq!(app.me(&a).await.status(), 401);
    assert_eq!(app.me(&b).await.status(), 401);

    authctl(&url)
        .args([
            "token",
            "revoke-family",
            "00000000-0000-4000-8000-000000000000",
        ])
        .assert()
        .code(3);
    authctl(&url)
        .args(["token", "revoke-family", "not-a-uuid"])
        .assert()
        .code(2);
    authctl(&url)
        .args(["token", "revoke-family"])
        .assert()
        .code(2);
    authctl(&url)
        .args(["token", "revoke-family", "--user", "nobody"])
        .assert()
        .code(3);
    app.shutdown().await;
}

async fn token_prune_reports_what_it_removed(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.auth.refresh_token_ttl = std::time::Duration::from_secs(3)
    })
    .await;
    let url = app.db.url.clone();
    let (_, refresh) = app.user_with_tokens("kim").await;
    let out = authctl(&url)
        .args(["token", "prune", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(stdout_json(&out)["tokens"], 0);
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    let out = authctl(&url)
        .args(["token", "prune", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = stdout_json(&out);
    assert_eq!(report["tokens"], 1);
    assert_eq!(report["families"], 1);
    authctl(&url)
        .args(["token", "inspect", &refresh])
        .assert()
        .code(3);
    authctl(&url)
        .args(["token", "prune"])
        .assert()
        .success()
        .stdout(predicate::str::contains("pruned 0 expired token(s)"));
    app.shutdown().await;
}

async fn health_reports_running_stopped_and_not_ready_servers(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let base = app.base.clone();
    for check in ["liveness", "readiness", "startup"] {
        authctl("sqlite://unused.db")
            .args(["health", "--url", &base, "--check", check])
            .assert()
            .success()
            .stdout(predicate::str::contains("healthy"));
    }
    // The default URL follows the configured bind.
    authctl("sqlite://unused.db")
        .env("AUTHCTL_BIND", format!("0.0.0.0:{}", app.addr.port()))
        .arg("health")
        .assert()
        .success();
    app.shutdown().await;
    authctl("sqlite://unused.db")
        .args(["health", "--url", &base])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("unhealthy"));

    // Not ready: a server told not to migrate an empty database waits at startup.
    let db = TestDb::new(&backend).await;
    let mut settings = support::test_settings(&db.url);
    settings.log_level = "warn".into();
    let running =
        authctl::server::spawn(settings, authctl::server::ServeOptions { migrate: false })
            .await
            .unwrap();
    let base = format!("http://{}", running.addr);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    authctl("sqlite://unused.db")
        .args(["health", "--url", &base, "--check", "liveness"])
        .assert()
        .success();
    for check in ["readiness", "startup"] {
        authctl("sqlite://unused.db")
            .args(["health", "--url", &base, "--check", check])
            .assert()
            .code(1)
            .stderr(predicate::str::contains("503"));
    }
    running.shutdown().await.unwrap();
}
