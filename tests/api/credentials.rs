//! Credential changes race-free (SPEC §8): a login that verified the old password
//! never ends with a session that outlives a concurrent `user set-password`, `user
//! disable` or `user delete` (run as the real CLI process), and a login racing the
//! user's deletion is the generic 401, never a 5xx.
//!
//! The race is made wide rather than hoped for: the user's hash is at a slow bcrypt
//! cost, so a login spends a good while verifying between reading the user and
//! creating its session, and the CLI (at the cheapest cost) changes the user inside
//! that window. Each test checks that the window was really hit.

use std::time::Instant;

use crate::prelude::*;

crate::on_both_backends!(
    a_login_verifying_the_old_password_gets_no_session_past_a_password_change,
    a_login_verifying_the_old_password_gets_no_session_past_a_disable,
    logins_racing_the_users_deletion_get_the_generic_401_never_a_5xx,
);

/// The cost of the racing user's hash: one verify takes a few hundred ms even with
/// bcrypt optimized in the debug build, while a CLI command takes tens of ms.
const SLOW_COST: u32 = 13;

async fn a_login_verifying_the_old_password_gets_no_session_past_a_password_change(
    backend: Backend,
) {
    login_racing(
        backend,
        "pat",
        &["user", "set-password", "pat", "--password-stdin"],
        None,
    )
    .await;
}

async fn a_login_verifying_the_old_password_gets_no_session_past_a_disable(backend: Backend) {
    // A disabled user's tokens fail anyway; the session must stay dead once the user
    // is enabled again.
    login_racing(
        backend,
        "dee",
        &["user", "disable", "dee"],
        Some(&["user", "enable", "dee"]),
    )
    .await;
}

/// Starts a login for `name`, runs the CLI `change` while the login is verifying (and
/// `then` after it), and checks the login ended 401 or with a session that does not
/// work.
async fn login_racing(backend: Backend, name: &str, change: &[&str], then: Option<&[&str]>) {
    let app = spawn_app(&backend, |s| s.auth.bcrypt_cost = SLOW_COST).await;
    let r = app
        .register(&format!("{name}@example.com"), name, PASSWORD)
        .await;
    assert_eq!(r.status(), 201);

    let login = {
        let (client, url, name) = (
            app.client.clone(),
            app.url("/api/v1/auth/token"),
            name.to_owned(),
        );
        tokio::spawn(async move {
            let r = client
                .post(url)
                .form(&[("username", name.as_str()), ("password", PASSWORD)])
                .send()
                .await
                .expect("login request");
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
                Instant::now(),
            )
        })
    };
    // The login reads the user at once, then spends its time in bcrypt.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let out = crate::cli_run(&app, change, Some("a brand new password\n")).await;
    assert!(
        out.status.success(),
        "{change:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let changed_at = Instant::now();

    let (status, body, answered_at) = login.await.expect("login task");
    assert!(
        answered_at > changed_at,
        "the login answered before {change:?} finished: the race was not exercised \
         (raise SLOW_COST)"
    );
    if let Some(then) = then {
        let out = crate::cli_run(&app, then, None).await;
        assert!(
            out.status.success(),
            "{then:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    match status {
        401 => {}
        200 => {
            // A session created before the change must have been revoked by it.
            let access = body["access_token"].as_str().expect("access token");
            let refresh = body["refresh_token"].as_str().expect("refresh token");
            assert_problem(app.me(access).await, 401).await;
            assert_problem(app.refresh(refresh).await, 401).await;
        }
        other => panic!("the racing login got {other}: {body}"),
    }
    app.shutdown().await;
}

async fn logins_racing_the_users_deletion_get_the_generic_401_never_a_5xx(backend: Backend) {
    // Cheaper than SLOW_COST: sixteen verifies queue for the slots, and the queue must
    // drain within `hash_queue_timeout` even on a busy machine.
    let app = spawn_app(&backend, |s| s.auth.bcrypt_cost = 9).await;
    let r = app.register("del@example.com", "del", PASSWORD).await;
    assert_eq!(r.status(), 201);

    // Sixteen logins read the user at once and queue for the hashing slots, so most
    // of them verify after the user is gone.
    let logins: Vec<_> = (0..16)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url("/api/v1/auth/token"));
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .form(&[("username", "del"), ("password", PASSWORD)])
                    .send()
                    .await
                    .expect("login request");
                let status = r.status().as_u16();
                let body = r.json::<serde_json::Value>().await.unwrap_or_default();
                (status, body, Instant::now())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let out = crate::cli_run(&app, &["user", "delete", "del"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deleted_at = Instant::now();

    let mut statuses = Vec::new();
    let mut after_delete = 0;
    for login in logins {
        let (status, body, answered_at) = login.await.expect("login task");
        statuses.push(status);
        after_delete += usize::from(answered_at > deleted_at);
        match status {
            401 => assert_eq!(body["detail"], "Incorrect username or password.", "{body}"),
            // A session created before the delete went with the user.
            200 => {
                assert_problem(app.me(body["access_token"].as_str().unwrap()).await, 401).await;
            }
            _ => panic!("statuses {statuses:?}, last body {body}"),
        };
    }
    assert!(
        after_delete > 0,
        "every login answered before the delete: the race was not exercised"
    );
    assert!(statuses.contains(&401), "{statuses:?}");
    app.shutdown().await;
}
