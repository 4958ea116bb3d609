//! Rate limits: 429 with `Retry-After`, per endpoint and per client address.

use crate::prelude::*;

crate::on_both_backends!(rate_limits_answer_429_with_retry_after_per_endpoint,);

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
