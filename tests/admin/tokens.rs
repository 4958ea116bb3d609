//! Roles reaching tokens and `/me`, and introspection (RFC 7662) telling live tokens
//! from everything else, on both backends.

use serde_json::{Value, json};

use super::support::cli::{add_user, authctl, stdout_json};
use super::support::{Backend, PASSWORD, assert_problem, spawn_app};
use super::{claims_of, create_key, introspect};

crate::on_both_backends!(
    roles_reach_new_tokens_and_me_at_once,
    introspection_tells_live_tokens_from_everything_else,
    introspection_refuses_expired_tokens_and_those_of_a_retired_key,
);

async fn roles_reach_new_tokens_and_me_at_once(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.auth.default_roles = vec![authctl::domain::Role::parse("member").expect("role")];
    })
    .await;
    let (old_access, _) = app.user_with_tokens("dave").await;
    assert_eq!(claims_of(&old_access)["roles"], json!(["member"]));

    authctl(&app.db.url)
        .args(["user", "role", "add", "dave", "zeta", "admin"])
        .assert()
        .success();
    // /me sees the change at once, even with a token issued before it.
    let me: Value = app.me(&old_access).await.json().await.expect("me");
    assert_eq!(me["roles"], json!(["admin", "member", "zeta"]));
    // Tokens issued from now on carry the roles, sorted.
    let r: Value = app
        .login("dave", PASSWORD)
        .await
        .json()
        .await
        .expect("login");
    let access = r["access_token"].as_str().expect("access");
    assert_eq!(
        claims_of(access)["roles"],
        json!(["admin", "member", "zeta"])
    );

    authctl(&app.db.url)
        .args(["user", "role", "remove", "dave", "zeta"])
        .assert()
        .success();
    authctl(&app.db.url)
        .args(["user", "role", "add", "dave", "Bad Role"])
        .assert()
        .code(2);
    let out = authctl(&app.db.url)
        .args(["user", "show", "dave", "--output", "json"])
        .output()
        .expect("show");
    assert_eq!(stdout_json(&out)["roles"], json!(["admin", "member"]));

    // `user add --role` (no default roles: those are for self-registration) and
    // `user list --role`.
    let added = {
        let out = authctl(&app.db.url)
            .args([
                "user",
                "add",
                "--email",
                "erin@example.com",
                "--username",
                "erin",
                "--password-stdin",
                "--role",
                "ops",
                "--role",
                "auditor",
                "--output",
                "json",
            ])
            .write_stdin(format!("{PASSWORD}\n"))
            .output()
            .expect("user add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_json(&out)
    };
    assert_eq!(added["roles"], json!(["auditor", "ops"]));
    let _ = add_user(&app.db.url, "frank@example.com", "frank");
    let out = authctl(&app.db.url)
        .args(["user", "list", "--role", "ops", "--output", "json"])
        .output()
        .expect("list");
    let listed = stdout_json(&out);
    let names: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["erin"]);
    app.shutdown().await;
}

