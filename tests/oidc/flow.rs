//! The whole flow through a real OpenID Connect client library (`openidconnect`),
//! configured from nothing but discovery: authorization URL with PKCE S256, nonce and
//! state; the login page; the code exchange (`client_secret_basic`, `client_secret_post`,
//! and `none` for a public client); the ID token verified by the library (signature
//! against the JWKS, `iss`, `aud`, `exp`, nonce, `at_hash`); userinfo; refresh with
//! `offline_access`; RS256 by default, EdDSA and ES256 per client.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreErrorResponseType, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    HttpClientError, HttpRequest, HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, RedirectUrl, RequestTokenError, Scope, TokenResponse, http,
};
use serde_json::Value;

use crate::support::Backend;
use crate::{Agent, Idp, Page, SESSION_COOKIE, claims, jwt_header, location, param, submit_login};

crate::on_both_backends!(
    a_confidential_client_signs_in_verifies_the_id_token_reads_userinfo_and_refreshes,
    client_secret_post_works_as_well_as_basic,
    a_public_client_signs_in_with_pkce_and_no_secret_and_gets_no_refresh_token_without_offline_access,
    eddsa_and_es256_clients_get_id_tokens_the_library_verifies_against_the_jwks,
);

/// The library's HTTP client: the project's reqwest, redirects not followed (the
/// library's own advice), request and response passed through as they are.
async fn send(
    client: reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, HttpClientError<reqwest::Error>> {
    let (parts, body) = request.into_parts();
    let resp = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(Box::new)?;
    let mut answer = http::Response::builder().status(resp.status());
    for (name, value) in resp.headers() {
        answer = answer.header(name, value);
    }
    let body = resp.bytes().await.map_err(Box::new)?;
    Ok(answer.body(body.to_vec()).expect("a response"))
}

type Oidc = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

async fn discover(idp: &Idp) -> CoreProviderMetadata {
    let http = |req| send(crate::no_redirects(), req);
    CoreProviderMetadata::discover_async(IssuerUrl::new(idp.issuer.clone()).unwrap(), &http)
        .await
        .expect("discovery (and the JWKS it names)")
}

async fn library_client(idp: &Idp, client: &crate::Client) -> Oidc {
    CoreClient::from_provider_metadata(
        discover(idp).await,
        ClientId::new(client.id.clone()),
        client.secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(client.redirect_uri.clone()).unwrap())
}

/// What a sign-in gave the client: the code and what it must keep to use it.
struct Callback {
    code: String,
    verifier: openidconnect::PkceCodeVerifier,
    nonce: Nonce,
    agent: Agent,
}

/// The library builds the authorization URL; a person signs in on the login page;
/// the redirect back carries the code, the same state and our issuer.
async fn sign_in(idp: &Idp, oidc: &Oidc, scopes: &[&str], username: &str) -> Callback {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = oidc
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .set_pkce_challenge(challenge);
    for s in scopes {
        request = request.add_scope(Scope::new(s.to_string()));
    }
    let (url, state, nonce) = request.url();
    assert_eq!(
        param(&url, "code_challenge_method").as_deref(),
        Some("S256")
    );
    let mut agent = Agent::new();
    let page = Page::read(agent.get(url.as_str()).await).await;
    page.assert_login_page();
    let resp = submit_login(&mut agent, idp, &page, username, crate::PASSWORD).await;
    assert_eq!(resp.status(), 303);
    assert!(
        agent.session().is_some(),
        "the browser session cookie is set"
    );
    let back = location(&resp);
    assert!(
        back.as_str()
            .starts_with(oidc.redirect_uri().unwrap().as_str())
    );
    assert_eq!(
        param(&back, "state").as_deref(),
        Some(state.secret().as_str())
    );
    assert_eq!(param(&back, "iss").as_deref(), Some(idp.issuer.as_str()));
    Callback {
        code: param(&back, "code").expect("a code"),
        verifier,
        nonce,
        agent,
    }
}

fn server_error<E: std::error::Error + 'static>(
    err: RequestTokenError<E, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
) -> CoreErrorResponseType {
    match err {
        RequestTokenError::ServerResponse(e) => e.error().clone(),
        other => panic!("expected the server's OAuth2 error, got {other:?}"),
    }
}

