//! The outbox's sender (SPEC §13): a task beside housekeeping that delivers what
//! requests recorded. It wakes when this process queues a message and otherwise
//! looks every [`POLL_EVERY`] (for messages other replicas or the CLI queued, and for
//! retries that came due). Every replica runs one; each message is claimed by one of
//! them (`EmailStore::outbox_claim`). Delivery is at least once: a process killed
//! after the server accepted a message but before it recorded that is tried again
//! when its claim runs out.

use std::sync::Arc;
use std::time::Duration;

use crate::service::AuthService;

/// How often the sender looks for due messages when nothing woke it.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Delivers messages until aborted. Returns at once when email is off.
pub async fn run(service: Arc<AuthService>) {
    let mailer = match crate::mail::mailer(service.email_settings()) {
        Ok(Some(mailer)) => mailer,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(error = %e, "email is configured but its transport is not usable");
            return;
        }
    };
    loop {
        let woken = service.outbox_wake().notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if let Err(e) = service.deliver_due(mailer.as_ref()).await {
            tracing::warn!(error = %e, "the email sender could not read the outbox");
        }
        tokio::select! {
            _ = woken => {}
            _ = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}
