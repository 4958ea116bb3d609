//! `authctl keys list|rotate|retire` as a real process (SPEC §9, §7): JSON output,
//! states, exit codes, and that read-only commands never create keys.

mod support;

use assert_cmd::Command;
use predicates::prelude::*;
use support::{Backend, TestDb};

on_both_backends!(
    keys_list_rotate_and_retire_manage_the_database_keys,
    with_secret_key_rotation_is_done_by_changing_it,
);

const KEY: &str = "test-key-0123456789abcdefghijklmnopqrstuv";

/// `authctl` against `url` with EdDSA keys kept in the database (no SECRET_KEY).
fn authctl(url: &str) -> Command {
    let mut cmd = Command::new(support::authctl_bin());
    cmd.current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", url)
        .env("ALGORITHM", "EdDSA")
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

fn list(url: &str) -> Vec<serde_json::Value> {
    let out = authctl(url)
        .args(["keys", "list", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("a JSON array")
}

async fn keys_list_rotate_and_retire_manage_the_database_keys(backend: Backend) {
    let db = TestDb::new(&backend).await;
    // Before `migrate` there is no schema; with the schema but before provisioning
    // `keys list` creates nothing.
    authctl(&db.url)
        .env("SECRET_KEY", KEY)
        .env("ALGORITHM", "HS256")
        .arg("migrate")
        .assert()
        .success();
    assert_eq!(list(&db.url), Vec::<serde_json::Value>::new());
    assert_eq!(list(&db.url), Vec::<serde_json::Value>::new());

    // `migrate` generates the first key of the configured algorithm.
    authctl(&db.url).arg("migrate").assert().success();
    let keys = list(&db.url);
    assert_eq!(keys.len(), 1);
    let first = keys[0]["kid"].as_str().unwrap().to_owned();
    assert_eq!(keys[0]["alg"], "EdDSA");
    assert_eq!(keys[0]["state"], "current");
    assert!(keys[0]["created_at"].is_string());
    assert!(keys[0]["expires_at"].is_null());

    let out = authctl(&db.url)
        .args(["keys", "rotate", "--algorithm", "ES256", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let rotated: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["alg"], "ES256");
    let second = rotated["kid"].as_str().unwrap().to_owned();
    let keys = list(&db.url);
    let state_of = |keys: &[serde_json::Value], kid: &str| {
        keys.iter()
            .find(|k| k["kid"] == kid)
            .map(|k| (k["state"].clone(), k["expires_at"].clone()))
            .unwrap()
    };
    let (state, expires) = state_of(&keys, &first);
    assert_eq!(state, "previous");
    assert!(
        expires.is_string(),
        "a previous key says when it stops verifying"
    );
    assert_eq!(state_of(&keys, &second).0, "current");

    authctl(&db.url)
        .args(["keys", "retire", &first])
        .assert()
        .success()
        .stdout(predicate::str::contains("retired"));
    assert_eq!(state_of(&list(&db.url), &first).0, "retired");

    authctl(&db.url)
        .args(["keys", "retire", "no-such-kid"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("no-such-kid"));
    authctl(&db.url)
        .args(["keys", "rotate", "--algorithm", "RS256"])
        .assert()
        .code(2);
    // The table form names every key.
    authctl(&db.url)
        .args(["keys", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains(&first).and(predicate::str::contains(&second)));
}

async fn with_secret_key_rotation_is_done_by_changing_it(backend: Backend) {
    let db = TestDb::new(&backend).await;
    let hs = |cmd: &mut Command| {
        cmd.env("SECRET_KEY", KEY).env("ALGORITHM", "HS256");
    };
    let mut migrate = authctl(&db.url);
    hs(&mut migrate);
    migrate.arg("migrate").assert().success();
    let mut rotate = authctl(&db.url);
    hs(&mut rotate);
    rotate
        .args(["keys", "rotate"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("SECRET_KEY"))
        .stderr(predicate::str::contains(KEY).not());
}
