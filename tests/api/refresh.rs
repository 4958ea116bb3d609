//! Rotation: `POST /api/v1/auth/refresh`: each token works once, reuse revokes the
//! family, concurrent refreshes race to exactly one winner, and the grace mode.

use crate::prelude::*;

crate::on_both_backends!(
    refresh_rotates_and_reuse_revokes_the_whole_family,
    twenty_concurrent_refreshes_of_one_token_give_exactly_one_200,
    grace_mode_returns_the_same_successor_and_keeps_the_family,
    a_grace_replay_after_the_successor_was_spent_is_theft,
    no_family_is_refreshed_past_the_session_max_lifetime,
);

#[test]
fn a_grace_window_over_sixty_seconds_or_a_bad_max_lifetime_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("cfg.db").display());
    let run = |name: &str, value: &str| {
        assert_cmd::Command::new(crate::support::authctl_bin())
            .current_dir(dir.path())
            .env_clear()
            .env("DATABASE_URL", &url)
            .env(name, value)
            .args(["migrate"])
            .timeout(Duration::from_secs(60))
            .output()
            .expect("run authctl")
    };
    for (name, value) in [
        ("AUTHCTL_REFRESH_REUSE_GRACE_SECONDS", "61"),
        ("AUTHCTL_SESSION_MAX_LIFETIME", "forever"),
    ] {
        let out = run(name, value);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "{name}={value}: {stderr}");
        assert!(stderr.contains(name), "{stderr}");
    }
    for (name, value) in [
        ("AUTHCTL_REFRESH_REUSE_GRACE_SECONDS", "60"),
        ("AUTHCTL_SESSION_MAX_LIFETIME", "12h"),
    ] {
        let out = run(name, value);
        assert!(
            out.status.success(),
            "{name}={value}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn a_grace_replay_after_the_successor_was_spent_is_theft(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.auth.refresh_reuse_grace = Duration::from_secs(30)
    })
    .await;
    let (_, r0) = app.user_with_tokens("spent").await;
    let first = json(app.refresh(&r0).await).await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    // The successor is used: it is no longer the family's live token.
    let second = json(app.refresh(&r1).await).await;
    let r2 = second["refresh_token"].as_str().unwrap().to_owned();

    // Replaying r0 within the window would hand out r1, which is spent: theft.
    assert_problem(app.refresh(&r0).await, 401).await;
    assert_problem(app.refresh(&r2).await, 401).await;
    assert_problem(app.me(second["access_token"].as_str().unwrap()).await, 401).await;

    // A successor revoked by logout is not handed out again either.
    let (_, s0) = app.user_with_tokens("loggedout").await;
    let s1 = json(app.refresh(&s0).await).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.revoke(&s1).await.status(), 204);
    assert_problem(app.refresh(&s0).await, 401).await;
    app.shutdown().await;
}

