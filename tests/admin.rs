//! Roles, API keys, the admin API and introspection (SPEC §15, issue 23), on SQLite
//! and PostgreSQL, through the real HTTP and CLI surfaces.

mod support;

/// Roles in tokens and `/me`, and introspection.
#[path = "admin/tokens.rs"]
mod tokens;

use std::collections::HashSet;

use base64::Engine;
use serde_json::{Value, json};
use support::cli::{authctl, stdout_json};
use support::{Backend, PASSWORD, TestApp, assert_problem, spawn_app};

on_both_backends!(
    api_keys_are_created_listed_and_revoked_by_the_cli,
    scopes_decide_and_user_and_admin_credentials_never_mix,
    a_revoked_key_is_refused_at_once_by_a_second_server_on_the_same_database,
    pages_neither_skip_nor_repeat_while_users_sign_up,
    a_password_change_through_patch_revokes_every_session_and_is_audited_with_the_key,
    an_admin_created_user_without_password_enters_by_reset_and_an_email_change_voids_it,
);

/// `apikey create` with these scopes: (id, key).
fn create_key(app: &TestApp, name: &str, scopes: &[&str]) -> (i64, String) {
    let mut args = vec!["apikey", "create", "--name", name, "--output", "json"];
    for s in scopes {
        args.extend(["--scope", s]);
    }
    let out = authctl(&app.db.url)
        .args(&args)
        .output()
        .expect("apikey create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = stdout_json(&out);
    let key = created["key"].as_str().expect("key").to_owned();
    (created["id"].as_i64().expect("id"), key)
}

async fn get(app: &TestApp, path: &str, key: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
}

async fn send_json(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Value,
) -> reqwest::Response {
    app.client
        .request(method, app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn introspect(app: &TestApp, key: &str, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/auth/introspect"))
        .bearer_auth(key)
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

fn audit(app: &TestApp, kind: &str) -> Vec<Value> {
    let out = authctl(&app.db.url)
        .args(["audit", "list", "--kind", kind, "--output", "json"])
        .output()
        .expect("audit list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout_json(&out).as_array().expect("array").clone()
}

async fn api_keys_are_created_listed_and_revoked_by_the_cli(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (id, key) = create_key(&app, "billing", &["users:read", "introspect"]);
    assert!(key.starts_with("ak_") && key.len() == 46, "{key}");
    assert!(
        key[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    let out = authctl(&app.db.url)
        .args(["apikey", "list", "--output", "json"])
        .output()
        .expect("list");
    assert!(out.status.success());
    let listed = stdout_json(&out);
    let entry = &listed[0];
    let mut fields: Vec<&str> = entry
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "expires_at",
            "id",
            "last_used_at",
            "name",
            "revoked_at",
            "scopes"
        ]
    );
    assert_eq!(entry["scopes"], json!(["users:read", "introspect"]));
    assert!(entry["revoked_at"].is_null() && entry["last_used_at"].is_null());
    // The key itself is never shown again, nor stored.
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&key[3..]));

    assert_eq!(get(&app, "/api/v1/admin/users", &key).await.status(), 200);
    let out = authctl(&app.db.url)
        .args(["apikey", "list", "--output", "json"])
        .output()
        .expect("list");
    assert!(
        stdout_json(&out)[0]["last_used_at"].is_string(),
        "use recorded"
    );

    authctl(&app.db.url)
        .args(["apikey", "revoke", &id.to_string()])
        .assert()
        .success();
    authctl(&app.db.url)
        .args(["apikey", "revoke", "999999"])
        .assert()
        .code(3);
    let out = authctl(&app.db.url)
        .args(["apikey", "list", "--output", "json"])
        .output()
        .expect("list");
    assert!(stdout_json(&out)[0]["revoked_at"].is_string());
    assert_eq!(get(&app, "/api/v1/admin/users", &key).await.status(), 401);

    assert_eq!(audit(&app, "apikey_created")[0]["detail"]["api_key"], id);
    assert_eq!(audit(&app, "apikey_revoked")[0]["detail"]["api_key"], id);
    // An expiring key: a duration is taken.
    authctl(&app.db.url)
        .args([
            "apikey",
            "create",
            "--name",
            "short",
            "--scope",
            "audit:read",
            "--expires",
            "1h",
        ])
        .assert()
        .success();
    authctl(&app.db.url)
        .args(["apikey", "create", "--name", "bad", "--scope", "users:*"])
        .assert()
        .code(2);
    app.shutdown().await;
}

async fn scopes_decide_and_user_and_admin_credentials_never_mix(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (_, reader) = create_key(&app, "reader", &["users:read"]);
    let (_, writer) = create_key(&app, "writer", &["users:write"]);
    let (access, _) = app.user_with_tokens("alice").await;

    assert_eq!(
        get(&app, "/api/v1/admin/users", &reader).await.status(),
        200
    );
    // users:write does not imply users:read.
    let r = get(&app, "/api/v1/admin/users", &writer).await;
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"users:read\""
    );
    assert_problem(r, 403).await;
    let body = json!({"email": "bob@example.com", "username": "bob"});
    let r = send_json(
        &app,
        reqwest::Method::POST,
        "/api/v1/admin/users",
        &reader,
        body,
    )
    .await;
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer error=\"insufficient_scope\", scope=\"users:write\""
    );
    assert_problem(r, 403).await;
    let r = get(&app, "/api/v1/admin/audit", &reader).await;
    assert_problem(r, 403).await;

    // A user's access token is no key; a key is no access token.
    let r = get(&app, "/api/v1/admin/users", &access).await;
    assert!(r.headers().contains_key("www-authenticate"));
    assert_problem(r, 401).await;
    assert_problem(app.me(&reader).await, 401).await;
    assert_problem(
        app.client
            .get(app.url("/api/v1/admin/users"))
            .send()
            .await
            .expect("request"),
        401,
    )
    .await;
    let unknown = format!("ak_{}", "A".repeat(43));
    assert_problem(get(&app, "/api/v1/admin/users", &unknown).await, 401).await;
    assert_problem(get(&app, "/api/v1/admin/users", "ak_garbage").await, 401).await;

    // A write, then its 409 and 422, and the user object's shape.
    let body = json!({"email": "bob@example.com", "username": "bob"});
    let r = send_json(
        &app,
        reqwest::Method::POST,
        "/api/v1/admin/users",
        &writer,
        body.clone(),
    )
    .await;
    assert_eq!(r.status(), 201);
    let bob: Value = r.json().await.expect("json");
    let mut fields: Vec<&str> = bob
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "created_at",
            "email",
            "email_verified",
            "id",
            "is_active",
            "locked_until",
            "mfa_enabled",
            "roles",
            "username"
        ]
    );
    assert_eq!(bob["is_active"], true);
    assert_eq!(bob["email_verified"], false);
    assert_eq!(bob["roles"], json!([]));
    let r = send_json(
        &app,
        reqwest::Method::POST,
        "/api/v1/admin/users",
        &writer,
        body,
    )
    .await;
    assert_problem(r, 409).await;
    let bad = json!({"email": "nope", "username": "x", "roles": ["Admin"], "is_active": "yes"});
    let r = send_json(
        &app,
        reqwest::Method::POST,
        "/api/v1/admin/users",
        &writer,
        bad,
    )
    .await;
    let problem = assert_problem(r, 422).await;
    let named: HashSet<&str> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(
        named,
        HashSet::from(["email", "username", "roles", "is_active"])
    );
    let r = get(&app, &format!("/api/v1/admin/users/{}", bob["id"]), &reader).await;
    assert_eq!(r.status(), 200);
    assert_problem(get(&app, "/api/v1/admin/users/999999", &reader).await, 404).await;
    app.shutdown().await;
}

