//! Email verification and password recovery (SPEC §13):
//! `POST /api/v1/auth/verify/request`, `/verify`, `/recover` and `/reset`.
//!
//! The two requests answer 202 with one fixed body whatever the address (unknown,
//! verified, inactive or not), after the same one transaction (see `service::email`),
//! and share the per-IP `email` bucket. The two uses take the token in a POST body:
//! a link in a message only leads to the application's page, which POSTs it, so a
//! mail scanner that fetches links spends nothing.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::reply::{json, respond};
use crate::domain::{Email, Password};
use crate::error::Error;
use crate::http::docs::responses::{
    BadRequest, LengthRequired, PayloadTooLarge, TooManyRequests, Unavailable,
    UnsupportedMediaType, ValidationFailed,
};
use crate::http::filters::{self, Body, Field, Fields, limited, parsed, post, with_service};
use crate::http::problem::Problem;
use crate::http::rate_limit::Endpoint;
use crate::http::state::AppState;
use crate::service::{AuthService, RequestContext};
use crate::store::email::Purpose;

/// `POST /verify/request` and `/recover`: the address a message is asked for.
#[derive(Deserialize, ToSchema)]
pub struct EmailRequest {
    /// The account's email address (any case; compared in NFC).
    #[serde(deserialize_with = "parsed")]
    #[schema(value_type = String, format = Email, max_length = 254, example = "alice@example.com")]
    pub email: Email,
}

impl Body for EmailRequest {
    const FIELDS: &'static [Field] = &[Field::of::<Email>("email")];
}

/// `POST /verify`: a verification token from a message.
#[derive(Deserialize, ToSchema)]
pub struct VerifyRequest {
    /// The token (43 characters of base64url) the message carried.
    #[schema(example = "q4Xq3mJ2bqVn7ZkQyR0sT1uV2wX3yZ4a5B6c7D8e9F0")]
    pub token: String,
}

impl Body for VerifyRequest {
    const FIELDS: &'static [Field] = &[Field::of::<String>("token")];
}

/// `POST /reset`: a reset token and the new password.
#[derive(Deserialize, ToSchema)]
pub struct ResetRequest {
    /// The token (43 characters of base64url) the reset message or `user reset-link`
    /// gave.
    #[schema(example = "q4Xq3mJ2bqVn7ZkQyR0sT1uV2wX3yZ4a5B6c7D8e9F0")]
    pub token: String,
    /// The new password, by the rules of registration.
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

impl Body for ResetRequest {
    const FIELDS: &'static [Field] = &[
        Field::of::<String>("token"),
        Field::of::<Password>("new_password"),
    ];
}

/// The one answer of `/verify/request` and `/recover`, whatever the address.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    #[schema(
        example = "If the address belongs to an account that can use it, a message is on its way."
    )]
    pub detail: &'static str,
}

const ACCEPTED: Accepted = Accepted {
    detail: "If the address belongs to an account that can use it, a message is on its way.",
};

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let request = |purpose: Purpose| {
        limited(state.clone(), Endpoint::Email)
            .and(with_service(state.clone()))
            .and(filters::context(state.clone()))
            .and(filters::json::<EmailRequest>())
            .then(move |service, ctx, body| ask(service, ctx, body, purpose))
    };
    let verify_request = warp::path!("api" / "v1" / "auth" / "verify" / "request")
        .and(post(request(Purpose::Verify)));
    let recover = warp::path!("api" / "v1" / "auth" / "recover").and(post(request(Purpose::Reset)));
    let verify = warp::path!("api" / "v1" / "auth" / "verify").and(post(
        with_service(state.clone())
            .and(filters::context(state.clone()))
            .and(filters::json::<VerifyRequest>())
            .then(verify),
    ));
    let reset = warp::path!("api" / "v1" / "auth" / "reset").and(post(
        with_service(state.clone())
            .and(filters::context(state.clone()))
            .and(filters::json::<ResetRequest>())
            .then(reset),
    ));
    verify_request
        .or(recover)
        .unify()
        .or(verify)
        .unify()
        .or(reset)
        .unify()
        .boxed()
}

async fn ask(
    service: Arc<AuthService>,
    ctx: RequestContext,
    body: Fields<EmailRequest>,
    purpose: Purpose,
) -> Response {
    let result = async {
        if !service.email_enabled() {
            return Err(Error::NotConfigured("email is not configured"));
        }
        let body = body?;
        service.request_email(&ctx, purpose, &body.email).await?;
        Ok(json(StatusCode::ACCEPTED, &ACCEPTED))
    };
    respond(result.await)
}

/// Asks for a verification message.
#[utoipa::path(
    post,
    path = "/api/v1/auth/verify/request",
    tag = "email",
    operation_id = "request_verification",
    summary = "Ask for a verification message",
    description = "Queues a message with a verification token for an active account whose \
        email is not verified yet; delivered by a background sender, never inside the request. \
        The answer is the same 202 for any well-formed address (unknown, verified or inactive \
        accounts included). At most one message per account per 60 s. Shares the per-IP \
        `email_per_minute` limit with `/recover`.",
    request_body(content = EmailRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted (whether or not a message was queued).", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 501, description = "Email is not configured.", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn request_verification() {}

/// Asks for a password reset message.
#[utoipa::path(
    post,
    path = "/api/v1/auth/recover",
    tag = "email",
    operation_id = "recover",
    summary = "Forgot password: ask for a reset message",
    description = "Queues a message with a reset token for an active account; delivered by a \
        background sender, never inside the request. The answer is the same 202 for any \
        well-formed address. At most one message per account per 60 s; a newer reset token \
        voids the older ones. Shares the per-IP `email_per_minute` limit with \
        `/verify/request`.",
    request_body(content = EmailRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted (whether or not a message was queued).", body = Accepted),
        (status = 400, response = BadRequest),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 501, description = "Email is not configured.", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn recover() {}

/// Verifies an email address with its token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/verify",
    tag = "email",
    operation_id = "verify_email",
    summary = "Verify an email address",
    description = "Spends a verification token: the account's email counts as verified. \
        An unknown, spent, expired or reset token is 400. The application's page POSTs \
        the token; fetching a link never spends one.",
    request_body(content = VerifyRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "The email address is verified."),
        (status = 400, description = "Malformed body, or the token is invalid, expired or \
            already used.", body = Problem, content_type = "application/problem+json"),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn verify(
    service: Arc<AuthService>,
    ctx: RequestContext,
    body: Fields<VerifyRequest>,
) -> Response {
    let result = async {
        let body = body?;
        service.verify_email(&ctx, &body.token).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(result.await)
}

/// Sets a new password with a reset token.
#[utoipa::path(
    post,
    path = "/api/v1/auth/reset",
    tag = "email",
    operation_id = "reset_password",
    summary = "Reset the password with a reset token",
    description = "Spends a reset token (once, even under concurrency): sets the new password, \
        revokes every session of the account, clears its lockout and marks its email \
        verified. Issues no tokens: log in afterwards (with the second factor, if the \
        account has one). A token dies when the account's password, email or state changes, \
        and when a newer one is issued.",
    request_body(content = ResetRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "The password is set; every session is revoked."),
        (status = 400, description = "Malformed body, or the token is invalid, expired or \
            already used.", body = Problem, content_type = "application/problem+json"),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn reset(
    service: Arc<AuthService>,
    ctx: RequestContext,
    body: Fields<ResetRequest>,
) -> Response {
    let result = async {
        let body = body?;
        service
            .reset_password(&ctx, &body.token, &body.new_password)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(result.await)
}
