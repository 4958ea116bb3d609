//! Login: `POST /api/v1/auth/token`: username or email in any case, and one 401 for
//! every way a login can fail.

use crate::prelude::*;

crate::on_both_backends!(
    login_accepts_username_or_email_in_any_case,
    every_login_failure_is_the_same_401,
);

async fn login_accepts_username_or_email_in_any_case(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    assert_eq!(
        app.register("Carol@Example.com", "Carol", PASSWORD)
            .await
            .status(),
        201
    );
    for login in [
        "Carol",
        "carol",
        "CAROL",
        "carol@example.com",
        "CAROL@EXAMPLE.COM",
    ] {
        let r = app.login(login, PASSWORD).await;
        assert_eq!(r.status(), 200, "{login}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let body = json(r).await;
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 1800);
        assert_eq!(body["refresh_token"].as_str().unwrap().len(), 43);
        assert_eq!(body["access_token"].as_str().unwrap().split('.').count(), 3);
    }
    app.shutdown().await;
}

async fn every_login_failure_is_the_same_401(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    assert_eq!(
        app.register("dave@example.com", "dave", PASSWORD)
            .await
            .status(),
        201
    );
    assert_eq!(
        app.register("erin@example.com", "erin", PASSWORD)
            .await
            .status(),
        201
    );
    service_for(&app)
        .await
        .set_active(
            &authctl::service::RequestContext::none(),
            &UserRef::Username("erin".into()),
            false,
        )
        .await
        .unwrap();

    let mut bodies = Vec::new();
    let long = "x".repeat(300);
    for (user, pw) in [
        ("nobody", PASSWORD),
        ("dave", "wrong password"),
        ("erin", PASSWORD),
        (long.as_str(), PASSWORD),
        ("dave", "nul\0byte-password"),
        ("dave", &"y".repeat(100)),
    ] {
        let r = app.login(user, pw).await;
        assert_eq!(r.status(), 401, "{user}");
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        bodies.push(r.bytes().await.unwrap());
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "401 bodies differ");
    app.shutdown().await;
}
