//! The one error type. Every failure in authctl is one of these variants; each says
//! once which HTTP status ([`Error::status`]) and which CLI exit code
//! ([`Error::exit_code`]) it becomes.

use std::time::Duration;

use warp::http::StatusCode;

/// A field that failed validation, reported in a 422's `errors` array.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"field": "username", "message": "must be 3 to 32 characters long"}))]
pub struct FieldError {
    /// The request field, e.g. `email`; `body` when the body as a whole is wrong.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The CLI's exit codes (README, "Exit codes"), named so that a command that fails
/// without an [`Error`] (an inspected token that is no longer valid) can say which.
pub mod exit {
    pub const FAILURE: u8 = 1;
    pub const INVALID_INPUT: u8 = 2;
    pub const NOT_FOUND: u8 = 3;
    pub const CONFLICT: u8 = 4;
    pub const INVALID_TOKEN: u8 = 5;
    pub const UNAVAILABLE: u8 = 6;
    pub const CONFIG: u8 = 7;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// 422 / exit 2: well-formed input with invalid fields.
    #[error("invalid input: {}", summarize(.0))]
    Validation(Vec<FieldError>),

    /// 400: the request body is not syntactically valid JSON.
    #[error("malformed request body: {0}")]
    MalformedBody(String),

    /// 401: unknown user, wrong password or inactive user (one generic answer).
    #[error("incorrect username or password")]
    InvalidCredentials,

    /// 401 with `error="invalid_token"` / exit 5: a presented token was refused.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),

    /// 401 without an error code: no Bearer token was presented.
    #[error("not authenticated")]
    MissingToken,

