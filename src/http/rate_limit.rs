//! Per-client-IP rate limits (governor's GCRA: "n per minute" is a burst of n,
//! refilled one every 60/n seconds), one limiter per endpoint, checked before the
//! body is read or any password is hashed.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::RateLimitSettings;
use crate::error::Error;

type Limiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Register,
    Login,
    Refresh,
    /// `POST /api/v1/auth/password`: a bucket of its own.
    Password,
}

pub struct RateLimits {
    settings: RateLimitSettings,
    register: Limiter,
    login: Limiter,
    refresh: Limiter,
    password: Limiter,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Self {
        RateLimits {
            register: RateLimiter::keyed(Quota::per_minute(settings.register_per_minute)),
            login: RateLimiter::keyed(Quota::per_minute(settings.login_per_minute)),
            refresh: RateLimiter::keyed(Quota::per_minute(settings.refresh_per_minute)),
            password: RateLimiter::keyed(Quota::per_minute(settings.password_per_minute)),
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
            Endpoint::Password => &self.password,
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
        for limiter in [&self.register, &self.login, &self.refresh, &self.password] {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// The client's address: the socket peer, or, when the peer is a trusted proxy,
    /// the right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> IpAddr {
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        client_ip(peer, forwarded_for, |ip| self.settings.is_trusted_proxy(ip))
    }
}

fn client_ip(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted: impl Fn(IpAddr) -> bool,
) -> IpAddr {
    let (true, Some(chain)) = (trusted(peer), forwarded_for) else {
        return peer;
    };
    let mut client = peer;
    for hop in chain.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !trusted(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let trusted = |i: IpAddr| i == ip("10.0.0.1");
        assert_eq!(
            client_ip(ip("1.2.3.4"), Some("9.9.9.9"), trusted),
            ip("1.2.3.4")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = |i: IpAddr| i == ip("10.0.0.1") || i == ip("10.0.0.2");
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("6.6.6.6, 5.5.5.5, 10.0.0.2"), trusted),
            ip("5.5.5.5")
        );
        assert_eq!(client_ip(ip("10.0.0.1"), None, trusted), ip("10.0.0.1"));
        assert_eq!(
            client_ip(ip("10.0.0.1"), Some("garbage"), trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn n_per_minute_is_a_burst_of_n_then_429_with_retry_after() {
        let settings = RateLimitSettings {
            enabled: true,
            register_per_minute: std::num::NonZeroU32::new(2).unwrap(),
            login_per_minute: std::num::NonZeroU32::new(3).unwrap(),
            refresh_per_minute: std::num::NonZeroU32::new(3).unwrap(),
            password_per_minute: std::num::NonZeroU32::new(3).unwrap(),
            trusted_proxies: vec![],
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
