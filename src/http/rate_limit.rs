//! Per-client-IP rate limits (governor's GCRA: "n per minute" is a burst of n,
//! refilled one every 60/n seconds), one limiter per endpoint, checked before the
//! body is read or any password is hashed.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::client_ip::client_key;
use crate::config::RateLimitSettings;
use crate::error::Error;

type Limiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Register,
    Login,
    Refresh,
}

pub struct RateLimits {
    settings: RateLimitSettings,
    register: Limiter,
    login: Limiter,
    refresh: Limiter,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        RateLimits {
            register: RateLimiter::keyed(Quota::per_minute(settings.register_per_minute)),
            login: RateLimiter::keyed(Quota::per_minute(settings.login_per_minute)),
            refresh: RateLimiter::keyed(Quota::per_minute(settings.refresh_per_minute)),
            settings: settings.clone(),
        }
    }

    /// Takes one request from the client's quota for `endpoint`.
    pub fn check(&self, endpoint: Endpoint, client: IpAddr) -> Result<(), Error> {
        if !self.settings.enabled {
            return Ok(());
        }
        let limiter = match endpoint {
            Endpoint::Register => &self.register,
            Endpoint::Login => &self.login,
            Endpoint::Refresh => &self.refresh,
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
    pub fn forget_idle_clients(&self) {
        for limiter in [&self.register, &self.login, &self.refresh] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// The key `peer`'s request counts against (SPEC §6, see [`client_key`]):
    /// `forwarded_for` holds every `X-Forwarded-For` line in the order received.
    pub fn client_ip<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a str, IntoIter: DoubleEndedIterator>,
    ) -> IpAddr {
        client_key(
            peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            forwarded_for,
            &self.settings.trusted_proxies,
            self.settings.ipv6_prefix,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn n_per_minute_is_a_burst_of_n_then_429_with_retry_after() {
        let settings = RateLimitSettings {
            enabled: true,
            register_per_minute: std::num::NonZeroU32::new(2).unwrap(),
            login_per_minute: std::num::NonZeroU32::new(3).unwrap(),
            refresh_per_minute: std::num::NonZeroU32::new(3).unwrap(),
            ..crate::config::Settings::default().rate_limit
        };
        let limits = RateLimits::new(&settings);
        let a = ip("1.1.1.1");
        assert!(limits.check(Endpoint::Register, a).is_ok());
        assert!(limits.check(Endpoint::Register, a).is_ok());
        match limits.check(Endpoint::Register, a) {
            Err(Error::RateLimited { retry_after }) => {
                assert!(
                    retry_after >= Duration::from_secs(1) && retry_after <= Duration::from_secs(30)
                )
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // Other endpoints and other clients are unaffected.
        assert!(limits.check(Endpoint::Login, a).is_ok());
        assert!(limits.check(Endpoint::Register, ip("2.2.2.2")).is_ok());
    }
}
