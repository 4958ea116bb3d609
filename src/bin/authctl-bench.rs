//! `authctl-bench`: a reproducible load benchmark of `authctl serve` (issue 6).
//!
//! It starts the `authctl` binary that sits next to it (rebuilt first when run through
//! `cargo run`, so the one command below measures the current tree), configured as
//! shipped except for rate limits (off), a fixed 40-character test key and a
//! throwaway database: SQLite in a temp dir, then PostgreSQL 15 in a throwaway
//! cluster (`initdb` + `postgres` on a free 127.0.0.1 port, as the `postgres` user when
//! run as root, stopped at the end). It drives it with a closed-loop HTTP/1.1 client
//! over fixed keep-alive connections (hyper), keeping every request's latency, so the
//! percentiles are exact. Everything stays on 127.0.0.1; every scenario is bounded
//! (≤ 15 s).
//!
//! ```text
//! cargo run --release --bin authctl-bench                  # both backends, ~2.5 min
//! cargo run --release --bin authctl-bench -- --backend sqlite --only me,liveness
//! cargo run --bin authctl-bench -- --smoke                 # CI: ~1 s per scenario, bcrypt cost 4
//! ```
//!
//! It prints a Markdown table per backend with PASS/MISS per target (informational)
//! and one JSON line per scenario on stdout; progress goes to stderr. The client shares
//! the machine with the server, so each row also says how much CPU *other* processes
//! took meanwhile: a run where that is not ~0 % was disturbed. `liveness` and `me`, whose
//! ratio is a target, are measured in alternating rounds so that a host slowing down
//! for a while slows both alike. `--smoke` exits 1 when any request failed or a refresh
//! chain broke, and never judges timings.

use std::fmt::Write as _;
use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// A 40-character signing key for the benchmark's throwaway databases only.
const BENCH_SECRET_KEY: &str = "authctl-bench-not-a-secret-0123456789abc";
const PASSWORD: &str = "bench-password-0123";
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
const SCENARIOS: [&str; 6] = [
    "liveness",
    "me",
    "login",
    "liveness-under-login",
    "register",
    "refresh",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendArg {
    Sqlite,
    Postgres,
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Load benchmark of `authctl serve` on SQLite and PostgreSQL (see README, Performance).
#[derive(Debug, Parser)]
#[command(name = "authctl-bench", version)]
struct Args {
    /// Which database to benchmark
    #[arg(long, value_enum, default_value_t = BackendArg::Both)]
    backend: BackendArg,
    /// CI mode: ~1 s per scenario at bcrypt cost 4; exit 1 on any failed request or
    /// broken refresh chain (timings are reported, never judged)
    #[arg(long, env = "AUTHCTL_BENCH_SMOKE", value_parser = clap::builder::BoolishValueParser::new())]
    smoke: bool,
    /// The authctl binary to run [default: `authctl` next to this program, rebuilt first
    /// when started by `cargo run`]
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
    /// bcrypt cost for the server and for the in-process limit [default: 12; smoke: 4]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(4..=31))]
    bcrypt_cost: Option<u32>,
    /// Measured seconds per load scenario, after 1 s of warm-up [default: 10; smoke: 1]
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// The server's LOG_LEVEL (one INFO line per request at `info`)
    #[arg(long, default_value = "info", value_name = "FILTER")]
    log_level: String,
    /// Worker threads of the load generator (it shares the machine with the server)
    #[arg(long, default_value_t = 1, value_name = "N")]
    client_threads: usize,
    /// Refresh chains (one connection each) and rotations per chain [default: 8x300; smoke: 4x40]
    #[arg(long, value_name = "CHAINSxROTATIONS")]
    refresh: Option<String>,
    /// Run only these scenarios (comma-separated: liveness, me, login,
    /// liveness-under-login, register, refresh) [default: all]
    #[arg(long, value_delimiter = ',', value_name = "LIST", value_parser = clap::builder::PossibleValuesParser::new(SCENARIOS))]
    only: Vec<String>,
    /// Extra environment for the server, e.g. `--server-env DB_POOL_MAX_CONN=4` (repeatable)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_env_pair)]
    server_env: Vec<(String, String)>,
}

fn parse_env_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "expected KEY=VALUE".to_owned())
}

/// Settings of one run, resolved from [`Args`].
#[derive(Debug, Clone)]
struct Plan {
    smoke: bool,
    server: PathBuf,
    cost: u32,
    warmup: Duration,
    measure: Duration,
    log_level: String,
    chains: usize,
    rotations: usize,
    startup_runs: usize,
    cores: usize,
    client_threads: usize,
    profile: String,
    server_env: Vec<(String, String)>,
    scenarios: Vec<String>,
}

