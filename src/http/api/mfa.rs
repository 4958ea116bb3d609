//! The caller's second factor (SPEC §14), all Bearer, on the password API's rate
//! limit: `POST /api/v1/auth/mfa/totp` (enrol, with the current password),
//! `POST /api/v1/auth/mfa/totp/confirm` (turn it on with a code; recovery codes),
//! `POST /api/v1/auth/mfa/recovery-codes` (a new set) and
//! `DELETE /api/v1/auth/mfa/totp` (turn it off). The login's second step is a grant
//! of the token endpoint ([`super::token`]).

use std::sync::Arc;

use serde::Deserialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::reply::{json, respond};
use crate::error::Error;
use crate::http::docs::responses::{
    BadRequest, LengthRequired, PayloadTooLarge, TooManyRequests, Unauthorized, Unavailable,
    UnsupportedMediaType, ValidationFailed,
};
use crate::http::filters::{
    self, BearerToken, Body, Field, Fields, bearer, limited, method_not_allowed, post, with_service,
};
use crate::http::problem::Problem;
use crate::http::rate_limit::Endpoint;
use crate::http::state::AppState;
use crate::service::mfa::{Enrolment, RecoveryCodes};
use crate::service::{AuthService, RequestContext};

/// `POST /api/v1/auth/mfa/totp`: the current password.
#[derive(Deserialize, ToSchema)]
pub struct TotpEnrol {
    /// The password the account has now.
    #[schema(format = Password, example = "correct horse battery")]
    pub current_password: String,
}

impl Body for TotpEnrol {
    const FIELDS: &'static [Field] = &[Field::of::<String>("current_password")];
}

/// A second-factor code: a TOTP code (6 digits) or, where taken, a recovery code.
#[derive(Deserialize, ToSchema)]
pub struct MfaCode {
    /// The code.
    #[schema(example = "123456")]
    pub code: String,
}

// Any string: a wrong code is the endpoint's 403 (confirm checks the shape itself).
impl Body for MfaCode {
    const FIELDS: &'static [Field] = &[Field::of::<String>("code")];
}

/// What every endpoint here starts with: its rate limit, the service, the request's
/// context, the Bearer token and a JSON body.
fn with_body<T: Body>(
    state: Arc<AppState>,
) -> impl Filter<
    Extract = (
        Arc<AuthService>,
        RequestContext,
        Option<BearerToken>,
        Fields<T>,
    ),
    Error = warp::Rejection,
> + Clone {
    limited(state.clone(), Endpoint::Password)
        .and(with_service(state.clone()))
        .and(filters::context(state))
        .and(bearer())
        .and(filters::json::<T>())
}

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let totp = warp::path!("api" / "v1" / "auth" / "mfa" / "totp").and(
        warp::post()
            .and(with_body::<TotpEnrol>(state.clone()).then(enrol))
            .or(warp::delete().and(with_body::<MfaCode>(state.clone()).then(disable)))
            .unify()
            .or(method_not_allowed(&["POST", "DELETE"]))
            .unify(),
    );
    let confirm = warp::path!("api" / "v1" / "auth" / "mfa" / "totp" / "confirm")
        .and(post(with_body::<MfaCode>(state.clone()).then(confirm)));
    let recovery = warp::path!("api" / "v1" / "auth" / "mfa" / "recovery-codes").and(post(
        with_body::<MfaCode>(state.clone()).then(recovery_codes),
    ));
    totp.or(confirm).unify().or(recovery).unify().boxed()
}

