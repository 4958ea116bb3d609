//! `authctl health`: probes a running server. Also the image's HEALTHCHECK.

use super::output::outln;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::HealthArgs;
use crate::config::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Check {
    /// The process is up
    Liveness,
    /// The database answers and the schema is current
    Readiness,
    /// Startup (config, migrations, key) has finished
    Startup,
}

impl Check {
    fn path(self) -> &'static str {
        match self {
            Check::Liveness => "/health/liveness",
            Check::Readiness => "/health/readiness",
            Check::Startup => "/health/startup",
        }
    }
}

/// The URL of the local server: the configured bind, with a wildcard address
/// replaced by loopback.
fn default_url(settings: &Settings) -> String {
    let mut addr = settings.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    format!("http://{addr}")
}

/// Prints one line and returns the exit code: 0 healthy, 1 not.
pub async fn run(settings: &Settings, args: &HealthArgs) -> u8 {
    let base = args.url.clone().unwrap_or_else(|| default_url(settings));
    let url = format!("{}{}", base.trim_end_matches('/'), args.check.path());
    let mut builder = reqwest::Client::builder().timeout(args.timeout);
    if url.starts_with("http://") {
        // Plain HTTP needs no trust roots, and a minimal image has none to load.
        builder = builder.tls_certs_only(Vec::<reqwest::Certificate>::new());
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("unhealthy: cannot build an HTTP client: {e}");
            return 1;
        }
    };
    match client.get(&url).send().await {
        Ok(resp) if resp.status().is_success() => {
            outln!("healthy: {url} answered {}", resp.status().as_u16());
            0
        }
        Ok(resp) => {
            let status = resp.status().as_u16();
            let detail = resp
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_owned))
                .unwrap_or_default();
            eprintln!("unhealthy: {url} answered {status} {detail}");
            1
        }
        Err(e) if e.is_timeout() => {
            eprintln!("unhealthy: {url} did not answer within {:?}", args.timeout);
            1
        }
        Err(e) => {
            eprintln!("unhealthy: cannot reach {url}: {}", root_cause(&e));
            1
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
