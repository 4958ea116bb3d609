//! Reporting: one JSON line per scenario, the per-backend Markdown table, and the
//! targets (PASS/MISS, informational; `--smoke` judges only failures).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::plan::{Backend, Plan, Scenario};
use crate::stats::{Flood, HashLimit, Stats};

#[derive(Debug)]
pub struct Report {
    pub backend: Backend,
    pub liveness: Stats,
    pub me: Stats,
    /// `/me` on the server without metrics and on the one with, alternating.
    pub me_metrics_off: Stats,
    pub me_metrics_on: Stats,
    pub login: Stats,
    pub bcrypt: HashLimit,
    pub under_login_liveness: Stats,
    pub under_login_me: Stats,
    pub under_login_logins: Stats,
    pub flood: Flood,
    pub register: Stats,
    /// `/recover` for the bench user's address, and for unknown ones.
    pub recover_known: Stats,
    pub recover_unknown: Stats,
    pub refresh: Stats,
    pub refresh_wall: Duration,
    pub chains: usize,
    pub broken_chains: usize,
    pub unfinished_chains: usize,
    pub rss_idle_kib: u64,
    pub rss_end_kib: u64,
    pub rss_peak_kib: u64,
    pub startup: Vec<Duration>,
    pub clean_exit: bool,
    pub server_log_errors: usize,
    /// The seeded database, if any.
    pub seeded: Option<crate::scale::Seeded>,
    /// What the scenarios that report themselves found (scale, MFA, introspection, …).
    pub more: Extra,
}

/// Rows, targets and failures of the scenarios that report themselves.
#[derive(Debug, Default)]
pub struct Extra {
    /// Table rows, already formatted (see [`row`]).
    pub rows: Vec<String>,
    /// (target, measured, pass)
    pub targets: Vec<(String, String, bool)>,
    pub failures: u64,
}

impl Extra {
    pub fn absorb(&mut self, other: Extra) {
        self.rows.extend(other.rows);
        self.targets.extend(other.targets);
        self.failures += other.failures;
    }

    pub fn target(&mut self, name: impl Into<String>, measured: impl Into<String>, pass: bool) {
        self.targets.push((name.into(), measured.into(), pass));
    }
}

impl Report {
    pub fn failures(&self) -> u64 {
        [
            &self.liveness,
            &self.me,
            &self.me_metrics_off,
            &self.me_metrics_on,
            &self.login,
            &self.under_login_liveness,
            &self.under_login_me,
            &self.under_login_logins,
            &self.flood.logins,
            &self.flood.probes,
            &self.register,
            &self.recover_known,
            &self.recover_unknown,
            &self.refresh,
        ]
        .iter()
        .map(|s| s.errors)
        .sum::<u64>()
            + self.broken_chains as u64
            + u64::from(!self.clean_exit)
            + self.more.failures
    }

    pub fn startup_median(&self) -> Duration {
        let mut v = self.startup.clone();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }
}

/// How much slower `/me` is with metrics on, in % of its rate with them off.
pub fn metrics_cost_pct(off: &Stats, on: &Stats) -> f64 {
    (1.0 - on.rate() / off.rate()) * 100.0
}

pub fn round2(v: f64) -> f64 {
    if v.is_finite() {
        (v * 100.0).round() / 100.0
    } else {
        -1.0
    }
}

/// One JSON line for a scenario that is not a load (a CLI run): `fields` as given.
pub fn emit_fields(backend: Backend, scenario: Scenario, fields: Value) {
    let mut line = json!({
        "bench": "authctl",
        "backend": backend.name(),
        "scenario": scenario.name(),
    });
    if let (Some(obj), Value::Object(more)) = (line.as_object_mut(), fields) {
        obj.extend(more);
    }
    println!("{line}");
    let _ = std::io::stdout().flush();
}

