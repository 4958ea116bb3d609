//! `/oauth/authorize` rule by rule (SPEC §18): exact redirect URIs (the bypasses of
//! Pocket ID's advisories) with RFC 8252's loopback exception; the error page, never a
//! redirect, for an unknown client or redirect; redirected errors with `state` and
//! `iss`; PKCE S256 required; `openid` required; `prompt` and `max_age`; the login
//! page's generic error, its TOTP step, and its headers.

use crate::support::{Backend, PASSWORD};
use crate::{
    Agent, Authz, Idp, Page, api_access, assert_code_redirect, assert_error_redirect, claims,
    enable_totp, exchange, sign_in, submit_login, token_json, totp,
};

crate::on_both_backends!(
    redirect_uris_match_exactly_and_every_variant_gets_the_error_page,
    loopback_redirect_uris_match_any_port,
    an_unknown_client_gets_the_error_page,
    pkce_s256_is_required_and_its_absence_is_a_redirected_invalid_request,
    a_scope_without_openid_and_a_wrong_response_type_are_redirected_errors,
    prompt_none_without_a_session_is_login_required_and_with_one_is_a_code,
    prompt_login_and_an_exceeded_max_age_show_the_login_page_despite_a_session,
    every_failed_login_gets_the_same_generic_error,
    an_account_with_totp_gets_the_code_step_and_amr_pwd_otp,
    the_login_page_forbids_inline_script_and_framing_and_is_not_cached,
    a_login_post_without_the_right_csrf_is_refused,
);

/// GET the authorize URL with a fresh agent.
async fn open(idp: &Idp, authz: &Authz) -> (Agent, reqwest::Response) {
    let mut agent = Agent::new();
    let resp = agent.get(&authz.url(idp)).await;
    (agent, resp)
}

async fn redirect_uris_match_exactly_and_every_variant_gets_the_error_page(backend: Backend) {
    let idp = Idp::start(&backend).await;
    let client = idp.confidential("https://app.example/cb").await;
    // The registered one shows the login page.
    let (_, resp) = open(&idp, &Authz::new(&client)).await;
    Page::read(resp).await.assert_login_page();
    for variant in [
        "https://app.example/cb/evil",
        "https://app.example/cb/",
        "https://app.example/c",
        "https://app.example:444/cb",
        "https://app.example:443/cb",
        "https://app.example@evil.example/cb",
        "https://evil.example@app.example/cb",
        "https://APP.example/cb",
        "https://app.example/CB",
        "https://app.example/cb?x=1",
        "https://app.example/cb#frag",
        "http://app.example/cb",
        "https://app.example.evil.example/cb",
        "https://app.example/cb/../cb",
        "https://app.example/%63b",
    ] {
        let authz = Authz::new(&client).set("redirect_uri", variant);
        let (_, resp) = open(&idp, &authz).await;
        let page = Page::read(resp).await;
        assert!(
            (400..500).contains(&page.status) && page.headers.get("location").is_none(),
            "{variant}: the error page, never a redirect (got {} {:?})",
            page.status,
            page.headers.get("location")
        );
        page.assert_error_page();
        // Even an otherwise broken request (no PKCE) is not redirected there.
        let authz = authz.remove("code_challenge");
        let (_, resp) = open(&idp, &authz).await;
        Page::read(resp).await.assert_error_page();
    }
    // No redirect_uri at all is not "the only registered one".
    let authz = Authz::new(&client).remove("redirect_uri");
    let (_, resp) = open(&idp, &authz).await;
    Page::read(resp).await.assert_error_page();
    idp.shutdown().await;
}

