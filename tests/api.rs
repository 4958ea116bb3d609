//! The HTTP API, driven over real sockets against a server on 127.0.0.1:0, on SQLite
//! and on PostgreSQL alike.

mod support;

use std::time::Duration;

use authctl::domain::{FamilyId, UserRef};
use authctl::service::AuthService;
use authctl::tokens::JwtKeys;
use chrono::Utc;
use support::{Backend, PASSWORD, TestApp, assert_problem, spawn_app};

on_both_backends!(
    registering_returns_201_with_the_public_user,
    duplicate_email_or_username_is_409_case_insensitively,
    invalid_fields_are_422_naming_each_field,
    malformed_json_is_400_wrong_content_type_415_and_big_bodies_413,
    passwords_of_72_bytes_work_and_73_bytes_are_refused_without_truncation,
    login_accepts_username_or_email_in_any_case,
    every_login_failure_is_the_same_401,
    me_requires_a_valid_live_bearer_token,
    refresh_rotates_and_reuse_revokes_the_whole_family,
    twenty_concurrent_refreshes_of_one_token_give_exactly_one_200,
    grace_mode_returns_the_same_successor_and_keeps_the_family,
    revoke_logs_out_the_family_and_is_204_for_unknown_tokens,
    disabling_or_deleting_a_user_rejects_their_tokens,
    rate_limits_answer_429_with_retry_after_per_endpoint,
    health_probes_answer,
    every_response_carries_security_headers_and_a_request_id,
    unknown_paths_are_404_and_wrong_methods_405_with_allow,
    graceful_shutdown_finishes_in_flight_requests,
    a_database_outage_is_503_and_the_server_recovers,
);

async fn json(resp: reqwest::Response) -> serde_json::Value {
    resp.json().await.expect("json body")
}

async fn service_for(app: &TestApp) -> AuthService {
    let store = authctl::store::connect(&app.settings).expect("store");
    AuthService::new(store, &app.settings.auth)
        .await
        .expect("service")
}

async fn registering_returns_201_with_the_public_user(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let r = app.register("Alice@Example.com", "alice", PASSWORD).await;
    assert_eq!(r.status(), 201);
    let body = json(r).await;
    assert_eq!(body["email"], "Alice@Example.com");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["is_active"], true);
    assert!(body["id"].is_i64());
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());
    app.shutdown().await;
}

async fn duplicate_email_or_username_is_409_case_insensitively(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    assert_eq!(
        app.register("bob@example.com", "bob", PASSWORD)
            .await
            .status(),
        201
    );
    let body = assert_problem(
        app.register("BOB@EXAMPLE.COM", "other", PASSWORD).await,
        409,
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("email"),
        "{body}"
    );
    let body = assert_problem(app.register("new@example.com", "BoB", PASSWORD).await, 409).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("username"),
        "{body}"
    );
    app.shutdown().await;
}

async fn invalid_fields_are_422_naming_each_field(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let fields = |body: &serde_json::Value| -> Vec<String> {
        body["errors"]
            .as_array()
            .expect("errors array")
            .iter()
            .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let body = assert_problem(app.register("not-an-email", "ab", "short").await, 422).await;
    assert_eq!(fields(&body), ["email", "username", "password"]);
    let long_email = format!("{}@example.com", "a".repeat(250));
    let body = assert_problem(
        app.register(&long_email, "bad name!", "pass\0word123")
            .await,
        422,
    )
    .await;
    assert_eq!(fields(&body), ["email", "username", "password"]);

    let r = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "x@example.com", "username": 42}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, 422).await;
    assert_eq!(fields(&body), ["username", "password"]);
    for e in body["errors"].as_array().unwrap() {
        assert!(e["message"].is_string());
    }
    // A mistyped field does not hide another field's invalid content.
    let r = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "not-an-email", "username": 42, "password": "ok-password-1"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, 422).await;
    assert_eq!(fields(&body), ["email", "username"]);
    app.shutdown().await;
}

