//! A real SMTP server the tests control: aiosmtpd (Debian's `python3-aiosmtpd`) running
//! `smtp_sink.py` on a free 127.0.0.1 port. It writes each accepted message to a
//! temp directory as an `.eml` file, refuses everything with 451 while told to, and
//! can be stopped and started again on the same port. Where it cannot be had, the
//! tests say SKIPPED (a failure under `CI=true`).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Python that has aiosmtpd: `AUTHCTL_TEST_PYTHON`, else Debian's.
fn python() -> String {
    std::env::var("AUTHCTL_TEST_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

pub struct SmtpSink {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl SmtpSink {
    /// A running sink, or `None` after saying SKIPPED.
    pub fn start() -> Option<SmtpSink> {
        let usable = Command::new(python())
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !usable {
            super::skip_or_fail(&format!(
                "no SMTP server for the email tests: {} cannot import aiosmtpd \
                 (apt-get install python3-aiosmtpd, or set AUTHCTL_TEST_PYTHON)",
                python()
            ));
            return None;
        }
        let mut sink = SmtpSink {
            port: authctl_testkit::free_port().expect("a free port"),
            dir: tempfile::tempdir().expect("temp dir"),
            child: None,
        };
        sink.run();
        Some(sink)
    }

    fn run(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the SMTP sink");
        let stdout = child.stdout.take().expect("its stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the SMTP sink starts");
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        self.child = Some(child);
    }

    /// `smtp://127.0.0.1:PORT`, for `email.url`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Kills the server: connections are refused until [`SmtpSink::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        // The port was ours a moment ago; a retry covers a slow release.
        for _ in 0..50 {
            if std::net::TcpListener::bind(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.run();
    }

    /// While on, every message is refused with 451.
    pub fn refuse(&self, on: bool) {
        let flag = self.dir.path().join("REFUSE");
        if on {
            std::fs::write(flag, b"").expect("refuse flag");
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// Every message accepted so far, oldest first, as raw RFC 5322 text.
    pub fn messages(&self) -> Vec<String> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .expect("sink dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("message"))
            .collect()
    }

    /// Waits until at least `n` messages arrived; panics after `within`.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} messages arrived within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The token a message carries after `token=` (the tests' link templates put it there).
pub fn token_in(message: &str) -> String {
    let at = message.find("token=").expect("a link with a token") + "token=".len();
    let token: String = message[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert_eq!(token.len(), 43, "a 43-character token: {token}");
    token
}
