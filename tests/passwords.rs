//! SPEC §16 on both backends: hashes made by other implementations log in unchanged
//! and are rehashed as configured; the password policy at each entry point; user
//! import and export.
//!
//! The foreign hashes below were made once, outside this project, and are kept
//! with their passwords:
//! - `PYCA_BCRYPT`: Python `bcrypt` 5.0.0 (pyca), `bcrypt.hashpw(pw, bcrypt.gensalt(12))`
//!   — what the original FastAPI project (passlib over pyca bcrypt) stores;
//! - `LIBXCRYPT_BCRYPT`: glibc/libxcrypt `crypt(3)` through Python 3.11's `crypt`;
//! - `CFFI_ARGON2ID`, `CFFI_ARGON2I`: `argon2-cffi` 25.1.0 (the PHC reference C
//!   implementation), `PasswordHasher(time_cost=3, memory_cost=65536,
//!   parallelism=4).hash(pw)` and `low_level.hash_secret(..., type=Type.I)`.

mod support;

use std::time::Duration;

use support::cli::{authctl, migrated_db, stdout_json};
use support::{Backend, PASSWORD, assert_problem, spawn_app};

const PYCA_BCRYPT: (&str, &str) = (
    PASSWORD,
    "$2b$12$yqddc2lxkhmY15Yson59JeumGy.MLwQMOxPRlbrOExgGD6jAyxhuW",
);
const PYCA_BCRYPT_2: (&str, &str) = (
    "old fastapi passphrase",
    "$2b$12$KI.0K8Du7KFcmEvBkUHEmOit1JeEwg3bLmcE0tlvX/DpXy66HH5IW",
);
const LIBXCRYPT_BCRYPT: (&str, &str) = (
    PASSWORD,
    "$2b$12$abcdefghijklmnopqrstuuE3j5FFjC71WyDL2KIK7ShSoj8tPD3m6",
);
const CFFI_ARGON2ID: (&str, &str) = (
    "an argon2 passphrase",
    "$argon2id$v=19$m=65536,t=3,p=4$CHGQUMs+KmPETYR/Y7kn5g$cfrf2vORtQ6HvFzUVxPupq2feZThhZ9+HSXkohF6Cck",
);
const CFFI_ARGON2I: (&str, &str) = (
    "an argon2i passphrase",
    "$argon2i$v=19$m=4096,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$LELhUrx7qtBHBPzWvwC9kNv8ybzdvF3A2uaUnGfv7dM",
);

/// The Argon2id the tests configure: cheap, and unlike every foreign hash above.
const TEST_ARGON2: &str = "$argon2id$v=19$m=1024,t=1,p=1$";

fn line(username: &str, hash: &str) -> String {
    serde_json::json!({
        "email": format!("{username}@example.com"),
        "username": username,
        "password_hash": hash,
    })
    .to_string()
}

fn import(url: &str, input: &str, extra: &[&str]) -> std::process::Output {
    authctl(url)
        .args(["user", "import", "-", "--output", "json"])
        .args(extra)
        .write_stdin(input.to_owned())
        .output()
        .unwrap()
}

