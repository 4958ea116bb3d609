//! Tracing setup: text (colours only on a terminal) or JSON lines on stderr.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber. `level` was validated by the config loader.
/// Client disconnects that hyper reports through warp's server are not errors of
/// ours, so that target is capped at `warn`... and below.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(format!("{level},warp::server=off,hyper=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
}
