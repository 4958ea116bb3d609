//! `serve`: bind first (so probes can answer), then start up in the background —
//! connect, migrate, load the key — and only then open the API. Shutdown on a signal
//! drains in-flight requests and closes the pool. [`housekeeping`] runs beside it. With
//! `metrics.bind`, a second listener serves `/metrics` (`metrics.rs`) over the same
//! lifetime, through the same edge and within the same shutdown deadline.

mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::http::{self, AppState};
use crate::service::AuthService;
use crate::store::{self, Store};

pub mod housekeeping;
pub mod mailer;

/// Open connections to the metrics listener at most (`metrics.bind`, SPEC §11).
pub use metrics::MAX_CONNECTIONS as METRICS_MAX_CONNECTIONS;

/// How long startup keeps retrying a database that does not answer.
pub const STARTUP_DB_PATIENCE: Duration = Duration::from_secs(60);
const IDLE_SWEEP_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub migrate: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions { migrate: true }
    }
}

/// A server running in this process (for `serve` and for tests).
pub struct Running {
    pub addr: SocketAddr,
    /// Where `/metrics` listens, when `metrics.bind` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Running {
    /// Signals shutdown and waits until in-flight requests are done and the pool is closed.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until the server stops (by its shutdown signal or a failed startup).
    pub async fn wait(self) -> Result<()> {
        self.task
            .await
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("server task failed")))?
    }

    /// A handle that stops the server when sent `true`.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Binds `settings.bind` (port 0 picks a free port) and starts serving. Returns once
/// the socket is bound; startup continues in the background.
pub async fn spawn(settings: Settings, options: ServeOptions) -> Result<Running> {
    let listener = TcpListener::bind(settings.bind)
        .await
        .map_err(|e| Error::Internal(anyhow::anyhow!("cannot listen on {}: {e}", settings.bind)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("reading the bound address")))?;
    let metrics_listener = metrics::bind(&settings).await?;
    let metrics_addr = metrics_listener.as_ref().map(|m| m.addr);
    let state = AppState::new(&settings);
    let store = store::connect(&settings)?;
    let (stop, stop_rx) = watch::channel(false);
    let metrics_task = match (metrics_listener, state.metrics()) {
        (Some(bound), Some(m)) => Some(metrics::start(
            bound,
            m.clone(),
            store.clone(),
            settings.edge,
            stopped(stop_rx.clone()),
        )),
        _ => None,
    };
    let server = run(
        listener,
        state.clone(),
        store,
        settings,
        options,
        stop.clone(),
        stop_rx,
    );
    let stop_metrics = stop.clone();
    let task = tokio::spawn(async move {
        let result = server.await;
        // Whichever way the server ended, the metrics listener ends with it.
        let _ = stop_metrics.send(true);
        if let Some(metrics) = metrics_task {
            let _ = metrics.await;
        }
        result
    });
    Ok(Running {
        addr,
        metrics_addr,
        state,
        stop,
        task,
    })
}

async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    store: Arc<dyn Store>,
    settings: Settings,
    options: ServeOptions,
    stop: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
) -> Result<()> {
    let started = Instant::now();
    tracing::info!(
        addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        database = %settings.database_url,
        "listening"
    );
    let server = tokio::spawn(http::serve(
        listener,
        state.clone(),
        settings.edge,
        stopped(stop_rx.clone()),
    ));

    let startup = tokio::select! {
        r = start_up(store.clone(), &settings, &options, &state) => r,
        () = stopped(stop_rx.clone()) => Err(Error::NotReady("stopped during startup")),
    };
    let result = match startup {
        Ok(service) => {
            state.limits.attach_store(store.clone());
            state.set_ready(service.clone());
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                backend = store.backend(),
                "ready"
            );
            let maintenance = tokio::spawn(maintain(service, state.clone()));
            let _ = server.await;
            maintenance.abort();
            Ok(())
        }
        Err(Error::NotReady(_)) => {
            let _ = server.await;
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "startup failed");
            let _ = stop.send(true);
            let _ = server.await;
            Err(e)
        }
    };
    store.close().await;
    tracing::info!("stopped");
    result
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Connects (retrying while the database is unreachable), migrates or waits for the
/// schema, and builds the service.
async fn start_up(
    store: Arc<dyn Store>,
    settings: &Settings,
    options: &ServeOptions,
    state: &AppState,
) -> Result<Arc<AuthService>> {
    let deadline = Instant::now() + STARTUP_DB_PATIENCE;
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = async {
            if options.migrate {
                let applied = store.migrate().await?.applied;
                if !applied.is_empty() {
                    tracing::info!(?applied, "migrations applied");
                }
            } else if !store.schema_is_current().await? {
                return Err(Error::schema_not_current());
            }
            crate::service::keys::provision(store.as_ref(), &settings.auth).await?;
            AuthService::new(store.clone(), &settings.auth).await
        };
        match attempt.await {
            Ok(service) => return Ok(Arc::new(metrics::observed(service, state))),
            Err(e @ (Error::Unavailable(_) | Error::NotReady(_))) if Instant::now() < deadline => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not ready");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(Error::NotReady(msg)) => return Err(Error::Unavailable(msg.to_string())),
            Err(e) => return Err(e),
        }
    }
}

/// Periodic work: housekeeping (on one replica at a time, see [`housekeeping`]), and
/// this process's own: pick up key changes made by another server or the CLI, forget
/// idle rate-limit clients, give idle held connections back to the pool.
async fn maintain(service: Arc<AuthService>, state: Arc<AppState>) {
    // Housekeeping is a task of its own: polled inside the `select!` below, it would be
    // paused while another branch runs, and on SQLite a batch paused inside its write
    // transaction would hold the write lock against every other writer.
    let _housekeeping = AbortOnDrop(tokio::spawn(housekeeping::run(service.clone())));
    // The outbox's sender, likewise a task of its own (SPEC §13).
    let _mailer = AbortOnDrop(tokio::spawn(mailer::run(service.clone())));
    let mut sweep = tokio::time::interval(IDLE_SWEEP_EVERY);
    let mut keys = tokio::time::interval(crate::service::keys::KEY_POLL_EVERY);
    keys.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // A rotation or retirement made by another server or the CLI.
            _ = keys.tick() => {
                if let Err(e) = service.reload_keys().await {
                    tracing::warn!(error = %e, "reloading signing keys failed");
                }
            }
            _ = sweep.tick() => {
                state.limits.forget_idle_clients();
                service.store().release_idle();
            }
        }
    }
}

/// Stops a spawned task when the owner goes away (shutdown aborts `maintain`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves on SIGINT or SIGTERM (PID 1 in a container gets the latter).
pub async fn shutdown_signal() {
    {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
        tracing::info!("shutdown signal received");
    }
}

/// Ends the process at once, without finishing the drain: the answer to a second
/// SIGTERM/SIGINT. Written straight to stderr, since the log writer's buffer is not
/// flushed by `exit`. The status is 130, "interrupted".
pub fn exit_now() -> ! {
    eprintln!("second shutdown signal: exiting without finishing in-flight requests");
    std::process::exit(130)
}
