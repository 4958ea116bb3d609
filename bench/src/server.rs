//! The server under test: finding (and under `cargo run`, building) the `authctl`
//! binary, starting it as shipped but for the benchmark's key, bcrypt cost and
//! database, and reading its memory. Starting, readiness and stopping are
//! `authctl_testkit::process`'s, shared with the tests.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use authctl_testkit::process::ServerProcess;

use crate::plan::Plan;

/// `authctl` next to this executable. Under `cargo run`, it is (re)built first with
/// the same profile, so `cargo run --release -p authctl-bench` is the one command.
pub fn sibling_server() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let dir = exe.parent().ok_or("this program has no directory")?;
    let server = dir.join(format!("authctl{}", std::env::consts::EXE_SUFFIX));
    if let (Some(cargo), Some(manifest)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        let profile = profile_of(&server);
        let mut build = Command::new(cargo);
        // Any member's manifest names the workspace; `-p` picks the server crate.
        build
            .args(["build", "--quiet", "-p", "authctl", "--bin", "authctl"])
            .arg("--manifest-path")
            .arg(Path::new(&manifest).join("Cargo.toml"));
        match profile.as_str() {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        eprintln!("building authctl ({profile}) …");
        let status = build
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err("building authctl failed".into());
        }
    }
    if !server.exists() {
        return Err(format!(
            "{} not found: run `cargo build --release` first, or pass --server PATH",
            server.display()
        ));
    }
    Ok(server)
}

/// The cargo profile a binary was built with: the name of its directory.
pub fn profile_of(server: &Path) -> String {
    server
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "unknown".into(), |n| n.to_string_lossy().into_owned())
}

/// A running `authctl serve` whose stderr goes to a log file; killed on drop if not
/// stopped.
pub struct Server {
    process: ServerProcess,
    log: PathBuf,
}

impl Server {
    pub fn spawn(plan: &Plan, database_url: &str, work: &Path, n: usize) -> Result<Server, String> {
        Self::spawn_with(plan, database_url, work, n, &[])
    }

