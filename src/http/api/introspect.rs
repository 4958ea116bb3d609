//! `POST /api/v1/auth/introspect` (RFC 7662): a resource server asks whether a token
//! is live now, with an API key holding `introspect`. Form `token=…`
//! [`token_type_hint`] (the hint is not needed: both kinds are tried, by their shape).

use std::sync::Arc;

use serde::Deserialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::reply::{json, respond};
use crate::domain::Scope;
use crate::http::admin::authorize;
use crate::http::docs::responses::{
    BadRequest, Forbidden, LengthRequired, PayloadTooLarge, Unauthorized, Unavailable,
    UnsupportedMediaType, ValidationFailed,
};
use crate::http::filters::{
    ApiKey, Body, Field, Fields, api_key, context, form, post, with_service,
};
use crate::http::state::AppState;
use crate::service::{AuthService, RequestContext};

/// The introspection request (RFC 7662 §2.1).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct IntrospectionForm {
    /// The access or refresh token to ask about.
    pub token: String,
}

impl Body for IntrospectionForm {
    const FIELDS: &'static [Field] = &[Field::of::<String>("token")];
}

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "auth" / "introspect")
        .and(post(
            with_service(state.clone())
                .and(context(state.clone()))
                .and(api_key())
                .and(form::<IntrospectionForm>())
                .then(introspect),
        ))
        .boxed()
}

/// Whether a token is live.
#[utoipa::path(
    post,
    path = "/api/v1/auth/introspect",
    tag = "auth",
    operation_id = "introspect",
    summary = "Introspect a token (RFC 7662)",
    description = "For resource servers, with an API key holding `introspect`. A live access \
        token: `{active: true, token_type: \"access_token\", sub, username, roles, exp, iat, \
        iss, jti, sid, amr}` (`roles` as they are now); a live refresh token: `{active: true, \
        token_type: \"refresh_token\", sub, username, exp, sid}`; anything else (expired, \
        revoked session, disabled or deleted user, retired key, garbage): exactly \
        `{\"active\": false}`. `token_type_hint` is accepted and not needed.",
    request_body(content = IntrospectionForm, content_type = "application/x-www-form-urlencoded"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The token's state.", body = crate::service::introspect::Introspection),
        (status = 400, response = BadRequest),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn introspect(
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
    body: Fields<IntrospectionForm>,
) -> Response {
    let result = async {
        authorize(&service, key.as_ref(), Scope::Introspect, ctx).await?;
        let body = body?;
        let answer = service.introspect(&body.token).await?;
        Ok(json(StatusCode::OK, &answer))
    };
    respond(result.await)
}
