//! `GET /api/v1/admin/audit?user=&kind=&since=&limit=` (`audit:read`): `audit list`'s
//! JSON.

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{admin, authorize, query_value};
use crate::domain::{Scope, UserRef};
use crate::error::{Error, FieldError};
use crate::http::api::reply::{json, respond};
use crate::http::docs::responses::{Forbidden, Unauthorized, Unavailable, ValidationFailed};
use crate::http::filters::{ApiKey, get, query_pairs};
use crate::http::state::AppState;
use crate::service::audit::AuditQuery;
use crate::service::{AuditKind, AuthService, RequestContext};

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!("api" / "v1" / "admin" / "audit")
        .and(get(admin(state).and(query_pairs()).then(list)))
        .boxed()
}

/// Audit events, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/admin/audit",
    tag = "admin",
    operation_id = "admin_audit",
    summary = "Read the audit log",
    description = "As `authctl audit list --output json`: `[{at, kind, user_id, username, \
        family_id, ip, request_id, detail}]`, newest first. Scope `audit:read`.",
    params(
        ("user" = Option<String>, Query, description = "A user id, email or username."),
        ("kind" = Option<String>, Query, description = "An event kind, e.g. `login_failed`."),
        ("since" = Option<String>, Query, description = "A duration, e.g. `15m`, `24h`."),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000000),
    ),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The events.", body = Object),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = ValidationFailed),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn list(
    service: Arc<AuthService>,
    ctx: RequestContext,
    key: Option<ApiKey>,
    query: Vec<(String, String)>,
) -> Response {
    let result = async {
        authorize(&service, key.as_ref(), Scope::AuditRead, ctx).await?;
        let mut errors = Vec::new();
        let user = query_value(&query, "user").and_then(|raw| {
            raw.parse::<UserRef>()
                .map_err(|m| errors.push(FieldError::new("user", m)))
                .ok()
        });
        let kind = query_value(&query, "kind").and_then(|raw| {
            <AuditKind as clap::ValueEnum>::from_str(&raw, false)
                .map_err(|_| errors.push(FieldError::new("kind", "is not an audit event kind")))
                .ok()
        });
        let since = query_value(&query, "since").and_then(|raw| {
            crate::config::parse_duration(&raw)
                .map_err(|m| errors.push(FieldError::new("since", m)))
                .ok()
        });
        let limit = match query_value(&query, "limit") {
            None => 100,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=1_000_000).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                        "limit",
                        "must be a number from 1 to 1000000",
                    ));
                    0
                }
            },
        };
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let events = service
            .audit_list(&AuditQuery {
                user,
                kind,
                since,
                limit,
            })
            .await?;
        Ok(json(StatusCode::OK, &events))
    };
    respond(result.await)
}
