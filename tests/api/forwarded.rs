//! The RFC 8414 metadata behind a trusted proxy (SPEC §9): of `X-Forwarded-Host` and
//! `X-Forwarded-Proto`, only the right-most value counts — every header line in order,
//! as if comma-joined, as for `X-Forwarded-For` — since a proxy appends what it saw to
//! whatever the client sent.

use serde_json::Value;

use crate::prelude::*;

crate::on_both_backends!(
    the_metadata_takes_the_forwarded_value_the_proxy_appended,
    over_several_lines_the_last_lines_last_value_counts,
);

/// The server behind a proxy on 127.0.0.1, with no issuer URL: the metadata's URLs
/// come from the request.
async fn behind_a_proxy(backend: &Backend) -> TestApp {
    spawn_app(backend, |s| {
        s.rate_limit.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await
}

/// The metadata fetched with these header lines, in order (`header` appends).
async fn metadata_through(app: &TestApp, lines: &[(&str, &str)]) -> Value {
    let mut request = app
        .client
        .get(app.url("/.well-known/oauth-authorization-server"));
    for (name, value) in lines {
        request = request.header(*name, *value);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    json(r).await
}

async fn the_metadata_takes_the_forwarded_value_the_proxy_appended(backend: Backend) {
    let app = behind_a_proxy(&backend).await;
    // The client chose the first values; the proxy appended its own.
    let meta = metadata_through(
        &app,
        &[
            ("x-forwarded-host", "evil.example, auth.example.com"),
            ("x-forwarded-proto", "http, https"),
        ],
    )
    .await;
    assert_eq!(
        meta["token_endpoint"],
        "https://auth.example.com/api/v1/auth/token"
    );
    assert_eq!(
        meta["revocation_endpoint"],
        "https://auth.example.com/api/v1/auth/revoke"
    );
    assert_eq!(
        meta["jwks_uri"],
        "https://auth.example.com/.well-known/jwks.json"
    );
    app.shutdown().await;
}

async fn over_several_lines_the_last_lines_last_value_counts(backend: Backend) {
    let app = behind_a_proxy(&backend).await;
    let meta = metadata_through(
        &app,
        &[
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-host", "other.example, auth.example.com"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-proto", "http"),
        ],
    )
    .await;
    assert_eq!(
        meta["token_endpoint"],
        "http://auth.example.com/api/v1/auth/token"
    );
    app.shutdown().await;
}
