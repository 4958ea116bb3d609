//! `/oauth/token` rule by rule (SPEC §18): single-use codes whose reuse revokes what
//! the first use issued (RFC 6749 §4.1.2); a code bound to its verifier, redirect URI
//! and client; client authentication and its 401 with `WWW-Authenticate: Basic`;
//! refresh re-checking the user and the client (Pocket ID 978ac87d); userinfo's
//! Bearer refusal.

use serde_json::Value;

use crate::support::Backend;
use crate::{
    Agent, Authz, Client, Idp, claims, exchange, refresh_grant, sign_in, token, token_error,
    token_json, tokens_for,
};

crate::on_both_backends!(
    a_reused_code_is_invalid_grant_and_revokes_what_its_first_use_issued,
    a_code_is_bound_to_its_verifier_redirect_uri_and_client,
    a_wrong_secret_is_401_invalid_client_with_www_authenticate_basic,
    the_token_response_has_every_member_and_bad_requests_are_oauth_errors,
    refresh_after_user_disable_is_invalid_grant,
    refresh_and_exchange_after_client_remove_are_refused,
    userinfo_answers_the_granted_claims_and_refuses_a_missing_or_bad_token,
    a_code_lives_60_seconds,
);

/// Signs in and returns the code with the request it answers.
async fn code_for(idp: &Idp, client: &Client, username: &str) -> (Authz, String) {
    let mut agent = Agent::new();
    let authz = Authz::new(client);
    let code = sign_in(&mut agent, idp, &authz, username).await;
    (authz, code)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("{key} in {v}"))
}

async fn a_reused_code_is_invalid_grant_and_revokes_what_its_first_use_issued(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("rex").await;
    let client = idp.confidential("https://app.example/cb").await;
    let (authz, code) = code_for(&idp, &client, "rex").await;
    let first = token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    let access = str_of(&first, "access_token").to_owned();
    let refresh = str_of(&first, "refresh_token").to_owned();
    assert_eq!(idp.app.me(&access).await.status(), 200);

    let second = exchange(&idp, &client, &authz, &code).await;
    assert_eq!(token_error(second, 400).await, "invalid_grant");
    // What the first exchange issued is revoked.
    assert_eq!(
        idp.app.me(&access).await.status(),
        401,
        "the first exchange's access token is refused after the reuse"
    );
    let r = refresh_grant(&idp, &client, &refresh).await;
    assert_eq!(token_error(r, 400).await, "invalid_grant");
    // And a third try stays refused.
    let third = exchange(&idp, &client, &authz, &code).await;
    assert_eq!(token_error(third, 400).await, "invalid_grant");
    let kinds = idp.audit_kinds().await;
    assert!(kinds.iter().any(|k| k == "oidc_code_reuse"), "{kinds:?}");
    // A code that never existed is invalid_grant too.
    let (authz, _) = code_for(&idp, &client, "rex").await;
    let r = exchange(&idp, &client, &authz, "made-up-code-0123456789").await;
    assert_eq!(token_error(r, 400).await, "invalid_grant");
    idp.shutdown().await;
}

