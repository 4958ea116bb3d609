//! `db backup` and `db copy` (SPEC §17, issue 25) with the real binary: a copy in
//! each direction keeps every session, key, lock and second factor working on the
//! target; a target with users is refused; the table list of the copy matches what
//! the migrations create on each backend; a backup taken while the server writes is
//! a whole, private SQLite file.

mod support;

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use authctl::store::copy::{Kind, SKIPPED, TABLES};
use serde_json::{Value, json};
use sqlx::Connection;
use support::cli::{add_user, authctl, migrated_db, stdout_json};
use support::{Backend, PASSWORD, TestApp, TestDb, spawn_app, spawn_app_on};

on_both_backends!(
    the_copy_knows_every_table_and_column_the_migrations_create,
    a_target_that_holds_a_user_is_refused_with_exit_4,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_postgres_keeps_every_session_lock_and_second_factor() {
    if let Some(pg) = support::postgres().await {
        copy_keeps_everything(Backend::Sqlite, pg).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_sqlite_keeps_every_session_lock_and_second_factor() {
    if let Some(pg) = support::postgres().await {
        copy_keeps_everything(pg, Backend::Sqlite).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_sqlite_keeps_every_session_lock_and_second_factor() {
    copy_keeps_everything(Backend::Sqlite, Backend::Sqlite).await;
}

/// Keys generated and stored in the database (no SECRET_KEY), a low lockout threshold.
fn tweak(s: &mut authctl::config::Settings) {
    s.auth.secret_key = None;
    s.auth.lockout_threshold = 3;
}

/// (table, column) → the declared type, of every table the migrations create.
async fn schema(backend: &Backend, url: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let rows: Vec<(String, String, String)> = match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url).await.expect("open");
            sqlx::query_as(
                "SELECT m.name, p.name, upper(p.type) FROM sqlite_master m, \
                 pragma_table_info(m.name) p WHERE m.type = 'table' \
                 AND m.name NOT LIKE 'sqlite_%'",
            )
            .fetch_all(&mut c)
            .await
            .expect("sqlite_master")
        }
        Backend::Postgres(_) => {
            let mut c = sqlx::PgConnection::connect(url).await.expect("open");
            sqlx::query_as(
                "SELECT c.table_name::TEXT, c.column_name::TEXT, c.data_type::TEXT \
                 FROM information_schema.columns c JOIN information_schema.tables t \
                 ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
                 WHERE t.table_schema = current_schema() AND t.table_type = 'BASE TABLE'",
            )
            .fetch_all(&mut c)
            .await
            .expect("information_schema")
        }
    };
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (table, column, ty) in rows {
        tables.entry(table).or_default().insert(column, ty);
    }
    tables
}

/// Whether a column declared `ty` on `backend` is read and written right as `kind`.
fn fits(backend: &Backend, kind: Kind, ty: &str) -> bool {
    match backend {
        Backend::Sqlite => match kind {
            Kind::I32 | Kind::I64 => ty == "INTEGER",
            Kind::Bool => ty == "BOOLEAN",
            Kind::Text | Kind::Time => ty == "TEXT",
            Kind::Bytes | Kind::Uuid => ty == "BLOB",
        },
        Backend::Postgres(_) => {
            ty == match kind {
                Kind::I32 => "integer",
                Kind::I64 => "bigint",
                Kind::Bool => "boolean",
                Kind::Text => "text",
                Kind::Bytes => "bytea",
                Kind::Uuid => "uuid",
                Kind::Time => "timestamp with time zone",
            }
        }
    }
}

/// A migration that adds a table or a column fails here until `TABLES` (or, with a
/// reason, `SKIPPED`) in src/store/copy.rs says how to copy it.
async fn the_copy_knows_every_table_and_column_the_migrations_create(backend: Backend) {
    let db = migrated_db(&backend).await;
    let schema = schema(&backend, &db.url).await;
    let known: Vec<&str> = TABLES
        .iter()
        .map(|t| t.name)
        .chain(SKIPPED.iter().map(|s| s.0))
        .collect();
    let missing: Vec<&String> = schema
        .keys()
        .filter(|t| !known.contains(&t.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{}: tables the migrations create that db copy does not know: {missing:?}; \
         add them to TABLES (or SKIPPED, with the reason) in src/store/copy.rs",
        backend.name()
    );
    for table in TABLES {
        let Some(columns) = schema.get(table.name) else {
            panic!(
                "{}: TABLES lists {}, which no migration creates",
                backend.name(),
                table.name
            );
        };
        let listed: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        let unlisted: Vec<&String> = columns
            .keys()
            .filter(|c| !listed.contains(&c.as_str()))
            .collect();
        assert!(
            unlisted.is_empty(),
            "{}: columns of {} that db copy does not copy: {unlisted:?}",
            backend.name(),
            table.name
        );
        for c in table.columns {
            let ty = columns.get(c.name).unwrap_or_else(|| {
                panic!(
                    "{}: {}.{} is not in the schema",
                    backend.name(),
                    table.name,
                    c.name
                )
            });
            assert!(
                fits(&backend, c.kind, ty),
                "{}: {}.{} is {ty}, which {:?} does not read",
                backend.name(),
                table.name,
                c.name,
                c.kind
            );
        }
    }
}

/// The code of `secret` now.
fn totp_now(secret: &[u8]) -> String {
    let totp = totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .build()
        .expect("totp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs();
    totp.generate(now).to_string()
}

async fn enable_totp(app: &TestApp, access: &str) {
    let r = app
        .client
        .post(app.url("/api/v1/auth/mfa/totp"))
        .bearer_auth(access)
        .json(&json!({"current_password": PASSWORD}))
        .send()
        .await
        .expect("enrol");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("enrolment");
    let secret = totp_rs::Secret::try_from_base32(body["secret"].as_str().expect("secret"))
        .expect("base32")
        .as_bytes()
        .to_vec();
    let r = app
        .client
        .post(app.url("/api/v1/auth/mfa/totp/confirm"))
        .bearer_auth(access)
        .json(&json!({"code": totp_now(&secret)}))
        .send()
        .await
        .expect("confirm");
    assert_eq!(r.status(), 200);
}

fn copy_json(from: &str, to: &str) -> Value {
    let out = authctl(from)
        .args(["db", "copy", "--to", to, "--output", "json"])
        .output()
        .expect("run db copy");
    assert!(
        out.status.success(),
        "db copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out)
}

async fn copy_keeps_everything(from: Backend, to: Backend) {
    let source = spawn_app(&from, tweak).await;
    let (alice_access, spent) = source.user_with_tokens("alice").await;
    let r = source.refresh(&spent).await;
    assert_eq!(r.status(), 200);
    let live: Value = r.json().await.expect("pair");
    let live = live["refresh_token"].as_str().expect("refresh").to_owned();
    let (_, _) = source.user_with_tokens("bob").await;
    for _ in 0..3 {
        assert_eq!(source.login("bob", "not-the-password").await.status(), 401);
    }
    assert_eq!(source.login("bob", PASSWORD).await.status(), 401, "locked");
    let (carol_access, _) = source.user_with_tokens("carol").await;
    enable_totp(&source, &carol_access).await;
    // A deleted last user: its id is not handed out again on the target.
    let gone = source
        .register("gone@example.com", "gone", PASSWORD)
        .await
        .json::<Value>()
        .await
        .expect("user")["id"]
        .as_i64()
        .expect("id");
    authctl(&source.db.url)
        .args(["user", "delete", "gone"])
        .assert()
        .success();

    // Copied while the source server runs.
    let target_db = TestDb::new(&to).await;
    let report = copy_json(&source.db.url, &target_db.url);
    let rows = |table: &str| {
        report["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .find(|t| t["table"] == table)
            .unwrap_or_else(|| panic!("{table} in {report}"))["rows"]
            .as_u64()
            .expect("rows")
    };
    assert_eq!(rows("users"), 3, "{report}");
    assert!(
        rows("token_families") >= 3 && rows("refresh_tokens") >= 4,
        "{report}"
    );
    assert!(
        rows("signing_keys") >= 1 && rows("user_mfa") == 1,
        "{report}"
    );
    assert!(
        rows("recovery_codes") >= 1 && rows("audit_log") >= 1,
        "{report}"
    );
    assert!(
        report["note"]
            .as_str()
            .expect("note")
            .contains("not carried over")
    );
    assert!(
        report["skipped"].to_string().contains("rate_limits"),
        "{report}"
    );
    source.shutdown().await;

    let target = spawn_app_on(target_db, tweak).await;
    // The access token the source signed, with the copied key.
    let r = target.me(&alice_access).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // The live refresh token rotates; the spent one is theft, and ends the family.
    let r = target.refresh(&live).await;
    assert_eq!(r.status(), 200);
    let next: Value = r.json().await.expect("pair");
    let next = next["refresh_token"].as_str().expect("refresh").to_owned();
    assert_eq!(target.refresh(&spent).await.status(), 401, "reuse refused");
    assert_eq!(target.refresh(&next).await.status(), 401, "family revoked");
    assert_eq!(
        target.me(&alice_access).await.status(),
        401,
        "session ended"
    );
    // The lock holds; the second factor is still asked for.
    assert_eq!(
        target.login("bob", PASSWORD).await.status(),
        401,
        "still locked"
    );
    let r = target.login("carol", PASSWORD).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.expect("problem");
    assert_eq!(body["error"], "mfa_required", "{body}");
    // New rows get fresh ids past the copied ones (and past the deleted user's).
    let r = target.register("dave@example.com", "dave", PASSWORD).await;
    assert_eq!(r.status(), 201);
    let dave = r.json::<Value>().await.expect("user")["id"]
        .as_i64()
        .expect("id");
    assert!(dave > gone, "dave {dave}, the source's last id {gone}");
    let user = add_user(&target.db.url, "erin@example.com", "erin");
    assert!(user["id"].as_i64().expect("id") > dave, "{user}");
    target.shutdown().await;
}

async fn a_target_that_holds_a_user_is_refused_with_exit_4(backend: Backend) {
    let source = migrated_db(&Backend::Sqlite).await;
    add_user(&source.url, "a@example.com", "alice");
    let target = migrated_db(&backend).await;
    add_user(&target.url, "b@example.com", "bob");
    let out = authctl(&source.url)
        .args(["db", "copy", "--to", &target.url])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds users"));
    // Nothing was written: bob is still the only user.
    let out = authctl(&target.url)
        .args(["user", "list", "--output", "json"])
        .output()
        .expect("run");
    let users = stdout_json(&out);
    assert_eq!(users.as_array().map(Vec::len), Some(1), "{users}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_while_the_server_writes_holds_every_committed_user_and_is_private() {
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("backup.db");
    let writer = {
        let (base, client) = (app.base.clone(), app.client.clone());
        tokio::spawn(async move {
            let mut committed = 0;
            for i in 0..40 {
                let r = client
                    .post(format!("{base}/api/v1/auth/register"))
                    .json(&json!({"email": format!("u{i}@example.com"), "username": format!("user{i}"), "password": PASSWORD}))
                    .send()
                    .await
                    .expect("register");
                assert_eq!(r.status(), 201);
                committed += 1;
            }
            committed
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let before = count_users(&app.db.url).await;
    authctl(&app.db.url)
        .args(["db", "backup", file.to_str().expect("utf-8")])
        .assert()
        .success();
    assert_eq!(writer.await.expect("writer"), 40);
    let backed_up = count_users(&format!("sqlite://{}", file.display())).await;
    assert!(
        backed_up >= before,
        "{backed_up} < {before} committed before it"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .expect("open");
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await
        .expect("check");
    assert_eq!(check, "ok");
    // An existing file is never overwritten.
    let out = authctl(&app.db.url)
        .args(["db", "backup", file.to_str().expect("utf-8")])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        count_users(&format!("sqlite://{}", file.display())).await,
        backed_up
    );
    app.shutdown().await;
}

async fn count_users(url: &str) -> i64 {
    let mut c = sqlx::SqliteConnection::connect(url).await.expect("open");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
        .fetch_one(&mut c)
        .await
        .expect("count");
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_postgres_says_to_use_pg_dump_with_exit_1() {
    let Some(pg) = support::postgres().await else {
        return;
    };
    let db = migrated_db(&pg).await;
    let dir = tempfile::tempdir().expect("dir");
    let out = authctl(&db.url)
        .args(["db", "backup"])
        .arg(dir.path().join("b.db"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
    assert!(!dir.path().join("b.db").exists());
}
