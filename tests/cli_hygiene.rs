//! CLI and configuration hygiene (issue 12, SPEC §7 "USER", §8 "Hardening"), driven
//! through the real binary: USER references that never pick another account, a
//! database password that never reaches output, `.env` from the working directory
//! only, read-only commands that write nothing, SQLite files of mode 0600, quiet
//! closed pipes and `config check`.

mod support;

use predicates::prelude::*;
use support::cli::{KEY, add_user, authctl, bare, migrated_db, stdout_json};
use support::{Backend, PASSWORD, TestDb, spawn_app_on};

on_both_backends!(
    an_all_digit_username_is_refused_at_registration_and_by_user_add,
    an_all_digit_user_is_an_id_and_never_another_account,
    read_only_commands_on_a_fresh_database_write_nothing,
    read_only_commands_never_create_a_signing_key,
    migrate_stores_the_key_that_serve_signs_with_and_commands_verify_with,
);

fn user_id(url: &str, email: &str, username: &str) -> i64 {
    add_user(url, email, username)["id"].as_i64().expect("id")
}

/// Runs `$body` with `$conn` connected to the test database, whichever backend.
macro_rules! with_conn {
    ($url:expr, |$conn:ident| $body:expr) => {{
        use sqlx::Connection;
        if $url.starts_with("sqlite") {
            let mut $conn = sqlx::SqliteConnection::connect($url).await.unwrap();
            let out = $body;
            $conn.close().await.unwrap();
            out
        } else {
            let mut $conn = sqlx::PgConnection::connect($url).await.unwrap();
            let out = $body;
            $conn.close().await.unwrap();
            out
        }
    }};
}

/// Runs one statement on the test database directly, as an older authctl (or an
/// operator) could have left it.
async fn exec_sql(url: &str, sql: &str) {
    with_conn!(url, |conn| {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
    })
}

/// `user list --output json` as (id, username, is_active).
fn users(url: &str) -> Vec<(i64, String, bool)> {
    let out = authctl(url)
        .args(["user", "list", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    stdout_json(&out)
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["id"].as_i64().unwrap(),
                u["username"].as_str().unwrap().to_owned(),
                u["is_active"].as_bool().unwrap(),
            )
        })
        .collect()
}

