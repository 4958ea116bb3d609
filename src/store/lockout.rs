//! Storage of per-account lockout (SPEC §10): [`LockoutStore`], a supertrait of
//! [`Store`](super::Store), implemented for both backends by [`lockout_store!`] with
//! the same SQL. Every step is one statement on the user's primary key, so that the
//! counting holds under concurrency, across replicas and restarts.
//!
//! The lock is taken by the statement that counts the attempt reaching the threshold
//! ([`LockoutStore::lockout_claim`]), before that attempt's password is checked: no
//! request that is cut off later (a client that hangs up, a full hash queue, a
//! database error, a shutdown) can leave a count at the threshold without a lock
//! time, so every lock ends. If the attempt that took the lock turns out to be the
//! right password, its success clears the lock again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::UserId;
use crate::error::Result;

/// The state of the row as [`LockoutStore::lockout_claim`] left it, for an attempt
/// that was let through to the password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Attempt {
    /// Failures counted towards the next lock (0 once this attempt took a lock).
    pub failed_logins: i32,
    /// Locks since the last success, this attempt's own included.
    pub lock_count: i32,
    /// Failures since the last success, across locks.
    pub consecutive_failures: i32,
    /// Set when this attempt took a lock: until when.
    pub locked_until: Option<DateTime<Utc>>,
}

/// What a claim needs to know about the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LockoutState {
    pub failed_logins: i32,
    pub locked_until: Option<DateTime<Utc>>,
    pub lock_count: i32,
    pub consecutive_failures: i32,
    #[serde(skip)]
    pub logins_in_flight: i32,
    #[serde(skip)]
    pub in_flight_until: Option<DateTime<Utc>>,
}

impl LockoutState {
    pub fn locked_at(&self, now: DateTime<Utc>) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }

    /// Counted attempts still checking their password (a stale count is none).
    pub fn in_flight_at(&self, now: DateTime<Utc>) -> bool {
        self.logins_in_flight > 0 && self.in_flight_until.is_some_and(|until| until > now)
    }
}

/// One claim: what the caller computed from the state it read.
#[derive(Debug, Clone, Copy)]
pub struct Claim {
    pub user: UserId,
    pub now: DateTime<Utc>,
    /// The state the lock length was computed for: the claim only counts while the
    /// row still has this many locks.
    pub lock_count: i32,
    pub threshold: i32,
    /// Consecutive failures that lock for good (`i32::MAX`: never).
    pub permanent_after: i32,
    /// The end of the lock this attempt takes if it reaches the threshold.
    pub lock_until: DateTime<Utc>,
    /// The end of a lock for good.
    pub forever: DateTime<Utc>,
    /// Until when this attempt counts as in flight.
    pub in_flight_until: DateTime<Utc>,
}

/// How a counted attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The right password: failures, locks and escalation are cleared.
    Success,
    /// A wrong password: it stays counted.
    Failure,
    /// The password was never checked (no hashing slot, an error): the count is
    /// taken back, and so is the lock it took (if it still stands as it set it).
    NotChecked {
        took_lock: Option<DateTime<Utc>>,
        threshold: i32,
    },
}

