//! `POST /api/v1/auth/token`: logs in with the OAuth2 password form.

use std::sync::Arc;

use serde::Deserialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::reply::{json, respond};
use crate::http::docs::responses::{
    BadCredentials, BadRequest, LengthRequired, PayloadTooLarge, TooManyRequests, Unavailable,
    UnsupportedMediaType, ValidationFailed,
};
use crate::http::filters::{self, Body, Field, Fields, limited, post, with_service};
use crate::http::rate_limit::Endpoint;
use crate::http::state::AppState;
use crate::service::{AuthService, RequestContext, TokenPair};

/// `POST /api/v1/auth/token`: the OAuth2 password form.
#[derive(Deserialize, ToSchema)]
pub struct LoginForm {
    /// The username or the email address, matched case-insensitively.
    #[schema(example = "alice")]
    pub username: String,
    /// The password.
    #[schema(format = Password, example = "correct horse battery")]
    pub password: String,
}

// Neither field has a content rule: a value registration would refuse is simply the
// generic 401, like every other failed login.
impl Body for LoginForm {
    const FIELDS: &'static [Field] = &[
        Field::of::<String>("username"),
        Field::of::<String>("password"),
    ];
}

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "auth" / "token")
        .and(post(
            limited(state.clone(), Endpoint::Login)
                .and(with_service(state.clone()))
                .and(filters::context(state.clone()))
                .and(filters::form::<LoginForm>())
                .then(login),
        ))
        .boxed()
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
        content = LoginForm,
        content_type = "application/x-www-form-urlencoded",
        description = "`username` and `password`, form-encoded (at most 16 KiB).",
    ),
    responses(
        (status = 200, description = "Logged in: a new session (token family).", body = TokenPair,
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
        (status = 401, response = BadCredentials),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn login(
    service: Arc<AuthService>,
    ctx: RequestContext,
    form: Fields<LoginForm>,
) -> Response {
    let result = async {
        let form = form?;
        let pair = service.login(&ctx, &form.username, &form.password).await?;
        Ok(json(StatusCode::OK, &pair))
    };
    respond(result.await)
}
