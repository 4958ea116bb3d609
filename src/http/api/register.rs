//! `POST /api/v1/auth/register`: creates an active user from a JSON body.

use std::sync::Arc;

use serde::Deserialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::reply::{UserResponse, json, respond};
use crate::domain::{Email, Password, Username};
use crate::http::docs::responses::{
    BadRequest, Conflict, LengthRequired, PayloadTooLarge, TooManyRequests, Unavailable,
    UnsupportedMediaType, ValidationFailed,
};
use crate::http::filters::{self, Body, Field, Fields, limited, parsed, post, with_service};
use crate::http::rate_limit::Endpoint;
use crate::http::state::AppState;
use crate::service::{AuthService, RequestContext};

/// `POST /api/v1/auth/register`: the new user.
#[derive(Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// A syntactically valid email address, at most 254 characters, without Unicode
    /// format characters (zero-width, bidirectional controls); stored in NFC, unique,
    /// compared case-insensitively.
    #[serde(deserialize_with = "parsed")]
    #[schema(value_type = String, format = Email, max_length = 254, example = "alice@example.com")]
    pub email: Email,
    /// 3–32 characters of `A-Z a-z 0-9 _ . -`; unique, compared case-insensitively.
    #[serde(deserialize_with = "parsed")]
    #[schema(
        value_type = String,
        min_length = 3,
        max_length = 32,
        pattern = r"^[A-Za-z0-9_.\-]{3,32}$",
        example = "alice"
    )]
    pub username: Username,
    /// At least 8 characters and at most 72 bytes in UTF-8 (bcrypt's limit: longer is
    /// refused, never truncated); no NUL character.
    #[serde(deserialize_with = "parsed")]
    #[schema(
        value_type = String,
        format = Password,
        min_length = 8,
        max_length = 72,
        pattern = r"^[^\x00]*$",
        example = "correct horse battery"
    )]
    pub password: Password,
}

impl Body for RegisterRequest {
    const FIELDS: &'static [Field] = &[
        Field::of::<Email>("email"),
        Field::of::<Username>("username"),
        Field::of::<Password>("password"),
    ];
}

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "auth" / "register")
        .and(post(
            limited(state.clone(), Endpoint::Register)
                .and(with_service(state.clone()))
                .and(filters::context(state.clone()))
                .and(filters::json::<RegisterRequest>())
                .then(register),
        ))
        .boxed()
}

/// Registers a user.
#[utoipa::path(
    post,
    path = "/api/v1/auth/register",
    tag = "auth",
    operation_id = "register",
    summary = "Register a user",
    description = "Creates an active user. Email and username are unique, compared \
        case-insensitively. Every invalid field is reported at once in a 422's `errors`. \
        Rate limited per client IP (default 5 per minute).",
    request_body(
        content = RegisterRequest,
        content_type = "application/json",
        description = "The new user's email, username and password (at most 16 KiB).",
    ),
    responses(
        (status = 201, description = "The user was created.", body = UserResponse,
            links(("login" = (operation_id = "login",
                request_body = json!({
                    "username": "$request.body#/username",
                    "password": "$request.body#/password"
                }),
                description = "Log in as the new user.")))),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn register(
    service: Arc<AuthService>,
    ctx: RequestContext,
    body: Fields<RegisterRequest>,
) -> Response {
    let result = async {
        let body = body?;
        let user = service
            .register(&ctx, body.email, body.username, &body.password)
            .await?;
        Ok(json(StatusCode::CREATED, &UserResponse::from(user)))
    };
    respond(result.await)
}
