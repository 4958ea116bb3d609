//! The values settings are made of, and the parsers that build them from text. Every
//! layer (file, environment, flag) hands its value over as text, so one parser per
//! value decides what is valid, and its message reads after the key's name:
//! "environment variable AUTHCTL_BCRYPT_COST must be between 4 and 31, got 99".

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use jsonwebtoken::Algorithm;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
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

/// Where rate-limit state lives (`rate_limit.store`): in this process (governor), or
/// in the database, shared by every replica on it (SPEC §6 "Shared limits").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitStore {
    #[default]
    Memory,
    Database,
}

impl FromStr for LimitStore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(LimitStore::Memory),
            "database" => Ok(LimitStore::Database),
            _ => Err(format!("must be 'memory' or 'database', got '{s}'")),
        }
    }
}

/// `auth.password_hash`: what new password hashes are made with (SPEC §16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordHashAlgorithm {
    #[default]
    Bcrypt,
    Argon2id,
}

impl PasswordHashAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            PasswordHashAlgorithm::Bcrypt => "bcrypt",
            PasswordHashAlgorithm::Argon2id => "argon2id",
        }
    }
}

impl FromStr for PasswordHashAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "bcrypt" => Ok(PasswordHashAlgorithm::Bcrypt),
            "argon2id" => Ok(PasswordHashAlgorithm::Argon2id),
            _ => Err(format!("must be 'bcrypt' or 'argon2id', got '{s}'")),
        }
    }
}

pub fn parse_u32_in(lo: u32, hi: u32) -> impl Fn(&str) -> Result<u32, String> {
    move |s| {
        let n: u32 = s
            .parse()
            .map_err(|_| format!("is not a whole number: '{s}'"))?;
        if (lo..=hi).contains(&n) {
            Ok(n)
        } else {
            Err(format!("must be between {lo} and {hi}, got {n}"))
        }
    }
}

pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("is not a boolean (true/false): '{s}'")),
    }
}

pub fn parse_per_minute(s: &str) -> Result<NonZeroU32, String> {
    let n = parse_u32_in(1, 1_000_000)(s)?;
    NonZeroU32::new(n).ok_or_else(|| "must be at least 1".to_string())
}

pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("is not an address:port such as 127.0.0.1:8000: '{s}'"))
}

/// An optional listen address: `off` (or nothing) turns the listener off.
pub fn parse_optional_bind(s: &str) -> Result<Option<SocketAddr>, String> {
    let s = s.trim();
    if s.is_empty() || s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    s.parse::<SocketAddr>()
        .map(Some)
        .map_err(|_| format!("is not an address:port such as 127.0.0.1:9100 (or `off`): '{s}'"))
}

/// Comma-separated IP addresses or CIDR blocks.
pub fn parse_proxies(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("contains '{s}', which is not an IP address or CIDR"))
        })
        .collect()
}

/// A comma-separated list of role names (SPEC §15), sorted, without repeats.
pub fn parse_roles(list: &str) -> Result<Vec<crate::domain::Role>, String> {
    let items: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    crate::domain::Role::parse_all(&items)
}

/// Allowed CORS origins: none (off), `*`, or a list of `scheme://host[:port]`.
pub fn parse_cors_origins(list: &str) -> Result<CorsOrigins, String> {
    let items: Vec<&str> = list
        .split(',')
        .map(str::trim)
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
pub fn parse_origin(s: &str) -> Result<String, String> {
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

pub fn parse_algorithm(s: &str) -> Result<Algorithm, String> {
    // EdDSA and ES256 are spelled as in JOSE (RFC 8037 / RFC 7518); accepted in any case.
    match s.trim().to_ascii_uppercase().as_str() {
        "HS256" => Ok(Algorithm::HS256),
        "HS384" => Ok(Algorithm::HS384),
        "HS512" => Ok(Algorithm::HS512),
        "EDDSA" => Ok(Algorithm::EdDSA),
        "ES256" => Ok(Algorithm::ES256),
        other => Err(format!(
            "is '{other}'; authctl signs with HS256, HS384, HS512, EdDSA or ES256"
        )),
    }
}

pub fn parse_log_level(s: &str) -> Result<String, String> {
    let level = s.trim().to_ascii_lowercase();
    tracing_subscriber::EnvFilter::try_new(&level)
        .map_err(|e| format!("is not a log level or filter such as info or debug: '{s}' ({e})"))?;
    Ok(level)
}

pub fn parse_positive_u64(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("is not a positive whole number: '{s}'")),
    }
}

/// The original project's `ACCESS_TOKEN_EXPIRE_MINUTES`: a positive number of minutes.
pub fn parse_minutes(s: &str) -> Result<Duration, String> {
    whole_units(s, 60)
}

/// The original project's `REFRESH_TOKEN_EXPIRE_DAYS`: a positive number of days.
pub fn parse_days(s: &str) -> Result<Duration, String> {
    whole_units(s, 24 * 3600)
}

fn whole_units(s: &str, unit_seconds: u64) -> Result<Duration, String> {
    parse_positive_u64(s)?
        .checked_mul(unit_seconds)
        .map(Duration::from_secs)
        .ok_or_else(|| "is too large".to_string())
}

/// A whole number of seconds, zero included.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("is not a whole number of seconds: '{s}'"))
}

/// `refresh_reuse_grace_seconds`: 0 (strict) to [`MAX_GRACE_SECONDS`]. A long window
/// would all but turn theft detection off, so more is refused rather than capped.
pub fn parse_grace_seconds(s: &str) -> Result<Duration, String> {
    let grace = parse_seconds(s)?;
    if grace.as_secs() > MAX_GRACE_SECONDS {
        return Err(format!(
            "must be at most {MAX_GRACE_SECONDS} seconds (a longer window defeats refresh-token \
             theft detection), got {}",
            grace.as_secs()
        ));
    }
    Ok(grace)
}

/// The longest grace window for a replayed refresh token (SPEC §8).
pub const MAX_GRACE_SECONDS: u64 = 60;

pub fn parse_issuer(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 256 {
        Err("must be 1 to 256 characters".into())
    } else {
        Ok(s.to_owned())
    }
}

/// With the OpenID Connect provider on, the issuer is the public base URL clients
/// reach it at: `https://…`, or `http://…` on a loopback host; no query or fragment.
pub fn check_oidc_issuer(issuer: &str) -> Result<(), String> {
    let url = url::Url::parse(issuer)
        .map_err(|_| format!("{issuer:?} must be the public https:// URL"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || issuer.ends_with('/')
    {
        // A trailing slash would be part of every token's `iss`: clients configured
        // without it (as discovery URLs are written) would refuse them.
        return Err(format!(
            "{issuer:?} must be the public https:// URL (http:// only on a loopback host), \
             without query, fragment or trailing slash"
        ));
    }
    Ok(())
}

/// `server.max_connections`: at least one connection, at most a million (more file
/// descriptors than any process here gets).
pub fn parse_max_connections(s: &str) -> Result<usize, String> {
    let n = parse_u32_in(1, 1_000_000)(s)?;
    usize::try_from(n).map_err(|_| format!("is too large for this platform: {n}"))
}

/// `rate_limit.ipv6_prefix`: 32 to 128 bits. Shorter would put whole providers in one
/// bucket; 128 keys every address apart (and gives anyone with a /64 2^64 keys).
pub fn parse_ipv6_prefix(s: &str) -> Result<u8, String> {
    let n = parse_u32_in(32, 128)(s)?;
    u8::try_from(n).map_err(|_| format!("must be between 32 and 128, got {n}"))
}