async fn an_all_digit_username_is_refused_at_registration_and_by_user_add(backend: Backend) {
    let db = migrated_db(&backend).await;
    authctl(&db.url)
        .args([
            "user",
            "add",
            "--email",
            "digits@example.com",
            "--username",
            "001",
            "--password-stdin",
        ])
        .write_stdin(format!("{PASSWORD}\n"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--username").and(predicate::str::contains("digits")));

    let app = spawn_app_on(db, |_| {}).await;
    let resp = app.register("digits@example.com", "12345", PASSWORD).await;
    let body = support::assert_problem(resp, 422).await;
    assert_eq!(body["errors"][0]["field"], "username", "{body}");
    // Digits with a letter are a fine username.
    assert_eq!(
        app.register("digits@example.com", "12345a", PASSWORD)
            .await
            .status(),
        201
    );
    app.shutdown().await;
}

async fn an_all_digit_user_is_an_id_and_never_another_account(backend: Backend) {
    let db = migrated_db(&backend).await;
    let alice = user_id(&db.url, "alice@example.com", "alice");
    let legacy = user_id(&db.url, "old001@example.com", "legacy001");
    let one = user_id(&db.url, "old1@example.com", "legacy1");
    // Accounts made before all-digit usernames were refused.
    exec_sql(
        &db.url,
        &format!("UPDATE users SET username = '001', username_norm = '001' WHERE id = {legacy}"),
    )
    .await;
    exec_sql(
        &db.url,
        &format!(
            "UPDATE users SET username = '{alice}', username_norm = '{alice}' WHERE id = {one}"
        ),
    )
    .await;
    let all_active = users(&db.url);
    assert!(all_active.iter().all(|u| u.2), "{all_active:?}");

    // `001` is neither the id 1 nor (silently) the user named 001: refused, nobody changed.
    for cmd in ["disable", "delete"] {
        authctl(&db.url)
            .args(["user", cmd, "001"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("leading zeros"));
    }
    authctl(&db.url)
        .args(["user", "set-password", "001", "--password-stdin"])
        .write_stdin("a new password\n")
        .assert()
        .code(2);
    authctl(&db.url)
        .args(["token", "revoke-family", "--user", "001"])
        .assert()
        .code(2);
    // Alice's id is also the old username of another account: ambiguous, refused.
    authctl(&db.url)
        .args(["user", "disable", &alice.to_string()])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("alice@example.com")
                .and(predicate::str::contains("old1@example.com")),
        );
    authctl(&db.url)
        .args(["token", "revoke-family", "--user", &alice.to_string()])
        .assert()
        .code(2);
    assert_eq!(users(&db.url), all_active, "nothing changed");

    // The documented way to reach a legacy all-digit account: its email.
    authctl(&db.url)
        .args(["user", "disable", "old001@example.com"])
        .assert()
        .success();
    // An id that is nobody's username is just the id.
    authctl(&db.url)
        .args(["user", "disable", &one.to_string()])
        .assert()
        .success();
    let now = users(&db.url);
    let active = |id: i64| now.iter().find(|u| u.0 == id).unwrap().2;
    assert!(active(alice), "{now:?}");
    assert!(!active(legacy) && !active(one), "{now:?}");
}

#[test]
fn the_database_password_never_reaches_output_or_logs() {
    // Port 1 on loopback: nothing listens, so every command fails and says why.
    for url in [
        "postgres://app:Pw1@sec:ret@127.0.0.1:1/app",
        "postgresql://app@127.0.0.1:1/app?sslmode=disable&password=Pw1qsecret",
        "postgres://app:Pw1%40enc%3Aoded@127.0.0.1:1/app",
    ] {
        for args in [
            &["--log-level", "trace", "user", "list"][..],
            &["--log-format", "json", "--log-level", "trace", "migrate"][..],
        ] {
            let out = bare()
                .env("DATABASE_URL", url)
                .env("SECRET_KEY", KEY)
                .args(args)
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.code(), Some(6), "{args:?}: {all}");
            for secret in ["Pw1", "sec:ret", "qsecret", "enc", "%40enc"] {
                assert!(
                    !all.contains(secret),
                    "{url} {args:?} leaked {secret}: {all}"
                );
            }
        }
    }
}

#[test]
fn serve_logs_the_database_url_without_its_password() {
    use std::io::BufRead;
    let url = "postgres://app:Pw1@sec:ret@127.0.0.1:1/app?sslmode=disable&password=Pw1qsecret";
    let mut child = std::process::Command::new(support::authctl_bin())
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("DATABASE_URL", url)
        .env("SECRET_KEY", KEY)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let done = line.contains("listening");
            let _ = tx.send(line);
            if done {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(20)) {
        let done = line.contains("listening");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = seen.join("\n");
    let line = seen
        .iter()
        .find(|l| l.contains("listening"))
        .unwrap_or_else(|| panic!("no 'listening' line: {log}"));
    assert!(line.contains("127.0.0.1:1/app"), "{line}");
    for secret in ["Pw1", "sec:ret", "qsecret"] {
        assert!(!log.contains(secret), "leaked {secret}: {log}");
    }
}

#[test]
fn a_dotenv_file_in_a_parent_directory_is_never_read() {
    let parent = tempfile::tempdir().unwrap();
    let child = parent.path().join("work");
    std::fs::create_dir(&child).unwrap();
    let elsewhere = parent.path().join("parent.db");
    std::fs::write(
        parent.path().join(".env"),
        format!("DATABASE_URL=sqlite://{}\n", elsewhere.display()),
    )
    .unwrap();
    bare().current_dir(&child).arg("migrate").assert().success();
    assert!(child.join("authctl.db").exists(), "the default database");
    assert!(!elsewhere.exists(), "the parent's .env was used");
    // The same file in the working directory is read.
    std::fs::copy(parent.path().join(".env"), child.join(".env")).unwrap();
    bare().current_dir(&child).arg("migrate").assert().success();
    assert!(elsewhere.exists());
}

#[test]
fn a_dotenv_file_that_cannot_be_parsed_is_exit_7_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".env"),
        "# settings\nAUTHCTL_BCRYPT_COST=4\nSECRET_KEY=two words hunter2hunter2\n",
    )
    .unwrap();
    let out = bare()
        .current_dir(dir.path())
        .args(["user", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(".env") && stderr.contains("line 3") && stderr.contains("SECRET_KEY"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "the value is echoed: {stderr}");
    assert!(!dir.path().join("authctl.db").exists());
}

#[test]
fn writing_to_a_closed_pipe_ends_quietly_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("authctl.db").display());
    authctl(&url).arg("migrate").assert().success();
    for name in ["ann", "ben", "cat"] {
        add_user(&url, &format!("{name}@example.com"), name);
    }
    for args in [
        &["user", "list"][..],
        &["user", "list", "--output", "json"][..],
        &["migrate", "--status"][..],
        &["completions", "bash"][..],
        &["openapi"][..],
    ] {
        let mut child = std::process::Command::new(support::authctl_bin())
            .current_dir(dir.path())
            .env_clear()
            .env("DATABASE_URL", &url)
            .env("SECRET_KEY", KEY)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Close the reading end before the command writes: `| head -0`.
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// Rows as text, for before/after comparisons.
async fn query_rows(url: &str, sql: &str) -> Vec<String> {
    use sqlx::Row;
    with_conn!(url, |conn| {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.try_get::<String, _>(i).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect()
    })
}

/// The SQLite database file's path, or `None` on PostgreSQL.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    url.strip_prefix("sqlite://").map(std::path::PathBuf::from)
}

