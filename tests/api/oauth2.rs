//! OAuth 2.0 interoperability (SPEC §9): the refresh grant at the token endpoint, RFC
//! 7009 revocation, RFC 6749's `error` member on error bodies, and the RFC 8414
//! metadata — first with a real OAuth2 client library (the `oauth2` crate, configured
//! from nothing but the metadata document, as a client would be), then rule by rule
//! over plain HTTP.

use std::num::NonZeroU32;

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicRequestTokenError};
use oauth2::{
    ClientId, HttpClientError, HttpRequest, HttpResponse, RefreshToken, RequestTokenError,
    ResourceOwnerPassword, ResourceOwnerUsername, RevocationUrl, StandardRevocableToken, TokenUrl,
};
use oauth2::{TokenResponse, http};
use serde_json::Value;

use crate::prelude::*;

crate::on_both_backends!(
    an_oauth2_client_logs_in_refreshes_and_revokes_from_the_metadata_alone,
    an_oauth2_client_sees_refusals_as_typed_errors_not_tokens,
    the_refresh_grant_rotates_like_refresh_and_refuses_a_spent_token,
    the_refresh_grant_takes_the_refresh_quota_not_the_logins,
    unsupported_grants_repeated_fields_and_bad_bodies_are_oauth2_errors,
    rfc7009_revocation_is_200_empty_for_refresh_access_and_unknown_tokens,
);

/// The `oauth2` crate's HTTP client: the project's own reqwest, request and response
/// passed through as they are — playing the TLS-terminating proxy in front of the
/// server (SPEC §8: TLS is the proxy's job), since the crate rightly refuses a
/// revocation URL that is not `https` (RFC 7009 §2): `https://` goes to the server as
/// `http://` with `X-Forwarded-Proto: https`.
async fn send(
    client: reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, HttpClientError<reqwest::Error>> {
    let (parts, body) = request.into_parts();
    let uri = parts.uri.to_string();
    let uri = match uri.strip_prefix("https://") {
        Some(rest) => format!("http://{rest}"),
        None => uri,
    };
    let resp = client
        .request(parts.method, uri)
        .headers(parts.headers)
        .header("x-forwarded-proto", "https")
        .body(body)
        .send()
        .await
        .map_err(Box::new)?;
    let mut answer = http::Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        answer = answer.header(name, value);
    }
    let body = resp.bytes().await.map_err(Box::new)?;
    Ok(answer.body(body.to_vec()).expect("a response"))
}

async fn metadata(app: &TestApp) -> Value {
    metadata_with(app, &[]).await
}

/// The metadata as a client sees it through a proxy that sends `forwarded` headers.
async fn metadata_with(app: &TestApp, forwarded: &[(&str, &str)]) -> Value {
    let mut request = app
        .client
        .get(app.url("/.well-known/oauth-authorization-server"));
    for (name, value) in forwarded {
        request = request.header(*name, *value);
    }
    let r = request.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    json(r).await
}

/// The `error` member of a problem body, after checking it is one.
async fn oauth_error(resp: reqwest::Response, status: u16) -> String {
    let body = assert_problem(resp, status).await;
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an `error` member: {body}"))
        .to_owned()
}

async fn post_form(app: &TestApp, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .form(form)
        .send()
        .await
        .expect("form request")
}

/// A body sent as it is, under the given `Content-Type`.
async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: String,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("request")
}

fn server_error(
    err: BasicRequestTokenError<HttpClientError<reqwest::Error>>,
) -> BasicErrorResponseType {
    match err {
        RequestTokenError::ServerResponse(e) => e.error().clone(),
        other => panic!("expected the server's OAuth2 error, got {other:?}"),
    }
}

