//! Loading the settings: built-in defaults, then the TOML file, then the environment,
//! then command-line flags (so flag > env > file > default).
//!
//! Every setting is one line of [`SETTINGS`]: its TOML key, the environment variables
//! that set it (first set wins; original-project names such as `SECRET_KEY` follow the
//! `AUTHCTL_` one), the TOML type the file gives it, and the field it parses into. Each
//! layer hands the value over as text to the same parser, and a failure names where
//! the value came from ("config key auth.bcrypt_cost …", "environment variable
//! AUTHCTL_BCRYPT_COST …", "--bind …"). The file's keys are checked against the table,
//! so an unknown key is refused with its name.
//!
//! Adding a setting is one field in [`Settings`] (with its default in `Default`, in
//! `mod.rs`) and one line here, e.g.:
//!
//! ```text
//! setting!("server.header_timeout", ["AUTHCTL_HEADER_TIMEOUT"], Str, server.header_timeout = parse_duration),
//! setting!("rate_limit.ipv6_prefix", ["AUTHCTL_RATE_LIMIT_IPV6_PREFIX"], Int, rate_limit.ipv6_prefix = parse_ipv6_prefix),
//! ```
//!
//! A parser that does not exist yet goes in `types.rs`. Rules that span settings
//! (a TTL and its original-project integer form are exclusive, pool bounds are
//! ordered) are checked after all layers, in [`load_with`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use toml::{Table, Value};

use super::types::*;
use super::{DEFAULT_CONFIG_FILE, Overrides, SecretKey, Settings};
use crate::error::{Error, Result};
use crate::store::DatabaseUrl;

/// The TOML type a key takes in the file.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    /// A list of strings; the environment gives it comma-separated.
    List,
}

impl Kind {
    /// The file's value as the text the parsers take; `None` if it is of another type.
    fn text(self, value: &Value) -> Option<String> {
        match (self, value) {
            (Kind::Str, Value::String(s)) => Some(s.clone()),
            (Kind::Int, Value::Integer(n)) => Some(n.to_string()),
            (Kind::Bool, Value::Boolean(b)) => Some(b.to_string()),
            (Kind::List, Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str())
                .collect::<Option<Vec<_>>>()
                .map(|items| items.join(",")),
            _ => None,
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "a whole number",
            Kind::Bool => "true or false",
            Kind::List => "a list of strings",
        }
    }
}

/// Reads one flag's value from the parsed command line.
type ReadFlag = fn(&Overrides) -> Option<String>;

/// One setting: where it is read from and which field it sets.
struct Setting {
    /// `section.name` in the TOML file.
    key: &'static str,
    env: &'static [&'static str],
    kind: Kind,
    /// The command-line flag that sets it, if any, and how to read it from [`Overrides`].
    flag: Option<(&'static str, ReadFlag)>,
    /// Parses the text and stores it in its field; the error reads after the source.
    apply: fn(&mut Settings, &str) -> Result<(), String>,
}

impl Setting {
    const fn flag(mut self, name: &'static str, get: ReadFlag) -> Self {
        self.flag = Some((name, get));
        self
    }
}

/// `setting!(key, [env…], Kind, field.path = parser)`: see the module comment.
macro_rules! setting {
    ($key:literal, [$($env:literal),+], $kind:ident, $($field:ident).+ = $parse:expr) => {
        Setting {
            key: $key,
            env: &[$($env),+],
            kind: Kind::$kind,
            flag: None,
            apply: |settings, raw| {
                settings.$($field).+ = ($parse)(raw)?;
                Ok(())
            },
        }
    };
}