async fn a_code_is_bound_to_its_verifier_redirect_uri_and_client(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("vic").await;
    let client = idp
        .client(
            "app",
            &["https://app.example/cb", "https://app.example/other"],
            &[],
        )
        .await;
    let other = idp.confidential("https://app.example/cb").await;
    let public = idp
        .client("spa", &["https://app.example/cb"], &["--public"])
        .await;
    let (id, secret) = (client.id.as_str(), client.secret.as_deref().unwrap());

    // A wrong verifier.
    let (authz, code) = code_for(&idp, &client, "vic").await;
    let wrong = format!("{}x", authz.verifier);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", authz.redirect_uri()),
        ("code_verifier", wrong.as_str()),
    ];
    assert_eq!(
        token_error(token(&idp, &form, Some((id, secret))).await, 400).await,
        "invalid_grant"
    );
    // No verifier at all.
    let (authz, code) = code_for(&idp, &client, "vic").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", authz.redirect_uri()),
    ];
    let error = token_error(token(&idp, &form, Some((id, secret))).await, 400).await;
    assert!(
        error == "invalid_grant" || error == "invalid_request",
        "{error}"
    );
    // The verifier itself as a "plain" challenge would be: refused.
    let (authz, code) = code_for(&idp, &client, "vic").await;
    let challenge = crate::s256(&authz.verifier);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", authz.redirect_uri()),
        ("code_verifier", challenge.as_str()),
    ];
    assert_eq!(
        token_error(token(&idp, &form, Some((id, secret))).await, 400).await,
        "invalid_grant"
    );

    // Another registered redirect URI than the one the code was sent to.
    let (authz, code) = code_for(&idp, &client, "vic").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "https://app.example/other"),
        ("code_verifier", authz.verifier.as_str()),
    ];
    assert_eq!(
        token_error(token(&idp, &form, Some((id, secret))).await, 400).await,
        "invalid_grant"
    );

    // Another client (with its own right secret) presenting this client's code.
    let (authz, code) = code_for(&idp, &client, "vic").await;
    let r = exchange(&idp, &other, &authz, &code).await;
    assert_eq!(token_error(r, 400).await, "invalid_grant");
    let r = exchange(&idp, &public, &authz, &code).await;
    let error = token_error(r, 400).await;
    assert_eq!(error, "invalid_grant");

    // A confidential client's code without its secret (client_id alone).
    let (authz, code) = code_for(&idp, &client, "vic").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", authz.redirect_uri()),
        ("code_verifier", authz.verifier.as_str()),
        ("client_id", id),
    ];
    assert_eq!(
        token_error(token(&idp, &form, None).await, 401).await,
        "invalid_client"
    );
    // After those refusals the right exchange of a fresh code works.
    let (authz, code) = code_for(&idp, &client, "vic").await;
    token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    idp.shutdown().await;
}

async fn a_wrong_secret_is_401_invalid_client_with_www_authenticate_basic(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("sam").await;
    let client = idp.confidential("https://app.example/cb").await;
    let (authz, code) = code_for(&idp, &client, "sam").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", authz.redirect_uri()),
        ("code_verifier", authz.verifier.as_str()),
    ];
    let r = token(&idp, &form, Some((&client.id, "not-the-secret"))).await;
    assert_eq!(r.status(), 401);
    let challenge = r
        .headers()
        .get("www-authenticate")
        .expect("WWW-Authenticate after a failed Basic authentication")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Basic"), "{challenge}");
    assert_eq!(token_error(r, 401).await, "invalid_client");
    // An unknown client id with Basic: the same.
    let r = token(&idp, &form, Some(("no-such-client-000000000", "x"))).await;
    assert!(r.headers().get("www-authenticate").is_some());
    assert_eq!(token_error(r, 401).await, "invalid_client");
    // client_secret_post with a wrong secret: invalid_client too.
    let mut post = form.to_vec();
    post.extend([
        ("client_id", client.id.as_str()),
        ("client_secret", "wrong"),
    ]);
    assert_eq!(
        token_error(token(&idp, &post, None).await, 401).await,
        "invalid_client"
    );
    idp.shutdown().await;
}

