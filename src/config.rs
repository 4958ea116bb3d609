//! Configuration: built-in defaults, then the TOML file (`--config FILE`, else
//! `./authctl.toml` if present), then the environment (a `.env` file is loaded into it
//! by `main`), then command-line flags. Every value is parsed here; an unknown file key
//! or an unparsable value is an [`Error::Config`] that names the key or variable.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::store::StoreOptions;

pub use crate::store::url::{DEFAULT_DATABASE_URL, DatabaseUrl};
pub use crate::tokens::keys::SecretKey;
pub const DEFAULT_CONFIG_FILE: &str = "authctl.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be 'text' or 'json'".into()),
        }
    }
}

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

/// Which browser origins may call the API cross-origin. Off by default: no CORS
/// headers, preflights get 405.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CorsOrigins {
    #[default]
    Off,
    /// `*`: any origin (the API uses Bearer tokens, never cookies).
    Any,
    /// These origins only, each `scheme://host[:port]`, lower-cased.
    Only(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub register_per_minute: NonZeroU32,
    pub login_per_minute: NonZeroU32,
    pub refresh_per_minute: NonZeroU32,
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

/// The TOML file's shape. Unknown keys are refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    database: FileDatabase,
    #[serde(default)]
    log: FileLog,
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    rate_limit: FileRateLimit,
    #[serde(default)]
    auth: FileAuth,
    #[serde(default)]
    cors: FileCors,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCors {
    allowed_origins: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDatabase {
    url: Option<String>,
    pool_min: Option<u32>,
    pool_max: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<String>,
    format: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    bind: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRateLimit {
    enabled: Option<bool>,
    register_per_minute: Option<u32>,
    login_per_minute: Option<u32>,
    refresh_per_minute: Option<u32>,
    trusted_proxies: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAuth {
    secret_key: Option<String>,
    algorithm: Option<String>,
    access_token_ttl: Option<String>,
    refresh_token_ttl: Option<String>,
    access_token_expire_minutes: Option<u64>,
    refresh_token_expire_days: Option<u64>,
    bcrypt_cost: Option<u32>,
    refresh_reuse_grace_seconds: Option<u64>,
    issuer: Option<String>,
}

/// One layer's value with the name of where it came from, for error messages.
struct Found<T> {
    value: T,
    source: String,
}

/// Reads environment variables through a lookup function, so tests need not touch
/// the process environment.
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The first of `names` that is set (and not empty), parsed.
    fn get<T>(
        &self,
        names: &[&str],
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Found<T>>> {
        for name in names {
            if let Some(raw) = (self.lookup)(name).filter(|v| !v.trim().is_empty()) {
                let value = parse(raw.trim())
                    .map_err(|e| Error::config(format!("environment variable {name} {e}")))?;
                return Ok(Some(Found {
                    value,
                    source: format!("environment variable {name}"),
                }));
            }
        }
        Ok(None)
    }
}

fn file_value<T, R>(
    raw: Option<R>,
    key: &str,
    parse: impl Fn(R) -> Result<T, String>,
) -> Result<Option<Found<T>>> {
    match raw {
        None => Ok(None),
        Some(raw) => parse(raw)
            .map(|value| {
                Some(Found {
                    value,
                    source: format!("config key {key}"),
                })
            })
            .map_err(|e| Error::config(format!("config key {key} {e}"))),
    }
}

/// flag > env > file > default.
fn pick<T>(layers: [Option<Found<T>>; 3], default: T) -> T {
    layers
        .into_iter()
        .flatten()
        .next()
        .map(|f| f.value)
        .unwrap_or(default)
}

fn parse_u32_in(lo: u32, hi: u32) -> impl Fn(&str) -> Result<u32, String> {
    move |s| {
        let n: u32 = s
            .parse()
            .map_err(|_| format!("is not a whole number: '{s}'"))?;
        check_range(n, lo, hi)
    }
}

fn check_range(n: u32, lo: u32, hi: u32) -> Result<u32, String> {
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(format!("must be between {lo} and {hi}, got {n}"))
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("is not a boolean (true/false): '{s}'")),
    }
}

fn parse_per_minute(s: &str) -> Result<NonZeroU32, String> {
    let n = parse_u32_in(1, 1_000_000)(s)?;
    NonZeroU32::new(n).ok_or_else(|| "must be at least 1".to_string())
}

fn per_minute_from(n: u32) -> Result<NonZeroU32, String> {
    check_range(n, 1, 1_000_000)
        .and_then(|n| NonZeroU32::new(n).ok_or_else(|| "must be at least 1".into()))
}

pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("is not an address:port such as 127.0.0.1:8000: '{s}'"))
}

