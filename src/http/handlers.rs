//! Handlers: take parsed input, call [`AuthService`], shape the reply. Errors become
//! problem responses through [`from_error`].

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use warp::http::StatusCode;
use warp::http::header::{CACHE_CONTROL, HeaderValue, PRAGMA};
use warp::reply::{Reply, Response};

use super::AppState;
use super::problem::from_error;
use crate::error::{Error, Result};
use crate::service::{AuthService, Registration};
use crate::store::User;

/// How long readiness waits for the database.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// The public view of a user, as the original API returns it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserResponse {
    /// The user's numeric id (the JWT `sub`).
    #[schema(example = 1)]
    pub id: i64,
    /// The email address as registered (compared case-insensitively).
    #[schema(example = "alice@example.com")]
    pub email: String,
    /// The username as registered (compared case-insensitively).
    #[schema(example = "alice")]
    pub username: String,
    /// Whether the user may log in.
    #[schema(example = true)]
    pub is_active: bool,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        UserResponse {
            id: u.id.0,
            email: u.email,
            username: u.username,
            is_active: u.is_active,
        }
    }
}

fn respond(result: Result<Response>) -> Response {
    let mut resp = result.unwrap_or_else(|e| from_error(&e));
    // Nothing under /api/v1/auth may be cached: it is all credentials and identity.
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}

fn field(fields: &mut Vec<String>) -> String {
    fields.pop().unwrap_or_default()
}

/// Registers a user.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "auth",
    operation_id = "register",
    summary = "Register a user",
    description = "Creates an active user. Email and username are unique, compared \
        case-insensitively. Every invalid field is reported at once in a 422's `errors`. \
        Rate limited per client IP (default 5 per minute).",
    request_body(
        content = crate::http::docs::RegisterRequest,
        content_type = "application/json",
        description = "The new user's email, username and password (at most 16 KiB).",
    ),
    responses(
        (status = 201, description = "The user was created.", body = UserResponse,
            links(("login" = (operation_id = "login",
                request_body = json!({
                    "username": "$request.body#/username",
                    "password": "$request.body#/password"
                }),
                description = "Log in as the new user.")))),
        (status = 400, response = crate::http::docs::BadRequest),
        (status = 409, response = crate::http::docs::Conflict),
        (status = 411, response = crate::http::docs::LengthRequired),
        (status = 413, response = crate::http::docs::PayloadTooLarge),
        (status = 415, response = crate::http::docs::UnsupportedMediaType),
        (status = 422, response = crate::http::docs::ValidationFailed),
        (status = 429, response = crate::http::docs::TooManyRequests),
        (status = 503, response = crate::http::docs::Unavailable),
    ),
)]
pub async fn register(service: Arc<AuthService>, mut fields: Vec<String>) -> Response {
    let password = field(&mut fields);
    let username = field(&mut fields);
    let email = field(&mut fields);
    respond(
        service
            .register(&Registration {
                email,
                username,
                password,
            })
            .await
            .map(|u| json(StatusCode::CREATED, &UserResponse::from(u))),
    )
}

/// Logs in with the OAuth2 password form.
#[utoipa::path(
    post,
    path = "/api/v1/auth/token",
    tag = "auth",
    operation_id = "login",
    summary = "Log in (OAuth2 password form)",
    description = "Exchanges a username or email (matched case-insensitively) and a password \
        for an access token and a refresh token. Every failure — unknown user, wrong \
        password, inactive user — is the same 401. Other OAuth2 form fields (`grant_type`, \
        `scope`, `client_id`, `client_secret`) are accepted and ignored. Rate limited per \
        client IP (default 10 per minute).",
    request_body(
        content = crate::http::docs::LoginForm,
        content_type = "application/x-www-form-urlencoded",
        description = "`username` and `password`, form-encoded (at most 16 KiB).",
    ),
    responses(
        (status = 200, description = "Logged in: a new session (token family).", body = crate::service::TokenPair,
            headers(("Cache-Control" = String, description = "`no-store`: never cache tokens.")),
            links(
                ("refresh" = (operation_id = "refresh",
                    request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                    description = "Rotate the new refresh token.")),
                ("revoke" = (operation_id = "revoke",
                    request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                    description = "Log out of this session.")),
            ),
        ),
        (status = 400, response = crate::http::docs::BadRequest),
        (status = 401, response = crate::http::docs::BadCredentials),
        (status = 411, response = crate::http::docs::LengthRequired),
        (status = 413, response = crate::http::docs::PayloadTooLarge),
        (status = 415, response = crate::http::docs::UnsupportedMediaType),
        (status = 422, response = crate::http::docs::ValidationFailed),
        (status = 429, response = crate::http::docs::TooManyRequests),
        (status = 503, response = crate::http::docs::Unavailable),
    ),
)]
pub async fn login(service: Arc<AuthService>, form: Vec<(String, String)>) -> Response {
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let missing: Vec<_> = ["username", "password"]
        .into_iter()
        .filter(|n| get(n).is_none())
        .map(|n| crate::error::FieldError::new(n, "field required"))
        .collect();
    if !missing.is_empty() {
        return respond(Err(Error::Validation(missing)));
    }
    let (username, password) = (
        get("username").unwrap_or_default(),
        get("password").unwrap_or_default(),
    );
    respond(
        service
            .login(username, password)
            .await
            .map(|pair| json(StatusCode::OK, &pair)),
    )
}

