//! SQLite: the embedded default. WAL mode, a busy timeout, and `BEGIN IMMEDIATE` for
//! every write transaction, so concurrent rotations queue for the write lock instead
//! of failing with "database is locked".
//!
//! The file holds the signing key and the password hashes, so authctl creates it
//! itself, mode 0600 (owner only), before SQLite opens it; SQLite gives the `-wal` and
//! `-shm` files the mode of the database file. An existing file keeps its mode. Only
//! [`Access::Create`] (`serve`, `migrate`) creates the file: other commands on a
//! missing file fail with "does not exist" (exit 6), and read-only commands open the
//! database read-only, so they cannot change a byte of it.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::{Access, StoreOptions};
use crate::error::{Error, Result};

pub struct SqliteStore {
    pool: SqlitePool,
    lane: super::lane::ReadLane<Sqlite>,
    lookups: super::batch::Lookups,
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
    const MIGRATIONS_TABLE_EXISTS: &'static str =
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
    /// Prune rests between batches at least this long, and at least as long as the
    /// batch took: a writer waiting for the lock (SQLite's busy handler polls every
    /// 1 to 100 ms) finds it free at least half the time, never behind more than one
    /// batch.
    const PRUNE_PAUSE: Option<Duration> = Some(Duration::from_millis(50));

    pub fn connect(store: &StoreOptions) -> Result<Self> {
        let url = store.url.expose();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::config(format!("DATABASE_URL is not a usable SQLite URL: {e}")))?
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        if !is_in_memory(url) {
            let path = options.get_filename().to_owned();
            match store.access {
                Access::Create => create_private(&path)?,
                Access::ReadWrite | Access::ReadOnly if !path.exists() => {
                    return Err(Error::Unavailable(format!(
                        "the SQLite database {} does not exist; `authctl migrate` creates it",
                        path.display()
                    )));
                }
                Access::ReadWrite | Access::ReadOnly => {}
            }
        }
        let options = match store.access {
            // No journal-mode pragma either: switching to WAL would write the header.
            Access::ReadOnly => options.read_only(true).create_if_missing(false),
            Access::Create | Access::ReadWrite => options
                .create_if_missing(store.access == Access::Create)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal),
        };
        let pool = SqlitePoolOptions::new()
            .min_connections(store.pool_min)
            .max_connections(store.pool_max.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .test_before_acquire(false)
            .before_acquire(super::ping_if_idle)
            .connect_lazy_with(options);
        Ok(SqliteStore {
            pool,
            lane: super::lane::ReadLane::new(store.pool_max),
            lookups: super::batch::Lookups::default(),
        })
    }
}

/// `sqlite::memory:` and `?mode=memory` never touch a file.
fn is_in_memory(url: &str) -> bool {
    let url = url.to_ascii_lowercase();
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Creates an empty database file readable by its owner only, unless it exists. An
/// empty file is a valid empty SQLite database.
fn create_private(path: &Path) -> Result<()> {
    let mut open = std::fs::OpenOptions::new();
    open.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
    match open.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::Unavailable(format!(
            "cannot create the SQLite database {}: {e}",
            path.display()
        ))),
    }
}

async fn begin_immediate(
    pool: &SqlitePool,
) -> std::result::Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

sql_store!(SqliteStore, SqliteRotation, Sqlite, "", "", begin_immediate);
rate_limit_store!(
    SqliteStore,
    "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
);
pool_stats!(SqliteStore);
keys_store!(SqliteStore, begin_immediate);

