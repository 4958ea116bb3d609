//! Locks that make several `serve` processes on one PostgreSQL database act once
//! (SPEC §12): replicas started together migrate once, and housekeeping runs on one
//! replica at a time. Both are PostgreSQL session-level advisory locks, each on a
//! dedicated connection outside the pool, so that a process that dies (even by
//! SIGKILL) loses its lock with its connection, and a pooled connection can never go
//! back to the pool still holding one.
//!
//! SQLite is one process's embedded database: its locks are no-ops ([`HeldLock`]
//! without a connection), and its migrations are serialized by SQLite's write lock.

use async_trait::async_trait;
use sqlx::{Connection, PgConnection};

use crate::error::Result;

/// The advisory lock held while one process compares and applies migrations.
const MIGRATION_LOCK: i64 = 0x6175_7468_6374_6c01;
/// The advisory lock the housekeeping replica holds for as long as it lives.
const HOUSEKEEPING_LOCK: i64 = 0x6175_7468_6374_6c02;

/// Cross-process locks on the store's database.
#[async_trait]
pub trait Locks: Send + Sync {
    /// Waits until no other process is migrating this database, and holds that off
    /// until the returned lock is released.
    async fn migration_lock(&self) -> Result<HeldLock>;
    /// Takes the housekeeping lock if no other process holds it; `None` if one does.
    async fn try_housekeeping_lock(&self) -> Result<Option<HeldLock>>;
}

/// A held lock: on PostgreSQL, the dedicated session that holds it.
pub struct HeldLock {
    session: Option<(PgConnection, i64)>,
}

impl HeldLock {
    /// A lock that needs nothing held (SQLite).
    pub fn local() -> Self {
        HeldLock { session: None }
    }

    /// Whether the lock is still ours: its session still answers. A session the
    /// database lost (a restart, a network cut) lost the lock with it.
    pub async fn still_held(&mut self) -> bool {
        match &mut self.session {
            Some((conn, _)) => conn.ping().await.is_ok(),
            None => true,
        }
    }

    /// Releases the lock and closes its session.
    pub async fn release(self) {
        if let Some((mut conn, key)) = self.session {
            // Closing the session releases the lock anyway; unlocking first says so
            // explicitly and does not depend on how fast the server notices.
            let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(key)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
}

async fn dedicated_session(pool: &sqlx::PgPool) -> Result<PgConnection> {
    Ok(PgConnection::connect_with(&pool.connect_options()).await?)
}

#[async_trait]
impl Locks for super::postgres::PgStore {
    async fn migration_lock(&self) -> Result<HeldLock> {
        let mut conn = dedicated_session(&self.pool).await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut conn)
            .await?;
        Ok(HeldLock {
            session: Some((conn, MIGRATION_LOCK)),
        })
    }

    async fn try_housekeeping_lock(&self) -> Result<Option<HeldLock>> {
        let mut conn = dedicated_session(&self.pool).await?;
        let (taken,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(HOUSEKEEPING_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if !taken {
            let _ = conn.close().await;
            return Ok(None);
        }
        Ok(Some(HeldLock {
            session: Some((conn, HOUSEKEEPING_LOCK)),
        }))
    }
}

#[async_trait]
impl Locks for super::sqlite::SqliteStore {
    async fn migration_lock(&self) -> Result<HeldLock> {
        Ok(HeldLock::local())
    }

    async fn try_housekeeping_lock(&self) -> Result<Option<HeldLock>> {
        Ok(Some(HeldLock::local()))
    }
}
