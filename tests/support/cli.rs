//! The real `authctl` binary as the CLI tests run it (assert_cmd).

use assert_cmd::Command;

use super::{Backend, TestDb};

/// The HMAC key the CLI tests configure.
pub const KEY: &str = "test-key-0123456789abcdefghijklmnopqrstuv";

/// `authctl` with nothing configured, in the temp directory (so no `.env` or
/// `authctl.toml` of the checkout is read), with a 60 s timeout.
pub fn bare() -> Command {
    let mut cmd = Command::new(super::authctl_bin());
    cmd.current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

/// `authctl` against `url`, with the test key and the cheapest bcrypt cost.
pub fn authctl(url: &str) -> Command {
    let mut cmd = bare();
    cmd.env("DATABASE_URL", url)
        .env("SECRET_KEY", KEY)
        .env("AUTHCTL_BCRYPT_COST", "4");
    cmd
}

/// A command's stdout as JSON, or a panic that shows what it printed instead.
pub fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {} / {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A fresh database, migrated by `authctl migrate`.
pub async fn migrated_db(backend: &Backend) -> TestDb {
    let db = TestDb::new(backend).await;
    authctl(&db.url).arg("migrate").assert().success();
    db
}

/// `authctl user add` with the test password on stdin; its JSON output.
pub fn add_user(url: &str, email: &str, username: &str) -> serde_json::Value {
    let out = authctl(url)
        .args([
            "user",
            "add",
            "--email",
            email,
            "--username",
            username,
            "--password-stdin",
            "--output",
            "json",
        ])
        .write_stdin(format!("{}\n", super::PASSWORD))
        .output()
        .expect("run authctl user add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out)
}
