//! Headless Chromium on the login page, as a person uses it: typing into the form and
//! clicking the button (DevTools Input events, no script of ours in the page), with
//! JavaScript on and off. The client's redirect target is a small listener on
//! 127.0.0.1 (a loopback redirect URI, any port: RFC 8252), so the browser really
//! arrives there — past the page's CSP `form-action`, which Chromium applies to the
//! redirect after the form's POST too.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::browser::{DevTools, find_browser};
use crate::support::{Backend, PASSWORD};
use crate::{Authz, Client, Idp, api_access, enable_totp, param, totp};

crate::on_both_backends!(
    the_form_login_continues_the_authorization_to_the_redirect_uri,
    the_form_works_with_javascript_disabled,
    a_wrong_password_shows_the_generic_error,
    an_account_with_totp_gets_the_code_page,
    the_session_cookie_has_httponly_samesite_lax_path_root_and_no_secure,
    the_browser_sees_the_csp_and_x_frame_options_on_the_page,
);

/// Chromium, or `None` after saying SKIPPED (a failure under CI=true).
fn browser() -> Option<std::path::PathBuf> {
    let found = find_browser();
    if found.is_none() {
        crate::support::skip_or_fail(
            "no chromium on PATH (Debian: apt-get install chromium-headless-shell); \
             the login page's rules are still checked over plain HTTP in authorize.rs",
        );
    }
    found
}

/// The client's redirect target: answers every request with a small page, on
/// 127.0.0.1 (the listener ends with the test).
async fn client_site() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
                let body = "<!doctype html><html><body><h1>client callback</h1></body></html>";
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(body.as_bytes()).await;
            });
        }
    });
    (addr, task)
}

/// A provider, a user `name`, a client registered with `http://127.0.0.1/cb`, a
/// listener for its redirects, and an authorization request to it.
async fn setup(backend: &Backend, name: &str) -> (Idp, Client, Authz, tokio::task::JoinHandle<()>) {
    let idp = Idp::start(backend).await;
    idp.user(name).await;
    let client = idp.confidential("http://127.0.0.1/cb").await;
    let (site, task) = client_site().await;
    let authz = Authz::new(&client).set("redirect_uri", &format!("http://{site}/cb"));
    (idp, client, authz, task)
}

async fn open_page(browser: &std::path::Path, scripts: bool) -> DevTools {
    let mut page = DevTools::launch(browser).await;
    for domain in ["Page.enable", "DOM.enable", "Network.enable"] {
        page.call(domain, json!({})).await;
    }
    if !scripts {
        page.call(
            "Emulation.setScriptExecutionDisabled",
            json!({"value": true}),
        )
        .await;
    }
    page
}