fn parse_proxies<S: AsRef<str>>(items: &[S]) -> Result<Vec<IpNet>, String> {
    items
        .iter()
        .map(|s| s.as_ref().trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("contains '{s}', which is not an IP address or CIDR"))
        })
        .collect()
}

/// Allowed CORS origins: none (off), `*`, or a list of `scheme://host[:port]`.
fn parse_cors_origins<S: AsRef<str>>(items: &[S]) -> Result<CorsOrigins, String> {
    let items: Vec<&str> = items
        .iter()
        .map(|s| s.as_ref().trim())
        .filter(|s| !s.is_empty())
        .collect();
    if items == ["*"] {
        return Ok(CorsOrigins::Any);
    }
    if items.is_empty() {
        return Ok(CorsOrigins::Off);
    }
    items
        .iter()
        .map(|s| parse_origin(s))
        .collect::<Result<Vec<_>, _>>()
        .map(CorsOrigins::Only)
}

/// One origin as browsers send it: `http` or `https`, a host, an optional port, and
/// nothing else.
fn parse_origin(s: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "contains '{s}', which is not an origin such as https://app.example.com \
             (scheme://host[:port], no path; '*' alone allows any origin)"
        )
    };
    let uri: warp::http::Uri = s.parse().map_err(|_| bad())?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    let path_ok = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
    match (scheme.as_deref(), uri.authority()) {
        (Some(scheme @ ("http" | "https")), Some(authority))
            if path_ok && !authority.as_str().contains(['@', '*']) =>
        {
            Ok(format!(
                "{scheme}://{}",
                authority.as_str().to_ascii_lowercase()
            ))
        }
        _ => Err(bad()),
    }
}

/// A duration such as `90s`, `30m`, `7d` (or `1h 30m`); must be positive.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("is not a duration such as 90s, 30m or 7d: '{s}' ({e})"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}

fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    match s.trim().to_ascii_uppercase().as_str() {
        "HS256" => Ok(Algorithm::HS256),
        "HS384" => Ok(Algorithm::HS384),
        "HS512" => Ok(Algorithm::HS512),
        other => Err(format!(
            "is '{other}'; authctl signs with an HMAC key: HS256, HS384 or HS512"
        )),
    }
}

fn parse_log_level(s: &str) -> Result<String, String> {
    let level = s.trim().to_ascii_lowercase();
    tracing_subscriber::EnvFilter::try_new(&level)
        .map_err(|e| format!("is not a log level or filter such as info or debug: '{s}' ({e})"))?;
    Ok(level)
}

fn parse_positive_u64(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("is not a positive whole number: '{s}'")),
    }
}

/// Resolves the TTL from its duration form and the original project's integer form;
/// giving both is an error.
fn ttl(
    duration: [Option<Found<Duration>>; 2],
    legacy: [Option<Found<u64>>; 2],
    unit: u64,
    default: Duration,
) -> Result<Duration> {
    let duration: Vec<Found<Duration>> = duration.into_iter().flatten().collect();
    let legacy: Vec<Found<u64>> = legacy.into_iter().flatten().collect();
    if let (Some(d), Some(l)) = (duration.first(), legacy.first()) {
        return Err(Error::config(format!(
            "both {} and {} set the same lifetime; set only one",
            d.source, l.source
        )));
    }
    if let Some(d) = duration.into_iter().next() {
        return Ok(d.value);
    }
    if let Some(l) = legacy.into_iter().next() {
        return l
            .value
            .checked_mul(unit)
            .map(Duration::from_secs)
            .ok_or_else(|| Error::config(format!("{} is too large", l.source)));
    }
    Ok(default)
}

/// Loads the configuration from the process environment and the given flags.
pub fn load(overrides: &Overrides) -> Result<Settings> {
    load_with(overrides, &|name| std::env::var(name).ok())
}

