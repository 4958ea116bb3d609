//! Scale (issue 16): a database seeded in bulk SQL with many users and sessions, the
//! cost of the shared (database) rate-limit store, and `token prune` on a big table
//! while `/me` keeps serving.
//!
//! Seeding never goes through the API: users are `generate_series` rows on PostgreSQL
//! and a recursive CTE on SQLite, all with one bcrypt hash computed once, each with
//! three sessions (a family and its refresh token). Just before `prune-under-me`, a
//! third of the seeded tokens are made expired, so that `token prune` has real work
//! (the server's own housekeeping runs at start-up and would take it first). The server measures the same
//! scenarios on it as on the empty database; compare two runs, with and without
//! `--seed-users`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::client::{Target, get, login_request};
use crate::load::{MakeRequest, collect, run_load, start_load};
use crate::plan::{Backend, Plan, Scenario};
use crate::report::{emit, ms, rate, round2};
use crate::server::Server;
use crate::stats::{Stats, Window};

/// What seeding made and how long it took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seeded {
    pub users: u64,
    pub families: u64,
    pub took: Duration,
}

/// Inserts `users` users with three sessions each into a migrated database.
pub async fn seed(backend: Backend, url: &str, users: u64, hash: &str) -> Result<Seeded, String> {
    let started = Instant::now();
    let n = i64::try_from(users).map_err(|e| e.to_string())?;
    match backend {
        Backend::Postgres => {
            let mut db = sqlx::PgConnection::connect(url)
                .await
                .map_err(|e| format!("seeding: {e}"))?;
            let steps: [&str; 3] = [
                "INSERT INTO users (email, email_norm, username, username_norm, password_hash, \
                 is_active, created_at, updated_at) \
                 SELECT 'seed' || g || '@example.com', 'seed' || g || '@example.com', \
                 'seed' || g, 'seed' || g, $1, TRUE, now(), now() FROM generate_series(1, $2) g",
                "INSERT INTO token_families (id, user_id, created_at) \
                 SELECT gen_random_uuid(), u.id, now() FROM users u, generate_series(1, 3) \
                 WHERE u.username_norm LIKE 'seed%'",
                "INSERT INTO refresh_tokens (digest, family_id, issued_at, expires_at) \
                 SELECT sha256(f.id::text::bytea), f.id, now(), now() + interval '7 days' \
                 FROM token_families f",
            ];
            for (i, sql) in steps.into_iter().enumerate() {
                let q = sqlx::query(sql);
                let q = if i == 0 { q.bind(hash).bind(n) } else { q };
                q.execute(&mut db)
                    .await
                    .map_err(|e| format!("seeding step {}: {e}", i + 1))?;
            }
            sqlx::query("ANALYZE")
                .execute(&mut db)
                .await
                .map_err(|e| format!("analyze: {e}"))?;
        }
        Backend::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(url)
                .await
                .map_err(|e| format!("seeding: {e}"))?;
            // The text form sqlx gives DateTime<Utc>, so that the server's comparisons
            // (text, on SQLite) order seeded and bound times alike.
            let steps: [&str; 3] = [
                "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $2) \
                 INSERT INTO users (email, email_norm, username, username_norm, password_hash, \
                 is_active, created_at, updated_at) \
                 SELECT 'seed' || n || '@example.com', 'seed' || n || '@example.com', \
                 'seed' || n, 'seed' || n, $1, 1, \
                 strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), \
                 strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now') FROM g",
                "INSERT INTO token_families (id, user_id, created_at) \
                 SELECT randomblob(16), u.id, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now') \
                 FROM users u, (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) \
                 WHERE u.username_norm LIKE 'seed%'",
                "INSERT INTO refresh_tokens (digest, family_id, issued_at, expires_at) \
                 SELECT randomblob(32), f.id, strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now'), \
                 strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '+7 days') FROM token_families f",
            ];
            for (i, sql) in steps.into_iter().enumerate() {
                let q = sqlx::query(sql);
                let q = if i == 0 { q.bind(hash).bind(n) } else { q };
                q.execute(&mut db)
                    .await
                    .map_err(|e| format!("seeding step {}: {e}", i + 1))?;
            }
            sqlx::query("ANALYZE")
                .execute(&mut db)
                .await
                .map_err(|e| format!("analyze: {e}"))?;
        }
    }
    Ok(Seeded {
        users,
        families: users * 3,
        took: started.elapsed(),
    })
}

/// Makes about a third of the seeded users' refresh tokens expired; returns how many.
async fn expire_a_third(backend: Backend, url: &str) -> Result<u64, String> {
    const SEEDED: &str = "family_id IN (SELECT f.id FROM token_families f \
         JOIN users u ON u.id = f.user_id WHERE u.username_norm LIKE 'seed%')";
    let done = match backend {
        Backend::Postgres => {
            let mut db = sqlx::PgConnection::connect(url)
                .await
                .map_err(|e| format!("expiring: {e}"))?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE refresh_tokens SET expires_at = now() - interval '1 day' \
                 WHERE get_byte(digest, 0) < 86 AND {SEEDED}"
            )))
            .execute(&mut db)
            .await
            .map(|r| r.rows_affected())
        }
        Backend::Sqlite => {
            let mut db = sqlx::SqliteConnection::connect(url)
                .await
                .map_err(|e| format!("expiring: {e}"))?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE refresh_tokens \
                 SET expires_at = strftime('%Y-%m-%dT%H:%M:%S+00:00', 'now', '-1 day') \
                 WHERE hex(substr(digest, 1, 1)) < '56' AND {SEEDED}"
            )))
            .execute(&mut db)
            .await
            .map(|r| r.rows_affected())
        }
    };
    done.map_err(|e| format!("expiring: {e}"))
}

