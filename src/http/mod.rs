//! The warp HTTP layer: routes, request parsing and response shaping over
//! [`AuthService`](crate::service::AuthService). Nothing here decides a rule. The map
//! (no two files import each other, in a circle or directly; this file is imported by
//! none):
//!
//! - this file: [`app`] (the whole filter) and [`serve`];
//! - [`admin`]: the admin API (API keys), one file per resource;
//! - [`oidc`]: the OpenID Connect provider (SPEC §18): pages, token endpoint, userinfo;
//! - [`api`]: one file per endpoint — its route, body type, handler and OpenAPI path;
//! - [`docs`]: the OpenAPI document, its shared error responses, Swagger UI and ReDoc;
//! - [`middleware`]: CORS, security headers, request ids, the request's log line
//!   and its metrics;
//! - [`rejection`]: the single `recover` for our refusals and warp's own;
//! - [`filters`]: what endpoints are built from — service, rate limit, typed bodies
//!   (the one place field errors are collected), the bearer token, 405s;
//! - [`rate_limit`]: per-IP limits, the [`Limiter`](rate_limit::Limiter) trait and its
//!   governor implementation; `rate_limit/database.rs`: the shared one, in the database;
//! - [`problem`]: errors as `application/problem+json`;
//! - [`client_ip`]: the client's address and rate-limit key from the peer and `X-Forwarded-For`;
//! - [`listener`]: the connection edge (HTTP/1.1 only, timeouts, bounds, drain), and
//!   the 408 for a body that did not arrive in time;
//! - [`state`]: [`AppState`], what every request shares (its own file, so that no
//!   file below imports this map).
//!
//! `api` and `docs` meet in one direction only: `docs` lists the endpoints, endpoints
//! name `docs::responses`, which names no endpoint.

pub mod admin;
pub mod api;
pub mod client_ip;
pub mod docs;
pub mod filters;
pub mod listener;
pub mod middleware;
pub mod oidc;
pub mod problem;
pub mod rate_limit;
pub mod rejection;
pub mod state;

pub use state::AppState;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use warp::Filter;
use warp::reply::Response;

/// The whole application: routes, rejection handling, security headers, request ids
/// and the per-request log line.
pub fn app(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    // Rejections become problem responses inside the CORS wrapper, so browsers can read
    // them too; the outer `recover` answers the wrapper's own refusals.
    let routes = api::routes(&state)
        .or(oidc::routes(&state))
        .unify()
        .or(docs::routes())
        .unify()
        .recover(rejection::handle)
        .unify()
        .boxed();
    let inner = middleware::with_cors(routes, state.cors())
        .recover(rejection::handle)
        .unify();
    // A request whose body timed out comes back body-less for its 408 (see
    // `listener`): answered first, inside the headers and the log line.
    middleware::observed(
        listener::body_timed_out().or(inner).unify(),
        state.metrics().cloned(),
    )
}

/// Serves `state` on `listener` within `limits` until `shutdown` resolves, then
/// finishes in-flight requests (for at most `limits.shutdown_timeout`) and returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: listener::EdgeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let drain_state = state.clone();
    let shutdown = async move {
        shutdown.await;
        drain_state.start_draining();
        tracing::info!("shutting down: finishing in-flight requests");
    };
    listener::serve(listener, app(state), limits, shutdown).await;
}
