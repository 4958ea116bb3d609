//! Moving data with the operator's commands, timed with their largest RSS:
//! `import` (issue 24: `authctl user import` of `--import-lines` JSON Lines, target
//! 1M lines in < 2 min and < 100 MB) and `copy` (issue 25: `authctl db copy --to` of
//! this run's database — the seeder's with `--seed-users` — into a fresh database of
//! the other backend, target 1M users / 3M sessions in < 5 min each way and
//! < 200 MB). Smaller runs are judged against the same rate (the time budget scales
//! with the size, at least 5 s); memory budgets stay as they are.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use authctl_testkit::pg::Cluster;

use crate::plan::{Backend, Plan, Scenario};
use crate::report::{Extra, emit_fields, mib, round2};
use crate::server::{Measured, cli, run_measured};

const IMPORT_BUDGET_PER_MILLION: Duration = Duration::from_secs(120);
const IMPORT_RSS_KIB: u64 = 100 * 1024;
const COPY_BUDGET_PER_MILLION: Duration = Duration::from_secs(300);
const COPY_RSS_KIB: u64 = 200 * 1024;

/// The time budget for `n` items at `per_million` (at least 5 s).
fn budget(per_million: Duration, n: u64) -> Duration {
    per_million
        .mul_f64(n as f64 / 1e6)
        .max(Duration::from_secs(5))
}

