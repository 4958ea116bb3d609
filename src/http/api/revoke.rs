//! `POST /api/v1/auth/revoke`: logs out, revoking a token's whole session. Two forms:
//! the original JSON body (`{"refresh_token"}`, 204) and RFC 7009's
//! `application/x-www-form-urlencoded` one (`token=…`, optional `token_type_hint`;
//! 200 with an empty body, RFC 7009 §2.2).
//!
//! Given an access token, the RFC 7009 form revokes its session too
//! ([`AuthService::revoke_token`]). `token_type_hint` is only a hint: the token's
//! shape decides.

use std::sync::Arc;

use serde::Deserialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::oauth;
use super::refresh::RefreshRequest;
use super::reply::respond;
use crate::http::docs::responses::{
    BadRequest, LengthRequired, PayloadTooLarge, Unavailable, UnsupportedMediaType,
    ValidationFailed,
};
use crate::http::filters::{self, Body, Field, Fields, post, with_service};
use crate::http::state::AppState;
use crate::service::{AuthService, RequestContext};

/// `POST /api/v1/auth/revoke` as RFC 7009 says: the token to revoke. Its optional
/// `token_type_hint` (`refresh_token` or `access_token`) is accepted and not needed.
#[derive(Deserialize, ToSchema)]
pub struct RevocationForm {
    /// A refresh token, or an access token: either ends its whole session.
    #[schema(example = "q4Xq3mJ2bqVn7ZkQyR0sT1uV2wX3yZ4a5B6c7D8e9F0")]
    pub token: String,
}

impl Body for RevocationForm {
    /// Any string: an unknown token is revoked already (200), not a 422.
    const FIELDS: &'static [Field] = &[Field::of::<String>("token")];
}

/// Not rate limited: only register, token and refresh are (SPEC §6). A JSON body or a
/// form, by its `Content-Type` (415 for anything else).
pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    const FORM: &str = "application/x-www-form-urlencoded";
    // By `Content-Type`, so that only one kind of body is tried (and refused).
    let json = filters::content_type_is(FORM, false)
        .and(with_service(state.clone()))
        .and(filters::context(state.clone()))
        .and(filters::json::<RefreshRequest>())
        .then(revoke);
    let form = filters::content_type_is(FORM, true)
        .and(with_service(state.clone()))
        .and(filters::context(state.clone()))
        .and(filters::form::<RevocationForm>())
        .then(revoke_form);
    warp::path!("api" / "v1" / "auth" / "revoke")
        .and(oauth::endpoint(post(json.or(form).unify())))
        .boxed()
}

/// Logs out: revokes a token's whole session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/revoke",
    tag = "auth",
    operation_id = "revoke",
    summary = "Log out (revoke a session)",
    description = "Revokes the session (token family) of the presented token, so its \
        refresh and access tokens stop working. Unknown or already revoked tokens are \
        answered the same way, so nothing leaks. Two forms: the JSON body \
        `{\"refresh_token\"}` → 204; RFC 7009's form (`token=…`, optional \
        `token_type_hint`) → 200 with an empty body. The form also takes an access token, \
        and ends its session. Error bodies carry RFC 6749 §5.2's `error` member \
        (`invalid_request`).",
    request_body(
        description = "The token whose session ends (at most 16 KiB).",
        content(
            (RefreshRequest = "application/json"),
            (RevocationForm = "application/x-www-form-urlencoded"),
        ),
    ),
    responses(
        (status = 200, description = "RFC 7009 form: the session is revoked (or never \
            existed). Empty body."),
        (status = 204, description = "JSON form: the session is revoked (or never existed)."),
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

/// RFC 7009's form: 200 with an empty body, for any token.
async fn revoke_form(
    service: Arc<AuthService>,
    ctx: RequestContext,
    form: Fields<RevocationForm>,
) -> Response {
    let result = async {
        service.revoke_token(&ctx, &form?.token).await?;
        Ok(StatusCode::OK.into_response())
    };
    respond(result.await)
}