async fn a_confidential_client_signs_in_verifies_the_id_token_reads_userinfo_and_refreshes(
    backend: Backend,
) {
    let idp = Idp::start(&backend).await;
    let uid = idp.user("ada").await;
    let client = idp
        .confidential("https://grafana.example/login/generic_oauth")
        .await;
    let oidc = library_client(&idp, &client).await;
    let http = |req| send(crate::no_redirects(), req);

    let cb = sign_in(&idp, &oidc, &["profile", "email", "offline_access"], "ada").await;
    assert!(
        cb.agent
            .set_cookies
            .iter()
            .any(|c| c.starts_with(SESSION_COOKIE))
    );
    let tokens = oidc
        .exchange_code(AuthorizationCode::new(cb.code.clone()))
        .expect("a token endpoint")
        .set_pkce_verifier(cb.verifier)
        .request_async(&http)
        .await
        .expect("the code exchange (client_secret_basic)");

    // The ID token, verified by the library: signature by a JWKS key, iss, aud, exp, nonce.
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = oidc.id_token_verifier();
    let id = id_token
        .claims(&verifier, &cb.nonce)
        .expect("the ID token verifies");
    assert!(
        id_token
            .claims(&verifier, &Nonce::new("another nonce".into()))
            .is_err(),
        "the nonce is checked, so it is in the token"
    );
    assert_eq!(id.subject().as_str(), uid);
    assert_eq!(id.issuer().as_str(), idp.issuer);
    assert_eq!(
        id.audiences()
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        [client.id.as_str()]
    );
    assert_eq!(id.email().map(|e| e.as_str()), Some("ada@example.com"));
    assert!(
        id.email_verified().is_some(),
        "email_verified with scope email"
    );
    assert_eq!(
        id.preferred_username().map(|u| u.as_str()),
        Some("ada"),
        "preferred_username with scope profile"
    );
    assert!(id.auth_time().is_some(), "auth_time");
    assert_eq!(
        id.auth_method_refs()
            .expect("amr")
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>(),
        ["pwd"]
    );
    let expected = id.access_token_hash().expect("at_hash");
    let actual = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(&actual, expected, "at_hash matches the access token");
    let raw = id_token.to_string();
    let header = jwt_header(&raw);
    assert_eq!(header["alg"], "RS256", "RS256 by default");
    assert!(header["kid"].is_string(), "{header}");
    let raw_claims = claims(&raw);
    assert!(
        raw_claims["sid"].as_str().is_some_and(|s| !s.is_empty()),
        "sid: {raw_claims}"
    );
    assert!(raw_claims["iat"].is_i64() && raw_claims["exp"].is_i64());

    // The access token: for this client, and one the API takes.
    let access = tokens.access_token().secret().clone();
    let at = claims(&access);
    assert_eq!(at["aud"], client.id.as_str(), "{at}");
    assert!(
        at["scope"]
            .as_str()
            .unwrap()
            .split(' ')
            .any(|s| s == "openid"),
        "{at}"
    );
    assert_eq!(idp.app.me(&access).await.status(), 200);
    let scope: Vec<String> = tokens
        .scopes()
        .expect("the granted scope")
        .iter()
        .map(|s| s.to_string())
        .collect();
    for s in ["openid", "profile", "email", "offline_access"] {
        assert!(scope.iter().any(|g| g == s), "{s} granted: {scope:?}");
    }

    // Userinfo: sub (checked against the ID token's by the library) and the claims.
    let info: CoreUserInfoClaims = oidc
        .user_info(tokens.access_token().clone(), Some(id.subject().clone()))
        .expect("a userinfo endpoint")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.subject().as_str(), uid);
    assert_eq!(info.email().map(|e| e.as_str()), Some("ada@example.com"));
    assert_eq!(info.preferred_username().map(|u| u.as_str()), Some("ada"));

    // Refresh (offline_access): rotation, and the spent token revokes the family.
    let first = tokens
        .refresh_token()
        .expect("offline_access gives a refresh token");
    let second = oidc
        .exchange_refresh_token(first)
        .expect("a token endpoint")
        .request_async(&http)
        .await
        .expect("refresh");
    let next = second.refresh_token().expect("a rotated refresh token");
    assert_ne!(next.secret(), first.secret());
    assert_eq!(
        idp.app.me(second.access_token().secret()).await.status(),
        200
    );
    assert_eq!(
        claims(second.access_token().secret())["aud"],
        client.id.as_str()
    );
    let reuse = oidc
        .exchange_refresh_token(first)
        .unwrap()
        .request_async(&http)
        .await
        .expect_err("a spent refresh token is refused");
    assert_eq!(server_error(reuse), CoreErrorResponseType::InvalidGrant);
    let after_theft = oidc
        .exchange_refresh_token(next)
        .unwrap()
        .request_async(&http)
        .await
        .expect_err("reuse revoked the family (theft detection)");
    assert_eq!(
        server_error(after_theft),
        CoreErrorResponseType::InvalidGrant
    );
    idp.shutdown().await;
}

