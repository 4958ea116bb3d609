//! Configuration: the [`Settings`] every part of authctl runs with, and their
//! defaults. [`load`](load::load) builds them from built-in defaults, then the TOML
//! file (`--config FILE`, else `./authctl.toml` if present), then the environment
//! (where the real environment leaves a variable unset, [`dotenv`] fills it in from
//! `./.env`), then command-line flags; [`types`] holds
//! the values and their parsers. An unknown file key or an unparsable value is an
//! [`Error::Config`](crate::Error::Config) that names the key or variable.
//!
//! Configuration sits above the low-level modules: it re-exports [`SecretKey`] (from
//! `tokens`) and [`DatabaseUrl`] (from `store`) and builds [`StoreOptions`] for the
//! store; they import nothing from here.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use jsonwebtoken::Algorithm;

use crate::store::StoreOptions;

pub mod check;
pub mod dotenv;
pub mod email;
mod load;
pub mod types;

pub use crate::store::url::{DEFAULT_DATABASE_URL, DatabaseUrl};
pub use crate::tokens::keys::SecretKey;
pub use load::{documented_env, load, load_with};
pub use types::{
    CorsOrigins, LimitStore, LogFormat, PasswordHashAlgorithm, parse_bind, parse_duration,
};

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
    /// The connection edge's bounds: `[server]` in the file, beside `bind`.
    pub edge: EdgeLimits,
    pub rate_limit: RateLimitSettings,
    pub auth: AuthSettings,
    pub cors: CorsOrigins,
    /// `metrics.bind`: where `GET /metrics` listens; `None` (the default): no metrics.
    pub metrics_bind: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub register_per_minute: NonZeroU32,
    pub login_per_minute: NonZeroU32,
    pub refresh_per_minute: NonZeroU32,
    pub password_per_minute: NonZeroU32,
    /// `rate_limit.email_per_minute`: `/verify/request` and `/recover` together.
    pub email_per_minute: NonZeroU32,
    pub trusted_proxies: Vec<IpNet>,
    pub store: LimitStore,
    /// IPv6 clients are keyed by their network of this length (SPEC §6).
    pub ipv6_prefix: u8,
}

#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `None`: generate one on first start and keep it in the database.
    pub secret_key: Option<SecretKey>,
    pub algorithm: Algorithm,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub bcrypt_cost: u32,
    /// `auth.password_hash`: bcrypt (default) or argon2id (SPEC §16).
    pub password_hash: PasswordHashAlgorithm,
    /// `auth.argon2_memory_kib`, `argon2_iterations`, `argon2_parallelism`.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// `auth.password_min_length`: in Unicode code points (SPEC §16).
    pub password_min_length: u32,
    /// `auth.password_blocklist_file`: the operator's own list, one a line.
    pub password_blocklist_file: Option<PathBuf>,
    pub refresh_reuse_grace: Duration,
    /// Absolute lifetime of a session (token family), however often it is refreshed.
    pub session_max_lifetime: Duration,
    pub issuer: String,
    /// The longest wait for a password-hashing slot before a 503.
    pub hash_queue_timeout: Duration,
    /// `audit.retention`: audit events older than this are dropped by housekeeping.
    pub audit_retention: Duration,
    /// Consecutive failed logins that lock an account; 0 turns lockout off.
    pub lockout_threshold: u32,
    /// The first lock's length; each further lock doubles it, up to the maximum.
    pub lockout_duration: Duration,
    pub lockout_max_duration: Duration,
    /// Consecutive failures across locks after which a lock has no end until an
    /// unlock or a password reset (NIST SP 800-63B-4 §3.2.2); 0 turns it off.
    pub lockout_permanent_after: u32,
    /// `auth.require_verified_email`: a password login of an unverified account is
    /// refused (403 `email_not_verified`).
    pub require_verified_email: bool,
    /// `auth.default_roles`: the roles a self-registered user is given (SPEC §15).
    pub default_roles: Vec<crate::domain::Role>,
    /// `oidc.enabled`: the OpenID Connect provider (SPEC §18).
    pub oidc_enabled: bool,
    /// `email.*` (SPEC §13).
    pub email: email::EmailSettings,
}

/// The bounds of the connection edge (SPEC §8 "Hardening": `server.header_timeout`,
/// `body_timeout`, `idle_timeout`, `max_connections`, `shutdown_timeout`); the
/// listener (`http::listener`) enforces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            shutdown_timeout: Duration::from_secs(8),
        }
    }
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
            edge: EdgeLimits::default(),
            rate_limit: RateLimitSettings {
                enabled: true,
                register_per_minute: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
                login_per_minute: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
                refresh_per_minute: NonZeroU32::new(20).unwrap_or(NonZeroU32::MIN),
                password_per_minute: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
                email_per_minute: NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN),
                trusted_proxies: Vec::new(),
                store: LimitStore::Memory,
                ipv6_prefix: 64,
            },
            auth: AuthSettings {
                secret_key: None,
                algorithm: Algorithm::HS256,
                access_token_ttl: Duration::from_secs(30 * 60),
                refresh_token_ttl: Duration::from_secs(7 * 24 * 3600),
                bcrypt_cost: 12,
                password_hash: PasswordHashAlgorithm::Bcrypt,
                argon2_memory_kib: 19_456,
                argon2_iterations: 2,
                argon2_parallelism: 1,
                password_min_length: 8,
                password_blocklist_file: None,
                refresh_reuse_grace: Duration::ZERO,
                session_max_lifetime: Duration::from_secs(30 * 24 * 3600),
                issuer: "authctl".into(),
                hash_queue_timeout: Duration::from_secs(5),
                audit_retention: Duration::from_secs(90 * 24 * 3600),
                lockout_threshold: 10,
                lockout_duration: Duration::from_secs(5 * 60),
                lockout_max_duration: Duration::from_secs(3600),
                lockout_permanent_after: 100,
                require_verified_email: false,
                default_roles: Vec::new(),
                oidc_enabled: false,
                email: email::EmailSettings::default(),
            },
            cors: CorsOrigins::Off,
            metrics_bind: None,
        }
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
            access: crate::store::Access::default(),
            url: s.database_url.clone(),
            pool_min: s.pool_min,
            pool_max: s.pool_max,
        }
    }
}