/// `user export --with-hashes`, one JSON value a line.
fn export(url: &str) -> Vec<serde_json::Value> {
    let out = authctl(url)
        .args(["user", "export", "--with-hashes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn stored_hash(url: &str, username: &str) -> String {
    export(url)
        .into_iter()
        .find(|u| u["username"] == username)
        .and_then(|u| u["password_hash"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

async fn foreign_hashes_log_in_unchanged_and_are_upgraded(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.auth.password_hash = authctl::config::PasswordHashAlgorithm::Argon2id;
        s.auth.argon2_memory_kib = 1024;
        s.auth.argon2_iterations = 1;
        s.auth.argon2_parallelism = 1;
    })
    .await;
    let url = app.db.url.clone();
    let users = [
        ("pyca", PYCA_BCRYPT),
        ("fastapi", PYCA_BCRYPT_2),
        ("xcrypt", LIBXCRYPT_BCRYPT),
        ("cffi_id", CFFI_ARGON2ID),
        ("cffi_i", CFFI_ARGON2I),
    ];
    let input: Vec<String> = users.iter().map(|(u, (_, h))| line(u, h)).collect();
    let out = import(&url, &input.join("\n"), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_json(&out)["created"], 5);
    for (user, (password, hash)) in users {
        assert_eq!(stored_hash(&url, user), hash, "imported as is");
        assert_eq!(app.login(user, "not-the-password").await.status(), 401);
        assert_eq!(
            stored_hash(&url, user),
            hash,
            "a failed login rehashes nothing"
        );
        assert_eq!(app.login(user, password).await.status(), 200, "{user}");
    }
    // The rehash runs after the login answered: wait for it.
    for (user, (password, old)) in users {
        let mut upgraded = String::new();
        for _ in 0..100 {
            upgraded = stored_hash(&url, user);
            if upgraded != old {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(upgraded.starts_with(TEST_ARGON2), "{user}: {upgraded}");
        assert_eq!(
            app.login(user, password).await.status(),
            200,
            "{user} after"
        );
        assert_eq!(stored_hash(&url, user), upgraded, "rehashed once");
    }
    app.shutdown().await;
}

async fn a_rehash_never_undoes_a_password_change(backend: Backend) {
    let app = spawn_app(&backend, |s| s.auth.bcrypt_cost = 5).await;
    let url = app.db.url.clone();
    // Cost 12, configured 5: the login verifies it and would rehash it.
    let out = import(&url, &line("racer", PYCA_BCRYPT.1), &[]);
    assert!(out.status.success());
    assert_eq!(app.login("racer", PASSWORD).await.status(), 200);
    authctl(&url)
        .args(["user", "set-password", "racer", "--password-stdin"])
        .write_stdin("a brand new passphrase\n")
        .assert()
        .success();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.login("racer", "a brand new passphrase").await.status(),
        200
    );
    assert_eq!(app.login("racer", PASSWORD).await.status(), 401);
    app.shutdown().await;
}

async fn the_policy_refuses_with_its_reason_everywhere(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    for (username, password, reason) in [
        ("carol", "Password123", "too common"),
        ("carol", "iloveyou2", "too common"),
        ("carol", "carol-is-great", "contains the username"),
        ("carol", &"x".repeat(73), "72 bytes"),
    ] {
        let r = app
            .register(&format!("{username}@example.com"), username, password)
            .await;
        let body = assert_problem(r, 422).await;
        let errors = body["errors"].as_array().unwrap();
        assert_eq!(errors[0]["field"], "password", "{body}");
        let message = errors[0]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{password}: {message}");
    }
    assert_eq!(
        app.register("carol@example.com", "carol", PASSWORD)
            .await
            .status(),
        201
    );
    let url = app.db.url.clone();
    let out = authctl(&url)
        .args([
            "user",
            "add",
            "--email",
            "d@example.com",
            "--username",
            "dave",
        ])
        .arg("--password-stdin")
        .write_stdin("qwertyuiop\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("too common"));
    let out = authctl(&url)
        .args(["user", "set-password", "carol", "--password-stdin"])
        .write_stdin("xx CAROL xx\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("contains the username"));
    // The password change: rules as at register.
    let r = app.login("carol", PASSWORD).await;
    let access = r.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .client
        .post(app.url("/api/v1/auth/password"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"current_password": PASSWORD, "new_password": "iloveyou"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, 422).await;
    assert_eq!(body["errors"][0]["field"], "new_password", "{body}");
    assert_eq!(body["errors"][0]["message"], "is too common");
    app.shutdown().await;
}

async fn import_reports_bad_lines_conflicts_and_dry_runs(backend: Backend) {
    let db = migrated_db(&backend).await;
    let url = db.url.clone();
    let input = [
        line("first", PYCA_BCRYPT.1),
        "{not json".to_owned(),
        line(
            "second",
            "$2b$16$yqddc2lxkhmY15Yson59JeumGy.MLwQMOxPRlbrOExgGD6jAyxhuW",
        ),
        line(
            "third",
            "$argon2id$v=19$m=300000,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
        ),
        r#"{"email":"no-at-sign","username":"fourth"}"#.to_owned(),
        r#"{"email":"fifth@example.com","username":"fifth","roles":["Admin!"]}"#.to_owned(),
        r#"{"email":"sixth@example.com","username":"sixth","roles":["admin","billing:read"]}"#
            .to_owned(),
        String::new(),
        line("FIRST", PYCA_BCRYPT_2.1),
    ]
    .join("\n");
    let dry = import(&url, &input, &["--dry-run"]);
    assert_eq!(dry.status.code(), Some(1));
    assert_eq!(export(&url).len(), 0, "a dry run writes nothing");
    let out = import(&url, &input, &[]);
    assert_eq!(out.status.code(), Some(1));
    let summary = stdout_json(&out);
    assert_eq!(summary["created"], 2, "{summary}");
    assert_eq!(summary["skipped"], 1, "FIRST is first, in any case");
    assert_eq!(summary["failed"], 5);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (n, what) in [
        (2, "not a valid line"),
        (3, "cost 16"),
        (4, "memory"),
        (5, "email"),
        (6, "roles"),
    ] {
        assert!(
            stderr.contains(&format!("line {n}: ")) && stderr.contains(what),
            "{stderr}"
        );
    }
    assert_eq!(stdout_json(&dry)["created"], summary["created"]);
    // Conflicts: update takes the new hash, error reports the line.
    let update = import(
        &url,
        &line("first", PYCA_BCRYPT_2.1),
        &["--on-conflict", "update"],
    );
    assert_eq!(stdout_json(&update)["updated"], 1);
    assert_eq!(stored_hash(&url, "first"), PYCA_BCRYPT_2.1);
    let error = import(
        &url,
        &line("First", PYCA_BCRYPT.1),
        &["--on-conflict", "error"],
    );
    assert_eq!(error.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&error.stderr).contains("line 1: "));
    // Without a hash the account exists but nothing opens it but a reset.
    assert_eq!(
        stored_hash(&url, "sixth"),
        "",
        "export writes no unusable hash"
    );
    let events = authctl(&url)
        .args([
            "audit",
            "list",
            "--kind",
            "user_imported",
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(stdout_json(&events).as_array().unwrap().len(), 3);
}

async fn export_then_import_reproduces_every_account(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let from = app.db.url.clone();
    assert_eq!(
        app.register("ann@example.com", "ann", PASSWORD)
            .await
            .status(),
        201
    );
    let out = import(&from, &line("fastapi", PYCA_BCRYPT_2.1), &[]);
    assert!(out.status.success());
    authctl(&from)
        .args(["user", "disable", "ann"])
        .assert()
        .success();
    authctl(&from)
        .args(["user", "role", "add", "ann", "support", "billing:read"])
        .assert()
        .success();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("users.jsonl");
    authctl(&from)
        .args(["user", "export", "--with-hashes"])
        .arg(&file)
        .assert()
        .success();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let plain = authctl(&from).args(["user", "export"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&plain.stdout).contains("$2b$"),
        "no hashes unless asked"
    );
    let to = spawn_app(&backend, |_| {}).await;
    let out = authctl(&to.db.url)
        .args(["user", "import", "--output", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(stdout_json(&out)["created"], 2);
    let (a, b) = (export(&from), export(&to.db.url));
    assert_eq!(a, b, "every account, field for field");
    let ann = b
        .iter()
        .find(|l| l["username"] == "ann")
        .expect("ann was exported");
    assert_eq!(
        ann["roles"],
        serde_json::json!(["billing:read", "support"]),
        "roles travel with the account"
    );
    assert_eq!(to.login("fastapi", PYCA_BCRYPT_2.0).await.status(), 200);
    authctl(&to.db.url)
        .args(["user", "enable", "ann"])
        .assert()
        .success();
    assert_eq!(to.login("ann", PASSWORD).await.status(), 200);
    to.shutdown().await;
    app.shutdown().await;
}

/// One batch is read as the lines it holds, in order: a line sees what the lines
/// before it in the same batch created or changed (a duplicate, a rename that frees a
/// name, an update of an account created a few lines above), exactly as it sees what
/// earlier batches stored.
async fn import_lines_see_the_lines_before_them(backend: Backend) {
    let db = migrated_db(&backend).await;
    let url = db.url.clone();
    let setup = [
        line("olduser", PYCA_BCRYPT.1),
        line("keeper", PYCA_BCRYPT.1),
    ]
    .join("\n");
    assert_eq!(stdout_json(&import(&url, &setup, &[]))["created"], 2);
    let raw = |email: &str, username: &str, extra: serde_json::Value| {
        let mut v = serde_json::json!({"email": email, "username": username});
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v.to_string()
    };
    let input = [
        raw(
            "dup@example.com",
            "dup",
            serde_json::json!({"password_hash": PYCA_BCRYPT.1}),
        ),
        raw(
            "DUP@example.com",
            "dup",
            serde_json::json!({"password_hash": PYCA_BCRYPT_2.1, "roles": ["r1"]}),
        ),
        raw("olduser@example.com", "renamed", serde_json::json!({})),
        raw(
            "new@example.com",
            "olduser",
            serde_json::json!({"roles": ["r2", "r3"]}),
        ),
        raw("keeper@example.com", "dup", serde_json::json!({})),
        raw(
            "moved@example.com",
            "Renamed",
            serde_json::json!({"is_active": false}),
        ),
    ]
    .join("\n");
    let out = import(&url, &input, &["--on-conflict", "update"]);
    let summary = stdout_json(&out);
    assert_eq!(summary["created"], 2, "{summary}");
    assert_eq!(summary["updated"], 3, "{summary}");
    assert_eq!(summary["failed"], 1, "{summary}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 5: ") && stderr.contains("two different accounts"),
        "{stderr}"
    );
    let users = export(&url);
    let by_name = |name: &str| {
        users
            .iter()
            .find(|u| u["username"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {users:?}"))
    };
    assert_eq!(users.len(), 4, "{users:?}");
    let dup = by_name("dup");
    assert_eq!(dup["email"], "DUP@example.com");
    assert_eq!(dup["password_hash"], PYCA_BCRYPT_2.1);
    assert_eq!(dup["roles"], serde_json::json!(["r1"]));
    let moved = by_name("Renamed");
    assert_eq!(moved["email"], "moved@example.com");
    assert_eq!(moved["is_active"], false);
    assert_eq!(
        moved["password_hash"], PYCA_BCRYPT.1,
        "no hash: the stored one stays"
    );
    let new = by_name("olduser");
    assert_eq!(new["email"], "new@example.com");
    assert_eq!(new["roles"], serde_json::json!(["r2", "r3"]));
    assert_eq!(by_name("keeper")["email"], "keeper@example.com");
    // Skip and error within one batch, too.
    let twice = [line("skip1", PYCA_BCRYPT.1), line("SKIP1", PYCA_BCRYPT_2.1)].join("\n");
    let skip = stdout_json(&import(&url, &twice, &[]));
    assert_eq!(
        (skip["created"].clone(), skip["skipped"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(
        stored_hash(&url, "skip1"),
        PYCA_BCRYPT.1,
        "the first line wins"
    );
    let twice = [line("err1", PYCA_BCRYPT.1), line("ERR1", PYCA_BCRYPT.1)].join("\n");
    let error = import(&url, &twice, &["--on-conflict", "error"]);
    assert_eq!(stdout_json(&error)["created"], 1);
    assert_eq!(stdout_json(&error)["failed"], 1);
    assert!(String::from_utf8_lossy(&error.stderr).contains("line 2: "));
}

/// More lines than one batch holds, each with roles: every account and every role
/// arrives, and a dry run of the same file counts the same and writes nothing.
async fn import_spans_batches_with_roles(backend: Backend) {
    let db = migrated_db(&backend).await;
    let url = db.url.clone();
    let input: Vec<String> = (0..2_500)
        .map(|i| {
            serde_json::json!({
                "email": format!("bulk{i}@example.com"),
                "username": format!("bulk{i}"),
                "roles": ["member", format!("team{}", i % 7)],
            })
            .to_string()
        })
        .collect();
    let input = input.join("\n");
    let dry = stdout_json(&import(&url, &input, &["--dry-run"]));
    assert_eq!(dry["created"], 2_500, "{dry}");
    assert_eq!(export(&url).len(), 0, "a dry run writes nothing");
    let out = stdout_json(&import(&url, &input, &[]));
    assert_eq!(out["created"], 2_500, "{out}");
    let users = export(&url);
    assert_eq!(users.len(), 2_500);
    for (i, u) in users.iter().enumerate() {
        assert_eq!(u["username"], format!("bulk{i}"), "in line order");
        assert_eq!(
            u["roles"],
            serde_json::json!(["member", format!("team{}", i % 7)]),
            "{u}"
        );
    }
    let again = stdout_json(&import(&url, &input, &[]));
    assert_eq!(again["skipped"], 2_500, "{again}");
}

on_both_backends!(
    foreign_hashes_log_in_unchanged_and_are_upgraded,
    a_rehash_never_undoes_a_password_change,
    the_policy_refuses_with_its_reason_everywhere,
    import_reports_bad_lines_conflicts_and_dry_runs,
    export_then_import_reproduces_every_account,
    import_lines_see_the_lines_before_them,
    import_spans_batches_with_roles,
);
