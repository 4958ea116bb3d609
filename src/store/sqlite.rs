//! SQLite: the embedded default. WAL mode, a busy timeout, and `BEGIN IMMEDIATE` for
//! every write transaction, so concurrent rotations queue for the write lock instead
//! of failing with "database is locked".

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::StoreOptions;
use crate::error::{Error, Result};

pub struct SqliteStore {
    pool: SqlitePool,
    lane: super::lane::ReadLane<Sqlite>,
}

impl SqliteStore {
    const BACKEND: &'static str = "sqlite";
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
    const MIGRATIONS_TABLE_EXISTS: &'static str =
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";

    pub fn connect(store: &StoreOptions) -> Result<Self> {
        let url = store.url.expose();
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| Error::config(format!("DATABASE_URL is not a usable SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
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
        })
    }
}

async fn begin_immediate(
    pool: &SqlitePool,
) -> std::result::Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

sql_store!(SqliteStore, SqliteRotation, Sqlite, "", begin_immediate);
audit_store!(SqliteStore);
lockout_store!(SqliteStore);
session_store!(SqliteStore);
