//! Signing keys (SPEC §9): the JWKS, verification by a resource server with nothing
//! but the JWKS, algorithm confusion, rotation and retirement while servers run, and
//! two servers on one database seeing each other's rotation.

use authctl::server::{self, ServeOptions};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;

use crate::prelude::*;
use crate::support::spawn_app_on;
use authctl::service::AuthService;

crate::on_both_backends!(
    an_independent_verifier_checks_tokens_with_nothing_but_the_jwks,
    hmac_keys_are_never_published_and_generated_ones_sign_with_a_kid,
    an_hs256_token_keyed_with_the_public_key_is_refused,
    a_rotation_while_the_server_runs_keeps_old_tokens_and_signs_with_the_new_kid,
    retiring_a_key_refuses_its_tokens_at_once,
    two_servers_on_one_database_see_each_others_rotation_within_ten_seconds,
    a_key_generated_before_rotation_existed_keeps_its_tokens_valid,
    retiring_the_legacy_key_refuses_kid_less_tokens_at_once_on_every_server,
);

/// What a resource server reads from a token.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    exp: i64,
}

/// Settings of a server whose keys live in the database.
fn with_algorithm(alg: Algorithm) -> impl FnOnce(&mut authctl::config::Settings) {
    move |s| {
        s.auth.secret_key = None;
        s.auth.algorithm = alg;
    }
}

async fn jwks(client: &reqwest::Client, base: &str) -> JwkSet {
    let r = client
        .get(format!("{base}/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=300");
    r.json().await.expect("a JWK Set")
}

/// The JWKS document as plain JSON, to look at its members.
async fn raw_jwks(app: &crate::support::TestApp) -> serde_json::Value {
    let r = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    r.json().await.unwrap()
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("the token names its key")
}

/// Verifies as a resource server would: the key by `kid` from the JWKS, the algorithm
/// from the key, `iss` and `exp` checked.
fn verify_with_jwks(set: &JwkSet, token: &str) -> Claims {
    let jwk = set
        .find(&kid_of(token))
        .expect("the token's key is published");
    let alg = Algorithm::try_from(jwk.common.key_algorithm.expect("alg")).unwrap();
    let mut validation = Validation::new(alg);
    validation.set_issuer(&["authctl"]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("verifies with the JWKS alone")
        .claims
}

async fn an_independent_verifier_checks_tokens_with_nothing_but_the_jwks(backend: Backend) {
    for alg in [Algorithm::EdDSA, Algorithm::ES256] {
        let app = spawn_app(&backend, with_algorithm(alg)).await;
        let (access, _) = app.user_with_tokens("rs-user").await;
        assert_eq!(jsonwebtoken::decode_header(&access).unwrap().alg, alg);
        let set = jwks(&app.client, &app.base).await;
        assert_eq!(set.keys.len(), 1, "{alg:?}");
        let claims = verify_with_jwks(&set, &access);
        assert_eq!(claims.iss, "authctl");
        assert!(claims.exp > Utc::now().timestamp());
        let me = json(app.me(&access).await).await;
        assert_eq!(claims.sub, me["id"].to_string());
        // Only public members are published.
        let raw = raw_jwks(&app).await;
        assert!(raw["keys"][0].get("d").is_none(), "{raw}");
        assert_eq!(raw["keys"][0]["use"], "sig");
        app.shutdown().await;
    }
}

async fn hmac_keys_are_never_published_and_generated_ones_sign_with_a_kid(backend: Backend) {
    // SECRET_KEY: kid-less tokens, as before.
    let app = spawn_app(&backend, |_| {}).await;
    let (access, _) = app.user_with_tokens("hs-static").await;
    assert_eq!(jsonwebtoken::decode_header(&access).unwrap().kid, None);
    assert!(jwks(&app.client, &app.base).await.keys.is_empty());
    app.shutdown().await;

    // A generated HMAC key: tokens carry its kid, and it is still never published.
    let app = spawn_app(&backend, with_algorithm(Algorithm::HS256)).await;
    let (access, _) = app.user_with_tokens("hs-generated").await;
    let kid = kid_of(&access);
    let listed = service_for(&app).await.list_keys().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].kid, kid);
    assert_eq!(listed[0].state, "current");
    assert!(jwks(&app.client, &app.base).await.keys.is_empty());
    assert_eq!(app.me(&access).await.status(), 200);
    app.shutdown().await;
}

