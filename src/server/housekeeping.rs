//! Housekeeping: deleting what has expired — refresh tokens and their families, the
//! shared rate-limit rows — on one replica at a time (SPEC §12).
//!
//! On PostgreSQL the housekeeper is the replica that holds an advisory lock on a
//! dedicated connection ([`Locks::try_housekeeping_lock`]); it keeps the lock for as
//! long as it lives, so each period's run happens once however many replicas there
//! are. The others try again every [`TAKE_OVER_EVERY`]: when the housekeeper dies (even
//! by SIGKILL) its connection and lock go with it and one of them takes over. SQLite's
//! lock is always free: one process, one housekeeper.
//!
//! Each run logs ONE line saying that this replica ran it and what it deleted.
//!
//! [`Locks::try_housekeeping_lock`]: crate::store::locks::Locks::try_housekeeping_lock

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::service::AuthService;
use crate::store::PruneReport;
use crate::store::locks::HeldLock;

/// How often the housekeeper runs.
pub const RUN_EVERY: Duration = Duration::from_secs(600);
/// How often a replica that is not the housekeeper checks whether it should be.
pub const TAKE_OVER_EVERY: Duration = Duration::from_secs(60);

/// What one run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Deleted {
    pub tokens: u64,
    pub families: u64,
    pub rate_limits: u64,
    pub keys: u64,
    pub audit_events: u64,
    /// Expired email tokens, stale throttle rows and old finished outbox messages.
    pub email_rows: u64,
}

/// How often housekeeping runs, and how often a replica that is not the housekeeper
/// checks whether it should be.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub run_every: Duration,
    pub take_over_every: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            run_every: RUN_EVERY,
            take_over_every: TAKE_OVER_EVERY,
        }
    }
}

/// Runs housekeeping whenever this replica is the housekeeper, until aborted.
pub async fn run(service: Arc<AuthService>) {
    run_with(service, Timing::default(), |_| {}).await;
}

/// [`run`] with its timing given, calling `on_run` after each run this replica made
/// (so tests can count them without reading logs).
pub async fn run_with(
    service: Arc<AuthService>,
    timing: Timing,
    mut on_run: impl FnMut(Deleted) + Send,
) {
    let replica = replica_name();
    let mut held: Option<HeldLock> = None;
    let mut last_run: Option<Instant> = None;
    let mut tick = tokio::time::interval(timing.take_over_every.min(timing.run_every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(lock) = held.as_mut()
            && !lock.still_held().await
        {
            tracing::warn!(replica, "lost the housekeeping lock with its connection");
            held = None;
        }
        if held.is_none() {
            match service.store().try_housekeeping_lock().await {
                Ok(Some(lock)) => {
                    held = Some(lock);
                    // A new housekeeper runs at once: the last one may have died
                    // before its run was due.
                    last_run = None;
                }
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(replica, error = %e, "cannot take the housekeeping lock");
                    continue;
                }
            }
        }
        if last_run.is_some_and(|t| t.elapsed() < timing.run_every) {
            continue;
        }
        last_run = Some(Instant::now());
        let started = Instant::now();
        let outcome = run_once(&service).await;
        on_run(match &outcome {
            Ok(deleted) | Err((deleted, _)) => *deleted,
        });
        match outcome {
            Ok(deleted) => tracing::info!(
                replica,
                tokens = deleted.tokens,
                families = deleted.families,
                rate_limits = deleted.rate_limits,
                keys = deleted.keys,
                audit_events = deleted.audit_events,
                email_rows = deleted.email_rows,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "housekeeping ran on this replica"
            ),
            Err((deleted, e)) => tracing::warn!(
                replica,
                tokens = deleted.tokens,
                families = deleted.families,
                rate_limits = deleted.rate_limits,
                keys = deleted.keys,
                audit_events = deleted.audit_events,
                email_rows = deleted.email_rows,
                error = %e,
                "housekeeping ran on this replica and failed part way"
            ),
        }
    }
}

/// One run: every clean-up in turn, each in its own batches. Stops at the first
/// failure and says what was deleted before it.
pub async fn run_once(service: &AuthService) -> Result<Deleted, (Deleted, crate::Error)> {
    let mut deleted = Deleted::default();
    let PruneReport { tokens, families } = service.prune().await.map_err(|e| (deleted, e))?;
    deleted.tokens = tokens;
    deleted.families = families;
    deleted.rate_limits = service
        .store()
        .rate_limit_prune()
        .await
        .map_err(|e| (deleted, e))?;
    deleted.keys = service.prune_keys().await.map_err(|e| (deleted, e))?;
    deleted.audit_events = service.prune_audit().await.map_err(|e| (deleted, e))?;
    deleted.email_rows = service.prune_email().await.map_err(|e| (deleted, e))?;
    // Spent and expired authorization codes (SPEC §18), counted with the tokens.
    deleted.tokens += service.prune_codes().await.map_err(|e| (deleted, e))?;
    Ok(deleted)
}

/// How this process names itself in the log: the host name (a container's id under
/// Docker) and the process id.
fn replica_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("{host}/{}", std::process::id())
}
