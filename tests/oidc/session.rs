//! The browser session (SPEC §18 and §10): its cookie's attributes, listed by the
//! sessions API, ended by a logout with scope `global` and by RP-initiated logout
//! (with a registered `post_logout_redirect_uri` only).

use crate::support::Backend;
use crate::{
    Agent, Authz, Idp, Page, SESSION_COOKIE, api_access, assert_code_redirect, exchange, location,
    param, sign_in, token_json, without_query,
};

crate::on_both_backends!(
    the_session_cookie_is_httponly_samesite_lax_path_root_and_not_secure_on_loopback,
    the_browser_session_is_listed_and_a_global_logout_ends_it,
    rp_initiated_logout_with_a_hint_redirects_with_state_and_ends_the_session,
    an_unregistered_post_logout_redirect_uri_is_refused,
    logout_without_a_hint_asks_for_confirmation_by_a_csrf_protected_form,
);

async fn the_session_cookie_is_httponly_samesite_lax_path_root_and_not_secure_on_loopback(
    backend: Backend,
) {
    let idp = Idp::start(&backend).await;
    idp.user("coo").await;
    let client = idp.confidential("https://app.example/cb").await;
    let mut agent = Agent::new();
    sign_in(&mut agent, &idp, &Authz::new(&client), "coo").await;
    let line = agent
        .set_cookies
        .iter()
        .rev()
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .unwrap_or_else(|| panic!("{SESSION_COOKIE} set: {:?}", agent.set_cookies))
        .clone();
    let attrs: Vec<String> = line
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    assert!(attrs.iter().any(|a| a == "httponly"), "{line}");
    assert!(attrs.iter().any(|a| a == "samesite=lax"), "{line}");
    assert!(attrs.iter().any(|a| a == "path=/"), "{line}");
    assert!(
        !attrs.iter().any(|a| a == "secure"),
        "not Secure on loopback http: {line}"
    );
    assert!(
        !attrs.iter().any(|a| a.starts_with("domain")),
        "host-only: {line}"
    );
    let value = line.split(';').next().unwrap().split_once('=').unwrap().1;
    assert!(value.len() >= 32, "an unguessable value: {line}");
    idp.shutdown().await;
}