async fn a_revoked_key_is_refused_at_once_by_a_second_server_on_the_same_database(
    backend: Backend,
) {
    let app = spawn_app(&backend, |_| {}).await;
    let second = authctl::server::spawn(app.settings.clone(), Default::default())
        .await
        .expect("second server");
    let other = format!("http://{}", second.addr);
    let (id, key) = create_key(&app, "svc", &["users:read"]);
    let on_other = |key: String| {
        let client = app.client.clone();
        let url = format!("{other}/api/v1/admin/users");
        async move {
            client
                .get(url)
                .bearer_auth(key)
                .send()
                .await
                .expect("request")
                .status()
        }
    };
    // Both servers answer the key (the second once it is ready).
    let mut status = 0;
    for _ in 0..200 {
        status = on_other(key.clone()).await.as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(get(&app, "/api/v1/admin/users", &key).await.status(), 200);

    authctl(&app.db.url)
        .args(["apikey", "revoke", &id.to_string()])
        .assert()
        .success();
    assert_eq!(on_other(key.clone()).await, 401);
    assert_eq!(get(&app, "/api/v1/admin/users", &key).await.status(), 401);
    second.shutdown().await.expect("clean shutdown");
    app.shutdown().await;
}

async fn pages_neither_skip_nor_repeat_while_users_sign_up(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (_, key) = create_key(&app, "pager", &["users:read"]);
    let mut before = HashSet::new();
    for i in 0..23 {
        let r = app
            .register(
                &format!("page{i}@example.com"),
                &format!("page{i}"),
                PASSWORD,
            )
            .await;
        assert_eq!(r.status(), 201);
        let u: Value = r.json().await.expect("json");
        before.insert(u["id"].as_i64().expect("id"));
    }
    // Sign-ups run while the pages are read.
    let signups = {
        let client = app.client.clone();
        let url = app.url("/api/v1/auth/register");
        tokio::spawn(async move {
            for i in 0..20 {
                let body = json!({"email": format!("new{i}@example.com"), "username": format!("new{i}"), "password": PASSWORD});
                let r = client
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("register");
                assert_eq!(r.status(), 201);
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/users?limit=4&cursor={c}"),
            None => "/api/v1/admin/users?limit=4".to_owned(),
        };
        let r = get(&app, &path, &key).await;
        assert_eq!(r.status(), 200);
        let page: Value = r.json().await.expect("json");
        let users = page["users"].as_array().expect("users");
        assert!(users.len() <= 4);
        seen.extend(users.iter().map(|u| u["id"].as_i64().expect("id")));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    signups.await.expect("signups");
    let distinct: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(distinct.len(), seen.len(), "no user twice: {seen:?}");
    assert!(
        before.is_subset(&distinct),
        "every user there before is listed once"
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, seen, "in id order");

    // q matches a prefix of the username or email, any case; limit bounds.
    let r = get(&app, "/api/v1/admin/users?q=PAGE1", &key).await;
    let page: Value = r.json().await.expect("json");
    let names: HashSet<&str> = page["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert!(
        names.contains("page1") && names.contains("page12") && !names.contains("page2"),
        "{names:?}"
    );
    assert_problem(get(&app, "/api/v1/admin/users?limit=0", &key).await, 422).await;
    assert_problem(get(&app, "/api/v1/admin/users?limit=201", &key).await, 422).await;
    assert_problem(get(&app, "/api/v1/admin/users?cursor=zzz", &key).await, 422).await;
    app.shutdown().await;
}

async fn a_password_change_through_patch_revokes_every_session_and_is_audited_with_the_key(
    backend: Backend,
) {
    let app = spawn_app(&backend, |_| {}).await;
    let (id, key) = create_key(
        &app,
        "ops",
        &["users:write", "users:read", "sessions:write"],
    );
    let (access, refresh) = app.user_with_tokens("carol").await;
    let me: Value = app.me(&access).await.json().await.expect("me");
    let user = me["id"].as_i64().expect("id");
    let path = format!("/api/v1/admin/users/{user}");

    let sessions: Value = get(&app, &format!("{path}/sessions"), &key)
        .await
        .json()
        .await
        .expect("sessions");
    assert_eq!(sessions.as_array().expect("array").len(), 1);
    assert!(sessions[0].get("current").is_none());

    let r = send_json(
        &app,
        reqwest::Method::PATCH,
        &path,
        &key,
        json!({"password": "a brand new password"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_problem(app.me(&access).await, 401).await;
    assert_problem(app.refresh(&refresh).await, 401).await;
    assert_eq!(app.login("carol", PASSWORD).await.status(), 401);
    assert_eq!(
        app.login("carol", "a brand new password").await.status(),
        200
    );

    let changed = audit(&app, "password_changed");
    assert_eq!(changed[0]["detail"]["api_key"], id);

    // Disable through PATCH: the new session ends too.
    let r = send_json(
        &app,
        reqwest::Method::PATCH,
        &path,
        &key,
        json!({"is_active": false}),
    )
    .await;
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["is_active"], false);
    assert_eq!(audit(&app, "user_disabled")[0]["detail"]["api_key"], id);
    let sessions: Value = get(&app, &format!("{path}/sessions"), &key)
        .await
        .json()
        .await
        .expect("sessions");
    assert_eq!(sessions, json!([]));

    let r = app
        .client
        .delete(app.url(&format!("{path}/sessions")))
        .bearer_auth(&key)
        .send()
        .await
        .expect("delete sessions");
    assert_eq!(r.status(), 204);
    let r = app
        .client
        .post(app.url(&format!("{path}/unlock")))
        .bearer_auth(&key)
        .send()
        .await
        .expect("unlock");
    assert_eq!(r.status(), 204);
    let r = app
        .client
        .delete(app.url(&path))
        .bearer_auth(&key)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), 204);
    assert_eq!(audit(&app, "user_deleted")[0]["detail"]["api_key"], id);
    assert_problem(get(&app, &path, &key).await, 404).await;
    app.shutdown().await;
}

async fn reset_link(app: &TestApp, path: &str, key: &str) -> String {
    let r = app
        .client
        .post(app.url(&format!("{path}/reset-link")))
        .bearer_auth(key)
        .send()
        .await
        .expect("reset-link");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert!(body["link"].is_null());
    body["token"].as_str().expect("token").to_owned()
}

async fn reset(app: &TestApp, token: String) -> u16 {
    app.client
        .post(app.url("/api/v1/auth/reset"))
        .json(&json!({"token": token, "new_password": "set by a reset"}))
        .send()
        .await
        .expect("reset")
        .status()
        .as_u16()
}

async fn an_admin_created_user_without_password_enters_by_reset_and_an_email_change_voids_it(
    backend: Backend,
) {
    let app = spawn_app(&backend, |_| {}).await;
    let (id, key) = create_key(
        &app,
        "backend",
        &["users:write", "users:read", "audit:read"],
    );
    let body = json!({"email": "hank@example.com", "username": "hank", "roles": ["b", "a"], "email_verified": true});
    let r = send_json(
        &app,
        reqwest::Method::POST,
        "/api/v1/admin/users",
        &key,
        body,
    )
    .await;
    assert_eq!(r.status(), 201);
    let hank: Value = r.json().await.expect("json");
    assert_eq!(hank["roles"], json!(["a", "b"]));
    assert_eq!(hank["email_verified"], true);
    let path = format!("/api/v1/admin/users/{}", hank["id"]);

    // An email change voids an issued reset token and makes the email unverified.
    let token = reset_link(&app, &path, &key).await;
    let r = send_json(
        &app,
        reqwest::Method::PATCH,
        &path,
        &key,
        json!({"email": "hank2@example.com", "roles": []}),
    )
    .await;
    let changed: Value = r.json().await.expect("json");
    assert_eq!(changed["email"], "hank2@example.com");
    assert_eq!(changed["email_verified"], false);
    assert_eq!(changed["roles"], json!([]));
    assert_eq!(reset(&app, token).await, 400);

    let token = reset_link(&app, &path, &key).await;
    assert_eq!(reset(&app, token).await, 204);
    assert_eq!(app.login("hank", "set by a reset").await.status(), 200);

    // A taken username is 409.
    app.user_with_tokens("ivy").await;
    let r = send_json(
        &app,
        reqwest::Method::PATCH,
        &path,
        &key,
        json!({"username": "IVY"}),
    )
    .await;
    assert_problem(r, 409).await;

    // The audit API answers `audit list`'s JSON; every admin write names the key.
    let r = get(&app, "/api/v1/admin/audit?kind=user_created&limit=5", &key).await;
    assert_eq!(r.status(), 200);
    let events: Value = r.json().await.expect("json");
    assert_eq!(events[0]["kind"], "user_created");
    assert_eq!(events[0]["detail"]["api_key"], id);
    assert_problem(get(&app, "/api/v1/admin/audit?kind=nope", &key).await, 422).await;
    app.shutdown().await;
}
