//! `GET /api/v1/auth/me`: the user an access token belongs to.

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::reply::{UserResponse, json, respond};
use crate::error::Error;
use crate::http::docs::responses::{Unauthorized, Unavailable};
use crate::http::filters::{BearerToken, bearer, get, with_service};
use crate::http::state::AppState;
use crate::service::AuthService;

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "auth" / "me")
        .and(get(with_service(state.clone()).and(bearer()).then(me)))
        .boxed()
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
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn me(service: Arc<AuthService>, token: Option<BearerToken>) -> Response {
    let result = match token {
        Some(t) => service.authenticate(t.as_str()).await,
        None => Err(Error::MissingToken),
    };
    respond(result.map(|u| json(StatusCode::OK, &UserResponse::from(u))))
}