/// Opens the authorize URL and waits for the login form.
async fn to_login_page(page: &mut DevTools, idp: &Idp, authz: &Authz) {
    page.call("Page.navigate", json!({ "url": authz.url(idp) }))
        .await;
    page.wait_for("the login page", |url, html| {
        url.contains("/oauth/authorize") && html.contains(r#"action="/oauth/login""#)
    })
    .await;
}

async fn fill_and_submit(page: &mut DevTools, username: &str, password: &str) {
    page.type_into(r#"input[name="username"]"#, username).await;
    page.type_into(r#"input[name="password"]"#, password).await;
    page.click(r#"button[type="submit"]"#).await;
}

/// Waits for the browser to arrive at the client; the URL it arrived at.
async fn at_client(page: &mut DevTools, authz: &Authz) -> url::Url {
    let target = authz.redirect_uri().to_owned();
    page.wait_for("the redirect to the client", |url, html| {
        url.starts_with(&target) && html.contains("client callback")
    })
    .await;
    url::Url::parse(&page.current_url().await).unwrap()
}

fn assert_code_arrived(idp: &Idp, authz: &Authz, at: &url::Url) {
    assert!(param(at, "code").is_some_and(|c| !c.is_empty()), "{at}");
    assert_eq!(
        param(at, "state").as_deref(),
        Some(authz.state.as_str()),
        "{at}"
    );
    assert_eq!(
        param(at, "iss").as_deref(),
        Some(idp.issuer.as_str()),
        "{at}"
    );
}

async fn the_form_login_continues_the_authorization_to_the_redirect_uri(backend: Backend) {
    let Some(browser) = browser() else { return };
    let (idp, client, authz, _site) = setup(&backend, "bea").await;
    let mut page = open_page(&browser, true).await;
    to_login_page(&mut page, &idp, &authz).await;
    fill_and_submit(&mut page, "bea", PASSWORD).await;
    let at = at_client(&mut page, &authz).await;
    assert_code_arrived(&idp, &authz, &at);
    // The code the browser carried is a real one.
    let code = param(&at, "code").unwrap();
    crate::token_json(crate::exchange(&idp, &client, &authz, &code).await, 200).await;

    // The browser now has a session: the next authorization goes straight through.
    let again = Authz::new(&client).set("redirect_uri", authz.redirect_uri());
    page.call("Page.navigate", json!({ "url": again.url(&idp) }))
        .await;
    let target = again.state.clone();
    page.wait_for("a code without the login page", |url, _| {
        url.contains(&target)
    })
    .await;
    let at = url::Url::parse(&page.current_url().await).unwrap();
    assert_code_arrived(&idp, &again, &at);
    idp.shutdown().await;
}

async fn the_form_works_with_javascript_disabled(backend: Backend) {
    let Some(browser) = browser() else { return };
    let (idp, _client, authz, _site) = setup(&backend, "nojs").await;
    let mut page = open_page(&browser, false).await;
    to_login_page(&mut page, &idp, &authz).await;
    fill_and_submit(&mut page, "nojs", PASSWORD).await;
    let at = at_client(&mut page, &authz).await;
    assert_code_arrived(&idp, &authz, &at);
    idp.shutdown().await;
}

async fn a_wrong_password_shows_the_generic_error(backend: Backend) {
    let Some(browser) = browser() else { return };
    let (idp, _client, authz, _site) = setup(&backend, "wes").await;
    let mut page = open_page(&browser, true).await;
    to_login_page(&mut page, &idp, &authz).await;
    fill_and_submit(&mut page, "wes", "not the password").await;
    page.wait_for("the generic error", |_, html| {
        html.contains("Invalid username or password.")
    })
    .await;
    let html = page.html().await;
    assert!(html.contains(r#"role="alert""#), "{html}");
    assert!(html.contains(r#"action="/oauth/login""#), "the form again");
    // The form shown with the error signs in (whatever it kept in the username field).
    fill_and_submit(&mut page, "wes", PASSWORD).await;
    let at = at_client(&mut page, &authz).await;
    assert_code_arrived(&idp, &authz, &at);
    idp.shutdown().await;
}

async fn an_account_with_totp_gets_the_code_page(backend: Backend) {
    let Some(browser) = browser() else { return };
    let (idp, _client, authz, _site) = setup(&backend, "otto").await;
    let access = api_access(&idp, "otto").await;
    let secret = enable_totp(&idp, &access).await;
    let mut page = open_page(&browser, true).await;
    to_login_page(&mut page, &idp, &authz).await;
    fill_and_submit(&mut page, "otto", PASSWORD).await;
    page.wait_for("the TOTP step", |_, html| {
        html.contains(r#"action="/oauth/login/mfa""#)
    })
    .await;
    page.type_into(r#"input[name="code"]"#, "000000").await;
    page.click(r#"button[type="submit"]"#).await;
    page.wait_for("the code error", |_, html| html.contains("Invalid code."))
        .await;
    page.type_into(r#"input[name="code"]"#, &totp(&secret, 1))
        .await;
    page.click(r#"button[type="submit"]"#).await;
    let at = at_client(&mut page, &authz).await;
    assert_code_arrived(&idp, &authz, &at);
    idp.shutdown().await;
}

async fn the_session_cookie_has_httponly_samesite_lax_path_root_and_no_secure(backend: Backend) {
    let Some(browser) = browser() else { return };
    let (idp, _client, authz, _site) = setup(&backend, "kim").await;
    let mut page = open_page(&browser, true).await;
    to_login_page(&mut page, &idp, &authz).await;
    fill_and_submit(&mut page, "kim", PASSWORD).await;
    at_client(&mut page, &authz).await;
    let got = page
        .call("Network.getCookies", json!({"urls": [idp.url("/")]}))
        .await;
    let cookies = got["cookies"].as_array().expect("cookies").clone();
    let session: &Value = cookies
        .iter()
        .find(|c| c["name"] == crate::SESSION_COOKIE)
        .unwrap_or_else(|| panic!("the session cookie in {cookies:?}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Lax", "{session}");
    assert_eq!(session["path"], "/", "{session}");
    assert_eq!(
        session["secure"], false,
        "not Secure on loopback http: {session}"
    );
    assert_eq!(session["domain"], "127.0.0.1", "host-only: {session}");
    // Page script cannot read it (HttpOnly).
    let seen = page.eval("document.cookie").await;
    assert!(
        !seen
            .as_str()
            .unwrap_or_default()
            .contains(crate::SESSION_COOKIE),
        "{seen}"
    );
    idp.shutdown().await;
}

async fn the_browser_sees_the_csp_and_x_frame_options_on_the_page(backend: Backend) {
    let Some(browser) = browser() else { return };
    let (idp, _client, authz, _site) = setup(&backend, "cyd").await;
    let mut page = open_page(&browser, true).await;
    to_login_page(&mut page, &idp, &authz).await;
    let document = page
        .events_named("Network.responseReceived")
        .into_iter()
        .find(|e| {
            e["params"]["type"] == "Document"
                && e["params"]["response"]["url"]
                    .as_str()
                    .is_some_and(|u| u.contains("/oauth/authorize"))
        })
        .cloned()
        .expect("the login page's response event");
    let headers = document["params"]["response"]["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                v.as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect::<std::collections::BTreeMap<_, _>>();
    let csp = headers
        .get("content-security-policy")
        .unwrap_or_else(|| panic!("a CSP: {headers:?}"));
    crate::authorize::assert_csp(csp);
    assert_eq!(
        headers.get("x-frame-options").map(String::as_str),
        Some("DENY")
    );
    // The CSP is in force: an inline script is refused by the browser.
    let blocked = page
        .eval(
            "(() => { const s = document.createElement('script'); \
             s.textContent = 'window.__ran = 1'; document.body.appendChild(s); \
             return window.__ran === 1; })()",
        )
        .await;
    assert_eq!(blocked, json!(false), "an inline script ran under the CSP");
    idp.shutdown().await;
}