/// The user an access token belongs to.
#[utoipa::path(
    get,
    path = "/api/v1/auth/me",
    tag = "auth",
    operation_id = "me",
    summary = "The current user",
    description = "Returns the user of the presented access token. Refused (401) when the \
        token is missing, invalid or expired, when its session (token family) was revoked, \
        or when the user was disabled or deleted.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The token's user.", body = UserResponse),
        (status = 401, response = crate::http::docs::Unauthorized),
        (status = 503, response = crate::http::docs::Unavailable),
    ),
)]
pub async fn me(service: Arc<AuthService>, authorization: Option<String>) -> Response {
    let token = authorization.as_deref().and_then(|h| {
        let (scheme, token) = h.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    let result = match token {
        Some(t) if !t.is_empty() => service.authenticate(t).await,
        _ => Err(Error::MissingToken),
    };
    respond(result.map(|u| json(StatusCode::OK, &UserResponse::from(u))))
}

/// Rotates a refresh token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    operation_id = "refresh",
    summary = "Rotate a refresh token",
    description = "Revokes the presented refresh token and returns a new pair in the same \
        session, atomically. Presenting an already rotated or revoked token revokes the \
        whole session (theft detection). Rate limited per client IP (default 20 per minute).",
    request_body(
        content = crate::http::docs::RefreshRequest,
        content_type = "application/json",
        description = "The refresh token to rotate (at most 16 KiB).",
    ),
    responses(
        (status = 200, description = "The new token pair.", body = crate::service::TokenPair,
            headers(("Cache-Control" = String, description = "`no-store`: never cache tokens.")),
            links(
                ("refresh" = (operation_id = "refresh",
                    request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                    description = "Rotate the new refresh token.")),
                ("revoke" = (operation_id = "revoke",
                    request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                    description = "Log out of this session.")),
            ),
        ),
        (status = 400, response = crate::http::docs::BadRequest),
        (status = 401, response = crate::http::docs::InvalidRefreshToken),
        (status = 411, response = crate::http::docs::LengthRequired),
        (status = 413, response = crate::http::docs::PayloadTooLarge),
        (status = 415, response = crate::http::docs::UnsupportedMediaType),
        (status = 422, response = crate::http::docs::ValidationFailed),
        (status = 429, response = crate::http::docs::TooManyRequests),
        (status = 503, response = crate::http::docs::Unavailable),
    ),
)]
pub async fn refresh(service: Arc<AuthService>, mut fields: Vec<String>) -> Response {
    let token = field(&mut fields);
    respond(
        service
            .refresh(&token)
            .await
            .map(|pair| json(StatusCode::OK, &pair)),
    )
}

/// Logs out: revokes a refresh token's whole session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/revoke",
    tag = "auth",
    operation_id = "revoke",
    summary = "Log out (revoke a session)",
    description = "Revokes the session (token family) of the presented refresh token, so its \
        refresh and access tokens stop working. Answers 204 for unknown or already revoked \
        tokens too, so nothing leaks.",
    request_body(
        content = crate::http::docs::RefreshRequest,
        content_type = "application/json",
        description = "The refresh token whose session ends (at most 16 KiB).",
    ),
    responses(
        (status = 204, description = "The session is revoked (or never existed)."),
        (status = 400, response = crate::http::docs::BadRequest),
        (status = 411, response = crate::http::docs::LengthRequired),
        (status = 413, response = crate::http::docs::PayloadTooLarge),
        (status = 415, response = crate::http::docs::UnsupportedMediaType),
        (status = 422, response = crate::http::docs::ValidationFailed),
        (status = 503, response = crate::http::docs::Unavailable),
    ),
)]
pub async fn revoke(service: Arc<AuthService>, mut fields: Vec<String>) -> Response {
    let token = field(&mut fields);
    respond(
        service
            .revoke(&token)
            .await
            .map(|()| StatusCode::NO_CONTENT.into_response()),
    )
}

/// A health probe's answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `alive`, `ready` or `started`, after the probe.
    #[schema(value_type = String, example = "ready")]
    status: &'static str,
}

/// Liveness: the process is up.
#[utoipa::path(
    get,
    path = "/health/liveness",
    tag = "health",
    operation_id = "liveness",
    summary = "Liveness probe",
    description = "The process is up. Never touches the database.",
    responses((status = 200, description = "Alive.", body = Health,
        example = json!({"status": "alive"}))),
)]
pub fn liveness() -> Response {
    json(StatusCode::OK, &Health { status: "alive" })
}

/// Readiness: the database answers and the schema is current.
#[utoipa::path(
    get,
    path = "/health/readiness",
    tag = "health",
    operation_id = "readiness",
    summary = "Readiness probe",
    description = "The database answers within a short timeout and its schema is current. \
        503 while starting, while the database is unavailable, and while draining on shutdown.",
    responses(
        (status = 200, description = "Ready to serve.", body = Health,
            example = json!({"status": "ready"})),
        (status = 503, response = crate::http::docs::Unavailable),
    ),
)]
pub async fn readiness(state: Arc<AppState>) -> Response {
    let result = if state.is_draining() {
        Err(Error::NotReady("the server is shutting down"))
    } else {
        match state.service() {
            None => Err(Error::NotReady("the server is starting")),
            Some(service) => service.readiness(READINESS_TIMEOUT).await,
        }
    };
    match result {
        Ok(()) => json(StatusCode::OK, &Health { status: "ready" }),
        Err(e) => from_error(&e),
    }
}

/// Startup: configuration, migrations and key are done.
#[utoipa::path(
    get,
    path = "/health/startup",
    tag = "health",
    operation_id = "startup",
    summary = "Startup probe",
    description = "Startup (configuration, migrations, signing key) has finished.",
    responses(
        (status = 200, description = "Started.", body = Health,
            example = json!({"status": "started"})),
        (status = 503, response = crate::http::docs::Unavailable),
    ),
)]
pub fn startup(state: Arc<AppState>) -> Response {
    match state.service() {
        Some(_) => json(StatusCode::OK, &Health { status: "started" }),
        None => from_error(&Error::NotReady("the server is starting")),
    }
}