/// Starts a TOTP enrolment.
#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa/totp",
    tag = "mfa",
    operation_id = "enrol_totp",
    summary = "Start a TOTP enrolment",
    description = "Checks the current password (a wrong one is 403 and counts towards the \
        account's lockout) and answers a new TOTP secret (RFC 6238: SHA-1, 6 digits, 30 s), \
        also as an `otpauth://` URI for an authenticator app. The enrolment is pending — \
        logins are unchanged — until it is confirmed with a code; a new enrolment replaces \
        a pending one. The secret is shown only here. Rate limited per client IP (the \
        password API's quota, default 5 per minute).",
    request_body(content = TotpEnrol, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The pending secret.", body = Enrolment,
            headers(("Cache-Control" = String, description = "`no-store`."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The current password is not correct.", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "TOTP is already on for this account.", body = Problem,
            content_type = "application/problem+json"),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn enrol(
    service: Arc<AuthService>,
    ctx: RequestContext,
    token: Option<BearerToken>,
    body: Fields<TotpEnrol>,
) -> Response {
    let result = async {
        let token = token.ok_or(Error::MissingToken)?;
        let body = body?;
        let enrolment = service
            .enrol_totp(&ctx, token.as_str(), &body.current_password)
            .await?;
        Ok(json(StatusCode::OK, &enrolment))
    };
    respond(result.await)
}

/// Confirms the pending enrolment: TOTP is on.
#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa/totp/confirm",
    tag = "mfa",
    operation_id = "confirm_totp",
    summary = "Turn TOTP on",
    description = "A code of the pending secret turns TOTP on and answers 10 recovery codes, \
        shown only this once. The step of that code counts as used (it cannot log in). Every \
        other session of the account is revoked (they were made with the password alone); \
        the caller's own survives.",
    request_body(content = MfaCode, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "TOTP is on; the first recovery codes.", body = RecoveryCodes,
            headers(("Cache-Control" = String, description = "`no-store`."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The code is not correct.", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "No enrolment is pending, or TOTP is already on.",
            body = Problem, content_type = "application/problem+json"),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn confirm(
    service: Arc<AuthService>,
    ctx: RequestContext,
    token: Option<BearerToken>,
    body: Fields<MfaCode>,
) -> Response {
    let result = async {
        let token = token.ok_or(Error::MissingToken)?;
        let body = body?;
        let codes = service
            .confirm_totp(&ctx, token.as_str(), &body.code)
            .await?;
        Ok(json(StatusCode::OK, &codes))
    };
    respond(result.await)
}

/// A new set of recovery codes.
#[utoipa::path(
    post,
    path = "/api/v1/auth/mfa/recovery-codes",
    tag = "mfa",
    operation_id = "regenerate_recovery_codes",
    summary = "New recovery codes",
    description = "A TOTP code (a wrong one is 403 and counts towards the lockout) gives 10 \
        new recovery codes; the old set is void.",
    request_body(content = MfaCode, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The new set.", body = RecoveryCodes,
            headers(("Cache-Control" = String, description = "`no-store`."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The code is not correct.", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "TOTP is not on.", body = Problem,
            content_type = "application/problem+json"),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn recovery_codes(
    service: Arc<AuthService>,
    ctx: RequestContext,
    token: Option<BearerToken>,
    body: Fields<MfaCode>,
) -> Response {
    let result = async {
        let token = token.ok_or(Error::MissingToken)?;
        let body = body?;
        let codes = service
            .regenerate_recovery_codes(&ctx, token.as_str(), &body.code)
            .await?;
        Ok(json(StatusCode::OK, &codes))
    };
    respond(result.await)
}

/// Turns TOTP off.
#[utoipa::path(
    delete,
    path = "/api/v1/auth/mfa/totp",
    tag = "mfa",
    operation_id = "disable_totp",
    summary = "Turn TOTP off",
    description = "A TOTP code or a recovery code (a wrong one is 403 and counts towards the \
        lockout) turns TOTP off and voids the recovery codes.",
    request_body(content = MfaCode, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "TOTP is off."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, description = "The code is not correct.", body = Problem,
            content_type = "application/problem+json"),
        (status = 409, description = "TOTP is not on.", body = Problem,
            content_type = "application/problem+json"),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn disable(
    service: Arc<AuthService>,
    ctx: RequestContext,
    token: Option<BearerToken>,
    body: Fields<MfaCode>,
) -> Response {
    let result = async {
        let token = token.ok_or(Error::MissingToken)?;
        let body = body?;
        service
            .disable_totp(&ctx, token.as_str(), &body.code)
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(result.await)
}
