//! The real binary, `authctl serve`, as a child process on a fresh SQLite database and
//! a free port: for what only a process shows (signals, exit statuses, stderr).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free address on 127.0.0.1 (bound once, then released for the child to take).
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// `authctl serve` on a free port, stderr as given.
pub struct Served {
    pub child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Served {
    /// On a fresh SQLite database.
    pub fn start(stderr: Stdio) -> Served {
        Self::start_with(stderr, &[])
    }

    /// On a fresh SQLite database, with more settings in the environment.
    pub fn start_with(stderr: Stdio, env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        Self::start_in(dir, &url, "4", stderr, env)
    }

    /// On `url`, hashing at `bcrypt_cost`.
    pub fn start_on(url: &str, bcrypt_cost: &str, stderr: Stdio) -> Served {
        Self::start_in(tempfile::tempdir().unwrap(), url, bcrypt_cost, stderr, &[])
    }

    pub fn start_in(
        dir: tempfile::TempDir,
        url: &str,
        bcrypt_cost: &str,
        stderr: Stdio,
        env: &[(&str, &str)],
    ) -> Served {
        let addr = free_addr();
        let child = Command::new(super::authctl_bin())
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", url)
            .env("SECRET_KEY", "test-key-0123456789abcdefghijklmnopqrstuv")
            .env("AUTHCTL_BCRYPT_COST", bcrypt_cost)
            .envs(env.iter().copied())
            .args(["serve", "--bind", &addr.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Served {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Waits until startup has finished (`/health/startup` answers 200).
    pub async fn wait_ready(&self) {
        authctl::install_crypto_provider();
        let client = reqwest::Client::new();
        let url = format!("http://{}/health/startup", self.addr);
        for _ in 0..300 {
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server did not finish starting");
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits at most `within` for the process to exit.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
