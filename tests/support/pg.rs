//! A throwaway PostgreSQL cluster: `initdb` into a temp dir, `postgres` on a free
//! 127.0.0.1 port, run as the `postgres` user when we are root. A small shell
//! watchdog stops the server when the test process exits, so nothing outlives it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

static SHARED: OnceCell<Result<(String, &'static Cluster), String>> = OnceCell::const_new();

/// The URL of a PostgreSQL server for tests: `AUTHCTL_TEST_POSTGRES_URL`, else a
/// cluster started once for this test process.
pub async fn shared_server() -> Result<String, String> {
    if let Ok(url) = std::env::var("AUTHCTL_TEST_POSTGRES_URL") {
        return Ok(url);
    }
    SHARED
        .get_or_init(|| async {
            tokio::task::spawn_blocking(|| {
                Cluster::start().map(|c| {
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

/// Creates an empty database on the server and returns its URL.
pub async fn fresh_database(server_url: &str) -> String {
    use sqlx::Connection;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::PgConnection::connect(server_url)
        .await
        .expect("connect to test postgres");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (base, _) = server_url.rsplit_once('/').expect("url with a database");
    format!("{base}/{name}")
}

pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
    server: Mutex<Option<Child>>,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
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

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl Cluster {
    /// initdb + start; errors say what is missing.
    pub fn start() -> Result<Cluster, String> {
        if !Path::new(PG_BIN).join("initdb").exists() {
            return Err(format!("{PG_BIN}/initdb not found (install postgresql-15)"));
        }
        let dir = tempfile::Builder::new()
            .prefix("authctl-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .map_err(|e| e.to_string())?;
            if !ok.success() {
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
            port: free_port()?,
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

    /// Starts the server under a watchdog that stops it when this process exits.
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
        let child = Command::new("sh")
            .arg("-c")
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
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
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
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("postgres did not accept connections within 30 s".into())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_server();
    }
}