/// The database file's bytes and mtime (SQLite), for "nothing was written".
fn file_state(url: &str) -> Option<(Vec<u8>, std::time::SystemTime)> {
    let path = sqlite_path(url)?;
    let bytes = std::fs::read(&path).ok()?;
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    Some((bytes, mtime))
}

/// Every read-only command that exists, as argument lists (`token inspect` gets a
/// JWT-shaped token and a refresh-token-shaped one).
fn read_only_commands() -> Vec<Vec<&'static str>> {
    vec![
        vec!["user", "list"],
        vec!["user", "list", "--output", "json"],
        vec!["migrate", "--status"],
        vec!["migrate", "--status", "--output", "json"],
        vec![
            "token",
            "inspect",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        ],
        vec![
            "token",
            "inspect",
            "q4Xq3mJ2bqVn7ZkQyR0sT1uV2wX3yZ4a5B6c7D8e9F0",
        ],
        vec!["health", "--url", "http://127.0.0.1:1", "--timeout", "1s"],
    ]
}

async fn read_only_commands_on_a_fresh_database_write_nothing(backend: Backend) {
    let db = TestDb::new(&backend).await;
    let tables = "SELECT table_name::TEXT FROM information_schema.tables \
                  WHERE table_schema = current_schema() ORDER BY 1";
    let before = match backend {
        Backend::Postgres(_) => query_rows(&db.url, tables).await,
        Backend::Sqlite => Vec::new(),
    };
    for args in read_only_commands() {
        let out = bare()
            .env("DATABASE_URL", &db.url)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match (&backend, args[0]) {
            (_, "health") => assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}"),
            // A missing SQLite file is a clear error, and stays missing.
            (Backend::Sqlite, _) => {
                assert_eq!(out.status.code(), Some(6), "{args:?}: {stderr}");
                assert!(stderr.contains("does not exist"), "{args:?}: {stderr}");
            }
            (Backend::Postgres(_), "migrate") => {
                assert!(out.status.success(), "{args:?}: {stderr}")
            }
            (Backend::Postgres(_), _) => {
                assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
                assert!(stderr.contains("authctl migrate"), "{args:?}: {stderr}");
            }
        }
        if let Some(path) = sqlite_path(&db.url) {
            let dir: Vec<_> = std::fs::read_dir(path.parent().unwrap())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert!(dir.is_empty(), "{args:?} created {dir:?}");
        }
    }
    if let Backend::Postgres(_) = backend {
        assert_eq!(query_rows(&db.url, tables).await, before, "tables created");
    }
    // Commands that change rows do not create the file either.
    if let Some(path) = sqlite_path(&db.url) {
        authctl(&db.url)
            .args(["user", "disable", "nobody"])
            .assert()
            .code(6);
        assert!(!path.exists());
    }
}

