//! The shared [`Limiter`]: GCRA state in the database (`rate_limit.store =
//! "database"`, SPEC §6 "Shared limits"), so N replicas on one PostgreSQL give a
//! client the configured quota once, not N times.
//!
//! The same quota as governor's: "n per minute" is an emission interval T = 60/n s
//! and a burst tolerance of (n − 1)·T, so n requests pass at once and then one per T.
//! Each check is one statement ([`RateLimitStore::rate_limit_take`]); its cost is one
//! round trip and one row write per limited request, measured in the benchmark.
//!
//! [`RateLimitStore::rate_limit_take`]: crate::store::rate_limit::RateLimitStore::rate_limit_take

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

use super::{Endpoint, Limiter};
use crate::config::RateLimitSettings;
use crate::error::Error;
use crate::store::Store;

/// The GCRA parameters of one quota, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// T: one request refills every `interval_ms`.
    pub interval_ms: i64,
    /// τ = (n − 1)·T: how far ahead the theoretical arrival time may run.
    pub tolerance_ms: i64,
}

impl Gcra {
    /// "n per minute". T is at least 1 ms (the column's resolution).
    pub fn per_minute(n: u32) -> Self {
        let interval_ms = (60_000 / i64::from(n.max(1))).max(1);
        Gcra {
            interval_ms,
            tolerance_ms: interval_ms * (i64::from(n.max(1)) - 1),
        }
    }

    /// How long a refused request must wait, from the arrival time after the check:
    /// until it is back within the tolerance, at least one second (SPEC §6).
    pub fn retry_after(self, ahead_ms: i64) -> Duration {
        let wait = u64::try_from(ahead_ms - self.tolerance_ms).unwrap_or(0);
        Duration::from_millis(wait).max(Duration::from_secs(1))
    }
}

/// Quotas kept in the database.
pub struct DatabaseLimiter {
    settings: RateLimitSettings,
    /// Set once startup has migrated the store; until then the API answers 503 anyway.
    store: OnceLock<Arc<dyn Store>>,
}

impl DatabaseLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        DatabaseLimiter {
            settings: settings.clone(),
            store: OnceLock::new(),
        }
    }
}

#[async_trait]
impl Limiter for DatabaseLimiter {
    async fn check(&self, endpoint: Endpoint, client: IpAddr) -> Result<(), Error> {
        let Some(store) = self.store.get() else {
            return Err(Error::NotReady("the server is starting"));
        };
        let gcra = Gcra::per_minute(endpoint.per_minute(&self.settings).get());
        let decision = store
            .rate_limit_take(
                endpoint.name(),
                &client.to_string(),
                gcra.interval_ms,
                gcra.tolerance_ms,
            )
            .await?;
        if decision.allowed {
            Ok(())
        } else {
            Err(Error::RateLimited {
                retry_after: gcra.retry_after(decision.ahead_ms),
            })
        }
    }

    fn attach_store(&self, store: Arc<dyn Store>) {
        let _ = self.store.set(store);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LimitStore, Settings};
    use crate::http::rate_limit::RateLimits;
    use crate::store::{self, StoreOptions};

    #[test]
    fn n_per_minute_is_governors_quota() {
        let ten = Gcra::per_minute(10);
        assert_eq!(ten.interval_ms, 6_000);
        assert_eq!(ten.tolerance_ms, 54_000);
        // After a burst of ten, the theoretical arrival time is 60 s ahead: one more
        // request waits one interval.
        assert_eq!(ten.retry_after(60_000), Duration::from_secs(6));
        // Never less than a second, never negative.
        assert_eq!(ten.retry_after(54_100), Duration::from_secs(1));
        assert_eq!(Gcra::per_minute(1).tolerance_ms, 0);
    }

    #[tokio::test]
    async fn the_database_store_gives_a_burst_of_n_then_429_shared_by_two_limiters() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("limits.db").display());
        let db = store::connect(StoreOptions {
            url: crate::config::DatabaseUrl::parse(&url).unwrap(),
            pool_min: 0,
            pool_max: 4,
            access: store::Access::Create,
        })
        .unwrap();
        db.migrate().await.unwrap();
        let settings = RateLimitSettings {
            store: LimitStore::Database,
            register_per_minute: std::num::NonZeroU32::new(3).unwrap(),
            ..Settings::default().rate_limit
        };
        // Two "replicas" on one database share one quota.
        let (a, b) = (RateLimits::new(&settings), RateLimits::new(&settings));
        let client: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(matches!(
            a.check(Endpoint::Register, client).await,
            Err(Error::NotReady(_))
        ));
        a.attach_store(db.clone());
        b.attach_store(db.clone());
        a.check(Endpoint::Register, client).await.unwrap();
        b.check(Endpoint::Register, client).await.unwrap();
        a.check(Endpoint::Register, client).await.unwrap();
        match b.check(Endpoint::Register, client).await {
            Err(Error::RateLimited { retry_after }) => assert!(
                retry_after >= Duration::from_secs(1) && retry_after <= Duration::from_secs(20),
                "{retry_after:?}"
            ),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // A refusal takes nothing: still refused, other clients and endpoints free.
        assert!(a.check(Endpoint::Register, client).await.is_err());
        a.check(Endpoint::Login, client).await.unwrap();
        b.check(Endpoint::Register, "198.51.100.8".parse().unwrap())
            .await
            .unwrap();
        // Nothing has refilled yet, so housekeeping keeps every row.
        assert_eq!(db.rate_limit_prune().await.unwrap(), 0);

        // Refill, at the store: one request per 200 ms, no burst. Refused requests
        // take nothing, so the next one passes as soon as one interval has gone by.
        let take = || db.rate_limit_take("test", "client", 200, 0);
        assert!(take().await.unwrap().allowed);
        let refused = take().await.unwrap();
        assert!(!refused.allowed && (1..=200).contains(&refused.ahead_ms));
        assert!(!take().await.unwrap().allowed);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(take().await.unwrap().allowed);
        // Once its quota is full again, the row is expired and housekeeping drops it.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(db.rate_limit_prune().await.unwrap(), 1);
        db.close().await;
    }
}