async fn client_secret_post_works_as_well_as_basic(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("bert").await;
    let client = idp.confidential("https://app.example/cb").await;
    let oidc = library_client(&idp, &client)
        .await
        .set_auth_type(AuthType::RequestBody);
    let http = |req| send(crate::no_redirects(), req);
    let cb = sign_in(&idp, &oidc, &[], "bert").await;
    let tokens = oidc
        .exchange_code(AuthorizationCode::new(cb.code))
        .unwrap()
        .set_pkce_verifier(cb.verifier)
        .request_async(&http)
        .await
        .expect("the code exchange (client_secret_post)");
    let id_token = tokens.id_token().expect("an ID token");
    id_token
        .claims(&oidc.id_token_verifier(), &cb.nonce)
        .expect("the ID token verifies");
    assert!(
        tokens.refresh_token().is_none(),
        "no offline_access, no refresh token"
    );
    idp.shutdown().await;
}

async fn a_public_client_signs_in_with_pkce_and_no_secret_and_gets_no_refresh_token_without_offline_access(
    backend: Backend,
) {
    let idp = Idp::start(&backend).await;
    let uid = idp.user("cleo").await;
    let client = idp
        .client("spa", &["http://127.0.0.1/callback"], &["--public"])
        .await;
    assert!(client.secret.is_none(), "a public client has no secret");
    assert_eq!(client.json["public"], true);
    let oidc = library_client(&idp, &client).await;
    let http = |req| send(crate::no_redirects(), req);
    let cb = sign_in(&idp, &oidc, &["email"], "cleo").await;
    let tokens = oidc
        .exchange_code(AuthorizationCode::new(cb.code))
        .unwrap()
        .set_pkce_verifier(cb.verifier)
        .request_async(&http)
        .await
        .expect("the code exchange (none: client_id only)");
    let id = tokens
        .id_token()
        .expect("an ID token")
        .claims(&oidc.id_token_verifier(), &cb.nonce)
        .expect("the ID token verifies");
    assert_eq!(id.subject().as_str(), uid);
    assert!(
        id.preferred_username().is_none(),
        "no profile scope, no preferred_username"
    );
    assert!(
        tokens.refresh_token().is_none(),
        "no offline_access, no refresh token"
    );

    // With offline_access the public client gets one, and refreshes with client_id alone.
    let cb = sign_in(&idp, &oidc, &["offline_access"], "cleo").await;
    let tokens = oidc
        .exchange_code(AuthorizationCode::new(cb.code))
        .unwrap()
        .set_pkce_verifier(cb.verifier)
        .request_async(&http)
        .await
        .expect("the code exchange");
    let refresh = tokens
        .refresh_token()
        .expect("offline_access gives a refresh token");
    oidc.exchange_refresh_token(refresh)
        .unwrap()
        .request_async(&http)
        .await
        .expect("a public client refreshes");
    idp.shutdown().await;
}

async fn eddsa_and_es256_clients_get_id_tokens_the_library_verifies_against_the_jwks(
    backend: Backend,
) {
    let idp = Idp::start(&backend).await;
    idp.user("dora").await;
    let jwks: Value = idp
        .app
        .client
        .get(idp.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (alg, library_alg, kty) in [
        ("EdDSA", CoreJwsSigningAlgorithm::EdDsa, "OKP"),
        ("ES256", CoreJwsSigningAlgorithm::EcdsaP256Sha256, "EC"),
        (
            "RS256",
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            "RSA",
        ),
    ] {
        let client = idp
            .client(
                &format!("app-{alg}"),
                &["https://app.example/cb"],
                &["--id-token-alg", alg],
            )
            .await;
        assert_eq!(client.json["id_token_alg"], alg);
        let oidc = library_client(&idp, &client).await;
        let http = |req| send(crate::no_redirects(), req);
        let cb = sign_in(&idp, &oidc, &[], "dora").await;
        let tokens = oidc
            .exchange_code(AuthorizationCode::new(cb.code))
            .unwrap()
            .set_pkce_verifier(cb.verifier)
            .request_async(&http)
            .await
            .unwrap_or_else(|e| panic!("{alg}: the code exchange: {e:?}"));
        let id_token = tokens.id_token().expect("an ID token");
        let raw = id_token.to_string();
        let header = jwt_header(&raw);
        assert_eq!(header["alg"], alg, "the client's id-token-alg");
        let kid = header["kid"].as_str().expect("kid");
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap_or_else(|| panic!("{alg}: kid {kid} in the JWKS {jwks}"));
        assert_eq!(key["kty"], kty, "{key}");
        let verifier = oidc.id_token_verifier().set_allowed_algs([library_alg]);
        let id = id_token
            .claims(&verifier, &cb.nonce)
            .unwrap_or_else(|e| panic!("{alg}: the ID token verifies: {e:?}"));
        let actual = AccessTokenHash::from_token(
            tokens.access_token(),
            id_token.signing_alg().unwrap(),
            id_token.signing_key(&verifier).unwrap(),
        )
        .unwrap();
        assert_eq!(
            Some(&actual),
            id.access_token_hash(),
            "{alg}: at_hash (EdDSA: the left half of SHA-512, as the library computes it)"
        );
    }
    idp.shutdown().await;
}
