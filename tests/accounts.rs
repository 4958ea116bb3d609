//! Accounts that defend themselves (SPEC §10), on SQLite and PostgreSQL: the audit log
//! as `authctl audit list` shows it after real API calls and CLI commands; lockout per
//! account under concurrency, with `user show` and `user unlock`; the sessions API and
//! `user sessions`; the password change.

mod support;

use std::collections::BTreeSet;

use assert_cmd::Command;
use authctl::service::AuthService;
use support::{Backend, PASSWORD, TestApp, spawn_app};

on_both_backends!(
    every_action_leaves_an_audit_event_with_no_secret_in_it,
    audit_list_filters_by_user_kind_and_time_newest_first,
    housekeeping_drops_audit_events_older_than_the_retention,
    thirty_concurrent_wrong_guesses_at_threshold_three_verify_at_most_three_against_the_real_hash,
    a_locked_account_refuses_the_right_password_with_the_generic_401_until_unlocked,
    locks_double_up_to_the_maximum_and_a_success_resets_the_count,
    a_user_lists_their_sessions_and_ends_one_but_not_another_users,
    logout_scopes_end_this_session_the_others_or_all,
    a_password_change_keeps_the_callers_session_and_ends_the_others,
    a_wrong_current_password_is_403_and_counts_towards_the_lockout,
    password_changes_have_a_rate_limit_of_their_own,
);

const KEY: &str = "test-key-0123456789abcdefghijklmnopqrstuv";

/// `authctl` in an empty working directory, against the app's database.
fn authctl(app: &TestApp) -> Command {
    let mut cmd = Command::new(support::authctl_bin());
    cmd.current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.db.url)
        .env("SECRET_KEY", KEY)
        .env("AUTHCTL_BCRYPT_COST", "4")
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

/// Runs `authctl ARGS` and returns its stdout as JSON.
fn run_json(app: &TestApp, args: &[&str]) -> serde_json::Value {
    let out = authctl(app).args(args).output().expect("run authctl");
    assert!(
        out.status.success(),
        "authctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn audit(app: &TestApp, filters: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["audit", "list", "--output", "json"];
    args.extend_from_slice(filters);
    run_json(app, &args)
        .as_array()
        .expect("a JSON array")
        .clone()
}

fn kinds(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().expect("kind").to_owned())
        .collect()
}

async fn tokens(resp: reqwest::Response) -> (String, String) {
    assert_eq!(resp.status(), 200);
    let b: serde_json::Value = resp.json().await.expect("token json");
    (
        b["access_token"].as_str().expect("access").to_owned(),
        b["refresh_token"].as_str().expect("refresh").to_owned(),
    )
}

