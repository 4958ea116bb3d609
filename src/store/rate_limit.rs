//! The `rate_limits` table (SPEC §6, `rate_limit.store = "database"`): GCRA state per
//! endpoint and client, shared by every replica on one database. One
//! [`RateLimitStore`] contract, implemented for both backends by
//! [`rate_limit_store!`] from the same SQL, as [`super::sql`] does for
//! [`super::Store`]; the backends differ only in how they read their clock.
//!
//! A check is ONE statement (`INSERT … ON CONFLICT DO UPDATE … RETURNING`) that does
//! the whole GCRA in SQL, so it costs one round trip and the row lock of that one
//! client, and two replicas checking the same client at once queue on that row
//! instead of both reading the old state. Time is the database's clock, so replicas
//! whose clocks disagree still share one quota.

use async_trait::async_trait;

use crate::error::Result;

/// What one check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request took from the quota.
    pub allowed: bool,
    /// The theoretical arrival time after the check, in milliseconds from now.
    pub ahead_ms: i64,
}

/// How many expired rows one housekeeping statement deletes (short write locks).
pub const PRUNE_BATCH: i64 = 1000;

/// Storage of shared rate limits.
#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// GCRA in one statement: `client` on `bucket` may go ahead unless its theoretical
    /// arrival time is more than `tolerance_ms` ahead of now; a request that goes ahead
    /// moves it `interval_ms` further (from now, if it was in the past).
    async fn rate_limit_take(
        &self,
        bucket: &str,
        client: &str,
        interval_ms: i64,
        tolerance_ms: i64,
    ) -> Result<RateDecision>;

    /// Deletes rows whose quota is full again (theoretical arrival time in the past),
    /// in batches of [`PRUNE_BATCH`]; returns how many.
    async fn rate_limit_prune(&self) -> Result<u64>;
}

/// `rate_limit_store!(Store, "the database's now in ms since the epoch, as SQL")`
macro_rules! rate_limit_store {
    ($store:ident, $now_ms:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::rate_limit::RateLimitStore for $store {
            async fn rate_limit_take(
                &self,
                bucket: &str,
                client: &str,
                interval_ms: i64,
                tolerance_ms: i64,
            ) -> $crate::error::Result<$crate::store::rate_limit::RateDecision> {
                // In DO UPDATE, `rate_limits.*` is the row before the check.
                let (allowed, ahead_ms): (bool, i64) = sqlx::query_as(concat!(
                    "INSERT INTO rate_limits (bucket, client, tat_ms, allowed) \
                     VALUES ($1, $2, ",
                    $now_ms,
                    " + $3, TRUE) \
                     ON CONFLICT (bucket, client) DO UPDATE SET \
                     allowed = (rate_limits.tat_ms - ",
                    $now_ms,
                    " <= $4), \
                     tat_ms = CASE \
                       WHEN rate_limits.tat_ms - ",
                    $now_ms,
                    " > $4 THEN rate_limits.tat_ms \
                       WHEN rate_limits.tat_ms > ",
                    $now_ms,
                    " THEN rate_limits.tat_ms + $3 \
                       ELSE ",
                    $now_ms,
                    " + $3 END \
                     RETURNING allowed, tat_ms - ",
                    $now_ms,
                    " AS ahead_ms"
                ))
                .bind(bucket)
                .bind(client)
                .bind(interval_ms)
                .bind(tolerance_ms)
                .fetch_one(&self.pool)
                .await?;
                Ok($crate::store::rate_limit::RateDecision { allowed, ahead_ms })
            }

            async fn rate_limit_prune(&self) -> $crate::error::Result<u64> {
                let mut total = 0;
                loop {
                    let deleted = sqlx::query(concat!(
                        "DELETE FROM rate_limits WHERE (bucket, client) IN \
                         (SELECT bucket, client FROM rate_limits WHERE tat_ms < ",
                        $now_ms,
                        " LIMIT $1)"
                    ))
                    .bind($crate::store::rate_limit::PRUNE_BATCH)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                    total += deleted;
                    if deleted < $crate::store::rate_limit::PRUNE_BATCH as u64 {
                        return Ok(total);
                    }
                }
            }
        }
    };
}
