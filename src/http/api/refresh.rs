//! `POST /api/v1/auth/refresh`: rotates a refresh token. Its body, [`RefreshRequest`],
//! is also `/revoke`'s.

use std::sync::Arc;

use serde::Deserialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::oauth;
use super::reply::{json, respond};
use crate::http::docs::responses::{
    BadRequest, InvalidRefreshToken, LengthRequired, PayloadTooLarge, TooManyRequests, Unavailable,
    UnsupportedMediaType, ValidationFailed,
};
use crate::http::filters::{self, Body, Field, Fields, limited, post, with_service};
use crate::http::rate_limit::Endpoint;
use crate::http::state::AppState;
use crate::service::{AuthService, RequestContext, TokenPair};

/// `POST /api/v1/auth/refresh` and `/revoke`: a refresh token.
#[derive(Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// A refresh token from `/api/v1/auth/token` or `/api/v1/auth/refresh`.
    #[schema(example = "q4Xq3mJ2bqVn7ZkQyR0sT1uV2wX3yZ4a5B6c7D8e9F0")]
    pub refresh_token: String,
}

impl Body for RefreshRequest {
    /// Any string: an unknown refresh token is a 401, not a 422.
    const FIELDS: &'static [Field] = &[Field::of::<String>("refresh_token")];
}

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "auth" / "refresh")
        .and(oauth::endpoint(post(
            limited(state.clone(), Endpoint::Refresh)
                .and(with_service(state.clone()))
                .and(filters::context(state.clone()))
                .and(filters::json::<RefreshRequest>())
                .then(refresh),
        )))
        .boxed()
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
        whole session (theft detection). Rate limited per client IP (default 20 per minute). \
        The token endpoint's refresh grant (`grant_type=refresh_token`) does the same. \
        Error bodies carry RFC 6749 §5.2's `error` member (`invalid_grant` on 401).",
    request_body(
        content = RefreshRequest,
        content_type = "application/json",
        description = "The refresh token to rotate (at most 16 KiB).",
    ),
    responses(
        (status = 200, description = "The new token pair.", body = TokenPair,
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
        (status = 400, response = BadRequest),
        (status = 401, response = InvalidRefreshToken),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn refresh(
    service: Arc<AuthService>,
    ctx: RequestContext,
    body: Fields<RefreshRequest>,
) -> Response {
    let result = async {
        let pair = service.refresh(&ctx, &body?.refresh_token).await?;
        Ok(json(StatusCode::OK, &pair))
    };
    respond(result.await)
}
