//! Email verification and password recovery (SPEC §13), on SQLite and PostgreSQL,
//! against a real SMTP server the tests control (aiosmtpd, `support::smtp`): the four
//! endpoints, the durable outbox (a refusing server, a stopped one, a `serve` killed
//! with SIGKILL, two servers on one database), the tokens' rules, and the CLI.

mod support;

use std::time::{Duration, Instant};

use authctl::config::Settings;
use authctl::config::email::{EmailUrl, LinkTemplate};
use support::cli::{KEY, authctl, stdout_json};
use support::smtp::{SmtpSink, token_in};
use support::{Backend, PASSWORD, TestApp, assert_problem, spawn_app, spawn_app_on};

on_both_backends!(
    a_forgotten_password_is_reset_through_a_mailed_link_and_every_session_ends,
    recover_answers_the_same_202_for_any_address_and_sends_at_most_one_a_minute,
    register_sends_a_verification_message_whose_token_verifies_the_address,
    n_concurrent_resets_with_one_token_give_exactly_one_204,
    a_reset_token_dies_with_a_password_change_and_with_a_newer_token,
    a_refusing_or_stopped_mail_server_gets_the_message_later,
    the_outbox_survives_a_sigkill_of_serve,
    an_unverified_account_with_the_right_password_is_403_when_verification_is_required,
    without_email_the_requests_are_501_and_reset_links_still_work,
    email_test_and_email_outbox_from_the_cli,
    two_servers_on_one_database_send_each_message_once,
);

const FROM: &str = "authctl <no-reply@example.com>";

fn with_email(sink: &SmtpSink) -> impl FnOnce(&mut Settings) + '_ {
    move |s| {
        s.auth.email.url = Some(EmailUrl::parse(&sink.url()).expect("email url"));
        s.auth.email.from = Some(FROM.into());
        s.auth.email.verify_url =
            Some(LinkTemplate::parse("http://app.test/verify#token={token}").expect("template"));
        s.auth.email.reset_url =
            Some(LinkTemplate::parse("http://app.test/reset#token={token}").expect("template"));
    }
}

async fn post(app: &TestApp, path: &str, body: serde_json::Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn recover(app: &TestApp, email: &str) -> reqwest::Response {
    post(
        app,
        "/api/v1/auth/recover",
        serde_json::json!({ "email": email }),
    )
    .await
}

/// The messages addressed to `to`.
fn to(messages: &[String], to: &str) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.lines().any(|l| l.starts_with("To:") && l.contains(to)))
        .cloned()
        .collect()
}

