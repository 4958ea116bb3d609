//! What every response shares: security headers and a request id, 404 for unknown
//! paths, 405 with `Allow` for wrong methods.

use crate::prelude::*;

crate::on_both_backends!(
    every_response_carries_security_headers_and_a_request_id,
    unknown_paths_are_404_and_wrong_methods_405_with_allow,
);

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
