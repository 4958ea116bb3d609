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
    use authctl_testkit::process::ServerProcess;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], authctl_testkit::free_port().unwrap()).into();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_authctl"));
    cmd.current_dir(dir.path())
        .env_clear()
        .env("AUTHCTL_BIND", addr.to_string())
        .arg("serve")
        .stderr(std::process::Stdio::piped());
    let mut server = ServerProcess::spawn(cmd, addr).unwrap();
    let ready = server.wait_ready(Instant::now(), Duration::from_secs(10));
    // `authctl health` (the container's HEALTHCHECK) agrees with the probe.
    let healthy = ready.is_ok()
        && authctl(dir.path())
            .args(["health", "--url", &format!("http://{addr}")])
            .output()
            .unwrap()
            .status
            .success();
    let mut stderr_pipe = server.child_mut().and_then(|c| c.stderr.take()).unwrap();
    let status = server.stop(Duration::from_secs(10)).unwrap().unwrap();
    let mut stderr = String::new();
    use std::io::Read;
    stderr_pipe.read_to_string(&mut stderr).unwrap();
    assert!(healthy, "server never became healthy ({ready:?}): {stderr}");
    assert!(status.success(), "SIGTERM exits 0, got {status:?}");
    assert!(dir.path().join("authctl.db").exists());
    assert!(stderr.contains("generated a signing key"), "{stderr}");
    // The CLI finds the stored key.
    authctl(dir.path())
        .args(["user", "list"])
        .assert()
        .success();
}

#[tokio::test]
async fn logs_are_one_json_line_per_request_and_never_contain_secrets() {
    authctl::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let key = "log-test-key-0123456789abcdefghijklmnopq";
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authctl"))
        .current_dir(dir.path())
        .env_clear()
        .env("SECRET_KEY", key)
        .env("AUTHCTL_BCRYPT_COST", "4")
        .env("AUTHCTL_BIND", format!("127.0.0.1:{port}"))
        .args(["--log-format", "json", "--log-level", "debug", "serve"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/health/startup")).send().await
            && r.status() == 200
        {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "server did not start");
    let password = "a-very-secret-password";
    let r = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "log@example.com", "username": "logger", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let pair: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/token"))
        .form(&[("username", "logger"), ("password", password)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = pair["access_token"].as_str().unwrap().to_owned();
    let refresh = pair["refresh_token"].as_str().unwrap().to_owned();
    client
        .get(format!("{base}/api/v1/auth/me"))
        .bearer_auth(&access)
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    let next: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/refresh"))
        .json(&serde_json::json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Reuse, to log the theft warning too.
    client
        .post(format!("{base}/api/v1/auth/refresh"))
        .json(&serde_json::json!({ "refresh_token": refresh }))
        .send()
        .await
        .unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status();
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    for secret in [
        password,
        key,
        &access,
        &refresh,
        next["refresh_token"].as_str().unwrap(),
    ] {
        assert!(!logs.contains(secret), "a secret is in the logs");
    }
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let me = lines
        .iter()
        .find(|l| l["request_id"] == "trace-me-123")
        .expect("the /me request is logged with its request id");
    assert_eq!(me["method"], "GET");
    assert_eq!(me["path"], "/api/v1/auth/me");
    assert_eq!(me["status"], 200);
    assert!(me["latency_ms"].is_number());
    assert!(lines.iter().any(|l| {
        l["message"]
            .as_str()
            .unwrap_or_default()
            .contains("reuse detected")
    }));
}

#[test]
fn a_dotenv_file_in_the_working_directory_is_read_but_never_beats_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "AUTHCTL_BCRYPT_COST=99\n").unwrap();
    authctl(dir.path())
        .args(["user", "list"])
        .assert()
        .code(7)
        .stderr(predicate::str::contains("AUTHCTL_BCRYPT_COST"));
    // A real environment variable wins over the file.
    authctl(dir.path())
        .env("AUTHCTL_BCRYPT_COST", "5")
        .arg("migrate")
        .assert()
        .success();
    assert!(dir.path().join("authctl.db").exists());
}

#[test]
fn refresh_tokens_starting_with_a_hyphen_are_arguments_not_flags() {
    // base64url has '-': one refresh token in 64 starts with it.
    let dir = tempfile::tempdir().unwrap();
    authctl(dir.path()).arg("migrate").assert().success();
    let token = format!("-{}", "A".repeat(42));
    authctl(dir.path())
        .args(["token", "inspect", &token])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("refresh token not found"));
    authctl(dir.path())
        .args(["token", "revoke-family", "--token", &token])
        .assert()
        .code(3);
}