async fn no_family_is_refreshed_past_the_session_max_lifetime(backend: Backend) {
    let lifetime = Duration::from_secs(3);
    let app = spawn_app(&backend, |s| s.auth.session_max_lifetime = lifetime).await;
    let started = Utc::now();
    let (_, r0) = app.user_with_tokens("bounded").await;
    let service = service_for(&app).await;
    let end =
        started + chrono::Duration::from_std(lifetime).unwrap() + chrono::Duration::seconds(1);

    // Refreshing works within the lifetime, and no token outlives the session's end,
    // although the refresh TTL (7 days) would allow it.
    let first = service.inspect(&r0).await.expect("inspect first");
    assert!(first.expires_at.unwrap() <= end, "{first:?}");
    let r1 = json(app.refresh(&r0).await).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rotated = service.inspect(&r1).await.expect("inspect successor");
    assert!(rotated.expires_at.unwrap() <= end, "{rotated:?}");

    tokio::time::sleep(lifetime + Duration::from_millis(300)).await;
    let resp = app.refresh(&r1).await;
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_problem(resp, 401).await;
    // A new login is a new session with a lifetime of its own.
    let again = json(app.login("bounded", PASSWORD).await).await;
    assert_eq!(
        app.refresh(again["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    app.shutdown().await;
}

async fn refresh_rotates_and_reuse_revokes_the_whole_family(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (access0, r0) = app.user_with_tokens("grace").await;

    let resp = app.refresh(&r0).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body = json(resp).await;
    let r1 = body["refresh_token"].as_str().unwrap().to_owned();
    let access1 = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r0);
    assert_eq!(app.me(&access1).await.status(), 200);
    assert_eq!(
        app.me(&access0).await.status(),
        200,
        "old access tokens live until reuse"
    );

    let r2 = json(app.refresh(&r1).await).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Presenting r0 again is theft: the family dies, newest token included.
    let resp = app.refresh(&r0).await;
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_problem(resp, 401).await;
    assert_problem(app.refresh(&r2).await, 401).await;
    assert_problem(app.me(&access1).await, 401).await;
    assert_problem(app.me(&access0).await, 401).await;

    // Other sessions of the same user are untouched.
    let other = json(app.login("grace", PASSWORD).await).await;
    assert_eq!(
        app.me(other["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );

    // Unknown and malformed tokens are plain 401s.
    assert_problem(
        app.refresh("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .await,
        401,
    )
    .await;
    assert_problem(app.refresh("nonsense").await, 401).await;
    app.shutdown().await;
}

async fn twenty_concurrent_refreshes_of_one_token_give_exactly_one_200(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    for round in 0..3 {
        let (access, refresh) = app.user_with_tokens(&format!("racer{round}")).await;
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let client = app.client.clone();
            let url = app.url("/api/v1/auth/refresh");
            let token = refresh.clone();
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .json(&serde_json::json!({ "refresh_token": token }))
                    .send()
                    .await
                    .expect("request");
                let status = r.status().as_u16();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                (status, body)
            }));
        }
        let mut ok = Vec::new();
        let mut statuses = Vec::new();
        for t in tasks {
            let (status, body) = t.await.unwrap();
            statuses.push(status);
            if status == 200 {
                ok.push(body);
            }
        }
        assert_eq!(ok.len(), 1, "round {round}: statuses {statuses:?}");
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 401),
            "round {round}: {statuses:?}"
        );
        // The race counts as reuse: the family ends revoked, the winner's tokens too.
        let winner = &ok[0];
        assert_problem(
            app.refresh(winner["refresh_token"].as_str().unwrap()).await,
            401,
        )
        .await;
        assert_problem(app.me(winner["access_token"].as_str().unwrap()).await, 401).await;
        assert_problem(app.me(&access).await, 401).await;
    }
    app.shutdown().await;
}

async fn grace_mode_returns_the_same_successor_and_keeps_the_family(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.auth.refresh_reuse_grace = Duration::from_secs(30)
    })
    .await;
    let (_, r0) = app.user_with_tokens("tabs").await;
    let first = json(app.refresh(&r0).await).await;
    let second = app.refresh(&r0).await;
    assert_eq!(second.status(), 200);
    let second = json(second).await;
    assert_eq!(first["refresh_token"], second["refresh_token"]);
    // The family is alive: both access tokens work and the successor rotates on.
    assert_eq!(
        app.me(first["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert_eq!(
        app.me(second["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    let next = app.refresh(first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(next.status(), 200);
    // Concurrent retries in the window all get the same successor.
    let (_, r) = app.user_with_tokens("tabs2").await;
    let results = futures_join(&app, &r, 8).await;
    let successors: std::collections::HashSet<_> = results
        .iter()
        .map(|(_, b)| b["refresh_token"].clone())
        .collect();
    assert!(results.iter().all(|(s, _)| *s == 200), "{results:?}");
    assert_eq!(successors.len(), 1);
    app.shutdown().await;

    // Outside the window the theft rule applies.
    let app = spawn_app(&backend, |s| {
        s.auth.refresh_reuse_grace = Duration::from_secs(1)
    })
    .await;
    let (_, r0) = app.user_with_tokens("late").await;
    let first = json(app.refresh(&r0).await).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_problem(app.refresh(&r0).await, 401).await;
    assert_problem(
        app.refresh(first["refresh_token"].as_str().unwrap()).await,
        401,
    )
    .await;
    app.shutdown().await;
}

async fn futures_join(app: &TestApp, token: &str, n: usize) -> Vec<(u16, serde_json::Value)> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let client = app.client.clone();
        let url = app.url("/api/v1/auth/refresh");
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .json(&serde_json::json!({ "refresh_token": token }))
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
