//! `POST /api/v1/auth/revoke`: logs out, revoking a refresh token's whole session.

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::refresh::RefreshRequest;
use super::reply::respond;
use crate::http::docs::responses::{
    BadRequest, LengthRequired, PayloadTooLarge, Unavailable, UnsupportedMediaType,
    ValidationFailed,
};
use crate::http::filters::{self, Fields, post, with_service};
use crate::http::state::AppState;
use crate::service::{AuthService, RequestContext};

/// Not rate limited: only register, token and refresh are (SPEC §6).
pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "auth" / "revoke")
        .and(post(
            with_service(state.clone())
                .and(filters::context(state.clone()))
                .and(filters::json::<RefreshRequest>())
                .then(revoke),
        ))
        .boxed()
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
        content = RefreshRequest,
        content_type = "application/json",
        description = "The refresh token whose session ends (at most 16 KiB).",
    ),
    responses(
        (status = 204, description = "The session is revoked (or never existed)."),
        (status = 400, response = BadRequest),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn revoke(
    service: Arc<AuthService>,
    ctx: RequestContext,
    body: Fields<RefreshRequest>,
) -> Response {
    let result = async {
        service.revoke(&ctx, &body?.refresh_token).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(result.await)
}
