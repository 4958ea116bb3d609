//! Under `/api/v1/auth`, every answer is `Cache-Control: no-store`, whoever wrote it
//! (an endpoint, a filter's refusal, the rate limiter), and an `Authorization` header
//! that is not a usable Bearer credential is a 401 with the Bearer challenge, never a
//! 400 (SPEC §8, "Hardening").

use std::num::NonZeroU32;

use reqwest::header::{HeaderMap, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::prelude::*;

crate::on_both_backends!(
    every_answer_under_the_auth_api_is_no_store,
    an_authorization_header_that_is_no_bearer_credential_is_a_401_challenge,
);

fn assert_no_store(what: &str, status: u16, headers: &HeaderMap, expected: u16) {
    assert_eq!(status, expected, "{what}");
    assert_eq!(
        headers.get("cache-control").map(HeaderValue::as_bytes),
        Some(&b"no-store"[..]),
        "{what}: {headers:?}"
    );
}

/// Sends `raw` as it is and returns the status and whether `Cache-Control: no-store`
/// came back: for requests reqwest will not make (a chunked body).
async fn raw(app: &TestApp, raw: &str) -> (u16, bool) {
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream.write_all(raw.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).to_lowercase();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer.contains("\r\ncache-control: no-store\r\n"))
}

async fn every_answer_under_the_auth_api_is_no_store(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.login_per_minute = NonZeroU32::MIN;
        s.rate_limit.register_per_minute = NonZeroU32::new(1000).unwrap();
    })
    .await;
    let c = &app.client;
    let register = app.url("/api/v1/auth/register");
    let token = app.url("/api/v1/auth/token");
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "malformed JSON",
            c.post(&register)
                .header("content-type", "application/json")
                .body("{\"email\":"),
            400,
        ),
        ("no token", c.get(app.url("/api/v1/auth/me")), 401),
        ("unknown path", c.get(app.url("/api/v1/auth/nope")), 404),
        ("wrong method", c.get(&token), 405),
        (
            "too large",
            c.post(&register)
                .header("content-type", "application/json")
                .body(vec![b' '; 16 * 1024 + 1]),
            413,
        ),
        ("wrong media type", c.post(&register).body("{}"), 415),
        (
            "invalid field",
            c.post(&register).json(&serde_json::json!({
                "email": "nope", "username": "ok_name", "password": PASSWORD
            })),
            422,
        ),
        (
            "first login",
            c.post(&token)
                .form(&[("username", "nobody"), ("password", "x")]),
            401,
        ),
        (
            "rate limited",
            c.post(&token)
                .form(&[("username", "nobody"), ("password", "x")]),
            429,
        ),
    ];
    for (what, request, status) in cases {
        let resp = request.send().await.expect(what);
        assert_no_store(what, resp.status().as_u16(), resp.headers(), status);
    }

    // A body of unknown length (chunked) is refused with 411.
    let chunked = format!(
        "POST /api/v1/auth/register HTTP/1.1\r\nHost: {}\r\nContent-Type: \
         application/json\r\nTransfer-Encoding: chunked\r\nConnection: \
         close\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n",
        app.addr
    );
    assert_eq!(raw(&app, &chunked).await, (411, true), "chunked body");

    // Outside the auth API, nothing is marked no-store by this rule.
    let resp = c.get(app.url("/health/liveness")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("cache-control").is_none());
    app.shutdown().await;
}

async fn an_authorization_header_that_is_no_bearer_credential_is_a_401_challenge(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (access, _) = app.user_with_tokens("hdr").await;
    let presented: Vec<(&str, Vec<u8>)> = vec![
        ("non-ASCII scheme", b"B\xe9arer abc".to_vec()),
        (
            "non-ASCII token",
            [b"Bearer ".as_slice(), access.as_bytes(), b"\xff"].concat(),
        ),
        ("another scheme", format!("Basic {access}").into_bytes()),
        ("empty token", b"Bearer ".to_vec()),
        ("empty header", Vec::new()),
    ];
    for (what, value) in presented {
        let resp = app
            .client
            .get(app.url("/api/v1/auth/me"))
            .header(
                "authorization",
                HeaderValue::from_bytes(&value).expect(what),
            )
            .send()
            .await
            .expect(what);
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{what}: {challenge}");
        assert_no_store(what, resp.status().as_u16(), resp.headers(), 401);
        assert_problem(resp, 401).await;
    }
    app.shutdown().await;
}