async fn an_hs256_token_keyed_with_the_public_key_is_refused(backend: Backend) {
    let app = spawn_app(&backend, with_algorithm(Algorithm::EdDSA)).await;
    let (access, _) = app.user_with_tokens("confused").await;
    let claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&access)
            .unwrap()
            .claims;
    let raw = raw_jwks(&app).await;
    let public = &raw["keys"][0];
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid_of(&access));
    // Every form of the public key an attacker might try as the HMAC secret.
    let x = public["x"].as_str().unwrap().to_owned();
    for secret in [x.clone().into_bytes(), public.to_string().into_bytes()] {
        let forged =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap();
        assert_problem(app.me(&forged).await, 401).await;
    }
    assert_eq!(app.me(&access).await.status(), 200);
    app.shutdown().await;
}

async fn a_rotation_while_the_server_runs_keeps_old_tokens_and_signs_with_the_new_kid(
    backend: Backend,
) {
    let app = spawn_app(&backend, with_algorithm(Algorithm::EdDSA)).await;
    let (old, _) = app.user_with_tokens("rotating").await;
    let old_kid = kid_of(&old);

    // The CLI's view: another process rotates.
    let cli = service_for(&app).await;
    let new = cli.rotate_keys(None).await.unwrap();
    assert_ne!(new.kid, old_kid);

    // A token signed with the new key reaches the server before its poll: it
    // reloads on the unknown kid instead of refusing.
    let pair = cli
        .login(&Default::default(), "rotating", PASSWORD)
        .await
        .unwrap();
    assert_eq!(kid_of(&pair.access_token), new.kid);
    assert_eq!(app.me(&pair.access_token).await.status(), 200);

    // Its own new tokens carry the new kid; the old token keeps working; the JWKS
    // publishes both, and each verifies with it.
    let login = json(app.login("rotating", PASSWORD).await).await;
    let fresh = login["access_token"].as_str().unwrap();
    assert_eq!(kid_of(fresh), new.kid);
    assert_eq!(app.me(&old).await.status(), 200);
    let set = jwks(&app.client, &app.base).await;
    assert_eq!(set.keys.len(), 2);
    verify_with_jwks(&set, &old);
    verify_with_jwks(&set, fresh);

    let states: Vec<(String, String)> = cli
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.kid, k.state))
        .collect();
    assert!(states.contains(&(old_kid, "previous".into())), "{states:?}");
    assert!(states.contains(&(new.kid, "current".into())), "{states:?}");
    app.shutdown().await;
}

async fn retiring_a_key_refuses_its_tokens_at_once(backend: Backend) {
    let app = spawn_app(&backend, with_algorithm(Algorithm::ES256)).await;
    let (old, _) = app.user_with_tokens("leaked").await;
    let old_kid = kid_of(&old);
    let cli = service_for(&app).await;
    // Retiring the current key rotates first, so the server keeps signing; the
    // refusal makes the server load the successor at once.
    cli.retire_key(&old_kid).await.unwrap();
    assert_problem(app.me(&old).await, 401).await;
    let login = json(app.login("leaked", PASSWORD).await).await;
    let fresh = login["access_token"].as_str().unwrap();
    assert_ne!(kid_of(fresh), old_kid);
    assert_eq!(app.me(fresh).await.status(), 200);
    let retired = cli
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.kid == old_kid)
        .unwrap();
    assert_eq!(retired.state, "retired");
    // Within the poll interval the retired key leaves the JWKS too.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let set = jwks(&app.client, &app.base).await;
        if set.find(&old_kid).is_none() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still published");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let unknown = cli.retire_key("no-such-key").await.unwrap_err();
    assert_eq!(unknown.exit_code(), 3);
    app.shutdown().await;
}

