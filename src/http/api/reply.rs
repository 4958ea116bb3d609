//! What the endpoints answer with: JSON replies, the `no-store` every answer under
//! `/api/v1/auth` carries, and the public view of a user.

use serde::Serialize;
use warp::http::StatusCode;
use warp::http::header::{CACHE_CONTROL, HeaderValue, PRAGMA};
use warp::reply::{Reply, Response};

use crate::error::Result;
use crate::http::problem::from_error;
use crate::store::User;

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
    /// Whether the account proved it receives mail at its address (SPEC §13).
    #[schema(example = false)]
    pub email_verified: bool,
    /// Whether the account logs in with a second factor (TOTP, SPEC §14).
    #[schema(example = false)]
    pub mfa_enabled: bool,
    /// The user's roles now, sorted (SPEC §15).
    #[schema(example = json!(["admin"]))]
    pub roles: Vec<String>,
}

impl From<User> for UserResponse {
    fn from(u: User) -> Self {
        UserResponse {
            id: u.id.0,
            email: u.email,
            username: u.username,
            is_active: u.is_active,
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            roles: u.roles,
        }
    }
}

/// An auth endpoint's answer: the reply, or its error as a problem; never cached.
pub fn respond(result: Result<Response>) -> Response {
    let mut resp = result.unwrap_or_else(|e| from_error(&e));
    // Nothing under /api/v1/auth may be cached: it is all credentials and identity.
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut()
        .insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// `body` as JSON with `status`.
pub fn json(status: StatusCode, body: &impl Serialize) -> Response {
    warp::reply::with_status(warp::reply::json(body), status).into_response()
}