async fn every_action_leaves_an_audit_event_with_no_secret_in_it(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let wrong = "wrong-password-42";
    let typo_login = "nosuchuser-typed-secret";
    let new_password = "a brand new passphrase";

    // Through the API, with a request id of our own.
    let r = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .header("x-request-id", "req-register-1")
        .json(&serde_json::json!({"email": "ann@example.com", "username": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (access, refresh) = tokens(app.login("ann", PASSWORD).await).await;
    assert_eq!(app.login("ann", wrong).await.status(), 401);
    assert_eq!(app.login(typo_login, PASSWORD).await.status(), 401);
    let (_, rotated) = tokens(app.refresh(&refresh).await).await;
    // Presenting the rotated-away token again: theft detection.
    assert_eq!(app.refresh(&refresh).await.status(), 401);
    let (_, second) = tokens(app.login("ann", PASSWORD).await).await;
    assert_eq!(app.revoke(&second).await.status(), 204);

    // Through the CLI.
    authctl(&app)
        .args([
            "user",
            "add",
            "--email",
            "bob@example.com",
            "--username",
            "bob",
        ])
        .arg("--password-stdin")
        .write_stdin(format!("{PASSWORD}\n"))
        .assert()
        .success();
    let (_, bo_refresh) = tokens(app.login("bob", PASSWORD).await).await;
    let family =
        run_json(&app, &["token", "inspect", &bo_refresh, "--output", "json"])["family_id"]
            .as_str()
            .unwrap()
            .to_owned();
    authctl(&app)
        .args(["token", "revoke-family", &family])
        .assert()
        .success();
    authctl(&app)
        .args(["user", "disable", "bob"])
        .assert()
        .success();
    authctl(&app)
        .args(["user", "enable", "bob"])
        .assert()
        .success();
    authctl(&app)
        .args(["user", "set-password", "bob", "--password-stdin"])
        .write_stdin(format!("{new_password}\n"))
        .assert()
        .success();
    authctl(&app)
        .args(["user", "delete", "bob"])
        .assert()
        .success();

    let events = audit(&app, &["--limit", "1000"]);
    let seen: BTreeSet<String> = kinds(&events).into_iter().collect();
    for kind in [
        "user_registered",
        "user_created",
        "login_succeeded",
        "login_failed",
        "refresh_reuse_detected",
        "session_revoked",
        "user_disabled",
        "user_enabled",
        "password_changed",
        "user_deleted",
    ] {
        assert!(seen.contains(kind), "no {kind} event in {seen:?}");
    }

    // Every event has the documented shape.
    for e in &events {
        let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from([
                "at",
                "kind",
                "user_id",
                "username",
                "family_id",
                "ip",
                "request_id",
                "detail"
            ]),
            "{e}"
        );
        assert!(e["detail"].is_object(), "{e}");
    }

    // The registration carries the client's IP and its request id.
    let registered = events
        .iter()
        .find(|e| e["kind"] == "user_registered")
        .unwrap();
    assert_eq!(registered["username"], "ann");
    assert_eq!(registered["request_id"], "req-register-1");
    assert_eq!(registered["ip"], "127.0.0.1");
    // A CLI action has no client.
    let created = events.iter().find(|e| e["kind"] == "user_created").unwrap();
    assert!(created["ip"].is_null() && created["request_id"].is_null());
    // A success names its session; the reuse names the family it revoked.
    let success = events
        .iter()
        .find(|e| e["kind"] == "login_succeeded" && e["username"] == "ann")
        .unwrap();
    assert!(success["family_id"].is_string());
    let reuse = events
        .iter()
        .find(|e| e["kind"] == "refresh_reuse_detected")
        .unwrap();
    assert_eq!(reuse["username"], "ann");
    assert!(reuse["family_id"].is_string());

    // A failed login for an unknown account records no identifier at all.
    let failures: Vec<_> = events
        .iter()
        .filter(|e| e["kind"] == "login_failed")
        .collect();
    assert_eq!(failures.len(), 2, "{failures:?}");
    let unknown = failures.iter().find(|e| e["user_id"].is_null()).unwrap();
    assert!(unknown["username"].is_null(), "{unknown}");
    let known = failures.iter().find(|e| e["user_id"].is_number()).unwrap();
    assert_eq!(known["username"], "ann");

    // No password, token, login typo or key anywhere in the log.
    let all = serde_json::to_string(&events).unwrap();
    for secret in [
        PASSWORD,
        wrong,
        typo_login,
        new_password,
        KEY,
        access.as_str(),
        refresh.as_str(),
        rotated.as_str(),
        second.as_str(),
        bo_refresh.as_str(),
    ] {
        assert!(!all.contains(secret), "the audit log contains a secret");
    }
    app.shutdown().await;
}

async fn audit_list_filters_by_user_kind_and_time_newest_first(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    app.user_with_tokens("cat").await;
    app.user_with_tokens("dan").await;
    assert_eq!(app.login("cat", "wrong-password").await.status(), 401);

    let all = audit(&app, &[]);
    let at: Vec<&str> = all.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let parsed: Vec<chrono::DateTime<chrono::Utc>> =
        at.iter().map(|s| s.parse().expect("RFC 3339")).collect();
    assert!(
        parsed.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {at:?}"
    );
    assert_eq!(
        all[0]["kind"], "login_failed",
        "the last action comes first"
    );

    let cat = audit(&app, &["--user", "cat"]);
    assert_eq!(
        kinds(&cat),
        ["login_failed", "login_succeeded", "user_registered"]
    );
    assert!(cat.iter().all(|e| e["username"] == "cat"));
    // A numeric id is the same user.
    let id = cat[0]["user_id"].as_i64().unwrap().to_string();
    assert_eq!(audit(&app, &["--user", &id]).len(), 3);

    let logins = audit(&app, &["--kind", "login_succeeded"]);
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0]["username"], "dan");
    assert_eq!(
        audit(&app, &["--kind", "login_succeeded", "--user", "dan"]).len(),
        1
    );
    assert_eq!(audit(&app, &["--limit", "2"]).len(), 2);
    assert_eq!(audit(&app, &["--since", "1h"]).len(), all.len());

    // An unknown kind is a usage error naming the valid ones; an unknown user exit 3.
    authctl(&app)
        .args(["audit", "list", "--kind", "coffee_made"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("login_locked"));
    authctl(&app)
        .args(["audit", "list", "--user", "nobody"])
        .assert()
        .code(3);
    // With no id of the client's own, the event names the one the response carries.
    let r = app.login("dan", PASSWORD).await;
    let sent = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    let last = audit(
        &app,
        &["--user", "dan", "--kind", "login_succeeded", "--limit", "1"],
    );
    assert_eq!(last[0]["request_id"], sent);
    // The table for people names the kinds too.
    authctl(&app)
        .args(["audit", "list", "--user", "dan"])
        .assert()
        .success()
        .stdout(predicates::str::contains("user_registered"));
    app.shutdown().await;
}

async fn housekeeping_drops_audit_events_older_than_the_retention(backend: Backend) {
    use authctl::store::audit::NewAuditEvent;

    let app = spawn_app(&backend, |_| {}).await;
    app.user_with_tokens("eve").await;
    let mut settings = app.settings.auth.clone();
    settings.audit_retention = std::time::Duration::from_secs(24 * 3600);
    let store = authctl::store::connect(&app.settings).expect("store");
    let service = AuthService::new(store.clone(), &settings)
        .await
        .expect("service");
    // 2 500 events from two days ago: more than one batch.
    let old = chrono::Utc::now() - chrono::Duration::days(2);
    for _ in 0..2500 {
        store
            .audit_insert(&NewAuditEvent {
                at: old,
                kind: "login_failed",
                user_id: None,
                username: None,
                family_id: None,
                ip: None,
                request_id: None,
                detail: "{}".into(),
            })
            .await
            .expect("insert an old event");
    }
    let before = audit(&app, &["--limit", "100000"]).len();
    assert_eq!(before, 2502);
    assert_eq!(service.prune_audit().await.expect("prune"), 2500);
    let left = audit(&app, &["--limit", "100000"]);
    assert_eq!(kinds(&left), ["login_succeeded", "user_registered"]);
    assert_eq!(service.prune_audit().await.expect("prune again"), 0);
    app.shutdown().await;
}

/// `user show USER --output json`.
fn show(app: &TestApp, user: &str) -> serde_json::Value {
    run_json(app, &["user", "show", user, "--output", "json"])
}

fn count(events: &[serde_json::Value], kind: &str) -> usize {
    events.iter().filter(|e| e["kind"] == kind).count()
}

/// Every attempt that reached bcrypt with the real hash leaves exactly one
/// `login_failed` (or `login_succeeded`) event; every attempt refused by the lockout
/// one `login_locked` (verified against the dummy hash). So the audit log of one user
/// counts the real verifies: the test-visible counter the spec asks for, read from
/// the same database every replica writes to.
async fn thirty_concurrent_wrong_guesses_at_threshold_three_verify_at_most_three_against_the_real_hash(
    backend: Backend,
) {
    let app = spawn_app(&backend, |s| {
        s.auth.lockout_threshold = 3;
        s.auth.lockout_duration = std::time::Duration::from_secs(300);
    })
    .await;
    app.user_with_tokens("fay").await;
    let guesses: Vec<_> = (0..30)
        .map(|i| {
            let client = app.client.clone();
            let url = app.url("/api/v1/auth/token");
            tokio::spawn(async move {
                client
                    .post(url)
                    .form(&[
                        ("username", "fay"),
                        ("password", &format!("guess-number-{i}")),
                    ])
                    .send()
                    .await
                    .expect("login request")
                    .status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for g in guesses {
        statuses.push(g.await.expect("guess task"));
    }
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");

    let events = audit(&app, &["--user", "fay", "--limit", "1000"]);
    let real = count(&events, "login_failed");
    let refused = count(&events, "login_locked");
    assert!(
        real <= 3,
        "{real} guesses were verified against the real hash"
    );
    assert_eq!(real, 3, "the first three are checked for real");
    assert_eq!(refused, 27);
    assert_eq!(count(&events, "account_locked"), 1);
    let state = show(&app, "fay");
    assert!(state["locked_until"].is_string(), "{state}");
    assert_eq!(state["lock_count"], 1);
    app.shutdown().await;
}

async fn a_locked_account_refuses_the_right_password_with_the_generic_401_until_unlocked(
    backend: Backend,
) {
    let app = spawn_app(&backend, |s| s.auth.lockout_threshold = 2).await;
    app.user_with_tokens("gil").await;
    let unknown = app.login("nobody-at-all", PASSWORD).await;
    let unknown_body = unknown.bytes().await.unwrap();
    for _ in 0..2 {
        assert_eq!(app.login("gil", "not-the-password").await.status(), 401);
    }
    // Locked: the right password gets exactly the body an unknown user gets.
    let r = app.login("gil", PASSWORD).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "a problem body"
    );
    assert_eq!(r.bytes().await.unwrap(), unknown_body);
    let state = show(&app, "gil");
    assert_eq!(state["username"], "gil");
    assert_eq!(
        state["failed_logins"], 0,
        "the count starts again under a lock"
    );
    let until: chrono::DateTime<chrono::Utc> =
        state["locked_until"].as_str().unwrap().parse().unwrap();
    let left = until - chrono::Utc::now();
    assert!(
        left > chrono::Duration::minutes(4) && left <= chrono::Duration::minutes(5),
        "the default lock is 5m: {left}"
    );
    // The human view says so too.
    authctl(&app)
        .args(["user", "show", "gil"])
        .assert()
        .success()
        .stdout(predicates::str::contains("locked until"));

    // The lock is in the database: a second server on it refuses too.
    let second = authctl::server::spawn(app.settings.clone(), Default::default())
        .await
        .expect("a second server starts");
    for _ in 0..300 {
        let ready = app
            .client
            .get(format!("http://{}/health/startup", second.addr))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let r = app
        .client
        .post(format!("http://{}/api/v1/auth/token", second.addr))
        .form(&[("username", "gil"), ("password", PASSWORD)])
        .send()
        .await
        .expect("login at the second server");
    assert_eq!(r.status(), 401);
    second.shutdown().await.expect("clean shutdown");

    let out = run_json(&app, &["user", "unlock", "gil", "--output", "json"]);
    assert_eq!(out["was_locked"], true);
    assert_eq!(app.login("gil", PASSWORD).await.status(), 200);
    let state = show(&app, "gil");
    assert!(state["locked_until"].is_null(), "{state}");
    assert_eq!(state["lock_count"], 0);
    let events = audit(&app, &["--user", "gil"]);
    assert_eq!(
        kinds(&events)[..3],
        ["login_succeeded", "account_unlocked", "login_locked"]
    );
    authctl(&app)
        .args(["user", "unlock", "nobody"])
        .assert()
        .code(3);
    app.shutdown().await;
}

async fn locks_double_up_to_the_maximum_and_a_success_resets_the_count(backend: Backend) {
    use std::time::Duration;
    let app = spawn_app(&backend, |s| {
        s.auth.lockout_threshold = 2;
        s.auth.lockout_duration = Duration::from_secs(1);
        s.auth.lockout_max_duration = Duration::from_secs(3);
    })
    .await;
    app.user_with_tokens("hal").await;
    // One failure, then a success: the count starts again.
    assert_eq!(app.login("hal", "not-the-password").await.status(), 401);
    assert_eq!(show(&app, "hal")["failed_logins"], 1);
    assert_eq!(app.login("hal", PASSWORD).await.status(), 200);
    assert_eq!(show(&app, "hal")["failed_logins"], 0);

    // Lock lengths 1s, 2s, then 3s (4s capped at the maximum).
    for (lock, expected) in [(1, 1), (2, 2), (3, 3)] {
        for _ in 0..2 {
            assert_eq!(app.login("hal", "not-the-password").await.status(), 401);
        }
        let state = show(&app, "hal");
        assert_eq!(state["lock_count"], lock, "{state}");
        let until: chrono::DateTime<chrono::Utc> =
            state["locked_until"].as_str().unwrap().parse().unwrap();
        let left = (until - chrono::Utc::now()).num_milliseconds();
        assert!(
            left > expected * 1000 - 900 && left <= expected * 1000,
            "lock {lock}: {left} ms left, expected about {expected} s"
        );
        tokio::time::sleep(Duration::from_millis(left as u64 + 100)).await;
    }
    // After the lock ran out, the right password works and clears the escalation.
    assert_eq!(app.login("hal", PASSWORD).await.status(), 200);
    let state = show(&app, "hal");
    assert_eq!(state["lock_count"], 0);
    assert_eq!(state["failed_logins"], 0);
    app.shutdown().await;
}

/// Logs in as `name` with a user agent; returns (access, refresh).
async fn login_as(app: &TestApp, name: &str, agent: &str) -> (String, String) {
    let r = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("user-agent", agent)
        .form(&[("username", name), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    tokens(r).await
}

async fn sessions(app: &TestApp, access: &str) -> reqwest::Response {
    app.client
        .get(app.url("/api/v1/auth/sessions"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
}

async fn sid(app: &TestApp, access: &str) -> String {
    let r = app.me(access).await;
    assert_eq!(r.status(), 200);
    let list: serde_json::Value = sessions(app, access).await.json().await.unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == true)
        .expect("a current session")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn a_user_lists_their_sessions_and_ends_one_but_not_another_users(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (other_access, _) = app.user_with_tokens("ivy").await;
    app.register("jon@example.com", "jon", PASSWORD).await;
    let (phone, phone_refresh) = login_as(&app, "jon", "phone/1.0").await;
    let (laptop, _) = login_as(&app, "jon", "laptop/2.0").await;

    let r = sessions(&app, &laptop).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let list: serde_json::Value = r.json().await.unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["user_agent"], "laptop/2.0", "newest first");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[1]["current"], false);
    assert_eq!(list[1]["ip"], "127.0.0.1");
    for s in list {
        for key in [
            "id",
            "created_at",
            "last_used_at",
            "expires_at",
            "user_agent",
            "ip",
            "current",
        ] {
            assert!(s.get(key).is_some(), "{key} missing in {s}");
        }
    }
    // A refresh moves last_used_at; /me does not write.
    let before = list[1]["last_used_at"].as_str().unwrap().to_owned();
    assert_eq!(app.me(&phone).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (phone, _) = tokens(app.refresh(&phone_refresh).await).await;
    let list: serde_json::Value = sessions(&app, &laptop).await.json().await.unwrap();
    let after = list[1]["last_used_at"].as_str().unwrap().to_owned();
    assert!(after > before, "{before} -> {after}");

    // The CLI lists the same.
    let cli = run_json(&app, &["user", "sessions", "jon", "--output", "json"]);
    assert_eq!(cli.as_array().unwrap().len(), 2);

    // Another user's session, an unknown or malformed id: 404, and nothing ends.
    let ivy_sid = sid(&app, &other_access).await;
    let delete = |access: String, id: String| {
        let app = &app;
        async move {
            app.client
                .delete(app.url(&format!("/api/v1/auth/sessions/{id}")))
                .bearer_auth(access)
                .send()
                .await
                .unwrap()
        }
    };
    support::assert_problem(delete(laptop.clone(), ivy_sid).await, 404).await;
    assert_eq!(app.me(&other_access).await.status(), 200);
    support::assert_problem(
        delete(laptop.clone(), uuid::Uuid::new_v4().to_string()).await,
        404,
    )
    .await;
    support::assert_problem(delete(laptop.clone(), "not-a-uuid".into()).await, 404).await;
    // No token: 401.
    let r = app
        .client
        .delete(app.url(&format!("/api/v1/auth/sessions/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    support::assert_problem(r, 401).await;

    // Ending the phone's session from the laptop.
    let phone_sid = sid(&app, &phone).await;
    let r = delete(laptop.clone(), phone_sid.clone()).await;
    assert_eq!(r.status(), 204);
    assert_eq!(app.me(&phone).await.status(), 401);
    assert_eq!(app.me(&laptop).await.status(), 200);
    support::assert_problem(delete(laptop.clone(), phone_sid).await, 404).await;
    let list: serde_json::Value = sessions(&app, &laptop).await.json().await.unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    // Wrong method: 405 naming DELETE.
    let r = app
        .client
        .put(app.url(&format!("/api/v1/auth/sessions/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "DELETE");
    app.shutdown().await;
}

async fn logout_scopes_end_this_session_the_others_or_all(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (a, _) = app.user_with_tokens("kim").await;
    let (b, _) = login_as(&app, "kim", "b").await;
    let (c, _) = login_as(&app, "kim", "c").await;
    let (d, _) = login_as(&app, "kim", "d").await;
    let logout = |access: String, body: Option<serde_json::Value>| {
        let app = &app;
        async move {
            let req = app
                .client
                .post(app.url("/api/v1/auth/logout"))
                .bearer_auth(access);
            let req = match body {
                Some(b) => req.json(&b),
                None => req,
            };
            req.send().await.unwrap()
        }
    };
    // No body: local.
    assert_eq!(logout(a.clone(), None).await.status(), 204);
    assert_eq!(app.me(&a).await.status(), 401);
    assert_eq!(app.me(&b).await.status(), 200);
    // Others: the caller's survives.
    let r = logout(b.clone(), Some(serde_json::json!({"scope": "others"}))).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(app.me(&b).await.status(), 200);
    assert_eq!(app.me(&c).await.status(), 401);
    assert_eq!(app.me(&d).await.status(), 401);
    // A bad scope is a 422 naming it; no token a 401.
    let body = support::assert_problem(
        logout(b.clone(), Some(serde_json::json!({"scope": "everything"}))).await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "scope");
    support::assert_problem(
        app.client
            .post(app.url("/api/v1/auth/logout"))
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    // Global: all, the caller's included.
    let (e, _) = login_as(&app, "kim", "e").await;
    assert_eq!(
        logout(b.clone(), Some(serde_json::json!({"scope": "global"})))
            .await
            .status(),
        204
    );
    assert_eq!(app.me(&b).await.status(), 401);
    assert_eq!(app.me(&e).await.status(), 401);
    let events = audit(&app, &["--user", "kim", "--kind", "session_revoked"]);
    let scopes: Vec<&str> = events
        .iter()
        .map(|e| e["detail"]["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["global", "others", "local"]);
    app.shutdown().await;
}

async fn change_password(
    app: &TestApp,
    access: &str,
    current: &str,
    new: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/password"))
        .bearer_auth(access)
        .json(&serde_json::json!({"current_password": current, "new_password": new}))
        .send()
        .await
        .unwrap()
}

async fn a_password_change_keeps_the_callers_session_and_ends_the_others(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let new = "a brand new passphrase";
    let (mine, my_refresh) = app.user_with_tokens("lou").await;
    let (other, other_refresh) = login_as(&app, "lou", "other").await;

    // An invalid new password is a 422 naming it, and nothing changes.
    let body =
        support::assert_problem(change_password(&app, &mine, PASSWORD, "short").await, 422).await;
    assert_eq!(body["errors"][0]["field"], "new_password");
    assert_eq!(app.me(&other).await.status(), 200);

    let r = change_password(&app, &mine, PASSWORD, new).await;
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(
        app.me(&mine).await.status(),
        200,
        "the caller's session survives"
    );
    let (renewed, _) = tokens(app.refresh(&my_refresh).await).await;
    assert!(!renewed.is_empty(), "the caller's session still refreshes");
    assert_eq!(app.me(&other).await.status(), 401);
    assert_eq!(app.refresh(&other_refresh).await.status(), 401);
    assert_eq!(app.login("lou", PASSWORD).await.status(), 401);
    assert_eq!(app.login("lou", new).await.status(), 200);
    // No token: 401.
    let r = app
        .client
        .post(app.url("/api/v1/auth/password"))
        .json(&serde_json::json!({"current_password": new, "new_password": PASSWORD}))
        .send()
        .await
        .unwrap();
    support::assert_problem(r, 401).await;

    let events = audit(&app, &["--user", "lou", "--kind", "password_changed"]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["detail"]["revoked_sessions"], 1);
    let all = serde_json::to_string(&audit(&app, &["--limit", "1000"])).unwrap();
    assert!(!all.contains(new) && !all.contains(PASSWORD) && !all.contains(&mine));
    app.shutdown().await;
}

async fn a_wrong_current_password_is_403_and_counts_towards_the_lockout(backend: Backend) {
    let app = spawn_app(&backend, |s| s.auth.lockout_threshold = 2).await;
    let (mine, _) = app.user_with_tokens("max").await;
    let body = support::assert_problem(
        change_password(&app, &mine, "not-the-password", "another passphrase").await,
        403,
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("current password")
    );
    assert_eq!(show(&app, "max")["failed_logins"], 1);
    support::assert_problem(
        change_password(&app, &mine, "not-the-password", "another passphrase").await,
        403,
    )
    .await;
    // Locked now: the right password is refused at login and here alike.
    assert!(show(&app, "max")["locked_until"].is_string());
    assert_eq!(app.login("max", PASSWORD).await.status(), 401);
    support::assert_problem(
        change_password(&app, &mine, PASSWORD, "another passphrase").await,
        403,
    )
    .await;
    app.shutdown().await;
}

async fn password_changes_have_a_rate_limit_of_their_own(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.register_per_minute = std::num::NonZeroU32::new(100).unwrap();
        s.rate_limit.login_per_minute = std::num::NonZeroU32::new(100).unwrap();
        s.rate_limit.password_per_minute = std::num::NonZeroU32::new(2).unwrap();
        s.auth.lockout_threshold = 0;
    })
    .await;
    let (mine, _) = app.user_with_tokens("ned").await;
    for _ in 0..2 {
        support::assert_problem(change_password(&app, &mine, "wrong-one", "x").await, 422).await;
    }
    let r = change_password(&app, &mine, PASSWORD, "another passphrase").await;
    assert!(r.headers().contains_key("retry-after"));
    support::assert_problem(r, 429).await;
    // The other endpoints keep their own buckets.
    assert_eq!(app.login("ned", PASSWORD).await.status(), 200);
    app.shutdown().await;
}
