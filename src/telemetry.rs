//! Tracing setup: text (colours only on a terminal) or JSON lines on stderr, written
//! by a background thread through a bounded buffer.
//!
//! A request's log line must never wait for stderr: when whoever reads it stalls (a
//! full pipe, a slow log shipper), lines beyond the buffer are dropped and counted
//! instead, and a warning says how many once the writer has room again. The count is
//! exposed by [`dropped_log_lines`] for the metrics.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Lines held for a stalled stderr before new ones are dropped: about a second of
/// request lines under load, a few hundred kilobytes at most.
const BUFFERED_LINES: usize = 1024;
/// How often the dropped-line count is checked for a warning.
const REPORT_EVERY: Duration = Duration::from_millis(500);

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Log lines dropped so far because stderr did not keep up.
pub fn dropped_log_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
}

/// Installs the global subscriber. `level` was validated by the config loader.
/// Client disconnects that hyper reports are not errors of ours, so that target is
/// capped at `warn`. Keep the returned guard for the life of the process: dropping it
/// flushes the buffered lines and stops the writer thread.
pub fn init(level: &str, format: LogFormat) -> WorkerGuard {
    let filter = EnvFilter::try_new(format!("{level},warp::server=off,hyper=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("authctl-log")
        .finish(std::io::stderr());
    let counter = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    if installed.is_ok() && DROPPED.set(counter.clone()).is_ok() {
        let spawned = std::thread::Builder::new()
            .name("authctl-log-drops".into())
            .spawn(move || report_drops(&counter));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot watch for dropped log lines");
        }
    }
    guard
}

/// Warns about dropped lines once the writer has room again: the warning itself goes
/// through the same buffer, so it counts as reported only when it was not dropped too.
fn report_drops(counter: &ErrorCounter) {
    let mut reported = 0;
    loop {
        std::thread::sleep(REPORT_EVERY);
        let dropped = counter.dropped_lines();
        if dropped > reported {
            tracing::warn!(
                dropped_lines = dropped - reported,
                total_dropped_lines = dropped,
                "log lines dropped: stderr was not keeping up"
            );
            if counter.dropped_lines() == dropped {
                reported = dropped;
            }
        }
    }
}