async fn an_oauth2_client_logs_in_refreshes_and_revokes_from_the_metadata_alone(backend: Backend) {
    // The server behind a TLS-terminating proxy on the same host (see `send`).
    let app = spawn_app(&backend, |s| {
        s.rate_limit.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    app.user_with_tokens("olga").await;
    let meta = metadata_with(&app, &[("x-forwarded-proto", "https")]).await;
    assert_eq!(meta["issuer"], app.settings.auth.issuer);
    assert_eq!(
        meta["grant_types_supported"],
        serde_json::json!(["password", "refresh_token", "urn:authctl:grant-type:mfa"])
    );
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        serde_json::json!(["none"])
    );
    let https = |path: &str| format!("https://{}{path}", app.addr);
    assert_eq!(meta["jwks_uri"], https("/.well-known/jwks.json"));
    assert_eq!(meta["token_endpoint"], https("/api/v1/auth/token"));
    let client = BasicClient::new(ClientId::new("any-public-client".into()))
        .set_token_uri(TokenUrl::new(meta["token_endpoint"].as_str().unwrap().into()).unwrap())
        .set_revocation_url(
            RevocationUrl::new(meta["revocation_endpoint"].as_str().unwrap().into()).unwrap(),
        );
    let http = |req| send(app.client.clone(), req);

    // The password grant: a token the API takes.
    let first = client
        .exchange_password(
            &ResourceOwnerUsername::new("olga".into()),
            &ResourceOwnerPassword::new(PASSWORD.into()),
        )
        .request_async(&http)
        .await
        .expect("password grant");
    let access = first.access_token().secret().clone();
    assert_eq!(app.me(&access).await.status(), 200);
    assert!(first.expires_in().is_some());

    // The refresh grant: a new pair, and the old refresh token is spent.
    let old_refresh = first.refresh_token().expect("a refresh token").clone();
    let second = client
        .exchange_refresh_token(&old_refresh)
        .request_async(&http)
        .await
        .expect("refresh grant");
    let new_refresh = second.refresh_token().expect("a new refresh token").clone();
    assert_ne!(new_refresh.secret(), old_refresh.secret());
    assert_eq!(app.me(second.access_token().secret()).await.status(), 200);

    // Revocation (RFC 7009): the session ends, its tokens with it.
    client
        .revoke_token(StandardRevocableToken::RefreshToken(new_refresh.clone()))
        .expect("a revocation URL is set")
        .request_async(&http)
        .await
        .expect("revocation");
    assert_problem(app.me(second.access_token().secret()).await, 401).await;
    let err = client
        .exchange_refresh_token(&new_refresh)
        .request_async(&http)
        .await
        .expect_err("a revoked refresh token is refused");
    assert_eq!(server_error(err), BasicErrorResponseType::InvalidGrant);
    app.shutdown().await;
}

async fn an_oauth2_client_sees_refusals_as_typed_errors_not_tokens(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    app.user_with_tokens("pavel").await;
    let client = BasicClient::new(ClientId::new("cli".into()))
        .set_token_uri(TokenUrl::new(app.url("/api/v1/auth/token")).unwrap());
    let http = |req| send(app.client.clone(), req);

    let wrong = client
        .exchange_password(
            &ResourceOwnerUsername::new("pavel".into()),
            &ResourceOwnerPassword::new("not the password".into()),
        )
        .request_async(&http)
        .await
        .expect_err("a wrong password is no token");
    assert_eq!(server_error(wrong), BasicErrorResponseType::InvalidGrant);

    let unknown = client
        .exchange_refresh_token(&RefreshToken::new("q".repeat(43)))
        .request_async(&http)
        .await
        .expect_err("an unknown refresh token is no token");
    assert_eq!(server_error(unknown), BasicErrorResponseType::InvalidGrant);

    let unsupported = client
        .exchange_client_credentials()
        .request_async(&http)
        .await
        .expect_err("client credentials are not supported");
    assert_eq!(
        server_error(unsupported),
        BasicErrorResponseType::UnsupportedGrantType
    );
    app.shutdown().await;
}

async fn the_refresh_grant_rotates_like_refresh_and_refuses_a_spent_token(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (_, refresh) = app.user_with_tokens("quinn").await;
    let grant = |token: String| {
        let app = &app;
        async move {
            post_form(
                app,
                "/api/v1/auth/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &token),
                    ("client_id", "ignored"),
                    ("scope", "ignored too"),
                ],
            )
            .await
        }
    };
    let r = grant(refresh.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let pair = json(r).await;
    assert_eq!(pair["token_type"], "bearer");
    let next = pair["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(next, refresh);
    assert_eq!(
        app.me(pair["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );

    // The spent token is refused as `/refresh` refuses it: reuse revokes the family,
    // so the successor dies too (theft detection, the same service call).
    assert_eq!(
        oauth_error(grant(refresh.clone()).await, 401).await,
        "invalid_grant"
    );
    assert_eq!(
        oauth_error(app.refresh(&next).await, 401).await,
        "invalid_grant"
    );

    // `/refresh`'s own refusals carry the member too; `/me`'s do not (not OAuth2).
    let r = post_raw(
        &app,
        "/api/v1/auth/refresh",
        "application/json",
        "{not json".into(),
    )
    .await;
    assert_eq!(oauth_error(r, 400).await, "invalid_request");
    let me = assert_problem(app.me("garbage").await, 401).await;
    assert!(me.get("error").is_none(), "{me}");
    app.shutdown().await;
}

async fn the_refresh_grant_takes_the_refresh_quota_not_the_logins(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.login_per_minute = NonZeroU32::new(2).unwrap();
        s.rate_limit.refresh_per_minute = NonZeroU32::new(3).unwrap();
    })
    .await;
    // One login (1 of 2), then three refresh grants: all the refresh quota, none of
    // the login's.
    let (_, mut refresh) = app.user_with_tokens("rita").await;
    for i in 0..3 {
        let r = post_form(
            &app,
            "/api/v1/auth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
        )
        .await;
        assert_eq!(r.status(), 200, "refresh grant {i}");
        refresh = json(r).await["refresh_token"].as_str().unwrap().to_owned();
    }
    let r = post_form(
        &app,
        "/api/v1/auth/token",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(oauth_error(r, 429).await, "temporarily_unavailable");
    // `/refresh` shares the spent quota...
    assert_eq!(
        oauth_error(app.refresh(&refresh).await, 429).await,
        "temporarily_unavailable"
    );
    // ...and the login's still has its second request.
    assert_eq!(app.login("rita", PASSWORD).await.status(), 200);
    assert_problem(app.login("rita", PASSWORD).await, 429).await;
    app.shutdown().await;
}

async fn unsupported_grants_repeated_fields_and_bad_bodies_are_oauth2_errors(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    app.user_with_tokens("sam").await;
    let token = "/api/v1/auth/token";

    // The password grant, named or not.
    let named = post_form(
        &app,
        token,
        &[
            ("grant_type", "password"),
            ("username", "sam"),
            ("password", PASSWORD),
        ],
    )
    .await;
    assert_eq!(named.status(), 200);
    let r = app.login("sam", "wrong password").await;
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(oauth_error(r, 401).await, "invalid_grant");

    let r = post_form(&app, token, &[("grant_type", "client_credentials")]).await;
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(oauth_error(r, 400).await, "unsupported_grant_type");

    // A field given twice is a 422 naming it (SPEC §8), whichever field it is.
    for form in [
        &[
            ("username", "sam"),
            ("username", "sam"),
            ("password", PASSWORD),
        ][..],
        &[("grant_type", "password"), ("grant_type", "refresh_token")][..],
    ] {
        let r = post_form(&app, token, form).await;
        let body = assert_problem(r, 422).await;
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(body["errors"][0]["field"], form[1].0, "{body}");
    }
    let r = post_form(&app, token, &[("grant_type", "refresh_token")]).await;
    let body = assert_problem(r, 422).await;
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["errors"][0]["field"], "refresh_token");

    // The filters' refusals too: wrong media type, oversized body.
    let r = app
        .client
        .post(app.url(token))
        .json(&serde_json::json!({"username": "sam", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(oauth_error(r, 415).await, "invalid_request");
    let r = post_raw(&app, "/api/v1/auth/revoke", "text/plain", "token=x".into()).await;
    assert_eq!(oauth_error(r, 415).await, "invalid_request");
    let oversized = format!("username=sam&password={}", "p".repeat(17 * 1024));
    let r = post_raw(&app, token, "application/x-www-form-urlencoded", oversized).await;
    assert_eq!(oauth_error(r, 413).await, "invalid_request");
    app.shutdown().await;
}

async fn rfc7009_revocation_is_200_empty_for_refresh_access_and_unknown_tokens(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let revoke = "/api/v1/auth/revoke";

    // A refresh token, with its hint.
    let (access, refresh) = app.user_with_tokens("tara").await;
    let r = post_form(
        &app,
        revoke,
        &[("token", &refresh), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert!(
        r.bytes().await.unwrap().is_empty(),
        "RFC 7009 §2.2: empty body"
    );
    assert_problem(app.me(&access).await, 401).await;
    assert_problem(app.refresh(&refresh).await, 401).await;

    // An access token ends its session too, whatever the hint says.
    let pair = json(app.login("tara", PASSWORD).await).await;
    let (access, refresh) = (
        pair["access_token"].as_str().unwrap(),
        pair["refresh_token"].as_str().unwrap(),
    );
    let other = json(app.login("tara", PASSWORD).await).await;
    let r = post_form(
        &app,
        revoke,
        &[("token", access), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_problem(app.me(access).await, 401).await;
    assert_problem(app.refresh(refresh).await, 401).await;
    assert_eq!(
        app.me(other["access_token"].as_str().unwrap())
            .await
            .status(),
        200,
        "other sessions stay"
    );

    // Unknown, revoked again, or a JWT of another key: 200 all the same.
    for token in [
        refresh,
        access,
        "x",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    ] {
        let r = post_form(&app, revoke, &[("token", token)]).await;
        assert_eq!(r.status(), 200, "{token}");
    }
    // Without `token`: a 422 naming it; the JSON form keeps its 204.
    let body = assert_problem(
        post_form(&app, revoke, &[("token_type_hint", "access_token")]).await,
        422,
    )
    .await;
    assert_eq!(body["error"], "invalid_request");
    assert_eq!(body["errors"][0]["field"], "token");
    assert_eq!(app.revoke("unknown").await.status(), 204);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_names_urls_from_an_issuer_url_or_else_the_host() {
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    let meta = metadata(&app).await;
    assert_eq!(meta["token_endpoint"], app.url("/api/v1/auth/token"));
    assert_eq!(meta["revocation_endpoint"], app.url("/api/v1/auth/revoke"));
    assert_eq!(meta["response_types_supported"], serde_json::json!([]));
    // A client's X-Forwarded-* are ignored: no proxy is trusted.
    let forwarded = [
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
    ];
    assert_eq!(
        metadata_with(&app, &forwarded).await["token_endpoint"],
        app.url("/api/v1/auth/token")
    );
    app.shutdown().await;

    let app = spawn_app(&Backend::Sqlite, |s| {
        s.auth.issuer = "https://auth.example.com".into();
        s.rate_limit.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let meta = metadata(&app).await;
    assert_eq!(meta["issuer"], "https://auth.example.com");
    assert_eq!(
        meta["token_endpoint"],
        "https://auth.example.com/api/v1/auth/token"
    );
    assert_eq!(
        meta["jwks_uri"],
        "https://auth.example.com/.well-known/jwks.json"
    );
    app.shutdown().await;

    // Behind a trusted proxy, its forwarded scheme and host name the URLs.
    let app = spawn_app(&Backend::Sqlite, |s| {
        s.rate_limit.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let forwarded = [
        ("x-forwarded-host", "auth.example.com"),
        ("x-forwarded-proto", "https"),
    ];
    assert_eq!(
        metadata_with(&app, &forwarded).await["revocation_endpoint"],
        "https://auth.example.com/api/v1/auth/revoke"
    );
    app.shutdown().await;
}