/// `authctl token prune` run by the operator while 8 connections keep calling `/me`:
/// how long the prune took, what it deleted, and what `/me` saw meanwhile.
pub async fn prune_under_me(
    plan: &Plan,
    backend: Backend,
    target: &Target,
    database_url: &str,
    work: &Path,
    bearers: Arc<Vec<HeaderValue>>,
) -> Result<(Stats, String), String> {
    let expired = expire_a_third(backend, database_url).await?;
    let (t, b) = (target.clone(), bearers);
    let me: MakeRequest = Arc::new(move |c, _| get(&t, "/api/v1/auth/me", Some(&b[c % b.len()])));
    // The load outlasts the prune when it can (bounded: every scenario < 15 s).
    let window = Window::after(
        Duration::ZERO,
        Duration::from_secs(13).min(plan.measure * 2),
    );
    let load = start_load(target, 8, window, StatusCode::OK, None, me);
    let mut prune = crate::server::cli(plan, database_url, work);
    prune.args(["token", "prune", "--output", "json"]);
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || prune.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("token prune: {e}"))?;
    let took = started.elapsed();
    let mut stats = collect(load, window).await;
    if !out.status.success() {
        stats.errors += 1;
        stats.first_error.get_or_insert_with(|| {
            format!("token prune: {}", String::from_utf8_lossy(&out.stderr))
        });
    }
    let deleted: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    emit(
        backend,
        Scenario::PruneUnderMe,
        &stats,
        json!({
            "connections": 8,
            "prune_ms": round2(took.as_secs_f64() * 1000.0),
            "pruned": deleted,
            "prune_within_window": took < window.len(),
            "expired_before": expired,
        }),
    );
    let row = format!(
        "| prune-under-me | 8 /me conns + `token prune` | prune {} ({} of {expired} expired tokens, {} sessions); /me {} meanwhile, max {} | {} | {} | {} | {:.0} % |",
        ms(took.as_secs_f64() * 1000.0),
        deleted["tokens"],
        deleted["families"],
        rate(stats.rate(), "req/s"),
        ms(stats.max_ms()),
        ms(stats.quantile_ms(0.5)),
        ms(stats.quantile_ms(0.99)),
        stats.errors,
        stats.others_cpu_pct
    );
    Ok((stats, row))
}

/// The cost of a rate-limit check alone: a flood of logins from one client over its
/// quota (1 per minute), so that every request after the first is a 429 decided by
/// the limiter before any hashing; once with each `rate_limit.store`.
pub async fn limited_logins(
    plan: &Plan,
    backend: Backend,
    database_url: &str,
    work: &Path,
    user: &str,
) -> Result<(Vec<Stats>, Vec<String>), String> {
    let mut all = Vec::new();
    let mut rows = Vec::new();
    for (n, store) in ["memory", "database"].into_iter().enumerate() {
        let env = [
            ("AUTHCTL_RATE_LIMIT_ENABLED", "true".to_owned()),
            ("AUTHCTL_RATE_LIMIT_LOGIN_PER_MINUTE", "1".to_owned()),
            ("AUTHCTL_RATE_LIMIT_STORE", store.to_owned()),
        ];
        let mut server = Server::spawn_with(plan, database_url, work, 100 + n, &env)?;
        server.wait_started(Instant::now(), Duration::from_secs(30))?;
        let target = Target {
            addr: server.addr(),
            host: HeaderValue::from_str(&server.addr().to_string()).map_err(|e| e.to_string())?,
            server_pid: server.pid(),
        };
        // The one login the quota allows; everything after it is refused.
        let (t, u) = (target.clone(), user.to_owned());
        let first = crate::client::call(&target, login_request(&t, &u), StatusCode::OK).await;
        let make: MakeRequest = Arc::new(move |_, _| login_request(&t, &u));
        eprintln!("login-limited ({store} store): 8 connections …");
        let mut stats = run_load(&target, plan, 8, StatusCode::TOO_MANY_REQUESTS, make).await;
        if let Err(e) = first {
            stats.errors += 1;
            stats.first_error.get_or_insert(e);
        }
        if !server.stop()? {
            stats.errors += 1;
        }
        emit(
            backend,
            Scenario::LoginLimited,
            &stats,
            json!({"connections": 8, "rate_limit_store": store}),
        );
        rows.push(format!(
            "| login-limited | 8 conns, `rate_limit.store={store}` | {} refused (429){} | {} | {} | {} | {:.0} % |",
            rate(stats.rate(), "req/s"),
            if stats.server_cpu_us > 0.0 {
                format!(
                    ", server CPU {:.0} µs + database {:.0} µs per request",
                    stats.server_cpu_us, stats.db_cpu_us
                )
            } else {
                String::new()
            },
            ms(stats.quantile_ms(0.5)),
            ms(stats.quantile_ms(0.99)),
            stats.errors,
            stats.others_cpu_pct
        ));
        all.push(stats);
    }
    Ok((all, rows))
}
