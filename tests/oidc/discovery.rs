//! Discovery (SPEC §18, OIDC Discovery 1.0): every listed member with its value;
//! 404 with the provider off; an issuer that is not `https://` (or `http://` on a
//! loopback host) is exit 7 for `authctl serve`, the real binary.

use std::process::Stdio;

use serde_json::{Value, json};

use crate::Idp;
use crate::support::served::Served;
use crate::support::{Backend, spawn_app};

crate::on_both_backends!(
    the_discovery_document_has_every_member_with_its_value,
    with_oidc_off_discovery_and_the_endpoints_are_404,
);

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string"))
        .collect()
}

async fn the_discovery_document_has_every_member_with_its_value(backend: Backend) {
    let idp = Idp::start(&backend).await;
    let r = idp
        .app
        .client
        .get(idp.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let d: Value = r.json().await.unwrap();
    let iss = idp.issuer.as_str();
    assert_eq!(d["issuer"], iss);
    for (key, path) in [
        ("authorization_endpoint", "/oauth/authorize"),
        ("token_endpoint", "/oauth/token"),
        ("userinfo_endpoint", "/oauth/userinfo"),
        ("jwks_uri", "/.well-known/jwks.json"),
        ("end_session_endpoint", "/oauth/logout"),
    ] {
        assert_eq!(d[key], format!("{iss}{path}"), "{key}: {d}");
    }
    for key in ["revocation_endpoint", "introspection_endpoint"] {
        let url = d[key].as_str().unwrap_or_else(|| panic!("{key}: {d}"));
        assert!(url.starts_with(iss), "{key} under the issuer: {url}");
    }
    assert_eq!(d["response_types_supported"], json!(["code"]));
    let grants = strings(&d["grant_types_supported"]);
    assert!(
        grants.contains(&"authorization_code") && grants.contains(&"refresh_token"),
        "{d}"
    );
    assert_eq!(d["subject_types_supported"], json!(["public"]));
    assert!(
        strings(&d["id_token_signing_alg_values_supported"]).contains(&"RS256"),
        "{d}"
    );
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    let scopes = strings(&d["scopes_supported"]);
    for s in ["openid", "profile", "email", "roles", "offline_access"] {
        assert!(scopes.contains(&s), "scope {s}: {d}");
    }
    let auth = strings(&d["token_endpoint_auth_methods_supported"]);
    for m in ["client_secret_basic", "client_secret_post", "none"] {
        assert!(auth.contains(&m), "auth method {m}: {d}");
    }
    let claims = strings(&d["claims_supported"]);
    for c in [
        "sub",
        "iss",
        "aud",
        "email",
        "email_verified",
        "preferred_username",
        "roles",
    ] {
        assert!(claims.contains(&c), "claim {c}: {d}");
    }
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    // The JWKS it names answers, with an RS256 key of at least 2048 bits.
    let jwks: Value = idp
        .app
        .client
        .get(d["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rsa = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kty"] == "RSA")
        .unwrap_or_else(|| panic!("an RSA key: {jwks}"));
    use base64::Engine;
    let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(rsa["n"].as_str().unwrap())
        .unwrap();
    assert!(n.len() * 8 >= 2048, "{} bits", n.len() * 8);
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kty"] != "oct")
    );
    idp.shutdown().await;
}

async fn with_oidc_off_discovery_and_the_endpoints_are_404(backend: Backend) {
    let app = spawn_app(&backend, |_| {}).await;
    for path in [
        "/.well-known/openid-configuration",
        "/oauth/authorize?response_type=code&client_id=x",
        "/oauth/userinfo",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
    }
    let r = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "authorization_code")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // The rest of the API is there.
    assert_eq!(
        app.client
            .get(app.url("/.well-known/oauth-authorization-server"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.shutdown().await;
}

/// `authctl serve` with the provider on and `issuer`: its exit status within 30 s
/// (`None`: still serving).
fn serve_with_issuer(issuer: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("a.db").display());
    let stderr = dir.path().join("stderr");
    let file = std::fs::File::create(&stderr).unwrap();
    let mut served = Served::start_in(
        tempfile::tempdir().unwrap(),
        &url,
        "4",
        Stdio::from(file),
        &[("AUTHCTL_OIDC_ENABLED", "true"), ("AUTHCTL_ISSUER", issuer)],
    );
    let status = served.wait_exit(std::time::Duration::from_secs(30));
    let code = status.map(|s| s.code().unwrap_or(-1));
    drop(served);
    (code, std::fs::read_to_string(&stderr).unwrap_or_default())
}

#[test]
fn an_issuer_that_is_not_https_or_loopback_http_is_exit_7_for_serve() {
    for issuer in [
        "authctl",
        "ftp://auth.example",
        "http://auth.example",
        "https://",
        "https://auth.example/",
        "https://auth.example?x=1",
        "https://auth.example#f",
    ] {
        let (code, stderr) = serve_with_issuer(issuer);
        assert_eq!(code, Some(7), "issuer {issuer:?}: {stderr}");
        assert!(
            stderr.contains("issuer") || stderr.contains("ISSUER"),
            "names the setting: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_http_or_https_issuer_serves_discovery_from_the_real_binary() {
    for issuer in [
        "https://auth.example",
        "http://127.0.0.1:9",
        "http://[::1]:9",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("a.db").display());
        let mut served = Served::start_in(
            dir,
            &url,
            "4",
            Stdio::null(),
            &[("AUTHCTL_OIDC_ENABLED", "true"), ("AUTHCTL_ISSUER", issuer)],
        );
        served.wait_ready().await;
        let d: Value = reqwest::get(format!(
            "http://{}/.well-known/openid-configuration",
            served.addr
        ))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        assert_eq!(d["issuer"], issuer, "{d}");
        assert_eq!(
            d["authorization_endpoint"],
            format!("{issuer}/oauth/authorize")
        );
        served.signal("TERM");
        let _ = served.wait_exit(std::time::Duration::from_secs(10));
    }
}