async fn a_forgotten_password_is_reset_through_a_mailed_link_and_every_session_ends(
    backend: Backend,
) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_app(&backend, |s| {
        with_email(&sink)(s);
        s.auth.lockout_threshold = 2;
    })
    .await;
    let (access, refresh) = app.user_with_tokens("rita").await;
    // Lock the account, then recover it.
    for _ in 0..2 {
        assert_eq!(app.login("rita", "not-the-password").await.status(), 401);
    }
    let r = recover(&app, "RITA@example.com").await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let messages = sink.wait_for(2, Duration::from_secs(20)).await;
    let mine = to(&messages, "rita@example.com");
    let reset = mine
        .iter()
        .find(|m| m.contains("Subject: Reset your password"))
        .expect("a reset message");
    for header in [
        "From: authctl <no-reply@example.com>",
        "Date: ",
        "Message-ID: <",
    ] {
        assert!(reset.contains(header), "{header} in {reset}");
    }
    assert!(
        reset.contains("Content-Type: text/plain; charset=utf-8"),
        "{reset}"
    );
    let token = token_in(reset);
    assert_eq!(reset.matches(&token).count(), 1, "the token exactly once");

    // Fetching the link spends nothing: only the POST does.
    let new = "a brand new passphrase";
    let r = post(
        &app,
        "/api/v1/auth/reset",
        serde_json::json!({"token": token, "new_password": new}),
    )
    .await;
    assert_eq!(r.status(), 204);
    // Every session is gone, the lock too, and the address counts as verified.
    assert_eq!(app.me(&access).await.status(), 401);
    assert_eq!(app.refresh(&refresh).await.status(), 401);
    assert_eq!(app.login("rita", PASSWORD).await.status(), 401);
    let r = app.login("rita", new).await;
    assert_eq!(r.status(), 200, "the lockout was cleared");
    let body: serde_json::Value = r.json().await.unwrap();
    let me: serde_json::Value = app
        .me(body["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["email_verified"], true);
    // Spent: a second use is 400, so is garbage and a verification-purpose misuse.
    let again = post(
        &app,
        "/api/v1/auth/reset",
        serde_json::json!({"token": token, "new_password": "yet another passphrase"}),
    )
    .await;
    assert_problem(again, 400).await;
    let verify = post(
        &app,
        "/api/v1/auth/verify",
        serde_json::json!({"token": token}),
    )
    .await;
    assert_problem(verify, 400).await;
    // The audit log has the request and the reset, and no token.
    let out = authctl(&app.db.url)
        .args(["audit", "list", "--user", "rita", "--output", "json"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("password_reset_requested") && text.contains("\"password_reset\""));
    assert!(!text.contains(&token));
    app.shutdown().await;
}

async fn recover_answers_the_same_202_for_any_address_and_sends_at_most_one_a_minute(
    backend: Backend,
) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_app(&backend, with_email(&sink)).await;
    app.user_with_tokens("sam").await;
    let known = recover(&app, "sam@example.com").await;
    let unknown = recover(&app, "nobody@example.com").await;
    assert_eq!(known.status(), 202);
    assert_eq!(unknown.status(), 202);
    let (known_ct, unknown_ct) = (
        known.headers()["content-type"].clone(),
        unknown.headers()["content-type"].clone(),
    );
    assert_eq!(known_ct, unknown_ct);
    assert_eq!(known.bytes().await.unwrap(), unknown.bytes().await.unwrap());
    // Within the minute: still 202, nothing more queued.
    for _ in 0..3 {
        assert_eq!(recover(&app, "sam@example.com").await.status(), 202);
    }
    // A malformed address is 422 naming the field.
    let bad = assert_problem(recover(&app, "not an address").await, 422).await;
    assert_eq!(bad["errors"][0]["field"], "email");
    sink.wait_for(2, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let resets: Vec<_> = sink
        .messages()
        .into_iter()
        .filter(|m| m.contains("Subject: Reset your password"))
        .collect();
    assert_eq!(resets.len(), 1, "one reset message within the minute");
    assert!(to(&sink.messages(), "nobody@example.com").is_empty());
    app.shutdown().await;
}

async fn register_sends_a_verification_message_whose_token_verifies_the_address(backend: Backend) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_app(&backend, with_email(&sink)).await;
    let r = app.register("vera@example.com", "vera", PASSWORD).await;
    assert_eq!(r.status(), 201);
    let user: serde_json::Value = r.json().await.unwrap();
    assert_eq!(user["email_verified"], false);
    let messages = sink.wait_for(1, Duration::from_secs(20)).await;
    let message = messages
        .iter()
        .find(|m| m.contains("Subject: Confirm your email address"))
        .expect("a verification message");
    let token = token_in(message);
    // A verification token resets nothing.
    let r = post(
        &app,
        "/api/v1/auth/reset",
        serde_json::json!({"token": token, "new_password": "a brand new passphrase"}),
    )
    .await;
    assert_problem(r, 400).await;
    let r = post(
        &app,
        "/api/v1/auth/verify",
        serde_json::json!({"token": token}),
    )
    .await;
    assert_eq!(r.status(), 204);
    let r = post(
        &app,
        "/api/v1/auth/verify",
        serde_json::json!({"token": token}),
    )
    .await;
    assert_problem(r, 400).await;
    let out = authctl(&app.db.url)
        .args(["user", "show", "vera", "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(stdout_json(&out)["email_verified"], true);
    // Verified: asking again queues nothing (still 202).
    let r = post(
        &app,
        "/api/v1/auth/verify/request",
        serde_json::json!({"email": "vera@example.com"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(sink.messages().len(), 1);
    app.shutdown().await;
}

/// A reset token for `name` from `user reset-link --output json`.
fn reset_link(app: &TestApp, name: &str) -> serde_json::Value {
    let out = authctl(&app.db.url)
        .args(["user", "reset-link", name, "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out)
}

async fn n_concurrent_resets_with_one_token_give_exactly_one_204(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    app.user_with_tokens("nina").await;
    let token = reset_link(&app, "nina")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let tries: Vec<_> = (0..12)
        .map(|i| {
            let client = app.client.clone();
            let url = app.url("/api/v1/auth/reset");
            let body =
                serde_json::json!({"token": token, "new_password": format!("new passphrase {i}")});
            tokio::spawn(async move {
                client
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tries {
        statuses.push(t.await.unwrap().unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 204).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 204 || *s == 400),
        "{statuses:?}"
    );
    app.shutdown().await;
}

async fn a_reset_token_dies_with_a_password_change_and_with_a_newer_token(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    app.user_with_tokens("olga").await;
    let reset = |token: &str| {
        post(
            &app,
            "/api/v1/auth/reset",
            serde_json::json!({"token": token, "new_password": "a brand new passphrase"}),
        )
    };
    // A newer token voids the older one.
    let first = reset_link(&app, "olga")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = reset_link(&app, "olga")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_problem(reset(&first).await, 400).await;
    // A password change by another path voids the newest one too.
    authctl(&app.db.url)
        .args(["user", "set-password", "olga", "--password-stdin"])
        .write_stdin("changed by the operator\n")
        .assert()
        .success();
    assert_problem(reset(&second).await, 400).await;
    // So does disabling the account.
    let third = reset_link(&app, "olga")["token"]
        .as_str()
        .unwrap()
        .to_owned();
    authctl(&app.db.url)
        .args(["user", "disable", "olga"])
        .assert()
        .success();
    assert_problem(reset(&third).await, 400).await;
    app.shutdown().await;
}

async fn a_refusing_or_stopped_mail_server_gets_the_message_later(backend: Backend) {
    let Some(mut sink) = SmtpSink::start() else {
        return;
    };
    sink.refuse(true);
    let app = spawn_app(&backend, with_email(&sink)).await;
    app.user_with_tokens("rufus").await;
    assert_eq!(recover(&app, "rufus@example.com").await.status(), 202);
    // Refused (451) at least once, then the server goes away altogether.
    let outbox = |app: &TestApp| {
        let out = authctl(&app.db.url)
            .args(["email", "outbox", "--output", "json"])
            .output()
            .unwrap();
        stdout_json(&out)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = outbox(&app);
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "reset")
            .cloned();
        if let Some(row) = row
            && row["attempts"].as_i64().unwrap_or(0) >= 1
            && row["last_error"].is_string()
        {
            assert_eq!(row["state"], "pending");
            assert!(row["last_error"].as_str().unwrap().contains("451"), "{row}");
            assert!(row["next_attempt_at"].is_string());
            break;
        }
        assert!(Instant::now() < deadline, "no refused try: {rows}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sink.stop();
    tokio::time::sleep(Duration::from_secs(3)).await;
    sink.refuse(false);
    sink.restart();
    // Register's verification message and the reset message both come through.
    let messages = sink.wait_for(2, Duration::from_secs(60)).await;
    assert!(
        messages
            .iter()
            .any(|m| m.contains("Subject: Reset your password"))
    );
    let rows = outbox(&app);
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "reset")
        .cloned()
        .expect("the row");
    // The last state may lag the delivery by a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut row = row;
    while row["state"] != "sent" {
        assert!(Instant::now() < deadline, "{row}");
        tokio::time::sleep(Duration::from_millis(100)).await;
        row = outbox(&app).as_array().unwrap()[0].clone();
    }
    assert!(row["attempts"].as_i64().unwrap() >= 2, "{row}");
    assert!(
        !row.to_string().contains("token"),
        "no body or token in the outbox listing"
    );
    app.shutdown().await;
}

async fn the_outbox_survives_a_sigkill_of_serve(backend: Backend) {
    let Some(mut sink) = SmtpSink::start() else {
        return;
    };
    sink.stop();
    let db = support::TestDb::new(&backend).await;
    authctl(&db.url).arg("migrate").assert().success();
    support::cli::add_user(&db.url, "kim@example.com", "kim");
    let addr = support::served::free_addr();
    let mail_url = sink.url();
    let serve = |addr: std::net::SocketAddr| {
        let mut cmd = std::process::Command::new(support::authctl_bin());
        cmd.current_dir(std::env::temp_dir())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &db.url)
            .env("SECRET_KEY", KEY)
            .env("AUTHCTL_BIND", addr.to_string())
            .env("AUTHCTL_EMAIL_URL", &mail_url)
            .env("AUTHCTL_EMAIL_FROM", FROM)
            .env(
                "AUTHCTL_EMAIL_RESET_URL",
                "http://app.test/reset#token={token}",
            )
            .args(["serve", "--no-migrate"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut server =
            authctl_testkit::process::ServerProcess::spawn(cmd, addr).expect("serve starts");
        server
            .wait_ready(Instant::now(), Duration::from_secs(60))
            .expect("serve is ready");
        server
    };
    let server = serve(addr);
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/auth/recover"))
        .json(&serde_json::json!({"email": "kim@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // The mail server is down; the process dies by SIGKILL (ServerProcess's drop).
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(server);
    sink.restart();
    let addr = support::served::free_addr();
    let _server = serve(addr);
    let messages = sink.wait_for(1, Duration::from_secs(150)).await;
    assert!(
        messages[0].contains("To: kim@example.com"),
        "{}",
        messages[0]
    );
    assert!(messages[0].contains("token="));
}

async fn an_unverified_account_with_the_right_password_is_403_when_verification_is_required(
    backend: Backend,
) {
    let app = spawn_app(&backend, |s| s.auth.require_verified_email = true).await;
    assert_eq!(
        app.register("uma@example.com", "uma", PASSWORD)
            .await
            .status(),
        201
    );
    let wrong = assert_problem(app.login("uma", "not-the-password").await, 401).await;
    assert!(wrong.get("mfa_token").is_none());
    let right = assert_problem(app.login("uma", PASSWORD).await, 403).await;
    assert_eq!(right["error"], "email_not_verified");
    authctl(&app.db.url)
        .args(["user", "verify", "uma"])
        .assert()
        .success();
    assert_eq!(app.login("uma", PASSWORD).await.status(), 200);
    app.shutdown().await;
}

async fn without_email_the_requests_are_501_and_reset_links_still_work(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (access, _) = app.user_with_tokens("walt").await;
    let r = recover(&app, "walt@example.com").await;
    let body = assert_problem(r, 501).await;
    assert!(body["detail"].as_str().unwrap().contains("not configured"));
    let r = post(
        &app,
        "/api/v1/auth/verify/request",
        serde_json::json!({"email": "walt@example.com"}),
    )
    .await;
    assert_problem(r, 501).await;
    let link = reset_link(&app, "walt");
    assert!(link["link"].is_null(), "no template: {link}");
    let token = link["token"].as_str().unwrap();
    assert_eq!(token.len(), 43);
    let r = post(
        &app,
        "/api/v1/auth/reset",
        serde_json::json!({"token": token, "new_password": "a brand new passphrase"}),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.me(&access).await.status(), 401);
    assert_eq!(
        app.login("walt", "a brand new passphrase").await.status(),
        200
    );
    let r = post(
        &app,
        "/api/v1/auth/reset",
        serde_json::json!({"token": token, "new_password": "short"}),
    )
    .await;
    assert_eq!(r.status(), 422);
    app.shutdown().await;
}

async fn email_test_and_email_outbox_from_the_cli(backend: Backend) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let db = support::TestDb::new(&backend).await;
    let app = spawn_app_on(db, with_email(&sink)).await;
    let email = |args: &[&str]| {
        let mut cmd = authctl(&app.db.url);
        cmd.env("AUTHCTL_EMAIL_URL", sink.url())
            .env("AUTHCTL_EMAIL_FROM", FROM)
            .args(args);
        cmd
    };
    email(&["email", "test", "ops@example.com"])
        .assert()
        .success();
    let messages = sink.wait_for(1, Duration::from_secs(10)).await;
    assert!(messages[0].contains("To: ops@example.com"));
    sink.refuse(true);
    let out = email(&["email", "test", "ops@example.com"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("451"), "the server's reply: {stderr}");
    // Without email.url: a clear error.
    let out = authctl(&app.db.url)
        .args(["email", "test", "ops@example.com"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let outbox = email(&["email", "outbox", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.code().is_some());
    assert_eq!(stdout_json(&outbox), serde_json::json!([]));
    app.shutdown().await;
}

async fn two_servers_on_one_database_send_each_message_once(backend: Backend) {
    let Some(sink) = SmtpSink::start() else {
        return;
    };
    let app = spawn_app(&backend, with_email(&sink)).await;
    // A second server, with its own sender, on the same database.
    let second = authctl::server::spawn(app.settings.clone(), Default::default())
        .await
        .expect("a second server starts");
    let second_url = format!("http://{}", second.addr);
    let n = 12;
    for i in 0..n {
        let r = app
            .register(
                &format!("twin{i}@example.com"),
                &format!("twin{i}"),
                PASSWORD,
            )
            .await;
        assert_eq!(r.status(), 201);
    }
    // Half the reset requests through each server: both senders race for every message.
    for i in 0..n {
        let base = if i % 2 == 0 {
            app.base.clone()
        } else {
            second_url.clone()
        };
        let r = app
            .client
            .post(format!("{base}/api/v1/auth/recover"))
            .json(&serde_json::json!({ "email": format!("twin{i}@example.com") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    // n verification messages (register) and n reset messages, each exactly once.
    sink.wait_for(2 * n, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 2 * n, "no message twice");
    let ids: std::collections::BTreeSet<String> = messages
        .iter()
        .filter_map(|m| {
            m.lines()
                .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(ids.len(), 2 * n, "every Message-ID once");
    second.shutdown().await.expect("clean shutdown");
    app.shutdown().await;
}