async fn two_servers_on_one_database_see_each_others_rotation_within_ten_seconds(backend: Backend) {
    let app = spawn_app(&backend, with_algorithm(Algorithm::EdDSA)).await;
    let second = server::spawn(app.settings.clone(), ServeOptions::default())
        .await
        .expect("second server starts");
    let second_base = format!("http://{}", second.addr);
    for _ in 0..300 {
        let r = app
            .client
            .get(format!("{second_base}/health/startup"))
            .send()
            .await;
        if r.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = jwks(&app.client, &second_base).await;
    assert_eq!(before.keys.len(), 1);

    // Rotate through the first server's process; the second only polls.
    let cli = service_for(&app).await;
    let new = cli.rotate_keys(None).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        let set = jwks(&app.client, &second_base).await;
        if set.find(&new.kid).is_some() {
            assert_eq!(set.keys.len(), 2);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the second server did not see the rotation within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // And tokens of either server verify at the other.
    let (access, _) = app.user_with_tokens("replicated").await;
    assert_eq!(kid_of(&access), new.kid);
    let r = app
        .client
        .get(format!("{second_base}/api/v1/auth/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    second.shutdown().await.expect("clean shutdown");
    app.shutdown().await;
}

/// A database from before issue 13: a generated HMAC key in `settings.jwt_secret_key`
/// and a kid-less token of user `oldtimer` signed with it.
async fn legacy_database(backend: &Backend) -> (crate::support::TestDb, String) {
    let db = crate::support::TestDb::new(backend).await;
    let legacy = authctl::config::SecretKey::generate();
    let mut old_settings = crate::support::test_settings(&db.url);
    old_settings.auth.secret_key = Some(legacy.clone());
    let store = authctl::store::connect(&old_settings).unwrap();
    store.migrate().await.unwrap();
    store
        .setting_get_or_insert("jwt_secret_key", legacy.expose_str())
        .await
        .unwrap();
    let old = std::sync::Arc::new(
        AuthService::new(store.clone(), &old_settings.auth)
            .await
            .unwrap(),
    );
    old.add_user(
        &authctl::service::RequestContext::none(),
        authctl::domain::Email::parse("old@example.com").unwrap(),
        authctl::domain::Username::parse("oldtimer").unwrap(),
        Some(&authctl::domain::Password::parse(PASSWORD).unwrap()),
        true,
        &[],
    )
    .await
    .unwrap();
    let before = old
        .login(&Default::default(), "oldtimer", PASSWORD)
        .await
        .unwrap()
        .access_token;
    assert_eq!(jsonwebtoken::decode_header(&before).unwrap().kid, None);
    store.close().await;
    (db, before)
}

async fn a_key_generated_before_rotation_existed_keeps_its_tokens_valid(backend: Backend) {
    let (db, before) = legacy_database(&backend).await;
    // The upgraded server has no SECRET_KEY: it imports the stored key.
    let app = spawn_app_on(db, |s| s.auth.secret_key = None).await;
    assert_eq!(app.me(&before).await.status(), 200);
    let login = json(app.login("oldtimer", PASSWORD).await).await;
    let after = login["access_token"].as_str().unwrap();
    assert_eq!(kid_of(after), authctl::tokens::jwt::LEGACY_HMAC_KID);
    assert_eq!(app.me(after).await.status(), 200);
    app.shutdown().await;
}

/// SPEC §9: `keys retire` of the imported legacy key stops its kid-less tokens at once
/// on every server, not at the next key poll (`/me`'s query checks the key by the kid
/// of the key that verified the token).
async fn retiring_the_legacy_key_refuses_kid_less_tokens_at_once_on_every_server(backend: Backend) {
    let (db, kidless) = legacy_database(&backend).await;
    let app = spawn_app_on(db, |s| s.auth.secret_key = None).await;
    let second = server::spawn(app.settings.clone(), ServeOptions::default())
        .await
        .expect("second server starts");
    let second_base = format!("http://{}", second.addr);
    let me_at = |base: String| {
        let client = app.client.clone();
        let token = kidless.clone();
        async move {
            client
                .get(format!("{base}/api/v1/auth/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let mut ready = false;
    for _ in 0..300 {
        if me_at(second_base.clone()).await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ready, "the second server never accepted the kid-less token");
    assert_eq!(me_at(app.base.clone()).await.status(), 200);

    // Retired through another process: neither server has reloaded when asked.
    let cli = service_for(&app).await;
    cli.retire_key(authctl::tokens::jwt::LEGACY_HMAC_KID)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    assert_problem(me_at(second_base.clone()).await, 401).await;
    assert_problem(me_at(app.base.clone()).await, 401).await;
    assert!(
        started.elapsed() < authctl::service::keys::KEY_POLL_EVERY,
        "refused only after a key poll"
    );
    // And the servers still sign and accept fresh tokens (the retirement rotated).
    let login = json(app.login("oldtimer", PASSWORD).await).await;
    let fresh = login["access_token"].as_str().unwrap();
    assert_ne!(kid_of(fresh), authctl::tokens::jwt::LEGACY_HMAC_KID);
    assert_eq!(app.me(fresh).await.status(), 200);
    second.shutdown().await.expect("clean shutdown");
    app.shutdown().await;
}
