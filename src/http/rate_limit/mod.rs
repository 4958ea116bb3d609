//! Per-client-IP rate limits (governor's GCRA: "n per minute" is a burst of n,
//! refilled one every 60/n seconds), one quota per endpoint, checked before the
//! body is read or any password is hashed.
//!
//! Where the state lives is a [`Limiter`]: [`MemoryLimiter`] (governor, per process,
//! the default) or [`DatabaseLimiter`](database::DatabaseLimiter) (one
//! statement per check, shared by every replica on the database), chosen by
//! `rate_limit.store`.

pub mod database;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::client_ip::{client_addr, key_of};
use crate::config::{LimitStore, RateLimitSettings};
use crate::error::Error;
use crate::store::Store;
use database::DatabaseLimiter;

type Keyed = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Register,
    Login,
    Refresh,
    /// `POST /api/v1/auth/password`: a bucket of its own.
    Password,
    /// `POST /api/v1/auth/verify/request` and `/recover` share one (SPEC §13).
    Email,
}

impl Endpoint {
    /// The endpoint's name in the shared store (and the metrics' `endpoint` label).
    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Register => "register",
            Endpoint::Login => "token",
            Endpoint::Refresh => "refresh",
            Endpoint::Password => "password",
            Endpoint::Email => "email",
        }
    }

    /// Its configured quota, in requests per minute.
    pub fn per_minute(self, settings: &RateLimitSettings) -> std::num::NonZeroU32 {
        match self {
            Endpoint::Register => settings.register_per_minute,
            Endpoint::Login => settings.login_per_minute,
            Endpoint::Refresh => settings.refresh_per_minute,
            Endpoint::Password => settings.password_per_minute,
            Endpoint::Email => settings.email_per_minute,
        }
    }
}

/// Where the quotas are kept.
#[async_trait]
pub trait Limiter: Send + Sync {
    /// Takes one request from `client`'s quota for `endpoint`: `RateLimited` with the
    /// wait (at least one second) when it is empty.
    async fn check(&self, endpoint: Endpoint, client: IpAddr) -> Result<(), Error>;
    /// Called periodically: forget clients whose quota is full again.
    fn forget_idle_clients(&self) {}
    /// Called once the store is migrated and usable.
    fn attach_store(&self, _store: Arc<dyn Store>) {}
}

/// governor's keyed limiters, one per endpoint: per process.
pub struct MemoryLimiter {
    register: Keyed,
    login: Keyed,
    password: Keyed,
    refresh: Keyed,
    email: Keyed,
}

impl MemoryLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        MemoryLimiter {
            register: RateLimiter::keyed(Quota::per_minute(settings.register_per_minute)),
            login: RateLimiter::keyed(Quota::per_minute(settings.login_per_minute)),
            password: RateLimiter::keyed(Quota::per_minute(settings.password_per_minute)),
            refresh: RateLimiter::keyed(Quota::per_minute(settings.refresh_per_minute)),
            email: RateLimiter::keyed(Quota::per_minute(settings.email_per_minute)),
        }
    }
}

#[async_trait]
impl Limiter for MemoryLimiter {
    async fn check(&self, endpoint: Endpoint, client: IpAddr) -> Result<(), Error> {
        let limiter = match endpoint {
            Endpoint::Register => &self.register,
            Endpoint::Login => &self.login,
            Endpoint::Refresh => &self.refresh,
            Endpoint::Password => &self.password,
            Endpoint::Email => &self.email,
        };
        limiter
            .check_key(&client)
            .map_err(|not_until| Error::RateLimited {
                retry_after: not_until
                    .wait_time_from(limiter.clock().now())
                    .max(Duration::from_secs(1)),
            })
    }

    /// Forgets clients whose quota has refilled, so the maps do not grow forever.
    fn forget_idle_clients(&self) {
        for limiter in [
            &self.register,
            &self.login,
            &self.refresh,
            &self.password,
            &self.email,
        ] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

pub struct RateLimits {
    settings: RateLimitSettings,
    limiter: Box<dyn Limiter>,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let limiter: Box<dyn Limiter> = match settings.store {
            LimitStore::Memory => Box::new(MemoryLimiter::new(settings)),
            LimitStore::Database => Box::new(DatabaseLimiter::new(settings)),
        };
        RateLimits {
            settings: settings.clone(),
            limiter,
        }
    }

    /// Takes one request from the client's quota for `endpoint`.
    pub async fn check(&self, endpoint: Endpoint, client: IpAddr) -> Result<(), Error> {
        if !self.settings.enabled {
            return Ok(());
        }
        self.limiter.check(endpoint, client).await
    }

    /// Forgets idle clients, so in-memory state does not grow forever.
    pub fn forget_idle_clients(&self) {
        self.limiter.forget_idle_clients();
    }

    /// Hands the migrated store to a limiter that keeps its state there.
    pub fn attach_store(&self, store: Arc<dyn Store>) {
        self.limiter.attach_store(store);
    }

    /// The client's full address (SPEC §6, see [`client_addr`]): `forwarded_for`
    /// holds every `X-Forwarded-For` line in the order received.
    pub fn client_addr<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a str, IntoIter: DoubleEndedIterator>,
    ) -> IpAddr {
        client_addr(
            peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            forwarded_for,
            &self.settings.trusted_proxies,
        )
    }

    /// The key a client's requests count against: its address, or for IPv6 its
    /// `rate_limit.ipv6_prefix` network.
    pub fn key_of(&self, client: IpAddr) -> IpAddr {
        key_of(client, self.settings.ipv6_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn n_per_minute_is_a_burst_of_n_then_429_with_retry_after() {
        let settings = RateLimitSettings {
            enabled: true,
            register_per_minute: std::num::NonZeroU32::new(2).unwrap(),
            login_per_minute: std::num::NonZeroU32::new(3).unwrap(),
            refresh_per_minute: std::num::NonZeroU32::new(3).unwrap(),
            ..crate::config::Settings::default().rate_limit
        };
        let limits = RateLimits::new(&settings);
        let a = ip("1.1.1.1");
        assert!(limits.check(Endpoint::Register, a).await.is_ok());
        assert!(limits.check(Endpoint::Register, a).await.is_ok());
        match limits.check(Endpoint::Register, a).await {
            Err(Error::RateLimited { retry_after }) => {
                assert!(
                    retry_after >= Duration::from_secs(1) && retry_after <= Duration::from_secs(30)
                )
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Other endpoints and other clients are unaffected.
        assert!(limits.check(Endpoint::Login, a).await.is_ok());
        assert!(
            limits
                .check(Endpoint::Register, ip("2.2.2.2"))
                .await
                .is_ok()
        );
    }
}
