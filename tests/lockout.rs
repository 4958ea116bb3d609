//! A lock that always ends (SPEC §10, issue 20), on SQLite and PostgreSQL: a login
//! cut off at any point — a client that hangs up mid-hash, a full hash queue, a
//! server killed mid-login — never leaves the account refusing the right password
//! past `lockout_duration`; `auth.lockout_permanent_after`; attempts beyond the
//! threshold in flight at once wait their turn instead of being refused; a password
//! change whose client hangs up still ends every other session.

mod support;

use std::time::{Duration, Instant};

use authctl_testkit::process::ServerProcess;
use support::cli::{KEY, authctl, stdout_json};
use support::{Backend, PASSWORD, TestApp, spawn_app};

on_both_backends!(
    a_login_whose_client_hangs_up_mid_hash_still_leaves_a_lock_that_ends,
    a_login_refused_for_a_full_hash_queue_is_not_counted,
    a_server_killed_mid_login_leaves_a_lock_that_ends,
    thirty_concurrent_right_logins_at_threshold_three_all_succeed,
    failures_across_locks_lock_for_good_until_unlocked,
    a_password_change_whose_client_hangs_up_still_ends_the_other_sessions,
);

/// `user show USER --output json`.
fn show(app: &TestApp, user: &str) -> serde_json::Value {
    let out = authctl(&app.db.url)
        .args(["user", "show", user, "--output", "json"])
        .output()
        .expect("user show");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out)
}

/// A login whose client gives up after `after`: the server is left mid-request.
async fn login_cut_off(app: &TestApp, user: &str, password: &str, after: Duration) {
    let client = reqwest::Client::builder()
        .timeout(after)
        .build()
        .expect("client");
    let r = client
        .post(app.url("/api/v1/auth/token"))
        .form(&[("username", user), ("password", password)])
        .send()
        .await;
    assert!(
        r.as_ref().is_err_and(reqwest::Error::is_timeout),
        "the login was meant to be cut off mid-hash, got {r:?}"
    );
}

async fn register(app: &TestApp, name: &str) {
    let r = app
        .register(&format!("{name}@example.com"), name, PASSWORD)
        .await;
    assert_eq!(r.status(), 201);
}

async fn a_login_whose_client_hangs_up_mid_hash_still_leaves_a_lock_that_ends(backend: Backend) {
    // Cost 12: a verify takes far longer than the client waits.
    let app = spawn_app(&backend, |s| {
        s.auth.bcrypt_cost = 12;
        s.auth.lockout_threshold = 2;
        // Long enough for the checks below on a loaded machine.
        s.auth.lockout_duration = Duration::from_secs(6);
    })
    .await;
    register(&app, "cut").await;
    assert_eq!(app.login("cut", "not-the-password").await.status(), 401);
    // The attempt that reaches the threshold never gets its answer.
    login_cut_off(&app, "cut", "not-the-password", Duration::from_millis(60)).await;
    let locked_at = Instant::now();
    let state = show(&app, "cut");
    assert!(state["locked_until"].is_string(), "locked at once: {state}");
    // Locked: the right password is refused while the lock lasts…
    assert_eq!(app.login("cut", PASSWORD).await.status(), 401);
    // …and accepted once it ran out.
    tokio::time::sleep(
        Duration::from_secs(6).saturating_sub(locked_at.elapsed()) + Duration::from_millis(300),
    )
    .await;
    assert_eq!(app.login("cut", PASSWORD).await.status(), 200);
    let state = show(&app, "cut");
    assert!(state["locked_until"].is_null(), "{state}");
    assert_eq!(state["failed_logins"], 0);
    app.shutdown().await;
}

