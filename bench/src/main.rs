//! `authctl-bench`: a reproducible load benchmark of `authctl serve` (issue 6).
//!
//! It starts the `authctl` binary that sits next to it (rebuilt first when run through
//! `cargo run`, so the one command below measures the current tree), configured as
//! shipped except for rate limits (off), a fixed 40-character test key and a
//! throwaway database: SQLite in a temp dir, then PostgreSQL 15 in a throwaway
//! cluster (`authctl_testkit::pg`, stopped at the end). It drives it with a
//! closed-loop HTTP/1.1 client over fixed keep-alive connections (hyper), keeping every
//! request's latency, so the percentiles are exact. Everything stays on 127.0.0.1;
//! every load scenario is bounded (≤ 15 s, setup aside); `copy` and `import` run the
//! operator's commands to their end, as long as their size (`--seed-users`,
//! `--import-lines`) makes them.
//!
//! ```text
//! cargo run --release -p authctl-bench                  # both backends, ~11 min
//! cargo run --release -p authctl-bench -- --backend sqlite --only me,liveness
//! cargo run --release -p authctl-bench -- --backend sqlite --only me,login --algorithm EdDSA
//! cargo run -p authctl-bench -- --smoke                 # CI: ~1 s per scenario, bcrypt cost 4
//! ```
//!
//! It prints a Markdown table per backend with PASS/MISS per target (informational)
//! and one JSON line per scenario on stdout; progress goes to stderr. The client shares
//! the machine with the server, so each row also says how much CPU *other* processes
//! took meanwhile: a run where that is not ~0 % was disturbed. `liveness` and `me`, whose
//! ratio is a target, are measured in alternating rounds so that a host slowing down
//! for a while slows both alike; so is `me-metrics`, `/me` on two fresh servers with
//! metrics on (`AUTHCTL_METRICS_BIND`) and off, whose cost is a target (< 5 %). `--smoke` exits 1 when any request failed or a refresh
//! chain broke, and never judges timings.
//!
//! The layout: `plan` (command line → what to run), `server` (the authctl process and
//! its database), `client` (the HTTP/1.1 client), `load` (connections driving
//! requests), `stats` (what they measured, CPU and hashing-limit readings), `run` (one
//! backend, scenario by scenario), `scale` (a seeded database, the shared rate-limit
//! store's cost, prune under load), `mfa` (two-step logins of TOTP accounts),
//! `introspect` (RFC 7662 against `/me`, unknown API keys), `algorithms` (login and
//! flood with argon2id), `transfer` (`db copy` and `user import`, timed with their
//! RSS), `report` (JSON lines, tables, targets).

mod algorithms;
mod client;
mod introspect;
mod load;
mod mfa;
mod oidc;
mod plan;
mod report;
mod run;
mod scale;
mod server;
mod stats;
mod transfer;

use std::process::ExitCode;

use clap::Parser;

use plan::{Args, Plan};
use report::Report;

/// A 40-character signing key for the benchmark's throwaway databases only.
const BENCH_SECRET_KEY: &str = "authctl-bench-not-a-secret-0123456789abc";
const PASSWORD: &str = "bench-password-0123";

fn main() -> ExitCode {
    let plan = match Plan::from_args(Args::parse()) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.client_threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut failed = false;
    let mut reports = Vec::new();
    for &backend in &plan.backends {
        let result = runtime.block_on(async {
            tokio::select! {
                r = run::run_backend(&plan, backend) => r,
                _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
            }
        });
        match result {
            Ok(report) => {
                failed |= report.failures() > 0;
                reports.push(report);
            }
            Err(e) => {
                eprintln!("error: {} benchmark failed: {e}", backend.name());
                failed = true;
                if e == "interrupted" {
                    break;
                }
            }
        }
    }
    for report in &reports {
        println!("{}", report.table(&plan));
    }
    if plan.smoke {
        let failures: u64 = reports.iter().map(Report::failures).sum();
        eprintln!(
            "smoke: {} of {} backend(s) completed, {failures} failed request(s) or broken chain(s) — {}",
            reports.len(),
            plan.backends.len(),
            if failed { "FAILED" } else { "ok" }
        );
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
