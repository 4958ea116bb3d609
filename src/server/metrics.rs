//! The metrics listener (`metrics.bind`, SPEC §11): a second socket, apart from the
//! API's, that serves `GET /metrics` for as long as the server runs. It is bound
//! together with the API's, so a taken or forbidden address stops startup with one
//! clear line, and it stops on the same shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::http::AppState;
use crate::metrics::{self, Metrics};
use crate::service::AuthService;
use crate::store::Store;

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
/// and serves `/metrics` until `shutdown` resolves.
pub(super) fn start(
    bound: MetricsListener,
    metrics: Metrics,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    metrics.set_pool_source(move || store.pool_connections());
    // Without the non-blocking writer (tests, embedders) nothing can be dropped, so
    // its zero is true, not made up.
    metrics.set_log_drop_source(crate::telemetry::dropped_log_lines);
    tracing::info!(addr = %bound.addr, "metrics listening");
    tokio::spawn(metrics::serve_metrics(bound.listener, metrics, shutdown))
}

/// The service counting into the server's metrics, when they are on.
pub(super) fn observed(service: AuthService, state: &AppState) -> AuthService {
    match state.metrics() {
        Some(metrics) => service.with_metrics(metrics.clone()),
        None => service,
    }
}