async fn loopback_redirect_uris_match_any_port(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("lou").await;
    let client = idp
        .client(
            "cli-app",
            &["http://127.0.0.1/cb", "http://[::1]/cb"],
            &["--public"],
        )
        .await;
    for uri in [
        "http://127.0.0.1/cb",
        "http://127.0.0.1:49152/cb",
        "http://127.0.0.1:8080/cb",
        "http://[::1]:50000/cb",
    ] {
        let mut agent = Agent::new();
        let authz = Authz::new(&client).set("redirect_uri", uri);
        let code = sign_in(&mut agent, &idp, &authz, "lou").await;
        // The code is bound to the port it was sent to: the exchange names the same URI.
        token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    }
    // The exception is for the port only: not the path, not another loopback name.
    for uri in [
        "http://127.0.0.1:8080/cb/x",
        "http://127.0.0.1:8080/cb?x=1",
        "https://127.0.0.1:8080/cb",
        "http://localhost:8080/cb",
        "http://127.0.0.2:8080/cb",
    ] {
        let (_, resp) = open(&idp, &Authz::new(&client).set("redirect_uri", uri)).await;
        let page = Page::read(resp).await;
        assert!(page.headers.get("location").is_none(), "{uri}: no redirect");
        page.assert_error_page();
    }
    // A non-loopback URI gets no port exception.
    let web = idp.confidential("https://127.0.0.1.nip.example/cb").await;
    let authz = Authz::new(&web).set("redirect_uri", "https://127.0.0.1.nip.example:81/cb");
    let (_, resp) = open(&idp, &authz).await;
    Page::read(resp).await.assert_error_page();
    idp.shutdown().await;
}

async fn an_unknown_client_gets_the_error_page(backend: Backend) {
    let idp = Idp::start(&backend).await;
    let client = idp.confidential("https://app.example/cb").await;
    for id in ["no-such-client-0123456789", ""] {
        let authz = Authz::new(&client).set("client_id", id);
        let (_, resp) = open(&idp, &authz).await;
        Page::read(resp).await.assert_error_page();
    }
    let authz = Authz::new(&client).remove("client_id");
    let (_, resp) = open(&idp, &authz).await;
    Page::read(resp).await.assert_error_page();
    // A removed client is an unknown one.
    let out = idp.cli(&["client", "remove", &client.id]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, resp) = open(&idp, &Authz::new(&client)).await;
    Page::read(resp).await.assert_error_page();
    idp.shutdown().await;
}

async fn pkce_s256_is_required_and_its_absence_is_a_redirected_invalid_request(backend: Backend) {
    let idp = Idp::start(&backend).await;
    let confidential = idp.confidential("https://app.example/cb").await;
    let public = idp
        .client("spa", &["https://spa.example/cb"], &["--public"])
        .await;
    for client in [&confidential, &public] {
        for authz in [
            Authz::new(client).remove("code_challenge"),
            Authz::new(client).remove("code_challenge_method"),
            Authz::new(client).set("code_challenge_method", "plain"),
            Authz::new(client).set("code_challenge_method", "S512"),
        ] {
            let (_, resp) = open(&idp, &authz).await;
            assert_eq!(
                assert_error_redirect(&resp, &authz, &idp),
                "invalid_request",
                "{:?}",
                authz.params
            );
        }
    }
    idp.shutdown().await;
}

async fn a_scope_without_openid_and_a_wrong_response_type_are_redirected_errors(backend: Backend) {
    let idp = Idp::start(&backend).await;
    let client = idp.confidential("https://app.example/cb").await;
    for scope in ["profile email", "", "openidx", "OPENID"] {
        let authz = Authz::new(&client).set("scope", scope);
        let (_, resp) = open(&idp, &authz).await;
        let error = assert_error_redirect(&resp, &authz, &idp);
        assert!(
            error == "invalid_scope" || error == "invalid_request",
            "scope {scope:?}: {error}"
        );
    }
    for rt in ["token", "id_token", "code id_token"] {
        let authz = Authz::new(&client).set("response_type", rt);
        let (_, resp) = open(&idp, &authz).await;
        assert_eq!(
            assert_error_redirect(&resp, &authz, &idp),
            "unsupported_response_type",
            "{rt}"
        );
    }
    idp.shutdown().await;
}