audit_store!(SqliteStore);
lockout_store!(SqliteStore);
session_store!(SqliteStore);
email_nfc_store!(
    SqliteStore,
    "(email GLOB '*[^ -~]*' OR email_norm GLOB '*[^ -~]*')"
);
email_store!(SqliteStore, Sqlite, begin_immediate, "");
mfa_store!(SqliteStore, begin_immediate);
oidc_store!(SqliteStore, begin_immediate);
import_store!(SqliteStore, Sqlite, begin_immediate);
admin_store!(SqliteStore, Sqlite, begin_immediate);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::sql::{PRUNE_ORPHANS_SQL, PRUNE_REVOKED_SQL, PRUNE_TOKENS_SQL};

    /// A migrated database file in `dir`, on a pool of one.
    async fn migrated(dir: &Path) -> SqliteStore {
        let url = format!("sqlite://{}", dir.join("test.db").display());
        let store = SqliteStore::connect(&StoreOptions {
            url: crate::store::DatabaseUrl::parse(&url).unwrap(),
            pool_min: 0,
            pool_max: 1,
            access: crate::store::Access::Create,
        })
        .unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// SQLite's plan for `sql`, one line per step.
    async fn plan(store: &SqliteStore, sql: &str) -> Vec<String> {
        let rows: Vec<(i64, i64, i64, String)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                .fetch_all(&store.pool)
                .await
                .unwrap();
        rows.into_iter().map(|r| r.3).collect()
    }

    /// `.cargo/config.toml` builds the bundled SQLite without STAT4: with it, once
    /// `ANALYZE` had run, every `/me` re-prepared its statement (half the throughput on
    /// a 1M-user database). A build that loses the setting fails here.
    #[tokio::test]
    async fn the_linked_sqlite_has_no_stat4() {
        let store = SqliteStore::connect(&StoreOptions {
            url: crate::store::DatabaseUrl::parse("sqlite::memory:").unwrap(),
            pool_min: 0,
            pool_max: 1,
            access: crate::store::Access::Create,
        })
        .unwrap();
        let (stat4,): (i64,) = sqlx::query_as("SELECT sqlite_compileoption_used('ENABLE_STAT4')")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            stat4, 0,
            "LIBSQLITE3_FLAGS=-USQLITE_ENABLE_STAT4 was not applied"
        );
    }

    /// The batched session lookup walks the primary keys, whatever the batch size.
    #[tokio::test]
    async fn the_batched_session_lookup_searches_by_primary_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(dir.path()).await;
        for n in [1, 8, crate::store::batch::MAX_BATCH] {
            let steps = plan(&store, crate::store::batch::session_batch_sql(n)).await;
            assert!(
                steps
                    .iter()
                    .all(|s| !s.starts_with("SCAN f") && !s.starts_with("SCAN u")),
                "batch of {n}: {steps:?}"
            );
            assert!(
                steps
                    .iter()
                    .any(|s| s.contains("SEARCH f USING INDEX sqlite_autoindex_token_families_1")),
                "{steps:?}"
            );
            assert!(
                steps
                    .iter()
                    .any(|s| s.contains("SEARCH u USING INTEGER PRIMARY KEY")),
                "{steps:?}"
            );
        }
    }

    #[tokio::test]
    async fn every_prune_statement_searches_an_index_and_scans_no_table() {
        let dir = tempfile::tempdir().unwrap();
        let store = migrated(dir.path()).await;
        let cutoff = "'2026-01-01T00:00:00+00:00'";
        for (sql, index) in [
            (
                PRUNE_TOKENS_SQL.replace("$1", cutoff).replace("$2", "500"),
                "refresh_tokens_expires_at",
            ),
            (
                format!("{PRUNE_ORPHANS_SQL}x'01', x'02')"),
                "refresh_tokens_family_id",
            ),
            (
                PRUNE_REVOKED_SQL.replace("$1", cutoff).replace("$2", "500"),
                "token_families_revoked_at",
            ),
        ] {
            let steps = plan(&store, &sql).await;
            assert!(steps.iter().any(|s| s.contains(index)), "{sql}: {steps:?}");
            assert!(
                steps.iter().all(|s| !s.starts_with("SCAN")),
                "{sql}: {steps:?}"
            );
        }
        store.close().await;
    }
}
