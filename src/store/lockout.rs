//! Storage of per-account lockout (SPEC §10): [`LockoutStore`], a supertrait of
//! [`Store`](super::Store), implemented for both backends by [`lockout_store!`] with
//! the same SQL. Every step is one statement on the user's primary key, so that the
//! counting holds under concurrency, across replicas and restarts.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::UserId;
use crate::error::Result;

/// An attempt that was let through to the password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Attempt {
    /// Consecutive failures including this attempt.
    pub failed_logins: i32,
    /// Locks since the last success.
    pub lock_count: i32,
}

/// What `user show` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LockoutState {
    pub failed_logins: i32,
    pub locked_until: Option<DateTime<Utc>>,
    pub lock_count: i32,
}

#[async_trait]
pub trait LockoutStore: Send + Sync {
    /// Counts an attempt before its password is checked: one atomic increment that
    /// succeeds only while the account is not locked and fewer than `threshold`
    /// attempts are counted. `None`: refused (locked, or `threshold` attempts are
    /// already counted or in flight).
    async fn lockout_claim(
        &self,
        user: UserId,
        threshold: i32,
        now: DateTime<Utc>,
    ) -> Result<Option<Attempt>>;
    /// Locks the account until `until` if `threshold` failures are counted; the count
    /// starts again at 0. Returns whether this call locked it.
    async fn lockout_lock(
        &self,
        user: UserId,
        threshold: i32,
        until: DateTime<Utc>,
    ) -> Result<bool>;
    /// A success (or an operator's unlock): no failures, no lock, no escalation.
    /// Returns whether there was anything to clear.
    async fn lockout_reset(&self, user: UserId) -> Result<bool>;
    async fn lockout_state(&self, user: UserId) -> Result<Option<LockoutState>>;
}

/// `lockout_store!(Store)`: [`LockoutStore`] for a store with a `pool` field.
macro_rules! lockout_store {
    ($store:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::lockout::LockoutStore for $store {
            async fn lockout_claim(
                &self,
                user: $crate::domain::UserId,
                threshold: i32,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<Option<$crate::store::lockout::Attempt>> {
                // The WHERE is evaluated against the row as the write lock finds it
                // (SQLite serializes writers; PostgreSQL re-checks an updated row), so
                // of N concurrent attempts at most `threshold` get through.
                Ok(sqlx::query_as(
                    "UPDATE users SET failed_logins = failed_logins + 1 \
                     WHERE id = $1 AND failed_logins < $2 \
                     AND (locked_until IS NULL OR locked_until <= $3) \
                     RETURNING failed_logins, lock_count",
                )
                .bind(user)
                .bind(threshold)
                .bind(now)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn lockout_lock(
                &self,
                user: $crate::domain::UserId,
                threshold: i32,
                until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query(
                    "UPDATE users SET locked_until = $1, lock_count = lock_count + 1, \
                     failed_logins = 0 WHERE id = $2 AND failed_logins >= $3",
                )
                .bind(until)
                .bind(user)
                .bind(threshold)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn lockout_reset(
                &self,
                user: $crate::domain::UserId,
            ) -> $crate::error::Result<bool> {
                // Only a row with something to clear is written.
                let r = sqlx::query(
                    "UPDATE users SET failed_logins = 0, lock_count = 0, locked_until = NULL \
                     WHERE id = $1 AND (failed_logins > 0 OR lock_count > 0 \
                     OR locked_until IS NOT NULL)",
                )
                .bind(user)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn lockout_state(
                &self,
                user: $crate::domain::UserId,
            ) -> $crate::error::Result<Option<$crate::store::lockout::LockoutState>> {
                Ok(sqlx::query_as(
                    "SELECT failed_logins, locked_until, lock_count FROM users WHERE id = $1",
                )
                .bind(user)
                .fetch_optional(&self.pool)
                .await?)
            }
        }
    };
}