async fn malformed_json_is_400_wrong_content_type_415_and_big_bodies_413(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let post = |ct: Option<&str>, body: Vec<u8>| {
        let mut req = app.client.post(app.url("/api/v1/auth/register")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    assert_problem(
        post(Some("application/json"), b"{\"email\":".to_vec())
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_problem(post(Some("text/plain"), b"{}".to_vec()).await.unwrap(), 415).await;
    assert_problem(post(None, b"{}".to_vec()).await.unwrap(), 415).await;
    assert_problem(
        post(Some("application/json"), b"[1,2]".to_vec())
            .await
            .unwrap(),
        422,
    )
    .await;

    // 16 384 bytes are accepted (then judged on content); one more byte is 413.
    let exact = |n: usize| {
        let prefix =
            br#"{"email":"a@example.com","username":"user","password":"password1","pad":""#;
        let mut body = prefix.to_vec();
        body.resize(n - 2, b'x');
        body.extend_from_slice(b"\"}");
        assert_eq!(body.len(), n);
        body
    };
    let r = post(Some("application/json"), exact(16 * 1024))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_problem(
        post(Some("application/json"), exact(16 * 1024 + 1))
            .await
            .unwrap(),
        413,
    )
    .await;

    // The login form obeys the same limits and wants a form.
    let r = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(r, 415).await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[("username", "someone")])
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, 422).await;
    assert_eq!(body["errors"][0]["field"], "password");
    app.shutdown().await;
}

async fn passwords_of_72_bytes_work_and_73_bytes_are_refused_without_truncation(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let p72 = "p".repeat(72);
    assert_eq!(
        app.register("long@example.com", "longpw", &p72)
            .await
            .status(),
        201
    );
    assert_eq!(app.login("longpw", &p72).await.status(), 200);
    // A 73rd byte is not silently dropped: that password is a different one.
    let p73 = format!("{p72}x");
    assert_problem(app.login("longpw", &p73).await, 401).await;
    let body = assert_problem(
        app.register("long2@example.com", "longpw2", &p73).await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "password");
    // Multi-byte characters count in bytes: 24 × '€' is 72 bytes, 25 is 75.
    assert_eq!(
        app.register("euro@example.com", "euro", &"€".repeat(24))
            .await
            .status(),
        201
    );
    assert_problem(
        app.register("euro2@example.com", "euro2", &"€".repeat(25))
            .await,
        422,
    )
    .await;
    // Eight characters is the minimum, whatever their byte length.
    assert_eq!(
        app.register("eight@example.com", "eight", "ééééééé1")
            .await
            .status(),
        201
    );
    assert_problem(
        app.register("seven@example.com", "seven", "1234567").await,
        422,
    )
    .await;
    app.shutdown().await;
}

async fn login_accepts_username_or_email_in_any_case(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    assert_eq!(
        app.register("Carol@Example.com", "Carol", PASSWORD)
            .await
            .status(),
        201
    );
    for login in [
        "Carol",
        "carol",
        "CAROL",
        "carol@example.com",
        "CAROL@EXAMPLE.COM",
    ] {
        let r = app.login(login, PASSWORD).await;
        assert_eq!(r.status(), 200, "{login}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body = json(r).await;
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 1800);
        assert_eq!(body["refresh_token"].as_str().unwrap().len(), 43);
        assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
    }
    app.shutdown().await;
}

async fn every_login_failure_is_the_same_401(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    assert_eq!(
        app.register("dave@example.com", "dave", PASSWORD)
            .await
            .status(),
        201
    );
    assert_eq!(
        app.register("erin@example.com", "erin", PASSWORD)
            .await
            .status(),
        201
    );
    service_for(&app)
        .await
        .set_active(&UserRef::Username("erin".into()), false)
        .await
        .unwrap();

    let mut bodies = Vec::new();
    let long = "x".repeat(300);
    for (user, pw) in [
        ("nobody", PASSWORD),
        ("dave", "wrong password"),
        ("erin", PASSWORD),
        (long.as_str(), PASSWORD),
        ("dave", "nul\0byte-password"),
        ("dave", &"y".repeat(100)),
    ] {
        let r = app.login(user, pw).await;
        assert_eq!(r.status(), 401, "{user}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        bodies.push(r.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "401 bodies differ");
    app.shutdown().await;
}

async fn me_requires_a_valid_live_bearer_token(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (access, _) = app.user_with_tokens("frank").await;
    let r = app.me(&access).await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["username"], "frank");

    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_problem(r, 401).await;

    let r = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .header("authorization", format!("Basic {access}"))
        .send()
        .await
        .unwrap();
    assert_problem(r, 401).await;

    let keys = JwtKeys::new(
        app.settings.auth.secret_key.as_ref().unwrap(),
        app.settings.auth.algorithm,
        &app.settings.auth.issuer,
        Duration::from_secs(60),
    );
    let claims = keys.verify(&access).unwrap();
    let expired = keys
        .issue(
            claims.user_id().unwrap(),
            claims.family_id().unwrap(),
            Utc::now() - chrono::Duration::seconds(120),
        )
        .unwrap();
    let mut tampered = access.clone();
    tampered.pop();
    tampered.push(if access.ends_with('A') { 'B' } else { 'A' });
    let parts: Vec<&str> = access.split('.').collect();
    let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", parts[1]);
    for bad in [
        "garbage",
        expired.as_str(),
        tampered.as_str(),
        alg_none.as_str(),
    ] {
        let r = app.me(bad).await;
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
        assert_problem(r, 401).await;
    }
    // A token for a session that does not exist is refused too.
    let orphan = keys
        .issue(claims.user_id().unwrap(), FamilyId::new(), Utc::now())
        .unwrap();
    assert_problem(app.me(&orphan).await, 401).await;
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

async fn revoke_logs_out_the_family_and_is_204_for_unknown_tokens(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (access, refresh) = app.user_with_tokens("henry").await;
    let (other_access, _) = {
        let b = json(app.login("henry", PASSWORD).await).await;
        (b["access_token"].as_str().unwrap().to_owned(), ())
    };
    let r = app.revoke(&refresh).await;
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());
    assert_problem(app.me(&access).await, 401).await;
    assert_problem(app.refresh(&refresh).await, 401).await;
    assert_eq!(
        app.me(&other_access).await.status(),
        200,
        "other sessions stay"
    );
    // Revoking again, or revoking nonsense, reveals nothing.
    assert_eq!(app.revoke(&refresh).await.status(), 204);
    assert_eq!(
        app.revoke("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .await
            .status(),
        204
    );
    assert_eq!(app.revoke("x").await.status(), 204);
    app.shutdown().await;
}

async fn disabling_or_deleting_a_user_rejects_their_tokens(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let service = service_for(&app).await;
    let (access, refresh) = app.user_with_tokens("ivan").await;
    service
        .set_active(&UserRef::Username("ivan".into()), false)
        .await
        .unwrap();
    assert_problem(app.me(&access).await, 401).await;
    assert_problem(app.refresh(&refresh).await, 401).await;
    assert_problem(app.login("ivan", PASSWORD).await, 401).await;
    // Enabling does not resurrect revoked sessions, but allows a new login.
    service
        .set_active(&UserRef::Username("ivan".into()), true)
        .await
        .unwrap();
    assert_problem(app.me(&access).await, 401).await;
    let (access2, _) = {
        let b = json(app.login("ivan", PASSWORD).await).await;
        (b["access_token"].as_str().unwrap().to_owned(), ())
    };
    assert_eq!(app.me(&access2).await.status(), 200);
    service
        .delete_user(&UserRef::Username("ivan".into()))
        .await
        .unwrap();
    assert_problem(app.me(&access2).await, 401).await;
    app.shutdown().await;
}

async fn rate_limits_answer_429_with_retry_after_per_endpoint(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.register_per_minute = std::num::NonZeroU32::new(2).unwrap();
        s.rate_limit.login_per_minute = std::num::NonZeroU32::new(3).unwrap();
        s.rate_limit.refresh_per_minute = std::num::NonZeroU32::new(3).unwrap();
    })
    .await;
    assert_eq!(
        app.register("r1@example.com", "r1user", PASSWORD)
            .await
            .status(),
        201
    );
    assert_eq!(
        app.register("r2@example.com", "r2user", PASSWORD)
            .await
            .status(),
        201
    );
    let r = app.register("r3@example.com", "r3user", PASSWORD).await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "retry-after {retry}");
    assert_problem(r, 429).await;
    // Invalid requests count too, and 429 comes before any validation or hashing.
    assert_problem(app.register("bad", "x", "y").await, 429).await;

    // Login has its own quota.
    for _ in 0..3 {
        assert_eq!(app.login("r1user", "wrong-password").await.status(), 401);
    }
    let r = app.login("r1user", PASSWORD).await;
    assert!(r.headers().contains_key("retry-after"));
    assert_problem(r, 429).await;

    // Refresh too; /me and health are never limited.
    for _ in 0..3 {
        assert_eq!(app.refresh("nonsense").await.status(), 401);
    }
    assert_problem(app.refresh("nonsense").await, 429).await;
    for _ in 0..20 {
        assert_eq!(
            app.client
                .get(app.url("/health/liveness"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    app.shutdown().await;

    // X-Forwarded-For is honoured from trusted proxies only.
    let app = spawn_app(&backend, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.login_per_minute = std::num::NonZeroU32::new(1).unwrap();
        s.rate_limit.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    assert_eq!(login_from(&app, "203.0.113.1").await.unwrap().status(), 401);
    assert_eq!(login_from(&app, "203.0.113.1").await.unwrap().status(), 429);
    assert_eq!(
        login_from(&app, "203.0.113.2").await.unwrap().status(),
        401,
        "another client behind the proxy"
    );
    app.shutdown().await;

    let app = spawn_app(&backend, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.login_per_minute = std::num::NonZeroU32::new(1).unwrap();
    })
    .await;
    assert_eq!(login_from(&app, "203.0.113.1").await.unwrap().status(), 401);
    assert_eq!(
        login_from(&app, "203.0.113.2").await.unwrap().status(),
        429,
        "untrusted peer cannot pick its IP"
    );
    app.shutdown().await;
}

async fn login_from(app: &TestApp, forwarded_for: &str) -> reqwest::Result<reqwest::Response> {
    app.client
        .post(app.url("/api/v1/auth/token"))
        .header("x-forwarded-for", forwarded_for)
        .form(&[("username", "x"), ("password", "y")])
        .send()
        .await
}

async fn health_probes_answer(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    for (path, status) in [
        ("liveness", "alive"),
        ("readiness", "ready"),
        ("startup", "started"),
    ] {
        let r = app
            .client
            .get(app.url(&format!("/health/{path}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(json(r).await["status"], status);
    }
    app.shutdown().await;
}

async fn every_response_carries_security_headers_and_a_request_id(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    for (method, path) in [
        ("GET", "/health/liveness"),
        ("GET", "/nowhere"),
        ("POST", "/api/v1/auth/token"),
        ("DELETE", "/api/v1/auth/me"),
    ] {
        let r = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        let h = r.headers();
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let id = h["x-request-id"].to_str().unwrap();
        assert!(!id.is_empty() && id.len() <= 128);
    }
    let echoed = app
        .client
        .get(app.url("/health/liveness"))
        .header("x-request-id", "abc.DEF_123-xyz")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "abc.DEF_123-xyz");
    for insane in ["has space", "semi;colon", &"a".repeat(129)] {
        let r = app
            .client
            .get(app.url("/health/liveness"))
            .header("x-request-id", insane)
            .send()
            .await
            .unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap();
        assert_ne!(id, insane);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        );
    }
    app.shutdown().await;
}

async fn unknown_paths_are_404_and_wrong_methods_405_with_allow(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    assert_problem(
        app.client
            .get(app.url("/api/v1/nope"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    assert_problem(app.client.get(app.url("/")).send().await.unwrap(), 404).await;
    for (method, path, allow) in [
        ("GET", "/api/v1/auth/register", "POST"),
        ("PUT", "/api/v1/auth/token", "POST"),
        ("POST", "/api/v1/auth/me", "GET"),
        ("GET", "/api/v1/auth/refresh", "POST"),
        ("DELETE", "/api/v1/auth/revoke", "POST"),
        ("POST", "/health/liveness", "GET"),
        ("POST", "/health/readiness", "GET"),
        ("POST", "/health/startup", "GET"),
    ] {
        let r = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.headers().get("allow").map(|v| v.to_str().unwrap()),
            Some(allow),
            "{method} {path}"
        );
        assert_problem(r, 405).await;
    }
    app.shutdown().await;
}

async fn graceful_shutdown_finishes_in_flight_requests(backend: Backend) {
    // A real bcrypt cost makes the login slow enough to be in flight at shutdown.
    let app = spawn_app(&backend, |s| s.auth.bcrypt_cost = 12).await;
    assert_eq!(
        app.register("slow@example.com", "slow", PASSWORD)
            .await
            .status(),
        201
    );
    let client = app.client.clone();
    let url = app.url("/api/v1/auth/token");
    let login = tokio::spawn(async move {
        client
            .post(url)
            .form(&[("username", "slow"), ("password", PASSWORD)])
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let base = app.base.clone();
    app.shutdown().await;
    let r = login.await.unwrap().expect("in-flight request completed");
    assert_eq!(r.status(), 200);
    // And the listener is closed.
    let refused = reqwest::Client::new()
        .get(format!("{base}/health/liveness"))
        .send()
        .await;
    assert!(refused.is_err());
}

async fn a_database_outage_is_503_and_the_server_recovers(backend: Backend) {
    match backend {
        Backend::Postgres(_) => postgres_outage().await,
        Backend::Sqlite => sqlite_lock_outage().await,
    }
}

async fn postgres_outage() {
    if std::env::var("AUTHCTL_TEST_POSTGRES_URL").is_ok() {
        support::skip_or_fail(
            "the outage test needs a cluster of its own; unset AUTHCTL_TEST_POSTGRES_URL",
        );
        return;
    }
    let cluster = tokio::task::spawn_blocking(support::pg::Cluster::start)
        .await
        .unwrap()
        .expect("private cluster");
    let backend = Backend::Postgres(cluster.url("postgres"));
    let app = spawn_app(&backend, |_| {}).await;
    let (access, _) = app.user_with_tokens("outage").await;
    // /me holds connections for its lookups (store::lane): they must not outlive the outage.
    for _ in 0..4 {
        assert_eq!(app.me(&access).await.status(), 200);
    }

    tokio::task::block_in_place(|| cluster.stop_server());
    assert_problem(
        app.client
            .get(app.url("/health/readiness"))
            .send()
            .await
            .unwrap(),
        503,
    )
    .await;
    assert_problem(app.me(&access).await, 503).await;
    assert_problem(app.login("outage", PASSWORD).await, 503).await;
    assert_eq!(
        app.client
            .get(app.url("/health/liveness"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    tokio::task::block_in_place(|| cluster.start_server()).expect("restart");
    let mut ready = false;
    for _ in 0..100 {
        if app
            .client
            .get(app.url("/health/readiness"))
            .send()
            .await
            .unwrap()
            .status()
            == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "readiness recovered");
    for _ in 0..4 {
        assert_eq!(app.me(&access).await.status(), 200);
    }
    assert_eq!(app.login("outage", PASSWORD).await.status(), 200);
    app.shutdown().await;
}

/// SQLite has no server to stop; its outage is a write lock held elsewhere: writes
/// wait out the busy timeout and answer 503, then work again once it is released.
async fn sqlite_lock_outage() {
    use sqlx::Connection;
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    let (access, _) = app.user_with_tokens("locked").await;
    let mut holder = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    assert_problem(app.login("locked", PASSWORD).await, 503).await;
    assert_eq!(
        app.me(&access).await.status(),
        200,
        "reads go on in WAL mode"
    );
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    assert_eq!(app.login("locked", PASSWORD).await.status(), 200);
    app.shutdown().await;
}

const APP_ORIGIN: &str = "https://app.example.com";

/// A request as a browser on `origin` sends it.
fn from_origin(app: &TestApp, method: &str, path: &str, origin: &str) -> reqwest::RequestBuilder {
    let method = method.parse().expect("method");
    app.client
        .request(method, app.url(path))
        .header("origin", origin)
}

fn allowed_origin(resp: &reqwest::Response) -> Option<&str> {
    resp.headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
}

/// CORS is off by default: no CORS headers, and a preflight is an OPTIONS like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_is_off_by_default() {
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    let r = from_origin(&app, "GET", "/health/liveness", APP_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(allowed_origin(&r), None);
    let preflight = from_origin(&app, "OPTIONS", "/api/v1/auth/me", APP_ORIGIN)
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed_origin(&preflight), None);
    assert_problem(preflight, 405).await;
    app.shutdown().await;
}

/// With `cors.allowed_origins`, listed origins get preflights answered and CORS headers
/// on every response, errors included; other origins get a 403 problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_cors_origins_are_answered_and_others_refused() {
    let app = spawn_app(&Backend::Sqlite, |s| {
        s.cors = authctl::config::CorsOrigins::Only(vec![APP_ORIGIN.into()]);
    })
    .await;
    let (access, _) = app.user_with_tokens("cors").await;

    let preflight = from_origin(&app, "OPTIONS", "/api/v1/auth/me", APP_ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 200);
    assert_eq!(allowed_origin(&preflight), Some(APP_ORIGIN));
    let h = preflight.headers();
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("GET") && methods.contains("POST"),
        "{methods}"
    );
    let headers = h["access-control-allow-headers"].to_str().unwrap();
    assert!(headers.contains("authorization"), "{headers}");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(
        h.contains_key("x-request-id"),
        "security headers still apply"
    );

    let me = from_origin(&app, "GET", "/api/v1/auth/me", APP_ORIGIN)
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    assert_eq!(allowed_origin(&me), Some(APP_ORIGIN));
    let exposed = me.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(exposed.contains("x-request-id"), "{exposed}");

    // A browser must be able to read error bodies too, warp's rejections included.
    for (path, status) in [("/api/v1/auth/me", 401), ("/api/v1/nope", 404)] {
        let r = from_origin(&app, "GET", path, APP_ORIGIN)
            .send()
            .await
            .unwrap();
        assert_eq!(allowed_origin(&r), Some(APP_ORIGIN), "{path}");
        assert_problem(r, status).await;
    }

    let other = from_origin(&app, "GET", "/api/v1/auth/me", "https://evil.example.net")
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed_origin(&other), None);
    assert_problem(other, 403).await;

    // Clients that send no Origin (not browsers) are not affected.
    assert_eq!(app.me(&access).await.status(), 200);
    app.shutdown().await;
}
