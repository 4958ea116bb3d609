//! The one throwaway PostgreSQL cluster: `initdb` into a temp dir, `postgres` on a free
//! 127.0.0.1 port, run as the `postgres` user when we are root (PostgreSQL refuses to
//! run as root). A small shell watchdog stops the server when the owning process
//! exits, so nothing outlives a test run or a benchmark, even one that is killed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// Where Debian's postgresql-15 package puts the server programs.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Server settings for tests: durability is not wanted, connections are (every test
/// has pools of its own).
pub const TEST_SETTINGS: &[(&str, &str)] = &[("fsync", "off"), ("max_connections", "200")];

static SHARED: OnceCell<Result<(String, &'static Cluster), String>> = OnceCell::const_new();

/// The URL of a PostgreSQL server for tests: `AUTHCTL_TEST_POSTGRES_URL`, else a
/// cluster started once for this process (and stopped when it exits).
pub async fn shared_server() -> Result<String, String> {
    if let Ok(url) = std::env::var("AUTHCTL_TEST_POSTGRES_URL") {
        return Ok(url);
    }
    SHARED
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| {
                Cluster::start().map(|c| {
                    // Lives for the whole process; the watchdog stops it at exit.
                    let c: &'static Cluster = Box::leak(Box::new(c));
                    (c.url("postgres"), c)
                })
            })
            .await
            .map_err(|e| e.to_string())?
        })
        .await
        .clone()
        .map(|(url, _)| url)
}

/// A PostgreSQL cluster of our own; its server is stopped and its directory removed
/// on drop.
pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
    settings: Vec<(String, String)>,
    server: Mutex<Option<Child>>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL program, as the postgres user when we are root.
fn pg_command(program: &str) -> Command {
    let path = Path::new(PG_BIN).join(program);
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(path);
        c
    } else {
        Command::new(path)
    }
}

impl Cluster {
    /// initdb + start with [`TEST_SETTINGS`]; errors say what is missing.
    pub fn start() -> Result<Cluster, String> {
        Cluster::start_with(TEST_SETTINGS)
    }

    /// initdb + start, passing each `(name, value)` as `-c name=value` to the server.
    pub fn start_with(settings: &[(&str, &str)]) -> Result<Cluster, String> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            return Err(format!(
                "{PG_BIN}/initdb not found (apt-get install postgresql-15)"
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("authctl-pg-")
            .tempdir()
            .map_err(|e| format!("cluster temp dir: {e}"))?;
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err("cannot chown the cluster dir to postgres".into());
            }
        }
        let data = dir.path().join("data");
        let out = pg_command("initdb")
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
        let cluster = Cluster {
            dir,
            port: crate::free_port()?,
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            server: Mutex::new(None),
        };
        cluster.start_server()?;
        Ok(cluster)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server under a watchdog that stops it when this process exits, and
    /// waits until it accepts connections.
    pub fn start_server(&self) -> Result<(), String> {
        let pg = pg_command("postgres");
        let args: Vec<String> = pg
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let program = pg.get_program().to_string_lossy().into_owned();
        // $1: our pid, $2: the cluster dir to remove once we are gone, then postgres.
        let script = r#"owner=$1; dir=$2; shift 2
"$@" & pg=$!
trap 'kill -INT $pg 2>/dev/null; wait $pg; exit 0' TERM INT
while kill -0 "$owner" 2>/dev/null && kill -0 "$pg" 2>/dev/null; do sleep 0.2; done
kill -INT $pg 2>/dev/null; wait $pg
kill -0 "$owner" 2>/dev/null || rm -rf "$dir""#;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(script)
            .arg("sh")
            .arg(std::process::id().to_string())
            .arg(self.dir.path())
            .arg(program)
            .args(args)
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1"]);
        for (name, value) in &self.settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting postgres: {e}"))?;
        *self.server.lock().map_err(|e| e.to_string())? = Some(child);
        self.wait_accepting(Duration::from_secs(30))
    }

    /// Stops the server (fast shutdown) and waits for it to exit.
    pub fn stop_server(&self) {
        let child = self.server.lock().ok().and_then(|mut guard| guard.take());
        if let Some(mut child) = child {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn wait_accepting(&self, patience: Duration) -> Result<(), String> {
        let deadline = Instant::now() + patience;
        while Instant::now() < deadline {
            let ok = Command::new(Path::new(PG_BIN).join("pg_isready"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "postgres",
                    "-q",
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "postgres did not accept connections within {patience:?}"
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_server();
    }
}
