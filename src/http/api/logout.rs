//! `POST /api/v1/auth/logout` (Bearer): ends the token's session, every other one, or
//! all of the user's, by an optional `{"scope": "local"|"others"|"global"}`.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::reply::respond;
use crate::error::{Error, Result};
use crate::http::docs::responses::{
    BadRequest, LengthRequired, PayloadTooLarge, Unauthorized, Unavailable, UnsupportedMediaType,
    ValidationFailed,
};
use crate::http::filters::{self, BearerToken, HttpReject, bearer, post};
use crate::http::state::AppState;
use crate::service::sessions::LogoutScope;
use crate::service::{AuthService, RequestContext};

/// `POST /api/v1/auth/logout`: the body is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct LogoutRequest {
    /// `local` (default): this token's session; `others`: every other session of the
    /// user; `global`: all of them.
    #[serde(default)]
    pub scope: Option<LogoutScope>,
}

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "auth" / "logout")
        .and(post(
            filters::with_service(state.clone())
                .and(filters::context(state.clone()))
                .and(bearer())
                .and(optional_json())
                .then(logout),
        ))
        .boxed()
}

/// No body, or a JSON one (415 for another type, 413 beyond the limit).
fn optional_json() -> impl Filter<Extract = (Option<Bytes>,), Error = warp::Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and(filters::limited_body())
        .and_then(|ct: Option<String>, body: Bytes| async move {
            if body.is_empty() {
                return Ok(None);
            }
            let essence = ct
                .as_deref()
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase());
            if essence.as_deref() == Some("application/json") {
                Ok(Some(body))
            } else {
                Err(warp::reject::custom(HttpReject::UnsupportedMediaType(
                    "application/json",
                )))
            }
        })
}

fn parse_scope(body: Option<&[u8]>) -> Result<LogoutScope> {
    let Some(body) = body else {
        return Ok(LogoutScope::default());
    };
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::MalformedBody(format!("not valid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Error::validation("body", "must be a JSON object"));
    };
    match object.get("scope") {
        None | Some(serde_json::Value::Null) => Ok(LogoutScope::default()),
        Some(scope) => serde_json::from_value(scope.clone()).map_err(|_| {
            Error::validation("scope", "must be one of \"local\", \"others\", \"global\"")
        }),
    }
}

/// Logs out of this session, the others, or all.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    operation_id = "logout",
    summary = "Log out (this session, the others, or all)",
    description = "Revokes sessions of the access token's user: `local` (the default, also \
        with no body) its own session, `others` every other one, `global` all of them.",
    request_body(
        content = Option<LogoutRequest>,
        content_type = "application/json",
        description = "Optional: `{\"scope\": \"local\" | \"others\" | \"global\"}`.",
    ),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The sessions are revoked."),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn logout(
    service: Arc<AuthService>,
    ctx: RequestContext,
    token: Option<BearerToken>,
    body: Option<Bytes>,
) -> Response {
    let result = async {
        let token = token.ok_or(Error::MissingToken)?;
        let scope = parse_scope(body.as_deref())?;
        service.logout(&ctx, token.as_str(), scope).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(result.await)
}