/// Every setting authctl reads. SPEC §3 is the contract for the names. One line each
/// (rustfmt would spread them over five).
#[rustfmt::skip]
const SETTINGS: &[Setting] = &[
    setting!("database.url", ["AUTHCTL_DATABASE_URL", "DATABASE_URL"], Str, database_url = DatabaseUrl::parse)
        .flag("--database-url", |o| o.database_url.clone()),
    setting!("database.pool_min", ["AUTHCTL_DB_POOL_MIN_CONN", "DB_POOL_MIN_CONN"], Int, pool_min = parse_u32_in(0, 1000)),
    setting!("database.pool_max", ["AUTHCTL_DB_POOL_MAX_CONN", "DB_POOL_MAX_CONN"], Int, pool_max = parse_u32_in(1, 1000)),
    setting!("log.level", ["AUTHCTL_LOG_LEVEL", "LOG_LEVEL"], Str, log_level = parse_log_level)
        .flag("--log-level", |o| o.log_level.clone()),
    setting!("log.format", ["AUTHCTL_LOG_FORMAT"], Str, log_format = LogFormat::from_str)
        .flag("--log-format", |o| o.log_format.map(|f| f.as_str().to_owned())),
    setting!("server.bind", ["AUTHCTL_BIND"], Str, bind = parse_bind)
        .flag("--bind", |o| o.bind.clone()),
    setting!("server.header_timeout", ["AUTHCTL_HEADER_TIMEOUT"], Str, edge.header_timeout = parse_duration),
    setting!("server.body_timeout", ["AUTHCTL_BODY_TIMEOUT"], Str, edge.body_timeout = parse_duration),
    setting!("server.idle_timeout", ["AUTHCTL_IDLE_TIMEOUT"], Str, edge.idle_timeout = parse_duration),
    setting!("server.max_connections", ["AUTHCTL_MAX_CONNECTIONS"], Int, edge.max_connections = parse_max_connections),
    setting!("server.shutdown_timeout", ["AUTHCTL_SHUTDOWN_TIMEOUT"], Str, edge.shutdown_timeout = parse_duration),
    setting!("rate_limit.enabled", ["AUTHCTL_RATE_LIMIT_ENABLED"], Bool, rate_limit.enabled = parse_bool),
    setting!("rate_limit.register_per_minute", ["AUTHCTL_RATE_LIMIT_REGISTER_PER_MINUTE"], Int, rate_limit.register_per_minute = parse_per_minute),
    setting!("rate_limit.login_per_minute", ["AUTHCTL_RATE_LIMIT_LOGIN_PER_MINUTE"], Int, rate_limit.login_per_minute = parse_per_minute),
    setting!("rate_limit.refresh_per_minute", ["AUTHCTL_RATE_LIMIT_REFRESH_PER_MINUTE"], Int, rate_limit.refresh_per_minute = parse_per_minute),
    setting!("rate_limit.password_per_minute", ["AUTHCTL_RATE_LIMIT_PASSWORD_PER_MINUTE"], Int, rate_limit.password_per_minute = parse_per_minute),
    setting!("rate_limit.email_per_minute", ["AUTHCTL_RATE_LIMIT_EMAIL_PER_MINUTE"], Int, rate_limit.email_per_minute = parse_per_minute),
    setting!("rate_limit.trusted_proxies", ["AUTHCTL_TRUSTED_PROXIES"], List, rate_limit.trusted_proxies = parse_proxies),
    setting!("rate_limit.store", ["AUTHCTL_RATE_LIMIT_STORE"], Str, rate_limit.store = LimitStore::from_str),
    setting!("rate_limit.ipv6_prefix", ["AUTHCTL_RATE_LIMIT_IPV6_PREFIX"], Int, rate_limit.ipv6_prefix = parse_ipv6_prefix),
    setting!("auth.secret_key", ["AUTHCTL_SECRET_KEY", "SECRET_KEY"], Str, auth.secret_key = |s| SecretKey::parse(s).map(Some)),
    setting!("auth.algorithm", ["AUTHCTL_ALGORITHM", "ALGORITHM"], Str, auth.algorithm = parse_algorithm),
    setting!("auth.access_token_ttl", ["AUTHCTL_ACCESS_TOKEN_TTL"], Str, auth.access_token_ttl = parse_duration),
    setting!("auth.access_token_expire_minutes", ["AUTHCTL_ACCESS_TOKEN_EXPIRE_MINUTES", "ACCESS_TOKEN_EXPIRE_MINUTES"], Int, auth.access_token_ttl = parse_minutes),
    setting!("auth.refresh_token_ttl", ["AUTHCTL_REFRESH_TOKEN_TTL"], Str, auth.refresh_token_ttl = parse_duration),
    setting!("auth.refresh_token_expire_days", ["AUTHCTL_REFRESH_TOKEN_EXPIRE_DAYS", "REFRESH_TOKEN_EXPIRE_DAYS"], Int, auth.refresh_token_ttl = parse_days),
    setting!("auth.bcrypt_cost", ["AUTHCTL_BCRYPT_COST"], Int, auth.bcrypt_cost = parse_u32_in(4, 31)),
    setting!("auth.password_hash", ["AUTHCTL_PASSWORD_HASH"], Str, auth.password_hash = super::types::PasswordHashAlgorithm::from_str),
    setting!("auth.argon2_memory_kib", ["AUTHCTL_ARGON2_MEMORY_KIB"], Int, auth.argon2_memory_kib = parse_u32_in(8, 4_194_304)),
    setting!("auth.argon2_iterations", ["AUTHCTL_ARGON2_ITERATIONS"], Int, auth.argon2_iterations = parse_u32_in(1, 64)),
    setting!("auth.argon2_parallelism", ["AUTHCTL_ARGON2_PARALLELISM"], Int, auth.argon2_parallelism = parse_u32_in(1, 64)),
    setting!("auth.password_min_length", ["AUTHCTL_PASSWORD_MIN_LENGTH"], Int, auth.password_min_length = parse_u32_in(8, 64)),
    setting!("auth.password_blocklist_file", ["AUTHCTL_PASSWORD_BLOCKLIST_FILE"], Str, auth.password_blocklist_file = |s| Ok::<_, String>(Some(PathBuf::from(s)))),
    setting!("auth.refresh_reuse_grace_seconds", ["AUTHCTL_REFRESH_REUSE_GRACE_SECONDS"], Int, auth.refresh_reuse_grace = parse_grace_seconds),
    setting!("auth.session_max_lifetime", ["AUTHCTL_SESSION_MAX_LIFETIME"], Str, auth.session_max_lifetime = parse_duration),
    setting!("auth.issuer", ["AUTHCTL_ISSUER"], Str, auth.issuer = parse_issuer),
    setting!("auth.hash_queue_timeout", ["AUTHCTL_HASH_QUEUE_TIMEOUT"], Str, auth.hash_queue_timeout = parse_duration),
    setting!("auth.lockout_threshold", ["AUTHCTL_LOCKOUT_THRESHOLD"], Int, auth.lockout_threshold = parse_u32_in(0, 1_000_000)),
    setting!("auth.lockout_duration", ["AUTHCTL_LOCKOUT_DURATION"], Str, auth.lockout_duration = parse_duration),
    setting!("auth.lockout_max_duration", ["AUTHCTL_LOCKOUT_MAX_DURATION"], Str, auth.lockout_max_duration = parse_duration),
    setting!("auth.lockout_permanent_after", ["AUTHCTL_LOCKOUT_PERMANENT_AFTER"], Int, auth.lockout_permanent_after = parse_u32_in(0, 1_000_000)),
    setting!("auth.require_verified_email", ["AUTHCTL_REQUIRE_VERIFIED_EMAIL"], Bool, auth.require_verified_email = parse_bool),
    setting!("auth.default_roles", ["AUTHCTL_DEFAULT_ROLES"], List, auth.default_roles = parse_roles),
    setting!("oidc.enabled", ["AUTHCTL_OIDC_ENABLED"], Bool, auth.oidc_enabled = parse_bool),
    setting!("email.url", ["AUTHCTL_EMAIL_URL"], Str, auth.email.url = |s| super::email::EmailUrl::parse(s).map(Some)),
    setting!("email.from", ["AUTHCTL_EMAIL_FROM"], Str, auth.email.from = super::email::parse_from),
    setting!("email.verify_url", ["AUTHCTL_EMAIL_VERIFY_URL"], Str, auth.email.verify_url = |s| super::email::LinkTemplate::parse(s).map(Some)),
    setting!("email.reset_url", ["AUTHCTL_EMAIL_RESET_URL"], Str, auth.email.reset_url = |s| super::email::LinkTemplate::parse(s).map(Some)),
    setting!("email.verify_ttl", ["AUTHCTL_EMAIL_VERIFY_TTL"], Str, auth.email.verify_ttl = parse_duration),
    setting!("email.reset_ttl", ["AUTHCTL_EMAIL_RESET_TTL"], Str, auth.email.reset_ttl = parse_duration),
    setting!("audit.retention", ["AUTHCTL_AUDIT_RETENTION"], Str, auth.audit_retention = parse_duration),
    setting!("cors.allowed_origins", ["AUTHCTL_CORS_ALLOWED_ORIGINS"], List, cors = parse_cors_origins),
    setting!("metrics.bind", ["AUTHCTL_METRICS_BIND"], Str, metrics_bind = parse_optional_bind),
];