async fn read_only_commands_never_create_a_signing_key(backend: Backend) {
    let db = migrated_db(&backend).await; // with SECRET_KEY: no key is stored
    add_user(&db.url, "ann@example.com", "ann");
    let settings = "SELECT name, value FROM settings ORDER BY name";
    let before = query_rows(&db.url, settings).await;
    assert!(
        !before.iter().any(|r| r.starts_with("jwt_secret_key")),
        "{before:?}"
    );
    let file_before = file_state(&db.url);
    // Let the mtime's granularity show a write, if there is one.
    std::thread::sleep(std::time::Duration::from_millis(20));
    for args in read_only_commands() {
        let out = bare()
            .env("DATABASE_URL", &db.url)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let expected = match (args[0], args.get(2)) {
            ("health", _) => 1,
            // No key configured and none stored: nothing verifies (none is made up).
            ("token", Some(t)) if t.starts_with("eyJ") => 5,
            // A well-formed refresh token needs no key: it is simply unknown.
            ("token", _) => 3,
            _ => 0,
        };
        assert_eq!(out.status.code(), Some(expected), "{args:?}: {stderr}");
    }
    assert_eq!(query_rows(&db.url, settings).await, before);
    let keys = "SELECT kid FROM signing_keys";
    assert!(query_rows(&db.url, keys).await.is_empty());
    assert_eq!(
        file_state(&db.url),
        file_before,
        "the database file changed"
    );
}

async fn migrate_stores_the_key_that_serve_signs_with_and_commands_verify_with(backend: Backend) {
    let db = TestDb::new(&backend).await;
    bare()
        .env("DATABASE_URL", &db.url)
        .arg("migrate")
        .assert()
        .success();
    let keys = "SELECT kid, state FROM signing_keys";
    let stored = query_rows(&db.url, keys).await;
    assert!(
        stored.len() == 1 && stored[0].ends_with("|current"),
        "{stored:?}"
    );
    if let Some(path) = sqlite_path(&db.url) {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", path.display());
    }
    add_user(&db.url, "bea@example.com", "bea");
    let url = db.url.clone();
    let app = spawn_app_on(db, |s| s.auth.secret_key = None).await;
    let r = app.login("bea", PASSWORD).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let access = body["access_token"].as_str().unwrap();
    if let Some(path) = sqlite_path(&url) {
        // The server has written: SQLite's -wal and -shm follow the file's mode.
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let file = format!("{}{suffix}", path.display());
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{file}");
        }
    }
    let out = bare()
        .env("DATABASE_URL", &url)
        .args(["token", "inspect", access, "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["valid"], true);
    assert_eq!(query_rows(&url, keys).await, stored, "one key, kept");
    app.shutdown().await;
}

#[test]
fn config_check_prints_the_effective_settings_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("authctl.toml"),
        "[auth]\nbcrypt_cost = 5\n[server]\nbind = \"127.0.0.1:9999\"\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env"), "AUTHCTL_ISSUER=from-dotenv\n").unwrap();
    let out = bare()
        .current_dir(dir.path())
        .env("SECRET_KEY", KEY)
        .env(
            "DATABASE_URL",
            "postgres://app:Pw1@sec:ret@db/app?sslmode=disable&password=Pw1q",
        )
        .args([
            "--log-level",
            "debug",
            "config",
            "check",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in [KEY, "Pw1", "sec:ret"] {
        assert!(!all.contains(secret), "leaked {secret}: {all}");
    }
    let report = stdout_json(&out);
    let settings = &report["settings"];
    assert_eq!(report["valid"], true);
    assert_eq!(report["dotenv"], true);
    assert_eq!(settings["auth.bcrypt_cost"], "5", "from the file");
    assert_eq!(settings["server.bind"], "127.0.0.1:9999");
    assert_eq!(settings["auth.issuer"], "from-dotenv");
    assert_eq!(settings["auth.access_token_ttl"], "30m", "the default");
    assert_eq!(
        settings["database.url"],
        "postgres://app:***@db/app?sslmode=disable&password=***"
    );
    assert!(
        settings["auth.secret_key"]
            .as_str()
            .unwrap()
            .contains("redacted")
    );
    // The table form says it is valid; nothing touched a database.
    bare()
        .current_dir(dir.path())
        .args(["config", "check"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("configuration is valid")
                .and(predicate::str::contains("auth.bcrypt_cost")),
        );
    assert!(!dir.path().join("authctl.db").exists());

    // Invalid anywhere: exit 7 naming the key or variable.
    bare()
        .current_dir(dir.path())
        .env("AUTHCTL_ACCESS_TOKEN_TTL", "soon")
        .args(["config", "check"])
        .assert()
        .code(7)
        .stderr(predicate::str::contains("AUTHCTL_ACCESS_TOKEN_TTL"));
    std::fs::write(dir.path().join("authctl.toml"), "[auth]\nbcrypt = 5\n").unwrap();
    bare()
        .current_dir(dir.path())
        .args(["config", "check", "--output", "json"])
        .assert()
        .code(7)
        .stderr(predicate::str::contains("bcrypt"));
}