pub fn emit(backend: Backend, scenario: Scenario, s: &Stats, extra: Value) {
    let mut line = json!({
        "ok": s.ok,
        "rps": round2(s.rate()),
        "p50_ms": round2(s.quantile_ms(0.50)),
        "p99_ms": round2(s.quantile_ms(0.99)),
        "max_ms": round2(s.max_ms()),
        "errors": s.errors,
        "seconds": round2(s.window.as_secs_f64()),
        "other_cpu_pct": round2(s.others_cpu_pct),
    });
    if s.server_cpu_us > 0.0 {
        line["server_cpu_us_per_req"] = json!(round2(s.server_cpu_us));
        line["db_cpu_us_per_req"] = json!(round2(s.db_cpu_us));
    }
    if let (Some(obj), Value::Object(more)) = (line.as_object_mut(), extra) {
        obj.extend(more);
    }
    if let Some(e) = &s.first_error {
        line["first_error"] = Value::String(e.chars().take(200).collect());
    }
    emit_fields(backend, scenario, line);
}

pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else {
        format!("{v:.2} ms")
    }
}

pub fn rate(v: f64, unit: &str) -> String {
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

pub fn mib(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}

/// One row of the table: scenario, load, result, p50, p99, errors, others' CPU.
pub fn row(name: &str, load: &str, result: &str, s: &Stats) -> String {
    format!(
        "| {name} | {load} | {result} | {} | {} | {} | {:.0} % |",
        ms(s.quantile_ms(0.5)),
        ms(s.quantile_ms(0.99)),
        s.errors,
        s.others_cpu_pct
    )
}

/// The row of a login flood (bcrypt's or another algorithm's).
pub fn flood_row(name: &str, f: &Flood) -> String {
    row(
        name,
        &format!("{} login conns + 4 probes/10 ms", f.connections),
        &format!(
            "liveness p99 {} ({} logins ok, {} refused 503 + Retry-After after p50 {} / max {}, \
             {} login errors; RSS max {})",
            ms(f.probes.quantile_ms(0.99)),
            f.logins.ok,
            f.logins.busy,
            ms(f.logins.busy_quantile_ms(0.5)),
            ms(f.logins.busy_quantile_ms(1.0)),
            f.logins.errors,
            mib(f.rss_max_kib)
        ),
        &f.probes,
    )
}

/// The flood's targets: liveness p99 < 10 ms, RSS under `rss_bound_kib` (named by
/// `rss_bound`).
pub fn flood_targets(
    f: &Flood,
    what: &str,
    rss_bound: &str,
    rss_bound_kib: u64,
) -> Vec<(String, String, bool)> {
    let p99 = f.probes.quantile_ms(0.99);
    vec![
        (
            format!(
                "liveness p99 under a {}-login flood{what} < 10 ms",
                f.connections
            ),
            ms(p99),
            p99 < 10.0,
        ),
        (
            format!("RSS during the login flood{what} < {rss_bound}"),
            mib(f.rss_max_kib),
            f.rss_max_kib < rss_bound_kib,
        ),
    ]
}

/// The target of a login load (`what`) against its algorithm's limit measured in the run.
pub fn login_target(what: &str, login: &Stats, limit: &HashLimit) -> (String, String, bool) {
    let per_s = limit.per_second();
    let ratio = login.rate() / per_s;
    (
        format!("{what}/s ≥ 0.9 × {} limit", limit.algorithm),
        format!("{:.2}/s = {ratio:.2} × {per_s:.2}/s", login.rate()),
        ratio >= 0.9,
    )
}

impl Report {
    /// (target, measured, pass)
    pub fn targets(&self, plan: &Plan) -> Vec<(String, String, bool)> {
        let mut t = Vec::new();
        if plan.runs(Scenario::Login) {
            t.push(login_target("login", &self.login, &self.bcrypt));
        }
        if plan.runs(Scenario::LivenessUnderLogin) {
            let p99 = self.under_login_liveness.quantile_ms(0.99);
            t.push((
                "liveness p99 under login < 10 ms".to_string(),
                ms(p99),
                p99 < 10.0,
            ));
        }
        if plan.runs(Scenario::LoginFlood) {
            t.extend(flood_targets(&self.flood, "", "64 MB", 64 * 1024));
        }
        if plan.runs(Scenario::Me) && plan.runs(Scenario::Liveness) {
            // With the request log line off the runtime's threads (issue 11).
            let goal = match self.backend {
                Backend::Sqlite => 0.6,
                Backend::Postgres => 0.33,
            };
            let ratio = self.me.rate() / self.liveness.rate();
            t.push((
                format!("me rps ≥ {goal} × liveness rps"),
                format!(
                    "{ratio:.2} × ({:.0} / {:.0})",
                    self.me.rate(),
                    self.liveness.rate()
                ),
                ratio >= goal,
            ));
        }
        if plan.runs(Scenario::MeMetrics) {
            let cost = metrics_cost_pct(&self.me_metrics_off, &self.me_metrics_on);
            t.push((
                "metrics cost on /me < 5 %".to_string(),
                format!(
                    "{cost:.1} % ({:.0} → {:.0} req/s)",
                    self.me_metrics_off.rate(),
                    self.me_metrics_on.rate()
                ),
                cost < 5.0,
            ));
        }
        if plan.runs(Scenario::Refresh) {
            t.push((
                "refresh: 0 broken chains, 0 errors".to_string(),
                format!(
                    "{} broken, {} errors",
                    self.broken_chains, self.refresh.errors
                ),
                self.broken_chains == 0 && self.refresh.errors == 0,
            ));
        }
        t.push((
            "RSS idle < 20 MB".to_string(),
            mib(self.rss_idle_kib),
            self.rss_idle_kib < 20 * 1024,
        ));
        t.push((
            "RSS peak < 64 MB".to_string(),
            mib(self.rss_peak_kib),
            self.rss_peak_kib < 64 * 1024,
        ));
        if self.backend == Backend::Sqlite {
            let startup_ms = self.startup_median().as_secs_f64() * 1000.0;
            t.push((
                "start-to-ready < 100 ms".to_string(),
                ms(startup_ms),
                startup_ms < 100.0,
            ));
        }
        t.extend(self.more.targets.iter().cloned());
        t
    }

    pub fn table(&self, plan: &Plan) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n### {} — {} build, bcrypt cost {}, {} CPUs, LOG_LEVEL={}{}, {} load-generator thread(s){}\n",
            self.backend.name(),
            plan.profile,
            plan.cost,
            plan.cores,
            plan.log_level,
            plan.server_env
                .iter()
                .map(|(k, v)| format!(", {k}={v}"))
                .collect::<String>(),
            plan.client_threads,
            if plan.smoke {
                ", SMOKE (timings not judged)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "| scenario | load | result | p50 | p99 | errors | other CPU |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        let put =
            |out: &mut String, name: &str, load: &str, result: String, s: &Stats, extra: &str| {
                let _ = writeln!(out, "{}", row(name, load, &format!("{result}{extra}"), s));
            };
        if plan.runs(Scenario::Liveness) {
            put(
                &mut out,
                "liveness",
                "64 conns",
                rate(self.liveness.rate(), "req/s"),
                &self.liveness,
                "",
            );
        }
        if plan.runs(Scenario::Me) {
            put(
                &mut out,
                "me",
                "64 conns",
                rate(self.me.rate(), "req/s"),
                &self.me,
                "",
            );
        }
        if plan.runs(Scenario::MeMetrics) {
            put(
                &mut out,
                "me-metrics",
                "64 conns, 2 servers",
                rate(self.me_metrics_on.rate(), "req/s"),
                &self.me_metrics_on,
                &format!(
                    " with metrics; {} without (p99 {}): {:.1} % cost; server CPU {:.0} vs {:.0} µs/req",
                    rate(self.me_metrics_off.rate(), "req/s"),
                    ms(self.me_metrics_off.quantile_ms(0.99)),
                    metrics_cost_pct(&self.me_metrics_off, &self.me_metrics_on),
                    self.me_metrics_on.server_cpu_us,
                    self.me_metrics_off.server_cpu_us
                ),
            );
        }
        if plan.runs(Scenario::Login) {
            put(
                &mut out,
                "login",
                "8 conns",
                rate(self.login.rate(), "logins/s"),
                &self.login,
                &format!(
                    " (bcrypt limit {:.2}/s: {} cores ÷ {:.0} ms; {:.0} ms/verify with all cores busy)",
                    self.bcrypt.per_second(),
                    self.bcrypt.cores,
                    self.bcrypt.single_ms,
                    self.bcrypt.parallel_ms
                ),
            );
        }
        if plan.runs(Scenario::LivenessUnderLogin) {
            put(
                &mut out,
                "liveness-under-login",
                "4 probes/10 ms + 8 login conns",
                format!(
                    "liveness p99 {}",
                    ms(self.under_login_liveness.quantile_ms(0.99))
                ),
                &self.under_login_liveness,
                &format!(
                    " (/me p99 {}, {:.2} logins/s meanwhile)",
                    ms(self.under_login_me.quantile_ms(0.99)),
                    self.under_login_logins.rate()
                ),
            );
        }
        if plan.runs(Scenario::LoginFlood) {
            let _ = writeln!(out, "{}", flood_row("login-flood", &self.flood));
        }
        if plan.runs(Scenario::Register) {
            put(
                &mut out,
                "register",
                "8 conns",
                rate(self.register.rate(), "users/s"),
                &self.register,
                "",
            );
        }
        if plan.runs(Scenario::Recover) {
            for (name, stats) in [
                ("recover (known)", &self.recover_known),
                ("recover (unknown)", &self.recover_unknown),
            ] {
                put(
                    &mut out,
                    name,
                    "8 conns",
                    rate(stats.rate(), "req/s"),
                    stats,
                    "",
                );
            }
        }
        if plan.runs(Scenario::Refresh) {
            put(
                &mut out,
                "refresh",
                &format!("{} chains", self.chains),
                rate(
                    self.refresh.ok as f64 / self.refresh_wall.as_secs_f64(),
                    "rotations/s",
                ),
                &self.refresh,
                &format!(
                    " ({} rotations, {} broken chains{})",
                    self.refresh.ok,
                    self.broken_chains,
                    if self.unfinished_chains > 0 {
                        format!(", {} stopped by the time bound", self.unfinished_chains)
                    } else {
                        String::new()
                    }
                ),
            );
        }
        let _ = writeln!(
            out,
            "| memory | | RSS idle {}, peak {} (end {}) | | | | |",
            mib(self.rss_idle_kib),
            mib(self.rss_peak_kib),
            mib(self.rss_end_kib)
        );
        let _ = writeln!(
            out,
            "| startup | migrated DB | start-to-ready {} (median of {}) | | | {} | |",
            ms(self.startup_median().as_secs_f64() * 1000.0),
            self.startup.len(),
            u64::from(!self.clean_exit)
        );
        for row in &self.more.rows {
            let _ = writeln!(out, "{row}");
        }
        if let Some(seeded) = &self.seeded {
            let _ = writeln!(
                out,
                "\nOn a database seeded with {} users and {} sessions in {:.1} s of bulk SQL.",
                seeded.users,
                seeded.families,
                seeded.took.as_secs_f64()
            );
        }
        let _ = writeln!(out, "\n| target ({}) | measured | |", self.backend.name());
        let _ = writeln!(out, "|---|---|---|");
        for (name, measured, pass) in self.targets(plan) {
            let verdict = if plan.smoke {
                "(smoke)"
            } else if pass {
                "PASS"
            } else {
                "MISS"
            };
            let _ = writeln!(out, "| {name} | {measured} | {verdict} |");
        }
        if self.server_log_errors > 0 || !self.clean_exit {
            let _ = writeln!(
                out,
                "\nserver: {} ERROR log line(s); graceful exit {}",
                self.server_log_errors,
                if self.clean_exit { "0" } else { "FAILED" }
            );
        }
        out
    }
}
