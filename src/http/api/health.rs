//! The probes: `GET /health/liveness`, `/health/readiness`, `/health/startup`. They
//! answer before startup has finished (with 503 where it matters), so they take the
//! state rather than the service.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::reply::json;
use crate::error::Error;
use crate::http::docs::responses::Unavailable;
use crate::http::filters::get;
use crate::http::problem::from_error;
use crate::http::state::AppState;

/// How long readiness waits for the database.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(2);

/// A health probe's answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `alive`, `ready` or `started`, after the probe.
    #[schema(value_type = String, example = "ready")]
    status: &'static str,
}

/// The three probes, each answering GET only.
pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let liveness = warp::path!("health" / "liveness")
        .and(get(warp::any().map(liveness)))
        .boxed();

    let st = state.clone();
    let readiness = warp::path!("health" / "readiness")
        .and(get(warp::any().map(move || st.clone()).then(readiness)))
        .boxed();

    let st = state.clone();
    let startup = warp::path!("health" / "startup")
        .and(get(warp::any().map(move || st.clone()).map(startup)))
        .boxed();

    liveness.or(readiness).unify().or(startup).unify().boxed()
}

/// Liveness: the process is up.
#[utoipa::path(
    get,
    path = "/health/liveness",
    tag = "health",
    operation_id = "liveness",
    summary = "Liveness probe",
    description = "The process is up. Never touches the database.",
    responses((status = 200, description = "Alive.", body = Health,
        example = json!({"status": "alive"}))),
)]
pub fn liveness() -> Response {
    json(StatusCode::OK, &Health { status: "alive" })
}

/// Readiness: the database answers and the schema is current.
#[utoipa::path(
    get,
    path = "/health/readiness",
    tag = "health",
    operation_id = "readiness",
    summary = "Readiness probe",
    description = "The database answers within a short timeout and its schema is current. \
        503 while starting, while the database is unavailable, and while draining on shutdown.",
    responses(
        (status = 200, description = "Ready to serve.", body = Health,
            example = json!({"status": "ready"})),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn readiness(state: Arc<AppState>) -> Response {
    let result = if state.is_draining() {
        Err(Error::NotReady("the server is shutting down"))
    } else {
        match state.service() {
            None => Err(Error::NotReady("the server is starting")),
            Some(service) => service.readiness(READINESS_TIMEOUT).await,
        }
    };
    match result {
        Ok(()) => json(StatusCode::OK, &Health { status: "ready" }),
        Err(e) => from_error(&e),
    }
}

/// Startup: configuration, migrations and key are done.
#[utoipa::path(
    get,
    path = "/health/startup",
    tag = "health",
    operation_id = "startup",
    summary = "Startup probe",
    description = "Startup (configuration, migrations, signing key) has finished.",
    responses(
        (status = 200, description = "Started.", body = Health,
            example = json!({"status": "started"})),
        (status = 503, response = Unavailable),
    ),
)]
pub fn startup(state: Arc<AppState>) -> Response {
    match state.service() {
        Some(_) => json(StatusCode::OK, &Health { status: "started" }),
        None => from_error(&Error::NotReady("the server is starting")),
    }
}
