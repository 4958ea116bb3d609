//! `POST /api/v1/auth/password` (Bearer): the caller changes their own password.

use std::sync::Arc;

use serde::Deserialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::reply::respond;
use crate::domain::Password;
use crate::error::Error;
use crate::http::docs::responses::{
    BadRequest, LengthRequired, PayloadTooLarge, TooManyRequests, Unauthorized, Unavailable,
    UnsupportedMediaType, ValidationFailed,
};
use crate::http::filters::{
    self, BearerToken, Body, Field, Fields, bearer, limited, parsed, post, with_service,
};
use crate::http::problem::Problem;
use crate::http::rate_limit::Endpoint;
use crate::http::state::AppState;
use crate::service::{AuthService, RequestContext};

/// `POST /api/v1/auth/password`: the current password and the new one.
#[derive(Deserialize, ToSchema)]
pub struct PasswordChange {
    /// The password the account has now.
    #[schema(format = Password, example = "correct horse battery")]
    pub current_password: String,
    /// The new password, by the rules of registration: at least 8 characters, at most
    /// 72 bytes in UTF-8, no NUL character.
    #[serde(deserialize_with = "parsed")]
    #[schema(
        value_type = String,
        format = Password,
        min_length = 8,
        max_length = 72,
        pattern = r"^[^\x00]*$",
        example = "a brand new passphrase"
    )]
    pub new_password: Password,
}

// The current password has no content rule: a wrong one of any shape is the 403.
impl Body for PasswordChange {
    const FIELDS: &'static [Field] = &[
        Field::of::<String>("current_password"),
        Field::of::<Password>("new_password"),
    ];
}

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "auth" / "password")
        .and(post(
            limited(state.clone(), Endpoint::Password)
                .and(with_service(state.clone()))
                .and(filters::context(state.clone()))
                .and(bearer())
                .and(filters::json::<PasswordChange>())
                .then(change_password),
        ))
        .boxed()
}

/// Changes the caller's password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/password",
    tag = "auth",
    operation_id = "change_password",
    summary = "Change my password",
    description = "Checks the current password (a wrong one is 403 and counts towards the \
        account's lockout), sets the new one, and revokes every other session of the user; \
        the caller's own session survives. Rate limited per client IP (default 5 per minute).",
    request_body(
        content = PasswordChange,
        content_type = "application/json",
        description = "The current and the new password (at most 16 KiB).",
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The password is changed; other sessions are revoked."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The current password is not correct.", body = Problem,
            content_type = "application/problem+json"),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn change_password(
    service: Arc<AuthService>,
    ctx: RequestContext,
    token: Option<BearerToken>,
    body: Fields<PasswordChange>,
) -> Response {
    let result = async {
        let token = token.ok_or(Error::MissingToken)?;
        let body = body?;
        service
            .change_password(
                &ctx,
                token.as_str(),
                &body.current_password,
                &body.new_password,
            )
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(result.await)
}
