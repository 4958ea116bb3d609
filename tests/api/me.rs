//! The caller: `GET /api/v1/auth/me` needs a valid, live bearer token; disabled or
//! deleted users' tokens stop working.

use crate::prelude::*;

crate::on_both_backends!(
    me_requires_a_valid_live_bearer_token,
    disabling_or_deleting_a_user_rejects_their_tokens,
);

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
    let (claims, _) = keys.verify(&access).unwrap();
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