async fn the_browser_session_is_listed_and_a_global_logout_ends_it(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("liz").await;
    let client = idp.confidential("https://app.example/cb").await;
    let mut agent = Agent::new();
    let authz = Authz::new(&client);
    let code = sign_in(&mut agent, &idp, &authz, "liz").await;
    let oidc_tokens = token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    let sid = crate::claims(oidc_tokens["id_token"].as_str().unwrap())["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let access = api_access(&idp, "liz").await;
    let sessions = idp.sessions(&access).await;
    assert!(
        sessions.len() >= 2,
        "the API login and the browser session: {sessions:?}"
    );
    assert!(
        sessions.iter().any(|s| s["id"] == sid.as_str()),
        "the ID token's sid is a listed session: {sessions:?}"
    );

    // The session works: a code without a page.
    let again = Authz::new(&client);
    let resp = agent.get(&again.url(&idp)).await;
    assert_code_redirect(&resp, &again, &idp);

    let r = idp
        .app
        .client
        .post(idp.url("/api/v1/auth/logout"))
        .bearer_auth(&access)
        .json(&serde_json::json!({"scope": "global"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // The browser still has its cookie, but the session is over: the login page.
    assert!(agent.session().is_some());
    let page = Page::read(agent.get(&Authz::new(&client).url(&idp)).await).await;
    page.assert_login_page();
    let none = Authz::new(&client).set("prompt", "none");
    let resp = agent.get(&none.url(&idp)).await;
    assert_eq!(
        crate::assert_error_redirect(&resp, &none, &idp),
        "login_required"
    );
    idp.shutdown().await;
}

/// `GET /oauth/logout` with `params`, from `agent`.
async fn logout(idp: &Idp, agent: &mut Agent, params: &[(&str, &str)]) -> reqwest::Response {
    let url = url::Url::parse_with_params(&idp.url("/oauth/logout"), params).unwrap();
    agent.get(url.as_str()).await
}

async fn rp_initiated_logout_with_a_hint_redirects_with_state_and_ends_the_session(
    backend: Backend,
) {
    let idp = Idp::start(&backend).await;
    idp.user("rob").await;
    let client = idp
        .client(
            "app",
            &["https://app.example/cb"],
            &["--post-logout-redirect-uri", "https://app.example/bye"],
        )
        .await;
    assert_eq!(
        client.json["post_logout_redirect_uris"],
        serde_json::json!(["https://app.example/bye"])
    );
    let mut agent = Agent::new();
    let authz = Authz::new(&client);
    let code = sign_in(&mut agent, &idp, &authz, "rob").await;
    let body = token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    let hint = body["id_token"].as_str().unwrap().to_owned();
    let access = body["access_token"].as_str().unwrap().to_owned();

    let resp = logout(
        &idp,
        &mut agent,
        &[
            ("id_token_hint", &hint),
            ("post_logout_redirect_uri", "https://app.example/bye"),
            ("state", "bye-state-1"),
        ],
    )
    .await;
    assert!(
        matches!(resp.status().as_u16(), 302 | 303),
        "{}",
        resp.status()
    );
    let to = location(&resp);
    assert_eq!(without_query(&to), "https://app.example/bye");
    assert_eq!(param(&to, "state").as_deref(), Some("bye-state-1"));
    // The session (its family) is over: the login page, and its access token refused.
    let page = Page::read(agent.get(&Authz::new(&client).url(&idp)).await).await;
    page.assert_login_page();
    assert_eq!(idp.app.me(&access).await.status(), 401);
    idp.shutdown().await;
}

async fn an_unregistered_post_logout_redirect_uri_is_refused(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("ula").await;
    let client = idp
        .client(
            "app",
            &["https://app.example/cb"],
            &["--post-logout-redirect-uri", "https://app.example/bye"],
        )
        .await;
    let mut agent = Agent::new();
    let authz = Authz::new(&client);
    let code = sign_in(&mut agent, &idp, &authz, "ula").await;
    let body = token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    let hint = body["id_token"].as_str().unwrap().to_owned();
    for uri in [
        "https://evil.example/bye",
        "https://app.example/bye/",
        "https://app.example/byebye",
        "https://app.example/cb",
        "https://app.example@evil.example/bye",
    ] {
        let resp = logout(
            &idp,
            &mut agent,
            &[
                ("id_token_hint", &hint),
                ("post_logout_redirect_uri", uri),
                ("state", "s"),
            ],
        )
        .await;
        let page = Page::read(resp).await;
        assert!(
            page.headers.get("location").is_none(),
            "{uri}: never redirected"
        );
        assert_eq!(page.status, 400, "{uri}");
        assert!(page.is_html(), "{uri}: an HTML page");
    }
    // The refused logouts did not end the session.
    let again = Authz::new(&client);
    let resp = agent.get(&again.url(&idp)).await;
    assert_code_redirect(&resp, &again, &idp);
    idp.shutdown().await;
}

async fn logout_without_a_hint_asks_for_confirmation_by_a_csrf_protected_form(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("nat").await;
    let client = idp.confidential("https://app.example/cb").await;
    let mut agent = Agent::new();
    sign_in(&mut agent, &idp, &Authz::new(&client), "nat").await;
    // A forged hint is no hint.
    for params in [vec![], vec![("id_token_hint", "eyJhbGciOiJub25lIn0.e30.")]] {
        let page = Page::read(logout(&idp, &mut agent, &params).await).await;
        assert_eq!(page.status, 200, "{}", page.html);
        assert!(page.headers.get("location").is_none());
        assert!(
            page.html.contains(r#"action="/oauth/logout""#)
                && page.html.contains(r#"method="post""#),
            "the confirmation form: {}",
            page.html
        );
        // Showing the page ended nothing.
        let again = Authz::new(&client);
        let resp = agent.get(&again.url(&idp)).await;
        assert_code_redirect(&resp, &again, &idp);
    }
    let page = Page::read(logout(&idp, &mut agent, &[]).await).await;
    // Without the csrf value, the POST ends nothing.
    let resp = agent
        .post(&idp.url("/oauth/logout"), &[("csrf", "forged")])
        .await;
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let again = Authz::new(&client);
    let resp = agent.get(&again.url(&idp)).await;
    assert_code_redirect(&resp, &again, &idp);
    // With it, the session ends.
    let csrf = page.hidden("csrf");
    let resp = agent
        .post(&idp.url("/oauth/logout"), &[("csrf", &csrf)])
        .await;
    assert!(resp.status().is_success() || resp.status().is_redirection());
    Page::read(agent.get(&Authz::new(&client).url(&idp)).await)
        .await
        .assert_login_page();
    idp.shutdown().await;
}
