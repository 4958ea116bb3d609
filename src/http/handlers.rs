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
#[derive(Debug, Serialize)]
pub struct UserResponse {
    pub id: i64,
    pub email: String,
    pub username: String,
    pub is_active: bool,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        UserResponse {
            id: u.id,
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

pub async fn refresh(service: Arc<AuthService>, mut fields: Vec<String>) -> Response {
    let token = field(&mut fields);
    respond(
        service
            .refresh(&token)
            .await
            .map(|pair| json(StatusCode::OK, &pair)),
    )
}

pub async fn revoke(service: Arc<AuthService>, mut fields: Vec<String>) -> Response {
    let token = field(&mut fields);
    respond(
        service
            .revoke(&token)
            .await
            .map(|()| StatusCode::NO_CONTENT.into_response()),
    )
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
}

pub fn liveness() -> Response {
    json(StatusCode::OK, &Health { status: "alive" })
}

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

pub fn startup(state: Arc<AppState>) -> Response {
    match state.service() {
        Some(_) => json(StatusCode::OK, &Health { status: "started" }),
        None => from_error(&Error::NotReady("the server is starting")),
    }
}
