//! Registration: `POST /api/v1/auth/register`: 201 with the public user, 409 on a taken
//! email or username, 422 naming each bad field, body-level errors (400/415/413) and
//! the 72-byte bcrypt boundary.

use crate::prelude::*;

crate::on_both_backends!(
    registering_returns_201_with_the_public_user,
    duplicate_email_or_username_is_409_case_insensitively,
    invalid_fields_are_422_naming_each_field,
    malformed_json_is_400_wrong_content_type_415_and_big_bodies_413,
    passwords_of_72_bytes_work_and_73_bytes_are_refused_without_truncation,
);

async fn registering_returns_201_with_the_public_user(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let r = app.register("Alice@Example.com", "alice", PASSWORD).await;
    assert_eq!(r.status(), 201);
    let body = json(r).await;
    assert_eq!(body["email"], "Alice@Example.com");
    assert_eq!(body["username"], "alice");
    assert_eq!(body["is_active"], true);
    assert!(body["id"].is_i64());
    assert!(body.get("password").is_none() && body.get("password_hash").is_none());
    app.shutdown().await;
}

async fn duplicate_email_or_username_is_409_case_insensitively(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    assert_eq!(
        app.register("bob@example.com", "bob", PASSWORD)
            .await
            .status(),
        201
    );
    let body = assert_problem(
        app.register("BOB@EXAMPLE.COM", "other", PASSWORD).await,
        409,
    )
    .await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("email"),
        "{body}"
    );
    let body = assert_problem(app.register("new@example.com", "BoB", PASSWORD).await, 409).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .to_lowercase()
            .contains("username"),
        "{body}"
    );
    app.shutdown().await;
}

async fn invalid_fields_are_422_naming_each_field(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let fields = |body: &serde_json::Value| -> Vec<String> {
        body["errors"]
            .as_array()
            .expect("errors array")
            .iter()
            .map(|e| e["field"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let body = assert_problem(app.register("not-an-email", "ab", "short").await, 422).await;
    assert_eq!(fields(&body), ["email", "username", "password"]);
    let long_email = format!("{}@example.com", "a".repeat(250));
    let body = assert_problem(
        app.register(&long_email, "bad name!", "pass\0word123")
            .await,
        422,
    )
    .await;
    assert_eq!(fields(&body), ["email", "username", "password"]);

    let r = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "x@example.com", "username": 42}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, 422).await;
    assert_eq!(fields(&body), ["username", "password"]);
    for e in body["errors"].as_array().unwrap() {
        assert!(e["message"].is_string());
    }
    // A mistyped field does not hide another field's invalid content.
    let r = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "not-an-email", "username": 42, "password": "ok-password-1"}))
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, 422).await;
    assert_eq!(fields(&body), ["email", "username"]);
    app.shutdown().await;
}

async fn malformed_json_is_400_wrong_content_type_415_and_big_bodies_413(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let post = |ct: Option<&str>, body: Vec<u8>| {
        let mut req = app.client.post(app.url("/api/v1/auth/register")).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req.send()
    };
    assert_problem(
        post(Some("application/json"), b"{\"email\":".to_vec())
            .await
            .unwrap(),
        400,
    )
    .await;
    assert_problem(post(Some("text/plain"), b"{}".to_vec()).await.unwrap(), 415).await;
    assert_problem(post(None, b"{}".to_vec()).await.unwrap(), 415).await;
    assert_problem(
        post(Some("application/json"), b"[1,2]".to_vec())
            .await
            .unwrap(),
        422,
    )
    .await;

    // 16 384 bytes are accepted (then judged on content); one more byte is 413.
    let exact = |n: usize| {
        let prefix =
            br#"{"email":"a@example.com","username":"user","password":"quiet lantern 42","pad":""#;
        let mut body = prefix.to_vec();
        body.resize(n - 2, b'x');
        body.extend_from_slice(b"\"}");
        assert_eq!(body.len(), n);
        body
    };
    let r = post(Some("application/json"), exact(16 * 1024))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_problem(
        post(Some("application/json"), exact(16 * 1024 + 1))
            .await
            .unwrap(),
        413,
    )
    .await;

    // The login form obeys the same limits and wants a form.
    let r = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_problem(r, 415).await;
    let r = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[("username", "someone")])
        .send()
        .await
        .unwrap();
    let body = assert_problem(r, 422).await;
    assert_eq!(body["errors"][0]["field"], "password");
    app.shutdown().await;
}

async fn passwords_of_72_bytes_work_and_73_bytes_are_refused_without_truncation(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let p72 = "p".repeat(72);
    assert_eq!(
        app.register("long@example.com", "longpw", &p72)
            .await
            .status(),
        201
    );
    assert_eq!(app.login("longpw", &p72).await.status(), 200);
    // A 73rd byte is not silently dropped: that password is a different one.
    let p73 = format!("{p72}x");
    assert_problem(app.login("longpw", &p73).await, 401).await;
    let body = assert_problem(
        app.register("long2@example.com", "longpw2", &p73).await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "password");
    // Multi-byte characters count in bytes: 24 × '€' is 72 bytes, 25 is 75.
    assert_eq!(
        app.register("euro@example.com", "euro", &"€".repeat(24))
            .await
            .status(),
        201
    );
    assert_problem(
        app.register("euro2@example.com", "euro2", &"€".repeat(25))
            .await,
        422,
    )
    .await;
    // Eight characters is the minimum, whatever their byte length.
    assert_eq!(
        app.register("eight@example.com", "eight", "ééééééé1")
            .await
            .status(),
        201
    );
    assert_problem(
        app.register("seven@example.com", "seven", "1234567").await,
        422,
    )
    .await;
    app.shutdown().await;
}
