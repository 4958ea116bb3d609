//! Pruning in batches (SPEC §8): `authctl token prune` on a database with 100k expired
//! rows never holds SQLite's write lock long enough to starve the server — logins (a
//! write) and `/me` keep answering 200 throughout — and on both backends a prune of
//! more than one batch removes and reports every row.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::prelude::*;
use crate::support::Backend;

crate::on_both_backends!(a_prune_of_several_batches_removes_and_reports_every_expired_row);

/// Inserts `n` sessions of `user`, each with one token that expired long ago, in bulk
/// SQL (two statements), as a database that was never pruned would hold them.
async fn seed_expired(app: &TestApp, user: i64, n: i64) {
    // Both statements take the user as $1 and the count as $2.
    let url = &app.settings.database_url;
    if url.is_postgres() {
        let pool = sqlx::PgPool::connect(url.expose()).await.expect("pg pool");
        for sql in [
            "INSERT INTO token_families (id, user_id, created_at) \
             SELECT md5(i::text)::uuid, $1, now() - interval '30 days' \
             FROM generate_series(1, $2) i",
            "INSERT INTO refresh_tokens (digest, family_id, issued_at, expires_at) \
             SELECT decode(md5(i::text) || md5('t' || i::text), 'hex'), md5(i::text)::uuid, \
             now() - interval '30 days', now() - interval '29 days' \
             FROM generate_series(1, $2) i WHERE $1 > 0",
        ] {
            let q = sqlx::query(sql).bind(user).bind(n);
            q.execute(&pool).await.expect(sql);
        }
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(url.expose())
            .await
            .expect("sqlite pool");
        for sql in [
            "INSERT INTO token_families (id, user_id, created_at) \
             SELECT CAST(printf('%016d', i) AS BLOB), $1, '2020-01-01T00:00:00+00:00' FROM n",
            "INSERT INTO refresh_tokens (digest, family_id, issued_at, expires_at) \
             SELECT CAST(printf('%032d', i) AS BLOB), CAST(printf('%016d', i) AS BLOB), \
             '2020-01-01T00:00:00+00:00', '2020-01-02T00:00:00+00:00' FROM n WHERE $1 > 0",
        ] {
            let sql = format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) {sql}"
            );
            let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user).bind(n);
            q.execute(&pool).await.expect("seed");
        }
        pool.close().await;
    }
}

/// Every prune statement can run on an index: with sequential scans priced out,
/// PostgreSQL's plan has none (SQLite's plans are checked in `store::sqlite`).
async fn assert_postgres_prunes_by_index(app: &TestApp) {
    use authctl::store::{PRUNE_ORPHANS_SQL, PRUNE_REVOKED_SQL, PRUNE_TOKENS_SQL};
    let pool = sqlx::PgPool::connect(app.settings.database_url.expose())
        .await
        .expect("pg pool");
    let mut conn = pool.acquire().await.expect("connection");
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("set");
    let cutoff = "now()";
    let orphans = format!("{PRUNE_ORPHANS_SQL}'00000000-0000-0000-0000-000000000001'::uuid)");
    for sql in [
        PRUNE_TOKENS_SQL.replace("$1", cutoff).replace("$2", "500"),
        orphans,
        PRUNE_REVOKED_SQL.replace("$1", cutoff).replace("$2", "500"),
    ] {
        let plan: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")))
            .fetch_all(&mut *conn)
            .await
            .expect("explain");
        let plan: Vec<String> = plan.into_iter().map(|r| r.0).collect();
        assert!(
            plan.iter().all(|step| !step.contains("Seq Scan")),
            "{sql}: {plan:#?}"
        );
    }
    drop(conn);
    pool.close().await;
}

async fn registered(app: &TestApp, name: &str) -> i64 {
    let r = app
        .register(&format!("{name}@example.com"), name, PASSWORD)
        .await;
    assert_eq!(r.status(), 201);
    json(r).await["id"].as_i64().expect("user id")
}

async fn prune_json(app: &TestApp) -> serde_json::Value {
    let out = crate::cli_run(app, &["token", "prune", "--output", "json"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("prune report")
}

async fn a_prune_of_several_batches_removes_and_reports_every_expired_row(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let old = registered(&app, "old").await;
    let n = 2 * authctl::store::PRUNE_BATCH + 500;
    seed_expired(&app, old, n).await;
    // A live session is left alone.
    let (access, _) = app.user_with_tokens("live").await;

    if app.settings.database_url.is_postgres() {
        assert_postgres_prunes_by_index(&app).await;
    }
    let report = prune_json(&app).await;
    assert_eq!(report["tokens"], n, "{report}");
    assert_eq!(report["families"], n, "{report}");
    assert_eq!(app.me(&access).await.status(), 200);
    assert_eq!(prune_json(&app).await["tokens"], 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_of_100k_expired_rows_keeps_logins_and_me_answering_on_sqlite() {
    const ROWS: i64 = 100_000;
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    let old = registered(&app, "old").await;
    seed_expired(&app, old, ROWS).await;
    let (access, _) = app.user_with_tokens("busy").await;

    // Logins (each a write: a new session) and /me, back to back, while prune runs.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, client) = (stop.clone(), app.client.clone());
        let (token_url, me_url) = (app.url("/api/v1/auth/token"), app.url("/api/v1/auth/me"));
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut slowest = Duration::ZERO;
            let deadline = Instant::now() + Duration::from_secs(300);
            while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
                let started = Instant::now();
                let login = client
                    .post(&token_url)
                    .form(&[("username", "busy"), ("password", PASSWORD)])
                    .send()
                    .await
                    .expect("login");
                let me = client
                    .get(&me_url)
                    .bearer_auth(&access)
                    .send()
                    .await
                    .expect("me");
                slowest = slowest.max(started.elapsed());
                answers.push((login.status().as_u16(), me.status().as_u16()));
            }
            (answers, slowest)
        })
    };
    let report = prune_json(&app).await;
    stop.store(true, Ordering::Release);
    let (answers, slowest) = traffic.await.expect("traffic");

    assert_eq!(report["tokens"], ROWS, "{report}");
    assert_eq!(report["families"], ROWS, "{report}");
    assert!(
        answers.len() >= 10,
        "too little traffic to tell: {answers:?}"
    );
    assert!(
        answers.iter().all(|&(login, me)| login == 200 && me == 200),
        "{:?}",
        answers
            .iter()
            .filter(|a| **a != (200, 200))
            .collect::<Vec<_>>()
    );
    eprintln!(
        "prune of {ROWS} rows: {} login+me rounds during it, slowest {} ms",
        answers.len(),
        slowest.as_millis()
    );
    assert!(
        slowest < Duration::from_secs(2),
        "slowest round {slowest:?}"
    );
    app.shutdown().await;
}