/// Pairs of keys that set the same field in two forms (a duration and the original
/// project's whole number): setting both, anywhere, is an error rather than a guess.
const EXCLUSIVE: &[(&str, &str)] = &[
    ("auth.access_token_ttl", "auth.access_token_expire_minutes"),
    ("auth.refresh_token_ttl", "auth.refresh_token_expire_days"),
];

/// Every setting's TOML key and environment variables, in table order; and the keys
/// that are only another form of one listed before them (the legacy integer TTLs).
pub(super) fn keys() -> impl Iterator<Item = (&'static str, &'static [&'static str], bool)> {
    SETTINGS.iter().map(|s| {
        let alias = EXCLUSIVE.iter().any(|(_, legacy)| *legacy == s.key);
        (s.key, s.env, alias)
    })
}

/// Loads the configuration from the process environment, `./.env` (only in the
/// working directory; the real environment wins) and the given flags.
pub fn load(overrides: &Overrides) -> Result<Settings> {
    let dotenv = super::dotenv::read(Path::new("."))?;
    load_with(overrides, &|name| {
        std::env::var(name)
            .ok()
            .or_else(|| dotenv.get(name).cloned())
    })
}

/// Loads the configuration with an explicit environment lookup, so tests need not
/// touch the process environment.
pub fn load_with(
    overrides: &Overrides,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings> {
    let file = read_file(overrides.config_file.as_deref())?;
    let mut settings = Settings::default();
    // Where each key's winning value came from, for messages about two keys.
    let mut sources: HashMap<&str, String> = HashMap::new();
    let mut set = |setting: &Setting, raw: &str, source: String| -> Result<()> {
        (setting.apply)(&mut settings, raw).map_err(|e| Error::config(format!("{source} {e}")))?;
        sources.insert(setting.key, source);
        Ok(())
    };

    for setting in SETTINGS {
        if let Some(value) = file_value(&file, setting.key) {
            let source = format!("config key {}", setting.key);
            let raw = setting.kind.text(value).ok_or_else(|| {
                Error::config(format!("{source} must be {}", setting.kind.expected()))
            })?;
            set(setting, &raw, source)?;
        }
    }
    for setting in SETTINGS {
        let found = setting.env.iter().find_map(|name| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        });
        if let Some((name, raw)) = found {
            set(setting, raw.trim(), format!("environment variable {name}"))?;
        }
    }
    for setting in SETTINGS {
        if let Some((flag, get)) = setting.flag
            && let Some(raw) = get(overrides)
        {
            set(setting, &raw, flag.to_owned())?;
        }
    }

    for (a, b) in EXCLUSIVE {
        if let (Some(a), Some(b)) = (sources.get(a), sources.get(b)) {
            return Err(Error::config(format!(
                "both {a} and {b} set the same lifetime; set only one"
            )));
        }
    }
    if settings.auth.email.url.is_some() && settings.auth.email.from.is_none() {
        return Err(Error::config(
            "email.from (AUTHCTL_EMAIL_FROM) is required when email.url is set".to_owned(),
        ));
    }
    if settings.auth.oidc_enabled {
        super::types::check_oidc_issuer(&settings.auth.issuer).map_err(|e| {
            Error::config(format!(
                "auth.issuer (AUTHCTL_ISSUER) {e} when oidc.enabled is true (SPEC §18)"
            ))
        })?;
    }
    if settings.auth.lockout_duration > settings.auth.lockout_max_duration {
        return Err(Error::config(format!(
            "auth.lockout_duration ({}) is longer than auth.lockout_max_duration ({})",
            humantime::format_duration(settings.auth.lockout_duration),
            humantime::format_duration(settings.auth.lockout_max_duration)
        )));
    }
    if settings.pool_min > settings.pool_max {
        return Err(Error::config(format!(
            "DB_POOL_MIN_CONN ({}) is larger than DB_POOL_MAX_CONN ({})",
            settings.pool_min, settings.pool_max
        )));
    }
    Ok(settings)
}

/// The value at `section.name` in the file, if there is one.
fn file_value<'a>(file: &'a Table, key: &str) -> Option<&'a Value> {
    let (section, name) = key.split_once('.')?;
    file.get(section)?.as_table()?.get(name)
}