/// Loads the configuration with an explicit environment lookup.
pub fn load_with(
    overrides: &Overrides,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings> {
    let env = Env { lookup };
    let file = read_file(overrides.config_file.as_deref())?;
    let d = Settings::default();

    let database_url = pick(
        [
            overrides
                .database_url
                .as_deref()
                .map(|s| {
                    DatabaseUrl::parse(s).map_err(|e| Error::config(format!("--database-url {e}")))
                })
                .transpose()?
                .map(|value| Found {
                    value,
                    source: "--database-url".into(),
                }),
            env.get(
                &["AUTHCTL_DATABASE_URL", "DATABASE_URL"],
                DatabaseUrl::parse,
            )?,
            file_value(
                file.database.url.as_deref(),
                "database.url",
                DatabaseUrl::parse,
            )?,
        ],
        d.database_url,
    );

    let pool_min = pick(
        [
            None,
            env.get(
                &["AUTHCTL_DB_POOL_MIN_CONN", "DB_POOL_MIN_CONN"],
                parse_u32_in(0, 1000),
            )?,
            file_value(file.database.pool_min, "database.pool_min", |n| {
                check_range(n, 0, 1000)
            })?,
        ],
        d.pool_min,
    );
    let pool_max = pick(
        [
            None,
            env.get(
                &["AUTHCTL_DB_POOL_MAX_CONN", "DB_POOL_MAX_CONN"],
                parse_u32_in(1, 1000),
            )?,
            file_value(file.database.pool_max, "database.pool_max", |n| {
                check_range(n, 1, 1000)
            })?,
        ],
        d.pool_max,
    );
    if pool_min > pool_max {
        return Err(Error::config(format!(
            "DB_POOL_MIN_CONN ({pool_min}) is larger than DB_POOL_MAX_CONN ({pool_max})"
        )));
    }

    let log_level = pick(
        [
            overrides
                .log_level
                .as_deref()
                .map(|s| parse_log_level(s).map_err(|e| Error::config(format!("--log-level {e}"))))
                .transpose()?
                .map(|value| Found {
                    value,
                    source: "--log-level".into(),
                }),
            env.get(&["AUTHCTL_LOG_LEVEL", "LOG_LEVEL"], parse_log_level)?,
            file_value(file.log.level.as_deref(), "log.level", parse_log_level)?,
        ],
        d.log_level,
    );
    let log_format = pick(
        [
            overrides.log_format.map(|value| Found {
                value,
                source: "--log-format".into(),
            }),
            env.get(&["AUTHCTL_LOG_FORMAT"], LogFormat::from_str)?,
            file_value(
                file.log.format.as_deref(),
                "log.format",
                LogFormat::from_str,
            )?,
        ],
        d.log_format,
    );

    let bind = pick(
        [
            overrides
                .bind
                .as_deref()
                .map(|s| parse_bind(s).map_err(|e| Error::config(format!("--bind {e}"))))
                .transpose()?
                .map(|value| Found {
                    value,
                    source: "--bind".into(),
                }),
            env.get(&["AUTHCTL_BIND"], parse_bind)?,
            file_value(file.server.bind.as_deref(), "server.bind", parse_bind)?,
        ],
        d.bind,
    );

    let fr = &file.rate_limit;
    let rate_limit = RateLimitSettings {
        enabled: pick(
            [
                None,
                env.get(&["AUTHCTL_RATE_LIMIT_ENABLED"], parse_bool)?,
                file_value(fr.enabled, "rate_limit.enabled", Ok)?,
            ],
            d.rate_limit.enabled,
        ),
        register_per_minute: pick(
            [
                None,
                env.get(
                    &["AUTHCTL_RATE_LIMIT_REGISTER_PER_MINUTE"],
                    parse_per_minute,
                )?,
                file_value(
                    fr.register_per_minute,
                    "rate_limit.register_per_minute",
                    per_minute_from,
                )?,
            ],
            d.rate_limit.register_per_minute,
        ),
        login_per_minute: pick(
            [
                None,
                env.get(&["AUTHCTL_RATE_LIMIT_LOGIN_PER_MINUTE"], parse_per_minute)?,
                file_value(
                    fr.login_per_minute,
                    "rate_limit.login_per_minute",
                    per_minute_from,
                )?,
            ],
            d.rate_limit.login_per_minute,
        ),
        refresh_per_minute: pick(
            [
                None,
                env.get(&["AUTHCTL_RATE_LIMIT_REFRESH_PER_MINUTE"], parse_per_minute)?,
                file_value(
                    fr.refresh_per_minute,
                    "rate_limit.refresh_per_minute",
                    per_minute_from,
                )?,
            ],
            d.rate_limit.refresh_per_minute,
        ),
        trusted_proxies: pick(
            [
                None,
                env.get(&["AUTHCTL_TRUSTED_PROXIES"], |s| {
                    parse_proxies(&s.split(',').collect::<Vec<_>>())
                })?,
                file_value(
                    fr.trusted_proxies.as_deref(),
                    "rate_limit.trusted_proxies",
                    parse_proxies,
                )?,
            ],
            d.rate_limit.trusted_proxies,
        ),
    };

    let fa = &file.auth;
    let secret_key = pick(
        [
            None,
            env.get(&["AUTHCTL_SECRET_KEY", "SECRET_KEY"], SecretKey::parse)?
                .map(|f| Found {
                    value: Some(f.value),
                    source: f.source,
                }),
            file_value(
                fa.secret_key.as_deref(),
                "auth.secret_key",
                SecretKey::parse,
            )?
            .map(|f| Found {
                value: Some(f.value),
                source: f.source,
            }),
        ],
        None,
    );
    let algorithm = pick(
        [
            None,
            env.get(&["AUTHCTL_ALGORITHM", "ALGORITHM"], parse_algorithm)?,
            file_value(fa.algorithm.as_deref(), "auth.algorithm", parse_algorithm)?,
        ],
        d.auth.algorithm,
    );
    let access_token_ttl = ttl(
        [
            env.get(&["AUTHCTL_ACCESS_TOKEN_TTL"], parse_duration)?,
            file_value(
                fa.access_token_ttl.as_deref(),
                "auth.access_token_ttl",
                parse_duration,
            )?,
        ],
        [
            env.get(
                &[
                    "AUTHCTL_ACCESS_TOKEN_EXPIRE_MINUTES",
                    "ACCESS_TOKEN_EXPIRE_MINUTES",
                ],
                parse_positive_u64,
            )?,
            file_value(
                fa.access_token_expire_minutes,
                "auth.access_token_expire_minutes",
                |n| parse_positive_u64(&n.to_string()),
            )?,
        ],
        60,
        d.auth.access_token_ttl,
    )?;
    let refresh_token_ttl = ttl(
        [
            env.get(&["AUTHCTL_REFRESH_TOKEN_TTL"], parse_duration)?,
            file_value(
                fa.refresh_token_ttl.as_deref(),
                "auth.refresh_token_ttl",
                parse_duration,
            )?,
        ],
        [
            env.get(
                &[
                    "AUTHCTL_REFRESH_TOKEN_EXPIRE_DAYS",
                    "REFRESH_TOKEN_EXPIRE_DAYS",
                ],
                parse_positive_u64,
            )?,
            file_value(
                fa.refresh_token_expire_days,
                "auth.refresh_token_expire_days",
                |n| parse_positive_u64(&n.to_string()),
            )?,
        ],
        24 * 3600,
        d.auth.refresh_token_ttl,
    )?;
    let bcrypt_cost = pick(
        [
            None,
            env.get(&["AUTHCTL_BCRYPT_COST"], parse_u32_in(4, 31))?,
            file_value(fa.bcrypt_cost, "auth.bcrypt_cost", |n| {
                check_range(n, 4, 31)
            })?,
        ],
        d.auth.bcrypt_cost,
    );
    let refresh_reuse_grace = pick(
        [
            None,
            env.get(&["AUTHCTL_REFRESH_REUSE_GRACE_SECONDS"], |s| {
                s.parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| format!("is not a whole number of seconds: '{s}'"))
            })?,
            file_value(
                fa.refresh_reuse_grace_seconds,
                "auth.refresh_reuse_grace_seconds",
                |n| Ok(Duration::from_secs(n)),
            )?,
        ],
        d.auth.refresh_reuse_grace,
    );
    let issuer = pick(
        [
            None,
            env.get(&["AUTHCTL_ISSUER"], parse_issuer)?,
            file_value(fa.issuer.as_deref(), "auth.issuer", parse_issuer)?,
        ],
        d.auth.issuer,
    );

    let cors = pick(
        [
            None,
            env.get(&["AUTHCTL_CORS_ALLOWED_ORIGINS"], |s| {
                parse_cors_origins(&s.split(',').collect::<Vec<_>>())
            })?,
            file_value(
                file.cors.allowed_origins.as_deref(),
                "cors.allowed_origins",
                parse_cors_origins,
            )?,
        ],
        d.cors,
    );

    Ok(Settings {
        database_url,
        pool_min,
        pool_max,
        log_level,
        log_format,
        bind,
        rate_limit,
        auth: AuthSettings {
            secret_key,
            algorithm,
            access_token_ttl,
            refresh_token_ttl,
            bcrypt_cost,
            refresh_reuse_grace,
            issuer,
        },
        cors,
    })
}