async fn a_login_refused_for_a_full_hash_queue_is_not_counted(backend: Backend) {
    // Every counted attempt locks (threshold 1); hashing slots wait at most 100 ms.
    let app = spawn_app(&backend, |s| {
        s.auth.bcrypt_cost = 13;
        s.auth.lockout_threshold = 1;
        s.auth.hash_queue_timeout = Duration::from_millis(100);
    })
    .await;
    register(&app, "queued").await;
    // Unknown accounts still cost a full verify: these fill every slot and the queue.
    let flood: Vec<_> = (0..6)
        .map(|i| {
            let client = app.client.clone();
            let url = app.url("/api/v1/auth/token");
            tokio::spawn(async move {
                client
                    .post(url)
                    .form(&[
                        ("username", format!("nobody{i}")),
                        ("password", "x".repeat(9)),
                    ])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = app.login("queued", "not-the-password").await;
    assert_eq!(r.status(), 503, "no slot freed up within 100 ms");
    assert!(r.headers().contains_key("retry-after"));
    for f in flood {
        let _ = f.await;
    }
    // The refused attempt checked nothing, so it neither counts nor locks.
    let state = show(&app, "queued");
    assert!(state["locked_until"].is_null(), "{state}");
    assert_eq!(state["failed_logins"], 0, "{state}");
    assert_eq!(app.login("queued", PASSWORD).await.status(), 200);
    app.shutdown().await;
}

async fn a_server_killed_mid_login_leaves_a_lock_that_ends(backend: Backend) {
    let db = support::TestDb::new(&backend).await;
    authctl(&db.url).arg("migrate").assert().success();
    // Its hash at cost 14: a verify takes about a second, time to kill the server.
    authctl(&db.url)
        .env("AUTHCTL_BCRYPT_COST", "14")
        .args([
            "user",
            "add",
            "--email",
            "kill@example.com",
            "--username",
            "kill",
        ])
        .arg("--password-stdin")
        .write_stdin(format!("{PASSWORD}\n"))
        .assert()
        .success();
    let port = authctl_testkit::free_port().expect("a free port");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut cmd = std::process::Command::new(support::authctl_bin());
    cmd.current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("SECRET_KEY", KEY)
        .env("AUTHCTL_BIND", addr.to_string())
        .env("AUTHCTL_RATE_LIMIT_ENABLED", "false")
        .env("AUTHCTL_BCRYPT_COST", "4")
        .env("AUTHCTL_LOCKOUT_THRESHOLD", "1")
        .env("AUTHCTL_LOCKOUT_DURATION", "8s")
        .args(["serve", "--no-migrate"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut server = ServerProcess::spawn(cmd, addr).expect("serve starts");
    server
        .wait_ready(Instant::now(), Duration::from_secs(60))
        .expect("serve is ready");
    // A wrong guess at threshold 1 takes the lock; the process dies mid-hash.
    let client = reqwest::Client::new();
    let login = client
        .post(format!("http://{addr}/api/v1/auth/token"))
        .form(&[("username", "kill"), ("password", "not-the-password")])
        .send();
    let kill = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        drop(server);
    };
    let (answer, ()) = tokio::join!(login, kill);
    assert!(
        answer.is_err(),
        "the server died before answering: {answer:?}"
    );
    let killed_at = Instant::now();

    // Another server on the same database: locked now, the right password works after
    // the lock's duration.
    let app = support::spawn_app_on(db, |s| {
        s.auth.lockout_threshold = 1;
        s.auth.lockout_duration = Duration::from_secs(8);
        s.auth.hash_queue_timeout = Duration::from_millis(300);
    })
    .await;
    assert!(show(&app, "kill")["locked_until"].is_string());
    assert_ne!(
        app.login("kill", PASSWORD).await.status(),
        200,
        "still locked"
    );
    tokio::time::sleep(
        Duration::from_secs(8).saturating_sub(killed_at.elapsed()) + Duration::from_millis(300),
    )
    .await;
    assert_eq!(app.login("kill", PASSWORD).await.status(), 200);
    app.shutdown().await;
}

async fn thirty_concurrent_right_logins_at_threshold_three_all_succeed(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.auth.lockout_threshold = 3;
        s.auth.hash_queue_timeout = Duration::from_secs(20);
    })
    .await;
    register(&app, "fleet").await;
    let logins: Vec<_> = (0..30)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/api/v1/auth/token");
            tokio::spawn(async move {
                client
                    .post(url)
                    .form(&[("username", "fleet"), ("password", PASSWORD)])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for l in logins {
        statuses.push(l.await.expect("task").expect("answer"));
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let state = show(&app, "fleet");
    assert!(state["locked_until"].is_null(), "{state}");
    assert_eq!(state["failed_logins"], 0);
    app.shutdown().await;
}

async fn failures_across_locks_lock_for_good_until_unlocked(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.auth.lockout_threshold = 2;
        // Locks of 3 s: long enough that the refused attempts below land inside one
        // on a loaded machine.
        s.auth.lockout_duration = Duration::from_secs(3);
        s.auth.lockout_max_duration = Duration::from_secs(3);
        s.auth.lockout_permanent_after = 4;
    })
    .await;
    register(&app, "perm").await;
    for _ in 0..2 {
        assert_eq!(app.login("perm", "not-the-password").await.status(), 401);
    }
    // Refused while locked: these do not count towards the permanent lock.
    for _ in 0..3 {
        assert_eq!(app.login("perm", "not-the-password").await.status(), 401);
    }
    let state = show(&app, "perm");
    assert_eq!(state["consecutive_failures"], 2, "{state}");
    assert_eq!(state["permanently_locked"], false);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    for _ in 0..2 {
        assert_eq!(app.login("perm", "not-the-password").await.status(), 401);
    }
    let state = show(&app, "perm");
    assert_eq!(state["permanently_locked"], true, "{state}");
    assert_eq!(state["consecutive_failures"], 4);
    // Past the lock's duration: still locked.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(app.login("perm", PASSWORD).await.status(), 401);
    let out = authctl(&app.db.url)
        .args(["user", "unlock", "perm", "--output", "json"])
        .output()
        .expect("unlock");
    assert_eq!(stdout_json(&out)["was_locked"], true);
    assert_eq!(app.login("perm", PASSWORD).await.status(), 200);
    let state = show(&app, "perm");
    assert_eq!(state["consecutive_failures"], 0);
    assert_eq!(state["permanently_locked"], false);
    app.shutdown().await;
}

async fn a_password_change_whose_client_hangs_up_still_ends_the_other_sessions(backend: Backend) {
    // Lockout off: the polls below with the new password fail until the change lands.
    let app = spawn_app(&backend, |s| {
        s.auth.bcrypt_cost = 12;
        s.auth.lockout_threshold = 0;
    })
    .await;
    let (access, _) = app.user_with_tokens("hang").await;
    let (other_access, other_refresh) = {
        let r = app.login("hang", PASSWORD).await;
        let b: serde_json::Value = r.json().await.expect("tokens");
        (
            b["access_token"].as_str().expect("access").to_owned(),
            b["refresh_token"].as_str().expect("refresh").to_owned(),
        )
    };
    let new = "a brand new passphrase";
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(60))
        .build()
        .expect("client");
    let r = client
        .post(app.url("/api/v1/auth/password"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"current_password": PASSWORD, "new_password": new}))
        .send()
        .await;
    assert!(r.is_err_and(|e| e.is_timeout()), "cut off mid-hash");
    // The change goes on to its end: the new password, and no other session alive.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if app.login("hang", new).await.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the new password never took");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.me(&other_access).await.status(), 401);
    assert_eq!(app.refresh(&other_refresh).await.status(), 401);
    assert_eq!(
        app.me(&access).await.status(),
        200,
        "the caller's own survives"
    );
    app.shutdown().await;
}
