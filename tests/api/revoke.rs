//! Logout: `POST /api/v1/auth/revoke` ends the token's family; unknown tokens are 204
//! too, and an expired access token is an unknown token (SPEC §9).

use authctl::tokens::LEEWAY_SECS;

use crate::prelude::*;

crate::on_both_backends!(
    revoke_logs_out_the_family_and_is_204_for_unknown_tokens,
    an_expired_access_token_is_an_unknown_token_and_its_session_lives_on,
);

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

async fn an_expired_access_token_is_an_unknown_token_and_its_session_lives_on(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.auth.access_token_ttl = Duration::from_secs(1);
    })
    .await;
    let (access, refresh) = app.user_with_tokens("iris").await;
    // Past its `exp` (whole seconds) and the leeway verification allows.
    tokio::time::sleep(Duration::from_secs(1 + LEEWAY_SECS + 1)).await;
    assert_problem(app.me(&access).await, 401).await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/revoke"))
        .form(&[
            ("token", access.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "an unknown token is revoked already");
    assert!(r.bytes().await.unwrap().is_empty());
    // No effect: the session's refresh token still rotates.
    let r = app.refresh(&refresh).await;
    assert_eq!(r.status(), 200, "the expired token ended its session");
    let b = json(r).await;
    let fresh = b["access_token"].as_str().unwrap().to_owned();
    let successor = b["refresh_token"].as_str().unwrap().to_owned();
    // A live access token of the same session still ends it.
    let r = app
        .client
        .post(app.url("/api/v1/auth/revoke"))
        .form(&[("token", fresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_problem(app.refresh(&successor).await, 401).await;
    app.shutdown().await;
}
