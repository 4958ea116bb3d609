//! Configuration and error reporting of the real binary: exit codes, one-line
//! errors, secrets never echoed.

use assert_cmd::Command;
use predicates::prelude::*;

fn authctl(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_authctl"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

#[test]
fn weak_or_placeholder_keys_are_refused_with_exit_7_and_never_echoed() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["your-secret-key-change-in-production", "too-short-key"] {
        let out = authctl(dir.path())
            .env("SECRET_KEY", key)
            .args(["user", "list"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(7));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("SECRET_KEY"), "{stderr}");
        assert!(!stderr.contains(key), "the key is echoed: {stderr}");
    }
}

#[test]
fn bad_values_and_unknown_file_keys_name_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    authctl(dir.path())
        .env("AUTHCTL_BCRYPT_COST", "50")
        .args(["user", "list"])
        .assert()
        .code(7)
        .stderr(predicate::str::contains("AUTHCTL_BCRYPT_COST"));
    authctl(dir.path())
        .env("ACCESS_TOKEN_EXPIRE_MINUTES", "5")
        .env("AUTHCTL_ACCESS_TOKEN_TTL", "5m")
        .args(["user", "list"])
        .assert()
        .code(7);
    std::fs::write(
        dir.path().join("authctl.toml"),
        "[auth]\nbcrypt_costt = 5\n",
    )
    .unwrap();
    authctl(dir.path())
        .args(["user", "list"])
        .assert()
        .code(7)
        .stderr(predicate::str::contains("bcrypt_costt"));
    let other = dir.path().join("other.toml");
    std::fs::write(&other, "[server]\nbind = \"nonsense\"\n").unwrap();
    authctl(dir.path())
        .arg("--config")
        .arg(&other)
        .args(["serve"])
        .assert()
        .code(7)
        .stderr(predicate::str::contains("server.bind"));
}

#[test]
fn an_unreachable_database_is_exit_6() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    authctl(dir.path())
        .args([
            "--database-url",
            &format!("postgres://u:secretpw@127.0.0.1:{port}/db"),
            "user",
            "list",
        ])
        .assert()
        .code(6)
        .stderr(
            predicate::str::contains("database").and(predicate::str::contains("secretpw").not()),
        );
}

#[test]
fn usage_errors_are_exit_2_and_help_lists_every_command() {
    let dir = tempfile::tempdir().unwrap();
    authctl(dir.path()).arg("frobnicate").assert().code(2);
    authctl(dir.path()).args(["user", "add"]).assert().code(2);
    let help = authctl(dir.path()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for cmd in ["serve", "migrate", "user", "token", "health", "completions"] {
        assert!(text.contains(cmd), "{cmd} missing from --help");
    }
}

#[test]
fn completions_are_printed_for_every_shell() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        authctl(dir.path())
            .args(["completions", shell])
            .assert()
            .success()
            .stdout(predicate::str::contains("authctl"));
    }
}

#[test]
fn serve_creates_the_sqlite_database_and_the_key_on_first_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_authctl"))
        .current_dir(dir.path())
        .env_clear()
        .env("AUTHCTL_BIND", format!("127.0.0.1:{port}"))
        .arg("serve")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut healthy = false;
    for _ in 0..100 {
        let status = authctl(dir.path())
            .args(["health", "--url", &format!("http://127.0.0.1:{port}")])
            .output()
            .unwrap()
            .status;
        if status.success() {
            healthy = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(healthy, "server never became healthy: {stderr}");
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");
    assert!(dir.path().join("authctl.db").exists());
    assert!(stderr.contains("generated a signing key"), "{stderr}");
    // The CLI finds the stored key.
    authctl(dir.path())
        .args(["user", "list"])
        .assert()
        .success();
}