    /// 403 / exit 1: authenticated, but the action's own proof failed (the current
    /// password at a password change).
    #[error("{0}")]
    Forbidden(&'static str),

    /// 403 / exit 1: the right password for an account whose email is not verified
    /// yet (`auth.require_verified_email`); the body's `error` is
    /// `email_not_verified`.
    #[error("the email address of this account is not verified yet")]
    EmailNotVerified,

    /// 400 / exit 5: an email verification or password reset token that is unknown,
    /// spent, expired, void or of the other purpose.
    #[error("the token is invalid, expired or already used")]
    InvalidEmailToken,

    /// 501 / exit 1: a feature that is not configured (email without `email.url`).
    #[error("{0}")]
    NotConfigured(&'static str),
    /// 403 with `error: "mfa_required"` and `mfa_token` / exit 1: the right password
    /// of an account with TOTP on, and no second factor (SPEC §14).
    #[error("a second factor is required")]
    MfaRequired { mfa_token: Redacted },

    /// 401 `invalid_grant` / exit 5: the second login step failed (a wrong code, or
    /// an unknown, expired or spent `mfa_token`).
    #[error("incorrect code, or the mfa_token is no longer valid")]
    InvalidSecondFactor,

    /// 403 with `WWW-Authenticate: Bearer error="insufficient_scope", scope="…"` /
    /// exit 1: a live API key without the scope the route needs (RFC 6750 §3.1).
    #[error("the API key lacks the scope {0}")]
    InsufficientScope(&'static str),

    /// 404 / exit 3: a user, token or family that does not exist.
    #[error("{0} not found")]
    NotFound(String),

    /// 409 / exit 4: duplicate email or username.
    #[error("{0} is already registered")]
    Conflict(&'static str),

    /// 409 / exit 4: the account is not in the state the action needs (TOTP already
    /// on at enrolment, or not on where it must be).
    #[error("{0}")]
    StateConflict(&'static str),

    /// 429: a rate limit was hit.
    #[error("too many requests")]
    RateLimited { retry_after: Duration },

    /// 503 / exit 6: the database did not answer.
    #[error("database unavailable: {0}")]
    Unavailable(String),

    /// 503 with `Retry-After`: no password-hashing slot freed up within
    /// `auth.hash_queue_timeout`.
    #[error("the server is busy; try again shortly")]
    Busy { retry_after: Duration },

    /// 503: the server is still starting or is shutting down.
    #[error("service not ready: {0}")]
    NotReady(&'static str),

    /// 500 / exit 7: the configuration is invalid.
    #[error("configuration error: {0}")]
    Config(String),

    /// exit 1 (500 if it ever reached HTTP): a command refused to run as asked
    /// (`db backup` on PostgreSQL, or over an existing file), with what to do instead.
    #[error("{message}")]
    Refused {
        message: String,
        hint: Option<&'static str>,
    },

    /// 500 / exit 1: anything else; the cause chain is logged, never sent to a client.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A credential that an error carries to its client (the `mfa_token` of a 403),
/// never into a log line: its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        Error::Validation(vec![FieldError::new(field, message)])
    }

    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::MalformedBody(_) | Error::InvalidEmailToken => StatusCode::BAD_REQUEST,
            Error::NotConfigured(_) => StatusCode::NOT_IMPLEMENTED,
            Error::InvalidCredentials
            | Error::InvalidToken(_)
            | Error::MissingToken
            | Error::InvalidSecondFactor => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_)
            | Error::MfaRequired { .. }
            | Error::EmailNotVerified
            | Error::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::StateConflict(_) => StatusCode::CONFLICT,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) | Error::NotReady(_) | Error::Busy { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Config(_) | Error::Internal(_) | Error::Refused { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// Migrations are pending: every surface (CLI, readiness, startup) says it alike.
    pub fn schema_not_current() -> Self {
        Error::NotReady("the database schema is not current: run `authctl migrate`")
    }

    /// The process exit code this error ends a CLI command with (see README).
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Validation(_) | Error::MalformedBody(_) => exit::INVALID_INPUT,
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::Conflict(_) | Error::StateConflict(_) => exit::CONFLICT,
            Error::InvalidToken(_)
            | Error::MissingToken
            | Error::InvalidCredentials
            | Error::InvalidEmailToken
            | Error::InvalidSecondFactor => exit::INVALID_TOKEN,
            Error::Unavailable(_) => exit::UNAVAILABLE,
            Error::Config(_) => exit::CONFIG,
            Error::RateLimited { .. }
            | Error::Forbidden(_)
            | Error::InsufficientScope(_)
            | Error::EmailNotVerified
            | Error::NotConfigured(_)
            | Error::MfaRequired { .. }
            | Error::Busy { .. }
            | Error::NotReady(_)
            | Error::Refused { .. }
            | Error::Internal(_) => exit::FAILURE,
        }
    }

    /// A one-line suggestion printed under the error by the CLI.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Unavailable(_) => {
                Some("check --database-url / DATABASE_URL and that the database is running")
            }
            Error::Config(_) => {
                Some("see `authctl --help` and the Configuration section of the README")
            }
            Error::NotFound(_) => Some("`authctl user list` shows existing users"),
            Error::Conflict(_) => Some("choose another email or username"),
            Error::Refused { hint, .. } => *hint,
            Error::InvalidToken(_) => {
                Some("the token is unknown, expired, revoked or not signed by this server's key")
            }
            _ => None,
        }
    }
}

/// Classifies database errors: connection trouble is `Unavailable` (503, exit 6),
/// everything else is internal and keeps its cause for the log.
impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => Error::Unavailable(err.to_string()),
            sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref()) => {
                Error::Unavailable(err.to_string())
            }
            _ => Error::Internal(anyhow::Error::new(err).context("database query failed")),
        }
    }
}

/// PostgreSQL SQLSTATEs (class 08 connection exceptions, 57P0x shutdown) and SQLite's
/// BUSY/LOCKED that mean "try again later" rather than a bug.
fn is_unavailable_code(code: Option<&str>) -> bool {
    match code {
        Some(code) => {
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "53300"
                || code == "5"
                || code == "6"
                || code == "517"
        }
        None => false,
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        match err {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => Error::Internal(anyhow::Error::new(other).context("migration failed")),
        }
    }
}
