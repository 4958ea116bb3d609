//! A refused token's 401 says only that it was refused (SPEC §4, ASVS 16.5.1): reuse
//! detected, session revoked, user disabled or token expired, at `/me`, the sessions,
//! logout and password endpoints, `/refresh` and the refresh grant — one wording, one
//! challenge, byte for byte. Why is the request log line's (`reason`), not the client's.

use serde_json::Value;

use crate::prelude::*;

crate::on_both_backends!(a_refused_token_gets_the_same_401_whatever_the_reason);

/// What a client sees of a 401 that could tell one reason from another: the challenge
/// and the body, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    challenge: String,
    body: String,
}

async fn refused(what: &str, resp: reqwest::Response) -> Refusal {
    assert_eq!(resp.status(), 401, "{what}");
    let headers = resp.headers();
    assert_eq!(
        headers["content-type"], "application/problem+json",
        "{what}"
    );
    let challenge = headers["www-authenticate"].to_str().unwrap().to_owned();
    let body = resp.text().await.unwrap();
    Refusal { challenge, body }
}

/// Makes a user inactive behind the service's back, leaving their sessions alive (the
/// service revokes them when it disables a user), so that "user disabled" is the
/// reason a token is refused for, not "session revoked".
async fn deactivate_leaving_sessions(app: &TestApp, username: &str) {
    let url = &app.settings.database_url;
    let sql = "UPDATE users SET is_active = $1 WHERE username = $2";
    let updated = if url.is_postgres() {
        let pool = sqlx::PgPool::connect(url.expose()).await.expect("pg pool");
        let done = sqlx::query(sql).bind(false).bind(username);
        let done = done.execute(&pool).await.expect(sql).rows_affected();
        pool.close().await;
        done
    } else {
        let pool = sqlx::SqlitePool::connect(url.expose()).await.expect("pool");
        let done = sqlx::query(sql).bind(false).bind(username);
        let done = done.execute(&pool).await.expect(sql).rows_affected();
        pool.close().await;
        done
    };
    assert_eq!(updated, 1);
}

fn tokens(pair: &Value) -> (String, String) {
    (
        pair["access_token"].as_str().unwrap().to_owned(),
        pair["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn a_refused_token_gets_the_same_401_whatever_the_reason(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let bearer = |method: reqwest::Method, path: &str, token: &str| {
        app.client.request(method, app.url(path)).bearer_auth(token)
    };
    let grant = |refresh: &str| {
        app.client
            .post(app.url("/api/v1/auth/token"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
    };

    // Reuse detected: the rotated token comes back, and its session is revoked.
    let (_, spent) = app.user_with_tokens("rhea").await;
    let (access, newest) = tokens(&json(app.refresh(&spent).await).await);
    let mut at_refresh = vec![
        refused("reuse at /refresh", app.refresh(&spent).await).await,
        refused("revoked at /refresh", app.refresh(&newest).await).await,
        refused("revoked at /token", grant(&newest).send().await.unwrap()).await,
    ];
    let change = serde_json::json!({
        "current_password": PASSWORD,
        "new_password": "another horse battery",
    });
    let mut with_bearer = vec![
        refused("revoked at /me", app.me(&access).await).await,
        refused(
            "revoked at /sessions",
            bearer(reqwest::Method::GET, "/api/v1/auth/sessions", &access)
                .send()
                .await
                .unwrap(),
        )
        .await,
        refused(
            "revoked at /logout",
            bearer(reqwest::Method::POST, "/api/v1/auth/logout", &access)
                .send()
                .await
                .unwrap(),
        )
        .await,
        refused(
            "revoked at /password",
            bearer(reqwest::Method::POST, "/api/v1/auth/password", &access)
                .json(&change)
                .send()
                .await
                .unwrap(),
        )
        .await,
    ];

    // A disabled user whose session is still alive.
    let (access, refresh) = app.user_with_tokens("sam").await;
    deactivate_leaving_sessions(&app, "sam").await;
    with_bearer.push(refused("disabled at /me", app.me(&access).await).await);
    at_refresh.push(refused("disabled at /refresh", app.refresh(&refresh).await).await);

    // Expired: a token of a live session, well past its `exp` and the leeway.
    let (access, _) = app.user_with_tokens("tess").await;
    let keys = JwtKeys::new(
        app.settings.auth.secret_key.as_ref().unwrap(),
        app.settings.auth.algorithm,
        &app.settings.auth.issuer,
        Duration::from_secs(60),
    );
    let (claims, _) = keys.verify(&access).unwrap();
    let expired = keys
        .issue(
            claims.user_id().unwrap(),
            claims.family_id().unwrap(),
            Utc::now() - chrono::Duration::seconds(120),
        )
        .unwrap();
    assert_eq!(app.me(&access).await.status(), 200, "the session is alive");
    with_bearer.push(refused("expired at /me", app.me(&expired).await).await);

    for group in [&with_bearer, &at_refresh] {
        for refusal in group.iter() {
            assert_eq!(refusal, &group[0], "one answer whatever the reason");
            assert_eq!(refusal.challenge, "Bearer error=\"invalid_token\"");
            let lower = refusal.body.to_ascii_lowercase();
            for reason in ["reuse", "revoked", "disabled", "retired", "session", "user"] {
                assert!(!lower.contains(reason), "{reason:?} in {}", refusal.body);
            }
        }
    }
    let body: Value = serde_json::from_str(&with_bearer[0].body).unwrap();
    assert_eq!(body["detail"], "The token is invalid or expired.");
    assert!(body.get("error").is_none(), "{body}");
    // The OAuth2 endpoints keep RFC 6749's code, next to the same detail.
    let body: Value = serde_json::from_str(&at_refresh[0].body).unwrap();
    assert_eq!(body["detail"], "The token is invalid or expired.");
    assert_eq!(body["error"], "invalid_grant");
    app.shutdown().await;
}