/// Reads and parses the file, refusing keys that are not in [`SETTINGS`]. No
/// `--config` and no `./authctl.toml` is an empty file.
fn read_file(explicit: Option<&Path>) -> Result<Table> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_FILE);
            if !default.exists() {
                return Ok(Table::new());
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::config(format!("cannot read config file {}: {e}", path.display())))?;
    let file: Table = toml::from_str(&text).map_err(|e| {
        Error::config(
            format!("config file {}: {}", path.display(), e.message().trim())
                + &e.span()
                    .map(|s| format!(" (at byte {})", s.start))
                    .unwrap_or_default(),
        )
    })?;
    for (section, value) in &file {
        let names: Vec<&str> = SETTINGS
            .iter()
            .filter_map(|s| s.key.split_once('.'))
            .filter(|(known, _)| known == section)
            .map(|(_, name)| name)
            .collect();
        let at = path.display();
        if names.is_empty() {
            return Err(Error::config(format!(
                "config file {at}: unknown section [{section}]"
            )));
        }
        let Some(table) = value.as_table() else {
            return Err(Error::config(format!(
                "config file {at}: {section} must be a [{section}] table"
            )));
        };
        if let Some(name) = table.keys().find(|name| !names.contains(&name.as_str())) {
            return Err(Error::config(format!(
                "config file {at}: unknown key `{name}` in [{section}]; known keys: {}",
                names.join(", ")
            )));
        }
    }
    Ok(file)
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
mod tests;
