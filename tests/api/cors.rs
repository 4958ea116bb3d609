//! CORS: off by default; configured origins get preflights and headers, others a 403.

use crate::prelude::*;

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
