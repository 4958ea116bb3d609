//! The caller: `GET /api/v1/auth/me` needs a valid, live bearer token; disabled or
//! deleted users' tokens stop working.

use crate::prelude::*;

crate::on_both_backends!(
    me_requires_a_valid_live_bearer_token,
    disabling_or_deleting_a_user_rejects_their_tokens,
    concurrent_lookups_each_get_their_own_answer,
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
        .set_active(
            &authctl::service::RequestContext::none(),
            &UserRef::Username("ivan".into()),
            false,
        )
        .await
        .unwrap();
    assert_problem(app.me(&access).await, 401).await;
    assert_problem(app.refresh(&refresh).await, 401).await;
    assert_problem(app.login("ivan", PASSWORD).await, 401).await;
    // Enabling does not resurrect revoked sessions, but allows a new login.
    service
        .set_active(
            &authctl::service::RequestContext::none(),
            &UserRef::Username("ivan".into()),
            true,
        )
        .await
        .unwrap();
    assert_problem(app.me(&access).await, 401).await;
    let (access2, _) = {
        let b = json(app.login("ivan", PASSWORD).await).await;
        (b["access_token"].as_str().unwrap().to_owned(), ())
    };
    assert_eq!(app.me(&access2).await.status(), 200);
    service
        .delete_user(
            &authctl::service::RequestContext::none(),
            &UserRef::Username("ivan".into()),
        )
        .await
        .unwrap();
    assert_problem(app.me(&access2).await, 401).await;
    app.shutdown().await;
}

/// `/me` lookups in flight together are answered many per query (`store::batch`):
/// each must still get its own user, and a revoked session, a disabled user or a token
/// naming another user's session its own 401 — however the batches fall.
async fn concurrent_lookups_each_get_their_own_answer(backend: Backend) {
    let app = spawn_app(&backend, |s| s.pool_max = 6).await;
    let keys = JwtKeys::new(
        app.settings.auth.secret_key.as_ref().unwrap(),
        app.settings.auth.algorithm,
        &app.settings.auth.issuer,
        Duration::from_secs(60),
    );
    // (token, the username /me must answer, or None for a 401)
    let mut cases: Vec<(String, Option<String>)> = Vec::new();
    for i in 0..8 {
        let name = format!("batch{i}");
        let (access, refresh) = app.user_with_tokens(&name).await;
        if i % 4 == 3 {
            assert_eq!(app.revoke(&refresh).await.status(), 204);
            cases.push((access, None));
        } else {
            cases.push((access, Some(name)));
        }
    }
    // A valid signature over user 1's id with user 0's session: not user 0's, not 1's.
    let (c0, _) = keys.verify(&cases[0].0).unwrap();
    let (c1, _) = keys.verify(&cases[1].0).unwrap();
    let crossed = keys
        .issue(c1.user_id().unwrap(), c0.family_id().unwrap(), Utc::now())
        .unwrap();
    cases.push((crossed, None));
    let service = service_for(&app).await;
    service
        .set_active(
            &authctl::service::RequestContext::none(),
            &UserRef::Username("batch2".into()),
            false,
        )
        .await
        .unwrap();
    cases[2].1 = None;

    let requests = (0..240).map(|n| {
        let (token, expected) = cases[n % cases.len()].clone();
        let app = &app;
        async move {
            let r = app.me(&token).await;
            (expected, r.status().as_u16(), json(r).await)
        }
    });
    for (expected, status, body) in futures_util::future::join_all(requests).await {
        match expected {
            Some(name) => {
                assert_eq!(status, 200, "{name}: {body}");
                assert_eq!(body["username"], name.as_str());
            }
            None => assert_eq!(status, 401, "{body}"),
        }
    }
    app.shutdown().await;
}