    /// [`Server::spawn`] with more environment for this one server (after the plan's).
    pub fn spawn_with(
        plan: &Plan,
        database_url: &str,
        work: &Path,
        n: usize,
        env: &[(&str, String)],
    ) -> Result<Server, String> {
        let port = authctl_testkit::free_port()?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = work.join(format!("server-{n}.log"));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(&plan.server);
        cmd.arg("serve")
            .current_dir(work)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("SECRET_KEY", crate::BENCH_SECRET_KEY)
            .env("AUTHCTL_BIND", addr.to_string())
            .env("AUTHCTL_RATE_LIMIT_ENABLED", "false")
            // Lockout stays on (its counter runs on every login), but above the flood's
            // 200 concurrent logins of one account: attempts beyond the threshold in
            // flight would wait for each other's turn (SPEC §10), and the flood measures
            // hashing, not that wait.
            .env("AUTHCTL_LOCKOUT_THRESHOLD", "1000")
            // Email on, to files (no mail server): register queues its verification
            // message, `recover` its reset message, as in a deployment with email.
            .env(
                "AUTHCTL_EMAIL_URL",
                format!("file://{}", work.join("mail").display()),
            )
            .env("AUTHCTL_EMAIL_FROM", "bench <bench@bench.example>")
            .env("AUTHCTL_BCRYPT_COST", plan.cost.to_string())
            .env("LOG_LEVEL", &plan.log_level)
            .envs(plan.server_env.iter().map(|(k, v)| (k, v)))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        if env.iter().any(|(k, _)| *k == "AUTHCTL_OIDC_ENABLED") {
            // The provider's issuer is its public base URL: here, this address.
            cmd.env("AUTHCTL_ISSUER", format!("http://{addr}"));
        }
        Ok(Server {
            process: ServerProcess::spawn(cmd, addr)?,
            log,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.process.addr
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// This server as the load generator's target.
    pub fn target(&self) -> Result<crate::client::Target, String> {
        Ok(crate::client::Target {
            addr: self.addr(),
            host: hyper::header::HeaderValue::from_str(&self.addr().to_string())
                .map_err(|e| e.to_string())?,
            server_pid: self.pid(),
        })
    }

    /// Waits for `/health/startup`; returns the time since `since`. A failure carries
    /// the server log's last lines.
    pub fn wait_started(&mut self, since: Instant, patience: Duration) -> Result<Duration, String> {
        self.process
            .wait_ready(since, patience)
            .map_err(|e| format!("{e}: {}", self.log_tail()))
    }

    /// SIGTERM, then waits (10 s at most) for a graceful exit; returns whether it was 0.
    pub fn stop(&mut self) -> Result<bool, String> {
        Ok(self
            .process
            .stop(Duration::from_secs(10))?
            .is_none_or(|status| status.success()))
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Lines of the server log at ERROR level.
    pub fn log_errors(&self) -> usize {
        std::fs::File::open(&self.log)
            .map(|f| {
                std::io::BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| l.contains("ERROR"))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// (VmRSS, VmHWM) of a process, in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The largest VmRSS of a process, in KiB, sampled every 50 ms until `stop` fires.
pub async fn sample_peak_rss(pid: u32, mut stop: tokio::sync::oneshot::Receiver<()>) -> u64 {
    let mut peak = 0;
    loop {
        peak = peak.max(memory_kib(pid).0);
        tokio::select! {
            _ = &mut stop => return peak,
            () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
        }
    }
}

/// An `authctl` command (not `serve`) on the benchmark's database, as an operator runs it.
pub fn cli(plan: &Plan, database_url: &str, work: &Path) -> Command {
    let mut cmd = Command::new(&plan.server);
    cmd.current_dir(work)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("SECRET_KEY", crate::BENCH_SECRET_KEY)
        .env("AUTHCTL_BCRYPT_COST", plan.cost.to_string())
        .stdin(Stdio::null());
    cmd
}

/// `authctl ARGS… --output json` run to its end: its JSON, or its stderr as the error.
pub async fn cli_json(
    plan: &Plan,
    database_url: &str,
    work: &Path,
    args: &[&str],
) -> Result<serde_json::Value, String> {
    let mut cmd = cli(plan, database_url, work);
    cmd.args(args).args(["--output", "json"]);
    let what = args.iter().take(2).copied().collect::<Vec<_>>().join(" ");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("{what}: not JSON: {e}"))
}

/// What a command run to its end took: its output, its wall time and its largest RSS.
pub struct Measured {
    pub output: std::process::Output,
    pub took: Duration,
    pub peak_rss_kib: u64,
    /// The CPU share other processes took meanwhile, in % of the machine.
    pub others_cpu_pct: f64,
}

/// Runs `cmd` (blocking: call it from `spawn_blocking`) and samples its high-water RSS
/// (VmHWM) every 20 ms until it exits; the last sample is within 20 ms of its end.
pub fn run_measured(mut cmd: Command) -> Result<Measured, String> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run authctl: {e}"))?;
    let pid = child.id();
    let before = crate::stats::CpuSnap::take(pid);
    // The command's own CPU ticks, last read while it ran (it is gone at the end).
    let (done, peak, ticks) = (AtomicBool::new(false), AtomicU64::new(0), AtomicU64::new(0));
    let output = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(memory_kib(pid).1, Ordering::Relaxed);
                if let Some(t) = crate::stats::process_ticks(&pid.to_string()) {
                    ticks.fetch_max(t, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let output = child.wait_with_output();
        done.store(true, Ordering::Relaxed);
        output
    })
    .map_err(|e| format!("authctl: {e}"))?;
    let took = started.elapsed();
    let mut after = crate::stats::CpuSnap::take(pid);
    after.server = after.server.max(ticks.into_inner());
    Ok(Measured {
        output,
        took,
        peak_rss_kib: peak.into_inner(),
        others_cpu_pct: before.others_pct_until(&after),
    })
}
