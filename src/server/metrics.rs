//! The metrics listener (`metrics.bind`, SPEC §11): a second socket, apart from the
//! API's, that serves `GET /metrics` for as long as the server runs. It is bound
//! together with the API's, so a taken or forbidden address stops startup with one
//! clear line. It is served by the API's own edge (`http::listener`): the same header,
//! body and idle timeouts, HTTP/1.1 only, and the same drain on the same shutdown
//! signal within the same `shutdown_timeout` — an idle or stalled scraper cannot
//! keep the process up — with a small connection cap of its own
//! ([`MAX_CONNECTIONS`]): a scraper needs one or two, and the cap keeps a flood on
//! this port from costing the API its file descriptors.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use warp::Filter;

use crate::config::{EdgeLimits, Settings};
use crate::error::{Error, Result};
use crate::http::{AppState, listener};
use crate::metrics::{self, Metrics};
use crate::service::AuthService;
use crate::store::Store;

/// Open connections to the metrics listener at most; more wait in the backlog.
pub const MAX_CONNECTIONS: usize = 64;

/// The metrics listener's bounds: the API's (`[server]`), with its own connection cap
/// (never more than the API's own).
fn limits(edge: EdgeLimits) -> EdgeLimits {
    EdgeLimits {
        max_connections: MAX_CONNECTIONS.min(edge.max_connections),
        ..edge
    }
}

/// The bound metrics socket, not serving yet.
pub(super) struct MetricsListener {
    listener: TcpListener,
    pub addr: SocketAddr,
}

/// Binds `metrics.bind`, if it is set. It must not be the API's own address: the
/// metrics are never served on the API's port.
pub(super) async fn bind(settings: &Settings) -> Result<Option<MetricsListener>> {
    let Some(addr) = settings.metrics_bind else {
        return Ok(None);
    };
    if addr == settings.bind && addr.port() != 0 {
        return Err(Error::config(format!(
            "metrics.bind ({addr}) is the API's own address (server.bind); \
             give the metrics a port of their own"
        )));
    }
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        Error::Internal(anyhow::anyhow!(
            "cannot listen on {addr} for metrics (metrics.bind): {e}"
        ))
    })?;
    let addr = listener.local_addr().map_err(|e| {
        Error::Internal(anyhow::Error::new(e).context("reading the metrics listener's address"))
    })?;
    Ok(Some(MetricsListener { listener, addr }))
}

/// Plugs in what is read at scrape time (the store's pool, the log writer's drops)
/// and serves `/metrics` within `edge` until `shutdown` resolves, then drains for at
/// most `edge.shutdown_timeout`.
pub(super) fn start(
    bound: MetricsListener,
    metrics: Metrics,
    store: Arc<dyn Store>,
    edge: EdgeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    metrics.set_pool_source(move || store.pool_connections());
    // Without the non-blocking writer (tests, embedders) nothing can be dropped, so
    // its zero is true, not made up.
    metrics.set_log_drop_source(crate::telemetry::dropped_log_lines);
    tracing::info!(addr = %bound.addr, "metrics listening");
    // A body that stalls is a 408 here too; everything else is the exposition's.
    let filter = listener::body_timed_out()
        .or(metrics::exposition(metrics))
        .unify();
    tokio::spawn(listener::serve(
        bound.listener,
        filter,
        limits(edge),
        shutdown,
    ))
}

/// The service counting into the server's metrics, when they are on.
pub(super) fn observed(service: AuthService, state: &AppState) -> AuthService {
    match state.metrics() {
        Some(metrics) => service.with_metrics(metrics.clone()),
        None => service,
    }
}