impl Plan {
    fn runs(&self, scenario: &str) -> bool {
        self.scenarios.iter().any(|s| s == scenario)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let smoke = args.smoke;
    let server = match args.server.clone() {
        Some(p) => p,
        None => match sibling_server() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let (chains, rotations) = match args.refresh.as_deref() {
        None if smoke => (4, 40),
        None => (8, 300),
        Some(s) => match s
            .split_once('x')
            .and_then(|(c, r)| Some((c.parse().ok()?, r.parse().ok()?)))
        {
            Some((c, r)) if c > 0 && r > 0 => (c, r),
            _ => {
                eprintln!("error: --refresh takes CHAINSxROTATIONS, e.g. 8x300");
                return ExitCode::from(2);
            }
        },
    };
    let measure = args.duration.unwrap_or(if smoke { 1.0 } else { 10.0 });
    if !(0.1..=13.0).contains(&measure) {
        eprintln!(
            "error: --duration must be between 0.1 and 13 seconds (every scenario stays under 15 s)"
        );
        return ExitCode::from(2);
    }
    let plan = Plan {
        smoke,
        profile: profile_of(&server),
        server,
        cost: args.bcrypt_cost.unwrap_or(if smoke { 4 } else { 12 }),
        warmup: Duration::from_secs_f64(if smoke { 0.2 } else { 1.0 }),
        measure: Duration::from_secs_f64(measure),
        log_level: args.log_level.clone(),
        chains,
        rotations,
        startup_runs: if smoke { 2 } else { 5 },
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        client_threads: args.client_threads.max(1),
        server_env: args.server_env.clone(),
        scenarios: if args.only.is_empty() {
            SCENARIOS.iter().map(|s| (*s).to_owned()).collect()
        } else {
            args.only.clone()
        },
    };
    let backends: &[Backend] = match args.backend {
        BackendArg::Sqlite => &[Backend::Sqlite],
        BackendArg::Postgres => &[Backend::Postgres],
        BackendArg::Both => &[Backend::Sqlite, Backend::Postgres],
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
    for &backend in backends {
        let result = runtime.block_on(async {
            tokio::select! {
                r = run_backend(&plan, backend) => r,
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
            backends.len(),
            if failed { "FAILED" } else { "ok" }
        );
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

// ----- finding and starting the server ----------------------------------------------

/// `authctl` next to this executable. Under `cargo run`, it is (re)built first with
/// the same profile, so `cargo run --release --bin authctl-bench` is the one command.
fn sibling_server() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let dir = exe.parent().ok_or("this program has no directory")?;
    let server = dir.join(format!("authctl{}", std::env::consts::EXE_SUFFIX));
    if let (Some(cargo), Some(manifest)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        let profile = profile_of(&server);
        let mut build = Command::new(cargo);
        build
            .args(["build", "--quiet", "--bin", "authctl", "--manifest-path"])
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

fn profile_of(server: &Path) -> String {
    server
        .parent()
        .and_then(Path::file_name)
        .map_or_else(|| "unknown".into(), |n| n.to_string_lossy().into_owned())
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Result<TempDir, String> {
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `authctl serve`; killed on drop if not stopped.
struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    log: PathBuf,
}

impl Server {
    fn spawn(plan: &Plan, database_url: &str, work: &Path, n: usize) -> Result<Server, String> {
        let port = free_port()?;
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
            .env("SECRET_KEY", BENCH_SECRET_KEY)
            .env("AUTHCTL_BIND", addr.to_string())
            .env("AUTHCTL_RATE_LIMIT_ENABLED", "false")
            .env("AUTHCTL_BCRYPT_COST", plan.cost.to_string())
            .env("LOG_LEVEL", &plan.log_level)
            .envs(plan.server_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", plan.server.display()))?;
        Ok(Server {
            child: Some(child),
            addr,
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Polls `/health/startup` until it answers 200; returns the time since `since`.
    fn wait_started(&mut self, since: Instant, patience: Duration) -> Result<Duration, String> {
        let deadline = since + patience;
        loop {
            if probe_status(self.addr, "/health/startup") == Some(200) {
                return Ok(since.elapsed());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(code)) = child.try_wait()
            {
                return Err(format!(
                    "the server exited with {code}: {}",
                    self.log_tail()
                ));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the server was not ready within {patience:?}: {}",
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// SIGTERM, then waits (10 s at most) for a graceful exit; returns whether it was 0.
    fn stop(&mut self) -> Result<bool, String> {
        let Some(mut child) = self.child.take() else {
            return Ok(true);
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(status.success()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err("the server did not stop within 10 s of SIGTERM".into());
                }
            }
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// Lines of the server log at ERROR level.
    fn log_errors(&self) -> usize {
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

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One `GET path` on a fresh connection; the status, or `None` if nothing answered.
fn probe_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = StdTcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// (VmRSS, VmHWM) of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
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

/// CPU ticks: the whole machine's busy time, and the part spent by this benchmark, the
/// server and PostgreSQL. The rest is other processes: a run where they took a
/// noticeable share was disturbed, and says so.
#[derive(Debug, Clone, Copy)]
struct CpuSnap {
    total: u64,
    busy: u64,
    bench: u64,
    server: u64,
    db: u64,
}

impl CpuSnap {
    fn take(server_pid: u32) -> CpuSnap {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
        // user nice system idle iowait irq softirq steal. Interrupt time is left out
        // of "busy": loopback traffic is processed in softirq and no process is
        // charged for it, so it would read as someone else's.
        let busy = at(0) + at(1) + at(2) + at(7);
        let total = busy + at(3) + at(4) + at(5) + at(6);
        let bench = process_ticks("self").unwrap_or(0);
        let server = process_ticks(&server_pid.to_string()).unwrap_or(0);
        let mut db = 0;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.bytes().all(|b| b.is_ascii_digit())
                    && let Some(t) = process_ticks_if(&name, "postgres")
                {
                    db += t;
                }
            }
        }
        CpuSnap {
            total,
            busy,
            bench,
            server,
            db,
        }
    }

    /// CPU time (µs) the server and the database spent since `self`, per `requests`.
    fn per_request_us(&self, later: &CpuSnap, requests: u64) -> (f64, f64) {
        let tick_us = 1e6 / clock_ticks_per_second();
        let per = |a: u64, b: u64| b.saturating_sub(a) as f64 * tick_us / requests.max(1) as f64;
        (per(self.server, later.server), per(self.db, later.db))
    }

    /// The share of the machine (0–100 %) that other processes used since `self`.
    fn others_pct_until(&self, later: &CpuSnap) -> f64 {
        let total = later.total.saturating_sub(self.total).max(1) as f64;
        let busy = later.busy.saturating_sub(self.busy) as f64;
        let ours = (later.bench + later.server + later.db)
            .saturating_sub(self.bench + self.server + self.db) as f64;
        ((busy - ours) / total * 100.0).max(0.0)
    }
}

/// USER_HZ: 100 on Linux unless `getconf CLK_TCK` says otherwise.
fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the comm.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn process_ticks_if(pid: &str, comm: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    if &stat[open + 1..close] != comm {
        return None;
    }
    process_ticks(pid)
}

// ----- a throwaway PostgreSQL cluster --------------------------------------------------

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn pg_command(program: &str, root: bool) -> Command {
    let path = Path::new(PG_BIN).join(program);
    if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(path);
        c
    } else {
        Command::new(path)
    }
}

/// `initdb` + `postgres` on a free port, under a watchdog shell that stops the server
/// if this process dies; stopped and removed on drop.
struct PgCluster {
    /// Removed on drop, after the server has stopped.
    _dir: TempDir,
    port: u16,
    watchdog: Option<Child>,
}

impl PgCluster {
    fn start() -> Result<PgCluster, String> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            return Err(format!(
                "{PG_BIN}/initdb not found (apt-get install postgresql-15)"
            ));
        }
        let root = is_root();
        let dir = TempDir::new("authctl-bench-pg")?;
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir.0)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err("cannot chown the cluster dir to postgres".into());
            }
        }
        let data = dir.0.join("data");
        let out = pg_command("initdb", root)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let port = free_port()?;
        let pg = pg_command("postgres", root);
        let script = r#"owner=$1; shift
"$@" & pg=$!
trap 'kill -INT $pg 2>/dev/null; wait $pg; exit 0' TERM INT
while kill -0 "$owner" 2>/dev/null && kill -0 "$pg" 2>/dev/null; do sleep 0.2; done
kill -INT $pg 2>/dev/null; wait $pg"#;
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(std::process::id().to_string())
            .arg(pg.get_program())
            .args(pg.get_args())
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir.0)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=100",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        let cluster = PgCluster {
            _dir: dir,
            port,
            watchdog: Some(watchdog),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = Command::new(Path::new(PG_BIN).join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                    "-U",
                    "postgres",
                    "-q",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                return Err("postgres did not accept connections within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &watchdog.id().to_string()])
                .status();
            let _ = watchdog.wait();
        }
    }
}

// ----- the HTTP client -----------------------------------------------------------------

#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    server_pid: u32,
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(target: &Target) -> Result<Sender, String> {
    let stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn send(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

fn get(target: &Target, path: &str, bearer: Option<&HeaderValue>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, target.host.clone());
    if let Some(v) = bearer {
        b = b.header(AUTHORIZATION, v.clone());
    }
    b.body(Full::new(Bytes::new())).expect("a valid request")
}

fn post(
    target: &Target,
    path: &str,
    content_type: &'static str,
    body: String,
) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, target.host.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static(content_type))
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

fn login_request(target: &Target, username: &str) -> Request<Full<Bytes>> {
    post(
        target,
        "/api/v1/auth/token",
        "application/x-www-form-urlencoded",
        format!("username={username}&password={PASSWORD}"),
    )
}

fn register_request(target: &Target, username: &str) -> Request<Full<Bytes>> {
    post(
        target,
        "/api/v1/auth/register",
        "application/json",
        json!({"email": format!("{username}@bench.example"), "username": username, "password": PASSWORD})
            .to_string(),
    )
}

fn refresh_request(target: &Target, token: &str) -> Request<Full<Bytes>> {
    post(
        target,
        "/api/v1/auth/refresh",
        "application/json",
        json!({ "refresh_token": token }).to_string(),
    )
}

/// One request on a fresh connection, expecting `expect`; the JSON body.
async fn call(
    target: &Target,
    req: Request<Full<Bytes>>,
    expect: StatusCode,
) -> Result<Value, String> {
    let mut sender = connect(target).await?;
    let (status, body) = send(&mut sender, req).await?;
    if status != expect {
        return Err(format!(
            "expected {expect}, got {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

fn token_field(v: &Value, name: &str) -> Result<String, String> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name} in {v}"))
}

// ----- load ----------------------------------------------------------------------------

/// What a set of connections measured. Requests that completed inside the window are
/// counted and their latencies kept; failures count wherever they happen.
#[derive(Debug, Default)]
struct Stats {
    ok: u64,
    /// Every request answered, warm-up and tail included (for CPU per request).
    answered: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    window: Duration,
    first_error: Option<String>,
    /// CPU share other processes took meanwhile (noise), in % of the machine.
    others_cpu_pct: f64,
    /// Server and PostgreSQL CPU time per counted request, in µs (less noisy than rates).
    server_cpu_us: f64,
    db_cpu_us: f64,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.answered += other.answered;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// Adds a round of the same load measured in its own window: counts, latencies and
    /// windows add up; CPU per request and others' share are averaged by weight.
    fn add_round(&mut self, round: Stats) {
        let (n0, n1) = (self.answered as f64, round.answered as f64);
        let by_requests = |a: f64, b: f64| (a * n0 + b * n1) / (n0 + n1).max(1.0);
        self.server_cpu_us = by_requests(self.server_cpu_us, round.server_cpu_us);
        self.db_cpu_us = by_requests(self.db_cpu_us, round.db_cpu_us);
        let (w0, w1) = (self.window.as_secs_f64(), round.window.as_secs_f64());
        self.others_cpu_pct =
            (self.others_cpu_pct * w0 + round.others_cpu_pct * w1) / (w0 + w1).max(1e-9);
        let window = self.window + round.window;
        self.merge(round);
        self.latencies_us.sort_unstable();
        self.window = window;
    }

    fn finish(mut self, window: Duration) -> Stats {
        self.latencies_us.sort_unstable();
        self.window = window;
        self
    }

    fn rate(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// The q-quantile latency in ms (nearest rank).
    fn quantile_ms(&self, q: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * self.latencies_us.len() as f64).ceil() as usize)
            .clamp(1, self.latencies_us.len());
        f64::from(self.latencies_us[rank - 1]) / 1000.0
    }

    fn max_ms(&self) -> f64 {
        self.latencies_us
            .last()
            .map_or(f64::NAN, |&v| f64::from(v) / 1000.0)
    }
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn after(warmup: Duration, measure: Duration) -> Window {
        let start = Instant::now() + warmup;
        Window {
            start,
            end: start + measure,
        }
    }

    fn len(&self) -> Duration {
        self.end - self.start
    }
}

type MakeRequest = Arc<dyn Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync>;

/// `conns` connections, each sending `make(conn, seq)` back to back (or one every
/// `pace`) until the window closes. Returns once every connection is idle.
fn start_load(
    target: &Target,
    conns: usize,
    window: Window,
    expect: StatusCode,
    pace: Option<Duration>,
    make: MakeRequest,
) -> tokio::task::JoinSet<Stats> {
    let mut set = tokio::task::JoinSet::new();
    for conn in 0..conns {
        let target = target.clone();
        let make = make.clone();
        set.spawn(async move {
            let mut stats = Stats::default();
            let mut sender: Option<Sender> = None;
            let mut seq = 0u64;
            // Spread paced connections over the period.
            if let Some(p) = pace {
                tokio::time::sleep(p * conn as u32 / conns as u32).await;
            }
            while Instant::now() < window.end {
                let s = match sender.as_mut() {
                    Some(s) => s,
                    None => match connect(&target).await {
                        Ok(s) => sender.insert(s),
                        Err(e) => {
                            stats.errors += 1;
                            stats.first_error.get_or_insert(e);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let req = make(conn, seq);
                seq += 1;
                let t0 = Instant::now();
                let result = send(s, req).await;
                let t1 = Instant::now();
                let counted = t1 >= window.start && t1 <= window.end;
                stats.answered += u64::from(result.is_ok());
                match result {
                    Ok((status, _)) if status == expect => {
                        if counted {
                            stats.ok += 1;
                            let us = (t1 - t0).as_micros().min(u128::from(u32::MAX)) as u32;
                            stats.latencies_us.push(us);
                        }
                    }
                    Ok((status, body)) => {
                        stats.errors += 1;
                        stats.first_error.get_or_insert_with(|| {
                            format!("{status}: {}", String::from_utf8_lossy(&body))
                        });
                    }
                    Err(e) => {
                        stats.errors += 1;
                        stats.first_error.get_or_insert(e);
                        sender = None;
                    }
                }
                if let Some(p) = pace {
                    tokio::time::sleep_until((t0 + p).into()).await;
                }
            }
            stats
        });
    }
    set
}

async fn collect(mut set: tokio::task::JoinSet<Stats>, window: Window) -> Stats {
    let mut total = Stats::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(s) => total.merge(s),
            Err(e) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert(format!("load task failed: {e}"));
            }
        }
    }
    total.finish(window.len())
}

async fn run_load(
    target: &Target,
    plan: &Plan,
    conns: usize,
    expect: StatusCode,
    make: MakeRequest,
) -> Stats {
    run_load_in(
        target,
        Window::after(plan.warmup, plan.measure),
        conns,
        expect,
        make,
    )
    .await
}

/// Rounds in which `liveness` and `me` alternate (one in smoke mode).
const PAIRED_ROUNDS: u32 = 4;

/// Runs the given loads in alternating rounds (a, b, a, b, …), each round on fresh
/// connections with half the usual warm-up and its share of the measuring time, and
/// adds the rounds up per load. A host that slows down for a while (another tenant,
/// CPU steal) then slows every load alike, so the ratio of their rates — what the `me`
/// target compares — stays fair; measured back to back, it drifted by ±10 %.
async fn run_alternating(
    target: &Target,
    plan: &Plan,
    conns: usize,
    loads: Vec<MakeRequest>,
) -> Vec<Stats> {
    let rounds = if plan.smoke { 1 } else { PAIRED_ROUNDS };
    let mut totals: Vec<Stats> = loads.iter().map(|_| Stats::default()).collect();
    for _ in 0..rounds {
        for (make, total) in loads.iter().zip(totals.iter_mut()) {
            let window = Window::after(plan.warmup / 2, plan.measure / rounds);
            let round = run_load_in(target, window, conns, StatusCode::OK, make.clone()).await;
            total.add_round(round);
        }
    }
    totals
}

async fn run_load_in(
    target: &Target,
    window: Window,
    conns: usize,
    expect: StatusCode,
    make: MakeRequest,
) -> Stats {
    let before = CpuSnap::take(target.server_pid);
    let mut stats = collect(
        start_load(target, conns, window, expect, None, make),
        window,
    )
    .await;
    let after = CpuSnap::take(target.server_pid);
    stats.others_cpu_pct = before.others_pct_until(&after);
    (stats.server_cpu_us, stats.db_cpu_us) = before.per_request_us(&after, stats.answered);
    stats
}

/// The in-process bcrypt ceiling: `cores` ÷ one verify's time at `cost`.
#[derive(Debug, Clone, Copy, Default)]
struct BcryptLimit {
    /// One verify with the machine otherwise idle.
    single_ms: f64,
    /// One verify while every core verifies.
    parallel_ms: f64,
    cores: usize,
    others_cpu_pct: f64,
}

impl BcryptLimit {
    fn measure(cost: u32, cores: usize, rounds: usize) -> BcryptLimit {
        let hash = bcrypt::hash(PASSWORD, cost).expect("bcrypt hash");
        let verify = || assert!(bcrypt::verify(PASSWORD, &hash).unwrap_or(false));
        // The median of a few single verifies, so a hiccup on a shared machine does not
        // lower the bar.
        let mut singles: Vec<f64> = (0..rounds.max(1) * 2 - 1)
            .map(|_| {
                let t = Instant::now();
                verify();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        singles.sort_by(f64::total_cmp);
        let single_ms = singles[singles.len() / 2];
        let t = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..cores {
                s.spawn(|| {
                    for _ in 0..rounds {
                        verify();
                    }
                });
            }
        });
        let parallel_ms = t.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
        BcryptLimit {
            single_ms,
            parallel_ms,
            cores,
            others_cpu_pct: 0.0,
        }
    }

    /// Logins per second the CPUs allow: cores ÷ one verify's time (the single-verify
    /// time, the stricter reading).
    fn per_second(&self) -> f64 {
        self.cores as f64 * 1000.0 / self.single_ms
    }
}

// ----- one backend ---------------------------------------------------------------------

#[derive(Debug)]
struct Report {
    backend: Backend,
    liveness: Stats,
    me: Stats,
    login: Stats,
    bcrypt: BcryptLimit,
    under_login_liveness: Stats,
    under_login_me: Stats,
    under_login_logins: Stats,
    register: Stats,
    refresh: Stats,
    refresh_wall: Duration,
    chains: usize,
    broken_chains: usize,
    unfinished_chains: usize,
    rss_idle_kib: u64,
    rss_end_kib: u64,
    rss_peak_kib: u64,
    startup: Vec<Duration>,
    clean_exit: bool,
    server_log_errors: usize,
}

impl Report {
    fn failures(&self) -> u64 {
        [
            &self.liveness,
            &self.me,
            &self.login,
            &self.under_login_liveness,
            &self.under_login_me,
            &self.under_login_logins,
            &self.register,
            &self.refresh,
        ]
        .iter()
        .map(|s| s.errors)
        .sum::<u64>()
            + self.broken_chains as u64
            + u64::from(!self.clean_exit)
    }

    fn startup_median(&self) -> Duration {
        let mut v = self.startup.clone();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }
}

async fn run_backend(plan: &Plan, backend: Backend) -> Result<Report, String> {
    eprintln!("== {} ==", backend.name());
    let work = TempDir::new("authctl-bench")?;
    let cluster;
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", work.0.join("bench.db").display()),
        Backend::Postgres => {
            cluster = tokio::task::spawn_blocking(PgCluster::start)
                .await
                .map_err(|e| e.to_string())??;
            cluster.url()
        }
    };

    // First start migrates the empty database; later starts find it migrated.
    let mut server = Server::spawn(plan, &database_url, &work.0, 0)?;
    server.wait_started(Instant::now(), Duration::from_secs(60))?;
    server.stop()?;
    let mut startup = Vec::new();
    let mut n = 0;
    let mut server = loop {
        n += 1;
        let t = Instant::now();
        let mut s = Server::spawn(plan, &database_url, &work.0, n)?;
        startup.push(s.wait_started(t, Duration::from_secs(30))?);
        if n == plan.startup_runs {
            break s;
        }
        s.stop()?;
    };
    eprintln!(
        "start-to-ready: {}",
        startup
            .iter()
            .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_idle_kib, _) = memory_kib(server.pid());

    let target = Target {
        addr: server.addr,
        host: HeaderValue::from_str(&server.addr.to_string()).map_err(|e| e.to_string())?,
        server_pid: server.pid(),
    };
    let prefix = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);

    // Setup: one user to log in as, and a few sessions for /me.
    let user = format!("{prefix}_user");
    call(
        &target,
        register_request(&target, &user),
        StatusCode::CREATED,
    )
    .await?;
    let mut bearers = Vec::new();
    for _ in 0..4 {
        let pair = call(&target, login_request(&target, &user), StatusCode::OK).await?;
        let access = token_field(&pair, "access_token")?;
        bearers
            .push(HeaderValue::from_str(&format!("Bearer {access}")).map_err(|e| e.to_string())?);
    }
    let bearers = Arc::new(bearers);

    // liveness (the server's own ceiling) and me (JWT check + one query per request),
    // measured in alternating rounds: their ratio is a target.
    let (t, b) = (target.clone(), bearers.clone());
    let me_make: MakeRequest =
        Arc::new(move |c, _| get(&t, "/api/v1/auth/me", Some(&b[c % b.len()])));
    let t = target.clone();
    let liveness_make: MakeRequest = Arc::new(move |_, _| get(&t, "/health/liveness", None));
    let paired: Vec<(&str, MakeRequest)> = [("liveness", liveness_make), ("me", me_make)]
        .into_iter()
        .filter(|(name, _)| plan.runs(name))
        .collect();
    let (mut liveness, mut me) = (Stats::default(), Stats::default());
    if !paired.is_empty() {
        let names: Vec<&str> = paired.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "{}: 64 connections, alternating rounds …",
            names.join(" + ")
        );
        let results = run_alternating(
            &target,
            plan,
            64,
            paired.into_iter().map(|(_, make)| make).collect(),
        )
        .await;
        for (name, stats) in names.into_iter().zip(results) {
            emit(backend, name, &stats, json!({"connections": 64}));
            match name {
                "liveness" => liveness = stats,
                _ => me = stats,
            }
        }
    }

    // login, with the bcrypt ceiling measured just before, in this process.
    let (t, u) = (target.clone(), user.clone());
    let login_make: MakeRequest = Arc::new(move |_, _| login_request(&t, &u));
    let mut login = Stats::default();
    let mut bcrypt = BcryptLimit::default();
    if plan.runs("login") {
        eprintln!("bcrypt limit at cost {} …", plan.cost);
        let (cost, cores) = (plan.cost, plan.cores);
        let before = CpuSnap::take(target.server_pid);
        bcrypt = tokio::task::spawn_blocking(move || BcryptLimit::measure(cost, cores, 3))
            .await
            .map_err(|e| e.to_string())?;
        bcrypt.others_cpu_pct = before.others_pct_until(&CpuSnap::take(target.server_pid));
        eprintln!("login: 8 connections …");
        login = run_load(&target, plan, 8, StatusCode::OK, login_make.clone()).await;
        emit(
            backend,
            "login",
            &login,
            json!({
                "connections": 8,
                "bcrypt_cost": plan.cost,
                "bcrypt_limit_per_s": round2(bcrypt.per_second()),
                "bcrypt_verify_ms": round2(bcrypt.single_ms),
                "bcrypt_verify_all_cores_ms": round2(bcrypt.parallel_ms),
                "bcrypt_other_cpu_pct": round2(bcrypt.others_cpu_pct),
                "cores": plan.cores,
            }),
        );
    }

    // liveness-under-login: paced probes (liveness, and /me) while 8 connections log in.
    let (mut under_login_liveness, mut under_login_me, mut under_login_logins) =
        (Stats::default(), Stats::default(), Stats::default());
    if plan.runs("liveness-under-login") {
        eprintln!("liveness-under-login …");
        let window = Window::after(plan.warmup, plan.measure);
        let before = CpuSnap::take(target.server_pid);
        let logins = start_load(&target, 8, window, StatusCode::OK, None, login_make);
        let t = target.clone();
        let probes = start_load(
            &target,
            4,
            window,
            StatusCode::OK,
            Some(Duration::from_millis(10)),
            Arc::new(move |_, _| get(&t, "/health/liveness", None)),
        );
        let (t, b) = (target.clone(), bearers.clone());
        let me_probes = start_load(
            &target,
            2,
            window,
            StatusCode::OK,
            Some(Duration::from_millis(10)),
            Arc::new(move |c, _| get(&t, "/api/v1/auth/me", Some(&b[c % b.len()]))),
        );
        under_login_liveness = collect(probes, window).await;
        under_login_me = collect(me_probes, window).await;
        under_login_logins = collect(logins, window).await;
        under_login_liveness.others_cpu_pct =
            before.others_pct_until(&CpuSnap::take(target.server_pid));
        emit(
            backend,
            "liveness-under-login",
            &under_login_liveness,
            json!({
                "probe_connections": 4,
                "probe_interval_ms": 10,
                "me_p99_ms": round2(under_login_me.quantile_ms(0.99)),
                "me_errors": under_login_me.errors,
                "logins_per_s": round2(under_login_logins.rate()),
                "login_errors": under_login_logins.errors,
            }),
        );
    }

    // register: every request a new user (one bcrypt hash each).
    let mut register = Stats::default();
    if plan.runs("register") {
        eprintln!("register: 8 connections …");
        let (t, p) = (target.clone(), prefix.clone());
        register = run_load(
            &target,
            plan,
            8,
            StatusCode::CREATED,
            Arc::new(move |c, seq| register_request(&t, &format!("{p}_{c}_{seq}"))),
        )
        .await;
        emit(backend, "register", &register, json!({"connections": 8}));
    }

    // refresh: concurrent rotation chains.
    let (mut refresh, mut refresh_wall, mut broken_chains, mut unfinished_chains) =
        (Stats::default(), Duration::ZERO, 0, 0);
    if plan.runs("refresh") {
        eprintln!(
            "refresh: {} chains x {} rotations …",
            plan.chains, plan.rotations
        );
        (refresh, refresh_wall, broken_chains, unfinished_chains) =
            refresh_chains(&target, plan, &user).await?;
        emit(
            backend,
            "refresh",
            &refresh,
            json!({
                "chains": plan.chains,
                "rotations_per_chain": plan.rotations,
                "broken_chains": broken_chains,
                "unfinished_chains": unfinished_chains,
                "rotations_per_s": round2(refresh.ok as f64 / refresh_wall.as_secs_f64()),
            }),
        );
    }

    let (rss_end_kib, rss_peak_kib) = memory_kib(server.pid());
    let clean_exit = server.stop()?;
    let server_log_errors = server.log_errors();
    let report = Report {
        backend,
        liveness,
        me,
        login,
        bcrypt,
        under_login_liveness,
        under_login_me,
        under_login_logins,
        register,
        refresh,
        refresh_wall,
        chains: plan.chains,
        broken_chains,
        unfinished_chains,
        rss_idle_kib,
        rss_end_kib,
        rss_peak_kib,
        startup,
        clean_exit,
        server_log_errors,
    };
    let startup_ms: Vec<f64> = report
        .startup
        .iter()
        .map(|d| round2(d.as_secs_f64() * 1000.0))
        .collect();
    println!(
        "{}",
        json!({
            "bench": "authctl",
            "backend": backend.name(),
            "scenario": "memory",
            "rss_idle_mib": round2(rss_idle_kib as f64 / 1024.0),
            "rss_end_mib": round2(rss_end_kib as f64 / 1024.0),
            "rss_peak_mib": round2(rss_peak_kib as f64 / 1024.0),
            "start_to_ready_ms": round2(report.startup_median().as_secs_f64() * 1000.0),
            "start_to_ready_runs_ms": startup_ms,
            "clean_exit": clean_exit,
            "server_log_errors": server_log_errors,
        })
    );
    for (name, measured, pass) in report.targets(plan) {
        println!(
            "{}",
            json!({"bench": "authctl", "backend": backend.name(), "scenario": "target", "target": name, "measured": measured, "pass": pass})
        );
    }
    drop(work);
    Ok(report)
}

/// `plan.chains` sessions, each rotated `plan.rotations` times in sequence on its own
/// connection; a chain breaks at its first failed rotation, or if its last access
/// token is refused at `/me`. Returns the stats, the wall time, broken and unfinished
/// chains (stopped by the 15 s bound, not broken).
async fn refresh_chains(
    target: &Target,
    plan: &Plan,
    user: &str,
) -> Result<(Stats, Duration, usize, usize), String> {
    let mut starts = Vec::new();
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..plan.chains {
        let (t, u) = (target.clone(), user.to_owned());
        logins.spawn(async move {
            let pair = call(&t, login_request(&t, &u), StatusCode::OK).await?;
            token_field(&pair, "refresh_token")
        });
    }
    while let Some(r) = logins.join_next().await {
        starts.push(r.map_err(|e| e.to_string())??);
    }
    let before = CpuSnap::take(target.server_pid);
    let began = Instant::now();
    let deadline = began + Duration::from_secs(14);
    let mut set = tokio::task::JoinSet::new();
    for start in starts {
        let t = target.clone();
        let rotations = plan.rotations;
        set.spawn(async move {
            let mut stats = Stats::default();
            let mut token = start;
            let mut access = None;
            let mut broken = false;
            let mut done = 0;
            let mut sender = match connect(&t).await {
                Ok(s) => s,
                Err(e) => {
                    stats.errors += 1;
                    stats.first_error = Some(e);
                    return (stats, true, false);
                }
            };
            while done < rotations && Instant::now() < deadline {
                let t0 = Instant::now();
                let result = send(&mut sender, refresh_request(&t, &token)).await;
                let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                let pair = match result {
                    Ok((StatusCode::OK, body)) => serde_json::from_slice::<Value>(&body).ok(),
                    Ok((status, body)) => {
                        stats.first_error =
                            Some(format!("{status}: {}", String::from_utf8_lossy(&body)));
                        None
                    }
                    Err(e) => {
                        stats.first_error = Some(e);
                        None
                    }
                };
                match pair.as_ref().and_then(|p| {
                    Some((
                        token_field(p, "refresh_token").ok()?,
                        token_field(p, "access_token").ok()?,
                    ))
                }) {
                    Some((next, acc)) => {
                        token = next;
                        access = Some(acc);
                        stats.ok += 1;
                        stats.latencies_us.push(us);
                        done += 1;
                    }
                    None => {
                        stats.errors += 1;
                        broken = true;
                        break;
                    }
                }
            }
            if let (false, Some(acc)) = (broken, access) {
                // The server's access token, used as a header: a broken chain if it is not one.
                let checked = match HeaderValue::from_str(&format!("Bearer {acc}")) {
                    Ok(bearer) => send(&mut sender, get(&t, "/api/v1/auth/me", Some(&bearer)))
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(format!("the access token is not a header value: {e}")),
                };
                match checked {
                    Ok((StatusCode::OK, _)) => {}
                    other => {
                        broken = true;
                        stats.errors += 1;
                        stats.first_error = Some(format!("/me after the chain: {other:?}"));
                    }
                }
            }
            (stats, broken, !broken && done < rotations)
        });
    }
    let mut total = Stats::default();
    let (mut broken, mut unfinished) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (s, b, u) = r.map_err(|e| e.to_string())?;
        total.merge(s);
        broken += usize::from(b);
        unfinished += usize::from(u);
    }
    let wall = began.elapsed();
    let mut total = total.finish(wall);
    let after = CpuSnap::take(target.server_pid);
    total.others_cpu_pct = before.others_pct_until(&after);
    (total.server_cpu_us, total.db_cpu_us) = before.per_request_us(&after, total.ok);
    Ok((total, wall, broken, unfinished))
}

fn round2(v: f64) -> f64 {
    if v.is_finite() {
        (v * 100.0).round() / 100.0
    } else {
        -1.0
    }
}

fn emit(backend: Backend, scenario: &str, s: &Stats, extra: Value) {
    let mut line = json!({
        "bench": "authctl",
        "backend": backend.name(),
        "scenario": scenario,
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

// ----- reporting -----------------------------------------------------------------------

fn ms(v: f64) -> String {
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

fn rate(v: f64, unit: &str) -> String {
    if v >= 100.0 {
        format!("{v:.0} {unit}")
    } else {
        format!("{v:.2} {unit}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MB", kib as f64 / 1024.0)
}

impl Report {
    /// (target, measured, pass)
    fn targets(&self, plan: &Plan) -> Vec<(String, String, bool)> {
        let mut t = Vec::new();
        if plan.runs("login") {
            let limit = self.bcrypt.per_second();
            let ratio = self.login.rate() / limit;
            t.push((
                "login/s ≥ 0.9 × bcrypt limit".to_string(),
                format!("{:.2}/s = {ratio:.2} × {limit:.2}/s", self.login.rate()),
                ratio >= 0.9,
            ));
        }
        if plan.runs("liveness-under-login") {
            let p99 = self.under_login_liveness.quantile_ms(0.99);
            t.push((
                "liveness p99 under login < 10 ms".to_string(),
                ms(p99),
                p99 < 10.0,
            ));
        }
        if plan.runs("me") && plan.runs("liveness") {
            let goal = match self.backend {
                Backend::Sqlite => 0.5,
                Backend::Postgres => 0.25,
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
        if plan.runs("refresh") {
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

    fn table(&self, plan: &Plan) -> String {
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
        if plan.runs("liveness") {
            row(
                &mut out,
                "liveness",
                "64 conns",
                rate(self.liveness.rate(), "req/s"),
                &self.liveness,
                "",
            );
        }
        if plan.runs("me") {
            row(
                &mut out,
                "me",
                "64 conns",
                rate(self.me.rate(), "req/s"),
                &self.me,
                "",
            );
        }
        if plan.runs("login") {
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
        if plan.runs("liveness-under-login") {
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
        if plan.runs("register") {
            row(
                &mut out,
                "register",
                "8 conns",
                rate(self.register.rate(), "users/s"),
                &self.register,
                "",
            );
        }
        if plan.runs("refresh") {
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
