//! Reporting: one JSON line per scenario, the per-backend Markdown table, and the
//! targets (PASS/MISS, informational; `--smoke` judges only failures).

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::plan::{Backend, Plan, Scenario};
use crate::stats::{BcryptLimit, Flood, Stats};

#[derive(Debug)]
pub struct Report {
    pub backend: Backend,
    pub liveness: Stats,
    pub me: Stats,
    /// `/me` on the server without metrics and on the one with, alternating.
    pub me_metrics_off: Stats,
    pub me_metrics_on: Stats,
    pub login: Stats,
    pub bcrypt: BcryptLimit,
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
    /// The seeded database, if any, and the scale scenarios' rows and failures.
    pub seeded: Option<crate::scale::Seeded>,
    pub scale_rows: Vec<String>,
    pub scale_failures: u64,
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
            + self.scale_failures
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

pub fn emit(backend: Backend, scenario: Scenario, s: &Stats, extra: Value) {
    let mut line = json!({
        "bench": "authctl",
        "backend": backend.name(),
        "scenario": scenario.name(),
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
    println!("{line}");
    let _ = std::io::stdout().flush();
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

impl Report {
    /// (target, measured, pass)
    pub fn targets(&self, plan: &Plan) -> Vec<(String, String, bool)> {
        let mut t = Vec::new();
        if plan.runs(Scenario::Login) {
            let limit = self.bcrypt.per_second();
            let ratio = self.login.rate() / limit;
            t.push((
                "login/s ≥ 0.9 × bcrypt limit".to_string(),
                format!("{:.2}/s = {ratio:.2} × {limit:.2}/s", self.login.rate()),
                ratio >= 0.9,
            ));
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
            let p99 = self.flood.probes.quantile_ms(0.99);
            t.push((
                format!(
                    "liveness p99 under a {}-login flood < 10 ms",
                    self.flood.connections
                ),
                ms(p99),
                p99 < 10.0,
            ));
            t.push((
                "RSS during the login flood < 64 MB".to_string(),
                mib(self.flood.rss_max_kib),
                self.flood.rss_max_kib < 64 * 1024,
            ));
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
        let row =
            |out: &mut String, name: &str, load: &str, result: String, s: &Stats, extra: &str| {
                let _ = writeln!(
                    out,
                    "| {name} | {load} | {result}{extra} | {} | {} | {} | {:.0} % |",
                    ms(s.quantile_ms(0.5)),
                    ms(s.quantile_ms(0.99)),
                    s.errors,
                    s.others_cpu_pct
                );
            };
        if plan.runs(Scenario::Liveness) {
            row(
                &mut out,
                "liveness",
                "64 conns",
                rate(self.liveness.rate(), "req/s"),
                &self.liveness,
                "",
            );
        }
        if plan.runs(Scenario::Me) {
            row(
                &mut out,
                "me",
                "64 conns",
                rate(self.me.rate(), "req/s"),
                &self.me,
                "",
            );
        }
        if plan.runs(Scenario::MeMetrics) {
            row(
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
            row(
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
            row(
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
            let f = &self.flood;
            row(
                &mut out,
                "login-flood",
                &format!("{} login conns + 4 probes/10 ms", f.connections),
                format!("liveness p99 {}", ms(f.probes.quantile_ms(0.99))),
                &f.probes,
                &format!(
                    " ({} logins ok, {} refused 503 + Retry-After after p50 {} / max {}, \
                     {} login errors; RSS max {})",
                    f.logins.ok,
                    f.logins.busy,
                    ms(f.logins.busy_quantile_ms(0.5)),
                    ms(f.logins.busy_quantile_ms(1.0)),
                    f.logins.errors,
                    mib(f.rss_max_kib)
                ),
            );
        }
        if plan.runs(Scenario::Register) {
            row(
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
                row(
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
            row(
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
        for row in &self.scale_rows {
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
