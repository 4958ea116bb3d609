//! `GET /api/v1/admin/users/{id}/sessions` (`users:read`) and
//! `DELETE /api/v1/admin/users/{id}/sessions` (`sessions:write`).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::{admin, authorize};
use crate::domain::{FamilyId, Scope, UserRef};
use crate::http::api::reply::{json, respond};
use crate::http::docs::responses::{Forbidden, NotFound, Unauthorized, Unavailable};
use crate::http::filters::{ApiKey, method_not_allowed};
use crate::http::state::AppState;
use crate::service::{AuthService, RequestContext};

/// A live session as the admin API shows it: the sessions API's, without `current`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminSession {
    #[schema(value_type = String, format = Uuid)]
    pub id: FamilyId,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let path = warp::path!("api" / "v1" / "admin" / "users" / String / "sessions");
    path.and(warp::get())
        .and(admin(state))
        .then(list)
        .or(path.and(warp::delete()).and(admin(state)).then(revoke_all))
        .unify()
        .or(path
            .and(method_not_allowed(&["GET", "DELETE"]))
            .map(|_: String, refused: Response| refused))
        .unify()
        .boxed()
}

/// A user's live sessions.
#[utoipa::path(
    get,
    path = "/api/v1/admin/users/{id}/sessions",
    tag = "admin",
    operation_id = "admin_list_sessions",
    summary = "List a user's sessions",
    description = "The user's live sessions, newest first. Scope `users:read`.",
    params(("id" = i64, Path, description = "The user id.")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The sessions.", body = [AdminSession]),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list(
    id: String,
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
) -> Response {
    let result = async {
        authorize(&service, key.as_ref(), Scope::UsersRead, ctx).await?;
        let id = super::user_id(&id)?;
        let (_, sessions) = service.user_sessions(&UserRef::Id(id)).await?;
        let sessions: Vec<AdminSession> = sessions
            .into_iter()
            .map(|s| AdminSession {
                id: s.id,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                expires_at: s.expires_at,
                user_agent: s.user_agent,
                ip: s.ip,
            })
            .collect();
        Ok(json(StatusCode::OK, &sessions))
    };
    respond(result.await)
}

/// Revokes every session of a user.
#[utoipa::path(
    delete,
    path = "/api/v1/admin/users/{id}/sessions",
    tag = "admin",
    operation_id = "admin_revoke_sessions",
    summary = "Revoke all of a user's sessions",
    description = "Their refresh and access tokens stop working at once. Scope \
        `sessions:write`.",
    params(("id" = i64, Path, description = "The user id.")),
    security(("api_key" = [])),
    responses(
        (status = 204, description = "All revoked."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn revoke_all(
    id: String,
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
) -> Response {
    let result = async {
        let ctx = authorize(&service, key.as_ref(), Scope::SessionsWrite, ctx).await?;
        let id = super::user_id(&id)?;
        service.revoke_user(&ctx, &UserRef::Id(id)).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    };
    respond(result.await)
}