async fn the_token_response_has_every_member_and_bad_requests_are_oauth_errors(backend: Backend) {
    let idp = Idp::start(&backend).await;
    let uid = idp.user("tom").await;
    let client = idp.confidential("https://app.example/cb").await;
    let body = tokens_for(&idp, &client, "tom").await;
    assert_eq!(body["token_type"], "Bearer", "{body}");
    assert!(body["expires_in"].as_i64().is_some_and(|n| n > 0), "{body}");
    for key in ["access_token", "id_token", "scope", "refresh_token"] {
        assert!(body[key].is_string(), "{key}: {body}");
    }
    let id = claims(str_of(&body, "id_token"));
    for key in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "amr",
        "sid",
        "at_hash",
    ] {
        assert!(id.get(key).is_some(), "{key} in the ID token: {id}");
    }
    assert_eq!(id["sub"], uid.as_str());
    assert_eq!(id["email"], "tom@example.com");
    assert!(id["email_verified"].is_boolean());
    assert_eq!(id["preferred_username"], "tom");
    assert!(id["exp"].as_i64().unwrap() > id["iat"].as_i64().unwrap());

    // With the roles scope, roles.
    let mut agent = Agent::new();
    let authz = Authz::new(&client).set("scope", "openid roles");
    let code = sign_in(&mut agent, &idp, &authz, "tom").await;
    let body = token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    let id = claims(str_of(&body, "id_token"));
    assert!(id["roles"].is_array(), "roles with scope roles: {id}");
    assert!(
        id.get("email").is_none(),
        "no email without scope email: {id}"
    );
    assert!(
        body.get("refresh_token").is_none(),
        "no offline_access: {body}"
    );
    assert!(!str_of(&body, "scope").contains("offline_access"), "{body}");

    let (id, secret) = (client.id.as_str(), client.secret.as_deref().unwrap());
    let r = token(
        &idp,
        &[("grant_type", "password"), ("username", "tom")],
        Some((id, secret)),
    )
    .await;
    let error = token_error(r, 400).await;
    assert!(
        error == "unsupported_grant_type" || error == "unauthorized_client",
        "{error}"
    );
    let r = token(&idp, &[("grant_type", "nonsense")], Some((id, secret))).await;
    assert_eq!(token_error(r, 400).await, "unsupported_grant_type");
    let r = token(
        &idp,
        &[("grant_type", "authorization_code")],
        Some((id, secret)),
    )
    .await;
    assert_eq!(token_error(r, 400).await, "invalid_request");
    idp.shutdown().await;
}

