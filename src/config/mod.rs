//! Configuration: the [`Settings`] every part of authctl runs with, and their
//! defaults. [`load`](load::load) builds them from built-in defaults, then the TOML
//! file (`--config FILE`, else `./authctl.toml` if present), then the environment (a
//! `.env` file is loaded into it by `main`), then command-line flags; [`types`] holds
//! the values and their parsers. An unknown file key or an unparsable value is an
//! [`Error::Config`](crate::Error::Config) that names the key or variable.
//!
//! Configuration sits above the low-level modules: it re-exports [`SecretKey`] (from
//! `tokens`) and [`DatabaseUrl`] (from `store`) and builds [`StoreOptions`] for the
//! store; they import nothing from here.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use jsonwebtoken::Algorithm;

use crate::store::StoreOptions;

mod load;
pub mod types;

pub use crate::store::url::{DEFAULT_DATABASE_URL, DatabaseUrl};
pub use crate::tokens::keys::SecretKey;
pub use load::{documented_env, load, load_with};
pub use types::{CorsOrigins, LogFormat, parse_bind, parse_duration};

/// The file read when no `--config` is given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "authctl.toml";

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: DatabaseUrl,
    pub pool_min: u32,
    pub pool_max: u32,
    pub log_level: String,
    pub log_format: LogFormat,
    pub bind: SocketAddr,
    pub rate_limit: RateLimitSettings,
    pub auth: AuthSettings,
    pub cors: CorsOrigins,
}

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub register_per_minute: NonZeroU32,
    pub login_per_minute: NonZeroU32,
    pub refresh_per_minute: NonZeroU32,
    pub password_per_minute: NonZeroU32,
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `None`: generate one on first start and keep it in the database.
    pub secret_key: Option<SecretKey>,
    pub algorithm: Algorithm,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub bcrypt_cost: u32,
    pub refresh_reuse_grace: Duration,
    pub issuer: String,
    /// `audit.retention`: audit events older than this are dropped by housekeeping.
    pub audit_retention: Duration,
    /// Consecutive failed logins that lock an account; 0 turns lockout off.
    pub lockout_threshold: u32,
    /// The first lock's length; each further lock doubles it, up to the maximum.
    pub lockout_duration: Duration,
    pub lockout_max_duration: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            database_url: DatabaseUrl::default(),
            pool_min: 1,
            pool_max: 10,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            rate_limit: RateLimitSettings {
                enabled: true,
                register_per_minute: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
                login_per_minute: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
                refresh_per_minute: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
                password_per_minute: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
                trusted_proxies: Vec::new(),
            },
            auth: AuthSettings {
                secret_key: None,
                algorithm: Algorithm::HS256,
                access_token_ttl: Duration::from_secs(30 * 60),
                refresh_token_ttl: Duration::from_secs(7 * 24 * 3600),
                bcrypt_cost: 12,
                refresh_reuse_grace: Duration::ZERO,
                issuer: "authctl".into(),
                audit_retention: Duration::from_secs(90 * 24 * 3600),
                lockout_threshold: 10,
                lockout_duration: Duration::from_secs(5 * 60),
                lockout_max_duration: Duration::from_secs(3600),
            },
            cors: CorsOrigins::Off,
        }
    }
}

impl RateLimitSettings {
    /// Whether a socket peer may speak for the client through `X-Forwarded-For`.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&ip))
    }
}

/// Values given on the command line; they beat everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub database_url: Option<String>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    pub bind: Option<String>,
}

/// The store's share of the settings.
impl From<&Settings> for StoreOptions {
    fn from(s: &Settings) -> Self {
        StoreOptions {
            url: s.database_url.clone(),
            pool_min: s.pool_min,
            pool_max: s.pool_max,
        }
    }
}