async fn prompt_none_without_a_session_is_login_required_and_with_one_is_a_code(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("pia").await;
    let client = idp.confidential("https://app.example/cb").await;
    let mut agent = Agent::new();
    let authz = Authz::new(&client).set("prompt", "none");
    let resp = agent.get(&authz.url(&idp)).await;
    assert_eq!(assert_error_redirect(&resp, &authz, &idp), "login_required");

    // A session (from a first sign-in); then prompt=none answers a code with no page.
    sign_in(&mut agent, &idp, &Authz::new(&client), "pia").await;
    let authz = Authz::new(&client).set("prompt", "none");
    let resp = agent.get(&authz.url(&idp)).await;
    let code = assert_code_redirect(&resp, &authz, &idp);
    let body = token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    // The ID token carries this request's nonce, not the first one's.
    assert_eq!(
        claims(body["id_token"].as_str().unwrap())["nonce"],
        authz.nonce.as_str()
    );

    // Without prompt, too: a code at once.
    let authz = Authz::new(&client);
    let resp = agent.get(&authz.url(&idp)).await;
    assert_code_redirect(&resp, &authz, &idp);

    // prompt=none skips no check: PKCE is still required (GHSA-2wvm-8mvp-22qv)...
    let authz = Authz::new(&client)
        .set("prompt", "none")
        .remove("code_challenge");
    let resp = agent.get(&authz.url(&idp)).await;
    assert_eq!(
        assert_error_redirect(&resp, &authz, &idp),
        "invalid_request"
    );
    // ...and an unregistered redirect is still the error page.
    let authz = Authz::new(&client)
        .set("prompt", "none")
        .set("redirect_uri", "https://evil.example/cb");
    let resp = agent.get(&authz.url(&idp)).await;
    Page::read(resp).await.assert_error_page();
    // Another client's request with the session: a code for that client only.
    let other = idp.confidential("https://other.example/cb").await;
    let authz = Authz::new(&other).set("prompt", "none");
    let resp = agent.get(&authz.url(&idp)).await;
    let code = assert_code_redirect(&resp, &authz, &idp);
    let body = token_json(exchange(&idp, &other, &authz, &code).await, 200).await;
    assert_eq!(
        claims(body["id_token"].as_str().unwrap())["aud"],
        other.id.as_str()
    );
    idp.shutdown().await;
}

async fn prompt_login_and_an_exceeded_max_age_show_the_login_page_despite_a_session(
    backend: Backend,
) {
    let idp = Idp::start(&backend).await;
    idp.user("max").await;
    let client = idp.confidential("https://app.example/cb").await;
    let mut agent = Agent::new();
    sign_in(&mut agent, &idp, &Authz::new(&client), "max").await;
    assert!(agent.session().is_some(), "a session");

    let authz = Authz::new(&client).set("prompt", "login");
    let page = Page::read(agent.get(&authz.url(&idp)).await).await;
    page.assert_login_page();
    // Signing in again there continues the authorization.
    let resp = submit_login(&mut agent, &idp, &page, "max", PASSWORD).await;
    let code = assert_code_redirect(&resp, &authz, &idp);
    let body = token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    let id = claims(body["id_token"].as_str().unwrap());
    assert!(id["auth_time"].is_i64(), "{id}");

    // max_age: the session (now the second sign-in's) is over a second old after this.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let authz = Authz::new(&client).set("max_age", "0");
    Page::read(agent.get(&authz.url(&idp)).await)
        .await
        .assert_login_page();
    // A max_age the session is within: a code, and auth_time within it.
    let authz = Authz::new(&client).set("max_age", "3600");
    let resp = agent.get(&authz.url(&idp)).await;
    let code = assert_code_redirect(&resp, &authz, &idp);
    let body = token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    let id = claims(body["id_token"].as_str().unwrap());
    let now = chrono::Utc::now().timestamp();
    let auth_time = id["auth_time"].as_i64().expect("auth_time with max_age");
    assert!(auth_time <= now && now - auth_time < 3600, "{id}");
    idp.shutdown().await;
}