async fn refresh_after_user_disable_is_invalid_grant(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("dan").await;
    let client = idp.confidential("https://app.example/cb").await;
    let body = tokens_for(&idp, &client, "dan").await;
    let refresh = str_of(&body, "refresh_token").to_owned();
    let out = idp.cli(&["user", "disable", "dan"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = refresh_grant(&idp, &client, &refresh).await;
    assert_eq!(token_error(r, 400).await, "invalid_grant");
    assert_eq!(
        idp.app.me(str_of(&body, "access_token")).await.status(),
        401
    );
    // Enabled again, the old refresh token stays dead (the disable revoked it).
    let out = idp.cli(&["user", "enable", "dan"]).await;
    assert!(out.status.success());
    let r = refresh_grant(&idp, &client, &refresh).await;
    assert_eq!(token_error(r, 400).await, "invalid_grant");
    idp.shutdown().await;
}

async fn refresh_and_exchange_after_client_remove_are_refused(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("eve").await;
    let client = idp.confidential("https://app.example/cb").await;
    let body = tokens_for(&idp, &client, "eve").await;
    let refresh = str_of(&body, "refresh_token").to_owned();
    let (authz, code) = code_for(&idp, &client, "eve").await;
    let out = idp.cli(&["client", "remove", &client.id]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = refresh_grant(&idp, &client, &refresh).await;
    let status = r.status().as_u16();
    let error = token_error(r, status).await;
    assert!(
        (status == 400 && error == "invalid_grant") || (status == 401 && error == "invalid_client"),
        "{status} {error}"
    );
    let r = exchange(&idp, &client, &authz, &code).await;
    let status = r.status().as_u16();
    let error = token_error(r, status).await;
    assert!(
        (status == 400 && error == "invalid_grant") || (status == 401 && error == "invalid_client"),
        "{status} {error}"
    );
    // Its sessions are revoked: the access token it got is refused.
    assert_eq!(
        idp.app.me(str_of(&body, "access_token")).await.status(),
        401
    );
    let kinds = idp.audit_kinds().await;
    for kind in ["client_created", "client_removed"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind}: {kinds:?}");
    }
    idp.shutdown().await;
}

async fn userinfo_answers_the_granted_claims_and_refuses_a_missing_or_bad_token(backend: Backend) {
    let idp = Idp::start(&backend).await;
    let uid = idp.user("uma").await;
    let client = idp.confidential("https://app.example/cb").await;
    let mut agent = Agent::new();
    let authz = Authz::new(&client).set("scope", "openid email");
    let code = sign_in(&mut agent, &idp, &authz, "uma").await;
    let body = token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    let access = str_of(&body, "access_token");
    for method in [reqwest::Method::GET, reqwest::Method::POST] {
        let r = idp
            .app
            .client
            .request(method.clone(), idp.url("/oauth/userinfo"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
        let info: Value = r.json().await.unwrap();
        assert_eq!(info["sub"], uid.as_str(), "{info}");
        assert_eq!(info["email"], "uma@example.com", "{info}");
        assert!(
            info.get("preferred_username").is_none(),
            "no profile: {info}"
        );
    }
    // Introspection (RFC 7662) says whose token it is: the client and the scope.
    let out = crate::support::cli::authctl(&idp.app.db.url)
        .args(["apikey", "create", "--name", "rs", "--scope", "introspect"])
        .args(["--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = crate::support::cli::stdout_json(&out)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = idp
        .app
        .client
        .post(idp.url("/api/v1/auth/introspect"))
        .bearer_auth(&key)
        .form(&[("token", access)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().await.unwrap();
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["client_id"], client.id.as_str(), "{seen}");
    assert_eq!(seen["aud"], client.id.as_str(), "{seen}");
    assert_eq!(seen["scope"], "openid email", "{seen}");
    for auth in [None, Some("Bearer not-a-token"), Some("Basic dXNlcjpwYXNz")] {
        let mut req = idp.app.client.get(idp.url("/oauth/userinfo"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        if auth == Some("Bearer not-a-token") {
            assert!(
                challenge.contains(r#"error="invalid_token""#),
                "{challenge}"
            );
        }
    }
    idp.shutdown().await;
}

/// Runs `sql` on the test database (SQLite or PostgreSQL).
async fn exec(url: &str, sql: &str) -> Vec<f64> {
    use sqlx::{Connection, Row};
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut c)
            .await
            .unwrap();
        rows.iter()
            .filter_map(|r| r.try_get::<f64, _>(0).ok())
            .collect()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&mut c)
            .await
            .unwrap();
        rows.iter()
            .filter_map(|r| r.try_get::<f64, _>(0).ok())
            .collect()
    }
}

async fn a_code_lives_60_seconds(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("ced").await;
    let client = idp.confidential("https://app.example/cb").await;
    let (authz, code) = code_for(&idp, &client, "ced").await;
    // Issued for 60 s (read from the row, as the server wrote it).
    let url = idp.app.db.url.clone();
    let ttl = if url.starts_with("sqlite:") {
        exec(
            &url,
            "SELECT (julianday(expires_at) - julianday('now')) * 86400.0 FROM oauth_codes",
        )
        .await
    } else {
        exec(
            &url,
            "SELECT EXTRACT(EPOCH FROM expires_at - now())::float8 FROM oauth_codes",
        )
        .await
    };
    assert_eq!(ttl.len(), 1, "{ttl:?}");
    assert!((50.0..=60.5).contains(&ttl[0]), "code lifetime {ttl:?}");
    // Aged past its minute (no sleeping): refused, and the next try too.
    let aged = if url.starts_with("sqlite:") {
        "UPDATE oauth_codes SET expires_at = '2000-01-01T00:00:00+00:00' RETURNING 0.0"
    } else {
        "UPDATE oauth_codes SET expires_at = now() - interval '1 second' RETURNING 0.0::float8"
    };
    exec(&url, aged).await;
    let r = exchange(&idp, &client, &authz, &code).await;
    assert_eq!(token_error(r, 400).await, "invalid_grant");
    let r = exchange(&idp, &client, &authz, &code).await;
    assert_eq!(token_error(r, 400).await, "invalid_grant");
    idp.shutdown().await;
}
