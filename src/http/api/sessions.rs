//! `GET /api/v1/auth/sessions` (the caller's live sessions) and
//! `DELETE /api/v1/auth/sessions/{id}` (end one of them).

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::reply::{json, respond};
use crate::domain::FamilyId;
use crate::error::Error;
use crate::http::docs::responses::{Unauthorized, Unavailable};
use crate::http::filters::{self, BearerToken, bearer, get, method_not_allowed, with_service};
use crate::http::problem::Problem;
use crate::http::state::AppState;
use crate::service::sessions::SessionView;
use crate::service::{AuthService, RequestContext};

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let list =
        warp::path!("api" / "v1" / "auth" / "sessions")
            .and(get(with_service(state.clone()).and(bearer()).then(list)));
    let one = warp::path!("api" / "v1" / "auth" / "sessions" / String)
        .and(warp::delete())
        .and(with_service(state.clone()))
        .and(filters::context(state.clone()))
        .and(bearer())
        .then(end)
        .or(warp::path!("api" / "v1" / "auth" / "sessions" / String)
            .and(method_not_allowed(&["DELETE"]))
            .map(|_: String, refused: Response| refused))
        .unify();
    list.or(one).unify().boxed()
}

/// The caller's live sessions.
#[utoipa::path(
    get,
    path = "/api/v1/auth/sessions",
    tag = "auth",
    operation_id = "list_sessions",
    summary = "List my sessions",
    description = "The live sessions (token families) of the access token's user, newest \
        first; `current` marks the one of the presented token. `last_used_at` is the last \
        login or refresh of a session (not every `/me`).",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user's live sessions.", body = [SessionView]),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list(service: Arc<AuthService>, token: Option<BearerToken>) -> Response {
    let result = async {
        let token = token.ok_or(Error::MissingToken)?;
        let sessions = service.my_sessions(token.as_str()).await?;
        Ok(json(StatusCode::OK, &sessions))
    };
    respond(result.await)
}

/// Ends one of the caller's sessions.
#[utoipa::path(
    delete,
    path = "/api/v1/auth/sessions/{id}",
    tag = "auth",
    operation_id = "end_session",
    summary = "End one of my sessions",
    description = "Revokes one session of the access token's user (its refresh and access \
        tokens stop working). Another user's session, an unknown or malformed id, or an \
        ended session is 404.",
    params(("id" = String, Path, format = Uuid, description = "The session id (`sid`).")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session is ended."),
        (status = 401, response = Unauthorized),
        (status = 404, description = "No such live session of this user.", body = Problem,
            content_type = "application/problem+json"),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn end(
    id: String,
    service: Arc<AuthService>,
    ctx: RequestContext,
    token: Option<BearerToken>,
) -> Response {
    let result = async {
        let token = token.ok_or(Error::MissingToken)?;
        // Authenticate first: an unauthenticated caller learns nothing about ids.
        service.authenticate(token.as_str()).await?;
        let id: FamilyId = id.parse().map_err(|_| Error::NotFound("session".into()))?;
        service.end_session(&ctx, token.as_str(), id).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(result.await)
}