#[async_trait]
pub trait LockoutStore: Send + Sync {
    /// Counts an attempt before its password is checked: one atomic statement that
    /// succeeds only while the account is not locked and still has the lock count
    /// the caller read, and that takes the lock when the count reaches the
    /// threshold. `None`: not counted (locked, or the lock count moved on; the
    /// caller reads the state again).
    async fn lockout_claim(&self, claim: &Claim) -> Result<Option<Attempt>>;
    /// Ends a counted attempt.
    async fn lockout_resolve(&self, user: UserId, outcome: Outcome) -> Result<()>;
    /// An operator's unlock (or a reset): no failures, no lock, no escalation.
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
                c: &$crate::store::lockout::Claim,
            ) -> $crate::error::Result<Option<$crate::store::lockout::Attempt>> {
                // The WHERE is evaluated against the row as the write lock finds it
                // (SQLite serializes writers; PostgreSQL re-checks an updated row), so
                // of N concurrent attempts exactly one reaches the threshold, and it
                // locks the account for every later one in the same statement.
                Ok(sqlx::query_as(
                    "UPDATE users SET \
                     failed_logins = CASE WHEN failed_logins + 1 >= $3 THEN 0 \
                         ELSE failed_logins + 1 END, \
                     lock_count = CASE WHEN failed_logins + 1 >= $3 \
                         OR consecutive_failures + 1 >= $4 THEN lock_count + 1 \
                         ELSE lock_count END, \
                     locked_until = CASE WHEN consecutive_failures + 1 >= $4 THEN $7 \
                         WHEN failed_logins + 1 >= $3 THEN $5 ELSE NULL END, \
                     consecutive_failures = consecutive_failures + 1, \
                     logins_in_flight = CASE WHEN in_flight_until > $6 \
                         THEN logins_in_flight + 1 ELSE 1 END, \
                     in_flight_until = $8 \
                     WHERE id = $1 AND lock_count = $2 \
                     AND (locked_until IS NULL OR locked_until <= $6) \
                     RETURNING failed_logins, lock_count, consecutive_failures, \
                     CASE WHEN locked_until > $6 THEN locked_until ELSE NULL END AS locked_until",
                )
                .bind(c.user)
                .bind(c.lock_count)
                .bind(c.threshold)
                .bind(c.permanent_after)
                .bind(c.lock_until)
                .bind(c.now)
                .bind(c.forever)
                .bind(c.in_flight_until)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn lockout_resolve(
                &self,
                user: $crate::domain::UserId,
                outcome: $crate::store::lockout::Outcome,
            ) -> $crate::error::Result<()> {
                use $crate::store::lockout::Outcome;
                const DONE: &str =
                    "logins_in_flight = CASE WHEN logins_in_flight > 0 THEN logins_in_flight - 1 ELSE 0 END";
                let query = match outcome {
                    Outcome::Success => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE users SET failed_logins = 0, lock_count = 0, locked_until = NULL, \
                         consecutive_failures = 0, {DONE} WHERE id = $1"
                    )))
                    .bind(user),
                    Outcome::Failure => {
                        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE users SET {DONE} WHERE id = $1")))
                            .bind(user)
                    }
                    // Taken back: the lock only if it still stands as this attempt set it
                    // (then the count goes back to just below the threshold).
                    Outcome::NotChecked { took_lock, threshold } => sqlx::query(sqlx::AssertSqlSafe(format!(
                        "UPDATE users SET \
                         failed_logins = CASE WHEN $2 IS NOT NULL AND locked_until = $2 THEN $3 - 1 \
                             WHEN failed_logins > 0 THEN failed_logins - 1 ELSE 0 END, \
                         lock_count = CASE WHEN $2 IS NOT NULL AND locked_until = $2 AND lock_count > 0 \
                             THEN lock_count - 1 ELSE lock_count END, \
                         locked_until = CASE WHEN $2 IS NOT NULL AND locked_until = $2 THEN NULL \
                             ELSE locked_until END, \
                         consecutive_failures = CASE WHEN consecutive_failures > 0 \
                             THEN consecutive_failures - 1 ELSE 0 END, \
                         {DONE} WHERE id = $1"
                    )))
                    .bind(user)
                    .bind(took_lock)
                    .bind(threshold),
                };
                query.execute(&self.pool).await?;
                Ok(())
            }

            async fn lockout_reset(
                &self,
                user: $crate::domain::UserId,
            ) -> $crate::error::Result<bool> {
                // Only a row with something to clear is written.
                let r = sqlx::query(
                    "UPDATE users SET failed_logins = 0, lock_count = 0, locked_until = NULL, \
                     consecutive_failures = 0 \
                     WHERE id = $1 AND (failed_logins > 0 OR lock_count > 0 \
                     OR locked_until IS NOT NULL OR consecutive_failures > 0)",
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
                    "SELECT failed_logins, locked_until, lock_count, consecutive_failures, \
                     logins_in_flight, in_flight_until FROM users WHERE id = $1",
                )
                .bind(user)
                .fetch_optional(&self.pool)
                .await?)
            }
        }
    };
}