/// Writes `n` users `{prefix}{i}` with the benchmark's password (as one bcrypt hash at
/// the plan's cost) as JSON Lines, streaming.
async fn write_users(plan: &Plan, file: &Path, prefix: &str, n: u64) -> Result<(), String> {
    let cost = plan.cost;
    let (file, prefix) = (file.to_owned(), prefix.to_owned());
    tokio::task::spawn_blocking(move || {
        let hash = bcrypt::hash(crate::PASSWORD, cost).map_err(|e| format!("bcrypt: {e}"))?;
        let f = std::fs::File::create(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut out = std::io::BufWriter::new(f);
        for i in 0..n {
            let line = json!({
                "email": format!("{prefix}{i}@bench.example"),
                "username": format!("{prefix}{i}"),
                "password_hash": hash,
                "email_verified": true,
            });
            writeln!(out, "{line}").map_err(|e| format!("{}: {e}", file.display()))?;
        }
        out.flush().map_err(|e| format!("{}: {e}", file.display()))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Runs an `authctl` command (`what`) to its end, measured; an error if it failed.
async fn run_cli(cmd: std::process::Command, what: &str) -> Result<Measured, String> {
    let m = tokio::task::spawn_blocking(move || run_measured(cmd))
        .await
        .map_err(|e| e.to_string())??;
    if !m.output.status.success() {
        return Err(format!(
            "{what}: {}",
            String::from_utf8_lossy(&m.output.stderr)
        ));
    }
    Ok(m)
}

/// `authctl user import FILE --output json`, measured; the summary it printed.
async fn run_import(
    plan: &Plan,
    database_url: &str,
    work: &Path,
    file: &Path,
) -> Result<(Measured, Value), String> {
    let mut cmd = cli(plan, database_url, work);
    cmd.args(["user", "import"])
        .arg(file)
        .args(["--output", "json"]);
    let measured = run_cli(cmd, "user import").await?;
    let summary = serde_json::from_slice(&measured.output.stdout)
        .map_err(|e| format!("user import: not JSON: {e}"))?;
    Ok((measured, summary))
}

/// Imports `n` fresh accounts named `{prefix}{i}` (for scenarios that need many
/// accounts without a hash each); their usernames.
pub async fn import_accounts(
    plan: &Plan,
    database_url: &str,
    work: &Path,
    prefix: &str,
    n: usize,
) -> Result<Vec<String>, String> {
    let file = work.join(format!("{prefix}.jsonl"));
    write_users(plan, &file, prefix, n as u64).await?;
    let (_, summary) = run_import(plan, database_url, work, &file).await?;
    if summary["created"].as_u64() != Some(n as u64) {
        return Err(format!("user import of {n} accounts: {summary}"));
    }
    let _ = std::fs::remove_file(&file);
    Ok((0..n).map(|i| format!("{prefix}{i}")).collect())
}

pub async fn import(
    plan: &Plan,
    backend: Backend,
    database_url: &str,
    work: &Path,
    prefix: &str,
) -> Result<Extra, String> {
    let n = plan.import_lines;
    let file = work.join("import.jsonl");
    let prefix = format!("{prefix}_imp");
    eprintln!("import: writing {n} lines …");
    write_users(plan, &file, &prefix, n).await?;
    eprintln!("import: `authctl user import` of {n} lines …");
    let (m, summary) = run_import(plan, database_url, work, &file).await?;
    let _ = std::fs::remove_file(&file);
    let created = summary["created"].as_u64().unwrap_or(0);
    let mut extra = Extra::default();
    extra.failures += u64::from(created != n) + summary["failed"].as_u64().unwrap_or(1);
    let seconds = m.took.as_secs_f64();
    emit_fields(
        backend,
        Scenario::Import,
        json!({
            "lines": n,
            "summary": summary,
            "seconds": round2(seconds),
            "lines_per_s": round2(n as f64 / seconds),
            "rss_max_mib": round2(m.peak_rss_kib as f64 / 1024.0),
            "other_cpu_pct": round2(m.others_cpu_pct),
        }),
    );
    extra.rows.push(format!(
        "| import | `user import` of {n} lines | {created} created in {seconds:.1} s ({:.0} lines/s), RSS max {} | | | {} | {:.0} % |",
        n as f64 / seconds,
        mib(m.peak_rss_kib),
        extra.failures,
        m.others_cpu_pct
    ));
    let limit = budget(IMPORT_BUDGET_PER_MILLION, n);
    extra.target(
        format!(
            "user import of {n} lines < {:.0} s (1M in 2 min)",
            limit.as_secs_f64()
        ),
        format!("{seconds:.1} s"),
        m.took < limit,
    );
    extra.target(
        "user import RSS < 100 MB",
        mib(m.peak_rss_kib),
        m.peak_rss_kib < IMPORT_RSS_KIB,
    );
    Ok(extra)
}

/// `db copy --to` into a fresh database of the other backend: SQLite's run copies to
/// a throwaway PostgreSQL cluster, PostgreSQL's to a new SQLite file.
pub async fn copy(
    plan: &Plan,
    backend: Backend,
    database_url: &str,
    work: &Path,
) -> Result<Extra, String> {
    let cluster;
    let (to, direction) = match backend {
        Backend::Sqlite => {
            cluster = tokio::task::spawn_blocking(|| Cluster::start_with(&[]))
                .await
                .map_err(|e| e.to_string())??;
            (cluster.url("postgres"), "SQLite → PostgreSQL")
        }
        Backend::Postgres => (
            format!("sqlite://{}", work.join("copy.db").display()),
            "PostgreSQL → SQLite",
        ),
    };
    eprintln!("copy: `authctl db copy` {direction} …");
    let mut cmd = cli(plan, database_url, work);
    cmd.args(["db", "copy", "--output", "json"])
        .env("AUTHCTL_COPY_TO", &to);
    let m = run_cli(cmd, "db copy").await?;
    let report: Value =
        serde_json::from_slice(&m.output.stdout).map_err(|e| format!("db copy: not JSON: {e}"))?;
    let rows_of = |table: &str| {
        report["tables"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["table"] == table))
            .and_then(|t| t["rows"].as_u64())
            .unwrap_or(0)
    };
    let (users, sessions) = (rows_of("users"), rows_of("token_families"));
    let total: u64 = report["tables"]
        .as_array()
        .map_or(0, |ts| ts.iter().filter_map(|t| t["rows"].as_u64()).sum());
    let seconds = m.took.as_secs_f64();
    emit_fields(
        backend,
        Scenario::Copy,
        json!({
            "direction": direction,
            "users": users,
            "sessions": sessions,
            "rows": total,
            "seconds": round2(seconds),
            "rows_per_s": round2(total as f64 / seconds),
            "rss_max_mib": round2(m.peak_rss_kib as f64 / 1024.0),
            "other_cpu_pct": round2(m.others_cpu_pct),
        }),
    );
    let mut extra = Extra::default();
    extra.rows.push(format!(
        "| copy | `db copy --to`, {direction} | {users} users, {sessions} sessions ({total} rows) in {seconds:.1} s, RSS max {} | | | 0 | {:.0} % |",
        mib(m.peak_rss_kib),
        m.others_cpu_pct
    ));
    let limit = budget(COPY_BUDGET_PER_MILLION, users);
    extra.target(
        format!(
            "db copy {direction} of {users} users < {:.0} s (1M/3M in 5 min)",
            limit.as_secs_f64()
        ),
        format!("{seconds:.1} s"),
        m.took < limit,
    );
    extra.target(
        format!("db copy {direction} RSS < 200 MB"),
        mib(m.peak_rss_kib),
        m.peak_rss_kib < COPY_RSS_KIB,
    );
    Ok(extra)
}