async fn introspection_tells_live_tokens_from_everything_else(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    let (_, key) = create_key(&app, "resource-server", &["introspect"]);
    let (_, no_scope) = create_key(&app, "other", &["users:read"]);
    let (access, refresh) = app.user_with_tokens("gina").await;
    authctl(&app.db.url)
        .args(["user", "role", "add", "gina", "editor"])
        .assert()
        .success();

    let r = introspect(&app, &key, &access).await;
    assert_eq!(r.status(), 200);
    let live: Value = r.json().await.expect("json");
    assert_eq!(live["active"], true);
    assert_eq!(live["token_type"], "access_token");
    assert_eq!(live["username"], "gina");
    assert_eq!(live["roles"], json!(["editor"]), "roles as they are now");
    for field in ["sub", "exp", "iat", "iss", "jti", "sid", "amr"] {
        assert!(live.get(field).is_some(), "{field} in {live}");
    }
    let r: Value = introspect(&app, &key, &refresh)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["active"], true);
    assert_eq!(r["token_type"], "refresh_token");
    assert_eq!(r["sid"], live["sid"]);
    let mut fields: Vec<&str> = r
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["active", "exp", "sid", "sub", "token_type", "username"]
    );

    for garbage in ["garbage", "", "a.b.c", &format!("{access}x")] {
        let r: Value = introspect(&app, &key, garbage)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(r, json!({"active": false}), "{garbage}");
    }
    // Without a key, or with one lacking the scope.
    let r = app
        .client
        .post(app.url("/api/v1/auth/introspect"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .expect("introspect");
    assert_problem(r, 401).await;
    assert_problem(introspect(&app, &access, &access).await, 401).await;
    assert_problem(introspect(&app, &no_scope, &access).await, 403).await;

    // A rotated refresh token is no longer live; its successor is.
    let rotated: Value = app.refresh(&refresh).await.json().await.expect("refresh");
    let r: Value = introspect(&app, &key, &refresh)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r, json!({"active": false}));
    let successor = rotated["refresh_token"].as_str().expect("refresh");
    let r: Value = introspect(&app, &key, successor)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["active"], true);

    // A revoked session: both of its tokens are inactive at once.
    assert_eq!(app.revoke(successor).await.status(), 204);
    let r: Value = introspect(&app, &key, &access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r, json!({"active": false}));
    let r: Value = introspect(&app, &key, successor)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r, json!({"active": false}));

    // A disabled user's fresh tokens are inactive.
    let r: Value = app
        .login("gina", PASSWORD)
        .await
        .json()
        .await
        .expect("login");
    let access = r["access_token"].as_str().expect("access").to_owned();
    let refresh = r["refresh_token"].as_str().expect("refresh").to_owned();
    let r: Value = introspect(&app, &key, &access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["active"], true);
    authctl(&app.db.url)
        .args(["user", "disable", "gina"])
        .assert()
        .success();
    for token in [&access, &refresh] {
        let r: Value = introspect(&app, &key, token)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(r, json!({"active": false}));
    }

    // The metadata lists the endpoint.
    let meta: Value = app
        .client
        .get(app.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert!(
        meta["introspection_endpoint"]
            .as_str()
            .is_some_and(|u| u.ends_with("/api/v1/auth/introspect"))
    );
    app.shutdown().await;
}

async fn introspection_refuses_expired_tokens_and_those_of_a_retired_key(backend: Backend) {
    // Keys in the database (EdDSA), so one can be retired; short lifetimes.
    let app = spawn_app(&backend, |s| {
        s.auth.secret_key = None;
        s.auth.algorithm = jsonwebtoken::Algorithm::EdDSA;
        s.auth.access_token_ttl = std::time::Duration::from_secs(1);
        s.auth.refresh_token_ttl = std::time::Duration::from_secs(1);
    })
    .await;
    let db_keys = || {
        let mut cmd = authctl(&app.db.url);
        cmd.env_remove("SECRET_KEY").env("ALGORITHM", "EdDSA");
        cmd
    };
    let (_, key) = create_key(&app, "rs", &["introspect"]);
    let (access, refresh) = app.user_with_tokens("kim").await;
    let r: Value = introspect(&app, &key, &access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["active"], true);

    // Expired (past the JWT leeway, and the refresh token's own expiry).
    tokio::time::sleep(std::time::Duration::from_secs(7)).await;
    for token in [&access, &refresh] {
        let r: Value = introspect(&app, &key, token)
            .await
            .json()
            .await
            .expect("json");
        assert_eq!(r, json!({"active": false}), "expired");
    }

    // A retired key's tokens are inactive at once.
    let r: Value = app
        .login("kim", PASSWORD)
        .await
        .json()
        .await
        .expect("login");
    let access = r["access_token"].as_str().expect("access").to_owned();
    let r: Value = introspect(&app, &key, &access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["active"], true);
    let out = db_keys()
        .args(["keys", "list", "--output", "json"])
        .output()
        .expect("keys list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kid = stdout_json(&out)
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["state"] == "current")
        .and_then(|k| k["kid"].as_str())
        .expect("a current key")
        .to_owned();
    db_keys().args(["keys", "retire", &kid]).assert().success();
    let r: Value = introspect(&app, &key, &access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r, json!({"active": false}), "retired key");
    app.shutdown().await;
}