fn parse_issuer(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 256 {
        Err("must be 1 to 256 characters".into())
    } else {
        Ok(s.to_owned())
    }
}

fn read_file(explicit: Option<&Path>) -> Result<FileConfig> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_FILE);
            if !default.exists() {
                return Ok(FileConfig::default());
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::config(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| {
        Error::config(
            format!("config file {}: {}", path.display(), e.message().trim())
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        )
    })
}

/// The environment variables authctl reads, for `--help` and the README.
pub fn documented_env() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        (
            "DATABASE_URL",
            "sqlite://… or postgres://… (default sqlite://authctl.db)",
        ),
        (
            "SECRET_KEY",
            "HMAC signing key, at least 32 bytes (default: generated and stored in the database)",
        ),
        ("ALGORITHM", "HS256, HS384 or HS512 (default HS256)"),
        (
            "ACCESS_TOKEN_EXPIRE_MINUTES",
            "access token lifetime in minutes (default 30)",
        ),
        (
            "REFRESH_TOKEN_EXPIRE_DAYS",
            "refresh token lifetime in days (default 7)",
        ),
        (
            "DB_POOL_MIN_CONN / DB_POOL_MAX_CONN",
            "connection pool bounds (default 1 / 10)",
        ),
        ("LOG_LEVEL", "tracing filter (default info)"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load_env(vars: &[(&str, &str)]) -> Result<Settings> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with(&Overrides::default(), &move |k| map.get(k).cloned())
    }

    fn config_error(r: Result<Settings>) -> String {
        match r {
            Err(Error::Config(msg)) => msg,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = load_env(&[]).unwrap();
        assert_eq!(s.database_url.expose(), "sqlite://authctl.db");
        assert_eq!(s.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(s.auth.access_token_ttl, Duration::from_secs(1800));
        assert_eq!(s.auth.refresh_token_ttl, Duration::from_secs(7 * 86400));
        assert_eq!(s.auth.bcrypt_cost, 12);
        assert_eq!(s.rate_limit.login_per_minute.get(), 10);
        assert!(s.auth.secret_key.is_none());
    }

    #[test]
    fn original_project_variable_names_work() {
        let s = load_env(&[
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "5"),
            ("REFRESH_TOKEN_EXPIRE_DAYS", "2"),
            ("DATABASE_URL", "postgres://u:p@localhost/db"),
            ("LOG_LEVEL", "DEBUG"),
            ("DB_POOL_MAX_CONN", "3"),
        ])
        .unwrap();
        assert_eq!(s.auth.access_token_ttl, Duration::from_secs(300));
        assert_eq!(s.auth.refresh_token_ttl, Duration::from_secs(2 * 86400));
        assert!(s.database_url.is_postgres());
        assert_eq!(s.log_level, "debug");
        assert_eq!(s.pool_max, 3);
    }

    #[test]
    fn a_ttl_and_its_legacy_form_together_are_an_error() {
        let msg = config_error(load_env(&[
            ("ACCESS_TOKEN_EXPIRE_MINUTES", "5"),
            ("AUTHCTL_ACCESS_TOKEN_TTL", "10m"),
        ]));
        assert!(
            msg.contains("ACCESS_TOKEN_EXPIRE_MINUTES") && msg.contains("AUTHCTL_ACCESS_TOKEN_TTL"),
            "{msg}"
        );
    }

    #[test]
    fn unparsable_values_name_the_variable() {
        let msg = config_error(load_env(&[("AUTHCTL_BCRYPT_COST", "99")]));
        assert!(msg.contains("AUTHCTL_BCRYPT_COST"), "{msg}");
        let msg = config_error(load_env(&[("AUTHCTL_REFRESH_TOKEN_TTL", "soon")]));
        assert!(msg.contains("AUTHCTL_REFRESH_TOKEN_TTL"), "{msg}");
        let msg = config_error(load_env(&[("AUTHCTL_TRUSTED_PROXIES", "10.0.0.0/8,nope")]));
        assert!(msg.contains("AUTHCTL_TRUSTED_PROXIES"), "{msg}");
    }

    #[test]
    fn weak_or_placeholder_keys_are_refused_and_never_echoed() {
        let msg = config_error(load_env(&[(
            "SECRET_KEY",
            "your-secret-key-change-in-production",
        )]));
        assert!(
            msg.contains("SECRET_KEY") && msg.contains("placeholder"),
            "{msg}"
        );
        let msg = config_error(load_env(&[("SECRET_KEY", "short-key-1234")]));
        assert!(
            msg.contains("at least 32 bytes") && !msg.contains("short-key-1234"),
            "{msg}"
        );
    }

    #[test]
    fn a_strong_key_is_accepted_and_redacted_in_debug() {
        let key = "k7Qn2vX9pL4mR8sT1wY6zB3cF5hJ0dGa";
        let s = load_env(&[("SECRET_KEY", key)]).unwrap();
        assert!(!format!("{s:?}").contains(key));
    }

    #[test]
    fn unknown_file_keys_are_refused_with_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authctl.toml");
        std::fs::write(&path, "[server]\nbindd = \"0.0.0.0:1\"\n").unwrap();
        let overrides = Overrides {
            config_file: Some(path),
            ..Default::default()
        };
        let msg = config_error(load_with(&overrides, &|_| None));
        assert!(msg.contains("bindd"), "{msg}");
    }

    #[test]
    fn flags_beat_env_and_env_beats_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authctl.toml");
        std::fs::write(
            &path,
            "[server]\nbind = \"127.0.0.1:1111\"\n[auth]\nbcrypt_cost = 5\nissuer = \"file\"\n",
        )
        .unwrap();
        let mut overrides = Overrides {
            config_file: Some(path),
            ..Default::default()
        };
        let env = |k: &str| (k == "AUTHCTL_BIND").then(|| "127.0.0.1:2222".to_string());
        let s = load_with(&overrides, &env).unwrap();
        assert_eq!(s.bind.port(), 2222);
        assert_eq!(s.auth.bcrypt_cost, 5);
        overrides.bind = Some("127.0.0.1:3333".into());
        assert_eq!(load_with(&overrides, &env).unwrap().bind.port(), 3333);
    }

    #[test]
    fn cors_is_off_unless_origins_are_configured() {
        assert_eq!(load_env(&[]).unwrap().cors, CorsOrigins::Off);
        let any = load_env(&[("AUTHCTL_CORS_ALLOWED_ORIGINS", "*")]).unwrap();
        assert_eq!(any.cors, CorsOrigins::Any);
        let some = load_env(&[(
            "AUTHCTL_CORS_ALLOWED_ORIGINS",
            "https://App.Example.com, http://localhost:3000",
        )])
        .unwrap();
        assert_eq!(
            some.cors,
            CorsOrigins::Only(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ])
        );
        for bad in [
            "https://app.example.com/path",
            "app.example.com",
            "ftp://app.example.com",
            "*, https://app.example.com",
            "https://user@app.example.com",
        ] {
            let msg = config_error(load_env(&[("AUTHCTL_CORS_ALLOWED_ORIGINS", bad)]));
            assert!(msg.contains("AUTHCTL_CORS_ALLOWED_ORIGINS"), "{bad}: {msg}");
        }
    }

    #[test]
    fn cors_origins_come_from_the_file_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authctl.toml");
        std::fs::write(
            &path,
            "[cors]\nallowed_origins = [\"https://app.example.com\"]\n",
        )
        .unwrap();
        let overrides = Overrides {
            config_file: Some(path.clone()),
            ..Default::default()
        };
        let s = load_with(&overrides, &|_| None).unwrap();
        assert_eq!(
            s.cors,
            CorsOrigins::Only(vec!["https://app.example.com".into()])
        );
        std::fs::write(&path, "[cors]\nallowed_origins = [\"nope\"]\n").unwrap();
        let msg = config_error(load_with(&overrides, &|_| None));
        assert!(msg.contains("cors.allowed_origins"), "{msg}");
    }
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