async fn every_failed_login_gets_the_same_generic_error(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("gus").await;
    idp.user("off").await;
    let out = idp.cli(&["user", "disable", "off"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client = idp.confidential("https://app.example/cb").await;
    const GENERIC: &str = "Invalid username or password.";
    let mut pages = Vec::new();
    for (user, password) in [
        ("gus", "not the password"),
        ("nobody-here", PASSWORD),
        ("off", PASSWORD),
        ("gus", ""),
    ] {
        let authz = Authz::new(&client);
        let (mut agent, resp) = open(&idp, &authz).await;
        let page = Page::read(resp).await;
        let resp = submit_login(&mut agent, &idp, &page, user, password).await;
        assert!(
            resp.headers().get("location").is_none(),
            "{user}: no redirect"
        );
        let again = Page::read(resp).await;
        assert!(
            again.status == 200 || again.status == 401,
            "{user}: {}",
            again.status
        );
        assert!(again.is_login_page(), "{user}: the login page again");
        assert!(
            again.html.contains(GENERIC),
            "{user}: the generic error: {}",
            again.html
        );
        assert!(agent.session().is_none(), "{user}: no session cookie");
        // The retry works from the page shown (a fresh csrf/request pair, if any).
        pages.push((again.status, again.html.matches(GENERIC).count()));
    }
    assert!(
        pages.windows(2).all(|w| w[0] == w[1]),
        "the same answer for every failure: {pages:?}"
    );
    // The right password from the failed page's own form still signs in.
    let authz = Authz::new(&client);
    let (mut agent, resp) = open(&idp, &authz).await;
    let page = Page::read(resp).await;
    let failed = Page::read(submit_login(&mut agent, &idp, &page, "gus", "wrong").await).await;
    let resp = submit_login(&mut agent, &idp, &failed, "gus", PASSWORD).await;
    assert_code_redirect(&resp, &authz, &idp);
    let kinds = idp.audit_kinds().await;
    assert!(kinds.iter().any(|k| k == "login_failed"), "{kinds:?}");
    assert!(kinds.iter().any(|k| k == "oidc_login"), "{kinds:?}");
    idp.shutdown().await;
}

async fn an_account_with_totp_gets_the_code_step_and_amr_pwd_otp(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("tia").await;
    let access = api_access(&idp, "tia").await;
    let secret = enable_totp(&idp, &access).await;
    let client = idp.confidential("https://app.example/cb").await;
    let authz = Authz::new(&client);
    let (mut agent, resp) = open(&idp, &authz).await;
    let page = Page::read(resp).await;
    page.assert_login_page();

    // A wrong password is the generic error, TOTP or not (no enumeration).
    let wrong = Page::read(submit_login(&mut agent, &idp, &page, "tia", "nope nope").await).await;
    assert!(wrong.html.contains("Invalid username or password."));
    assert!(!wrong.is_mfa_page());

    let resp = submit_login(&mut agent, &idp, &wrong, "tia", PASSWORD).await;
    assert!(
        resp.headers().get("location").is_none(),
        "no code before the second factor"
    );
    let step = Page::read(resp).await;
    assert!(step.is_mfa_page(), "the TOTP step: {}", step.html);
    assert!(step.html.contains(r#"name="code""#));
    assert!(
        agent.session().is_none(),
        "no session before the second factor"
    );
    let mfa_form = |p: &Page, code: String| {
        vec![
            ("csrf".to_owned(), p.hidden("csrf")),
            ("request".to_owned(), p.hidden("request")),
            ("mfa_token".to_owned(), p.hidden("mfa_token")),
            ("code".to_owned(), code),
        ]
    };
    let post = async |agent: &mut Agent, form: Vec<(String, String)>| {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        agent.post(&idp.url("/oauth/login/mfa"), &form).await
    };
    let bad = Page::read(post(&mut agent, mfa_form(&step, "000000".into())).await).await;
    assert!(bad.headers.get("location").is_none());
    assert!(bad.is_mfa_page(), "the step again: {}", bad.html);
    assert!(bad.html.contains("Invalid code."), "{}", bad.html);

    let resp = post(&mut agent, mfa_form(&bad, totp(&secret, 1))).await;
    let code = assert_code_redirect(&resp, &authz, &idp);
    assert!(
        agent.session().is_some(),
        "the session after the second factor"
    );
    let body = token_json(exchange(&idp, &client, &authz, &code).await, 200).await;
    let id = claims(body["id_token"].as_str().unwrap());
    assert_eq!(id["amr"], serde_json::json!(["pwd", "otp"]), "{id}");
    assert_eq!(
        claims(body["access_token"].as_str().unwrap())["amr"],
        serde_json::json!(["pwd", "otp"])
    );
    idp.shutdown().await;
}

async fn the_login_page_forbids_inline_script_and_framing_and_is_not_cached(backend: Backend) {
    let idp = Idp::start(&backend).await;
    let client = idp.confidential("https://app.example/cb").await;
    let (_, resp) = open(&idp, &Authz::new(&client)).await;
    let page = Page::read(resp).await;
    page.assert_login_page();
    let csp = page.header("content-security-policy").to_owned();
    assert_csp(&csp);
    assert!(
        csp.contains("frame-ancestors 'none'"),
        "frame-ancestors: {csp}"
    );
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(page.header("cache-control"), "no-store");
    assert!(!page.html.contains("<script"), "no script on the page");
    assert!(
        !page.html.contains(" onclick=") && !page.html.contains(" onsubmit="),
        "no inline handlers"
    );
    assert!(page.html.contains(r#"method="post""#));
    assert!(page.html.contains(r#"type="password""#));
    assert!(page.html.contains(r#"type="submit""#));
    // The error page has them too.
    let (_, resp) = open(
        &idp,
        &Authz::new(&client).set("redirect_uri", "https://evil.example/cb"),
    )
    .await;
    let error = Page::read(resp).await;
    error.assert_error_page();
    assert_csp(error.header("content-security-policy"));
    assert_eq!(error.header("x-frame-options"), "DENY");
    idp.shutdown().await;
}

/// A CSP that allows no inline script (and no script at all from the default).
pub fn assert_csp(csp: &str) {
    assert!(!csp.contains("'unsafe-inline'"), "{csp}");
    assert!(!csp.contains("'unsafe-eval'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    for directive in csp.split(';').map(str::trim) {
        if directive.starts_with("script-src") {
            assert!(
                !directive.contains('*') && !directive.contains("data:"),
                "a script source that allows inline or any script: {csp}"
            );
        }
    }
    assert!(csp.contains("form-action"), "{csp}");
}

async fn a_login_post_without_the_right_csrf_is_refused(backend: Backend) {
    let idp = Idp::start(&backend).await;
    idp.user("cat").await;
    let client = idp.confidential("https://app.example/cb").await;
    let authz = Authz::new(&client);
    let (mut agent, resp) = open(&idp, &authz).await;
    let page = Page::read(resp).await;
    let request = page.hidden("request");
    for csrf in ["", "forged-0123456789abcdefghijklmnop"] {
        let resp = agent
            .post(
                &idp.url("/oauth/login"),
                &[
                    ("csrf", csrf),
                    ("request", &request),
                    ("username", "cat"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        assert!(
            resp.headers().get("location").is_none(),
            "csrf {csrf:?}: no code"
        );
        assert!(
            resp.status().is_client_error(),
            "csrf {csrf:?}: {}",
            resp.status()
        );
        assert!(agent.session().is_none());
    }
    // Another browser's csrf value (its cookie is not ours) is refused too.
    let (_, theirs) = open(&idp, &authz).await;
    let theirs = Page::read(theirs).await;
    let mut fresh = Agent::new();
    let resp = fresh
        .post(
            &idp.url("/oauth/login"),
            &[
                ("csrf", &page.hidden("csrf")),
                ("request", &theirs.hidden("request")),
                ("username", "cat"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert!(
        resp.headers().get("location").is_none() && fresh.session().is_none(),
        "a csrf value from another page does not sign anyone in"
    );
    // The page's own pair works.
    let resp = submit_login(&mut agent, &idp, &page, "cat", PASSWORD).await;
    assert_code_redirect(&resp, &authz, &idp);
    idp.shutdown().await;
}
