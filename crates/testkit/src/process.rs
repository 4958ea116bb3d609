//! The `authctl` binary as a child process: started from a prepared [`Command`] on an
//! address the caller chose, polled at `/health/startup` until it is ready, stopped
//! with SIGTERM the way `docker stop` or systemd would, and killed on drop if it was
//! not stopped.
//!
//! Readiness is probed with a raw HTTP/1.1 request over a std `TcpStream`, so callers
//! need no runtime and no HTTP client, and the probe costs the server one small request.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A running `authctl serve`.
pub struct ServerProcess {
    child: Option<Child>,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Spawns `cmd`, which must make the server listen on `addr` (`AUTHCTL_BIND`).
    pub fn spawn(mut cmd: Command, addr: SocketAddr) -> Result<ServerProcess, String> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("starting {}: {e}", cmd.get_program().to_string_lossy()))?;
        Ok(ServerProcess {
            child: Some(child),
            addr,
        })
    }

    /// The child's pid (0 once it has been stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The child itself, e.g. to take a piped stderr.
    pub fn child_mut(&mut self) -> Option<&mut Child> {
        self.child.as_mut()
    }

    /// Polls `/health/startup` until it answers 200; returns the time since `since`.
    /// Fails early, with its exit status, if the server exits meanwhile.
    pub fn wait_ready(&mut self, since: Instant, patience: Duration) -> Result<Duration, String> {
        let deadline = since + patience;
        loop {
            if probe_status(self.addr, "/health/startup") == Some(200) {
                return Ok(since.elapsed());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(code)) = child.try_wait()
            {
                return Err(format!("the server exited with {code}"));
            }
            if Instant::now() > deadline {
                return Err(format!("the server was not ready within {patience:?}"));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// SIGTERM, then waits up to `patience` for the exit; past it, kills the server
    /// and fails. `Ok(None)` if it had been stopped already.
    pub fn stop(&mut self, patience: Duration) -> Result<Option<ExitStatus>, String> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + patience;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(Some(status)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "the server did not stop within {patience:?} of SIGTERM"
                    ));
                }
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One `GET path` on a fresh connection; the status, or `None` if nothing answered.
pub fn probe_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
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
