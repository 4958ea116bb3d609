//! The OpenID Connect provider (SPEC §18, issue 26), on SQLite and PostgreSQL alike,
//! against a server in this process whose issuer is its own address: a real OIDC
//! client library (`openidconnect`) through the whole flow, headless Chromium on the
//! login page, and the rules an attacker would probe, one by one over plain HTTP.
//! Clients are registered with the real CLI (`authctl client add`).

#[path = "../support/mod.rs"]
mod support;

mod authorize;
mod browser;
mod cli;
mod discovery;
mod flow;
mod session;
mod token;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authctl::config::Settings;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::{Backend, PASSWORD, TestApp, spawn_app};

/// The browser session cookie's name over http on a loopback host (SPEC §18).
pub const SESSION_COOKIE: &str = "authctl_session";

/// The only place that turns the provider on: SPEC §18's `oidc.enabled` and the
/// issuer, which must be the server's own public base URL.
pub fn enable_oidc(s: &mut Settings, issuer: &str) {
    s.auth.oidc_enabled = true;
    s.auth.issuer = issuer.to_owned();
}

/// A provider on a fresh database, listening where its issuer says.
pub struct Idp {
    pub app: TestApp,
    pub issuer: String,
}

/// A client as `authctl client add --output json` printed it.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: Option<String>,
    pub redirect_uri: String,
    pub json: Value,
}

impl Idp {
    pub async fn start(backend: &Backend) -> Idp {
        Self::start_with(backend, |_| {}).await
    }

    /// The port is chosen first: the issuer must be known before the server starts.
    pub async fn start_with(backend: &Backend, tweak: impl FnOnce(&mut Settings)) -> Idp {
        let addr = support::served::free_addr();
        let issuer = format!("http://{addr}");
        let app = spawn_app(backend, |s| {
            s.bind = addr;
            enable_oidc(s, &issuer);
            tweak(s);
        })
        .await;
        assert_eq!(app.addr, addr, "the server listens where its issuer says");
        Idp { app, issuer }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    pub async fn shutdown(self) {
        self.app.shutdown().await;
    }

    /// Registers `name` (password [`PASSWORD`], email `name@example.com`); its user id.
    pub async fn user(&self, name: &str) -> String {
        let r = self
            .app
            .register(&format!("{name}@example.com"), name, PASSWORD)
            .await;
        assert_eq!(r.status(), 201, "register {name}");
        let body: Value = r.json().await.expect("user json");
        id_string(&body["id"])
    }

    /// `authctl ARGS` against this provider's database (off the runtime's threads).
    pub async fn cli(&self, args: &[&str]) -> std::process::Output {
        cli_run(&self.app.db.url, args).await
    }

    /// `authctl client add --name NAME --redirect-uri URI… EXTRA… --output json`.
    pub async fn client(&self, name: &str, redirect_uris: &[&str], extra: &[&str]) -> Client {
        let mut args = vec!["client", "add", "--name", name];
        for uri in redirect_uris {
            args.extend(["--redirect-uri", uri]);
        }
        args.extend(extra);
        args.extend(["--output", "json"]);
        let out = self.cli(&args).await;
        assert!(
            out.status.success(),
            "client add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json = support::cli::stdout_json(&out);
        Client {
            id: json["client_id"].as_str().expect("client_id").to_owned(),
            secret: json["client_secret"].as_str().map(str::to_owned),
            redirect_uri: redirect_uris[0].to_owned(),
            json,
        }
    }

    /// A confidential client with one redirect URI.
    pub async fn confidential(&self, redirect_uri: &str) -> Client {
        self.client("app", &[redirect_uri], &[]).await
    }

    /// The kinds of every audit event, newest first.
    pub async fn audit_kinds(&self) -> Vec<String> {
        let out = self
            .cli(&["audit", "list", "--limit", "1000", "--output", "json"])
            .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        support::cli::stdout_json(&out)
            .as_array()
            .expect("audit array")
            .iter()
            .map(|e| e["kind"].as_str().expect("kind").to_owned())
            .collect()
    }

    /// The caller's sessions (SPEC §10).
    pub async fn sessions(&self, access: &str) -> Vec<Value> {
        let r = self
            .app
            .client
            .get(self.url("/api/v1/auth/sessions"))
            .bearer_auth(access)
            .send()
            .await
            .expect("sessions");
        assert_eq!(r.status(), 200);
        r.json::<Value>()
            .await
            .expect("sessions json")
            .as_array()
            .expect("array")
            .clone()
    }
}

/// A user id as the `sub` claim carries it: a string.
pub fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => panic!("a user id: {other}"),
    }
}

pub async fn cli_run(db_url: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = support::cli::authctl(db_url);
    cmd.args(args);
    tokio::task::spawn_blocking(move || cmd.output().expect("run authctl"))
        .await
        .expect("cli task")
}

// ---- a browser without a browser: cookies kept by hand, redirects not followed ----

/// What a browser keeps between requests to the provider: its cookies (the session
/// cookie, and any other the login page sets, such as a CSRF cookie).
pub struct Agent {
    http: reqwest::Client,
    jar: std::collections::BTreeMap<String, String>,
    /// Every `Set-Cookie` line the provider sent.
    pub set_cookies: Vec<String>,
}

impl Default for Agent {
    fn default() -> Self {
        Self::new()
    }
}

impl Agent {
    pub fn new() -> Agent {
        Agent {
            http: no_redirects(),
            jar: Default::default(),
            set_cookies: Vec::new(),
        }
    }

    /// The browser session cookie (`name=value`), if the provider set one.
    pub fn session(&self) -> Option<String> {
        self.jar
            .iter()
            .find(|(name, _)| name.ends_with(SESSION_COOKIE))
            .map(|(name, value)| format!("{name}={value}"))
    }

    /// Puts back (or drops) a session cookie, as a browser that kept it would.
    pub fn set_session(&mut self, cookie: Option<&str>) {
        self.jar.retain(|name, _| !name.ends_with(SESSION_COOKIE));
        if let Some((name, value)) = cookie.and_then(|c| c.split_once('=')) {
            self.jar.insert(name.to_owned(), value.to_owned());
        }
    }

    fn cookie_header(&self) -> Option<String> {
        (!self.jar.is_empty()).then(|| {
            self.jar
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let mut req = self.http.get(url);
        if let Some(c) = self.cookie_header() {
            req = req.header("cookie", c);
        }
        let resp = req.send().await.expect("GET");
        self.keep(&resp);
        resp
    }

    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.post(url).form(form);
        if let Some(c) = self.cookie_header() {
            req = req.header("cookie", c);
        }
        let resp = req.send().await.expect("POST");
        self.keep(&resp);
        resp
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for line in resp.headers().get_all("set-cookie") {
            let line = line.to_str().expect("ascii Set-Cookie").to_owned();
            let pair = line.split(';').next().unwrap_or_default().trim().to_owned();
            if let Some((name, value)) = pair.split_once('=') {
                let lower = line.to_ascii_lowercase();
                let expired = value.is_empty()
                    || lower.contains("max-age=0")
                    || lower.contains("expires=thu, 01 jan 1970");
                if expired {
                    self.jar.remove(name);
                } else {
                    self.jar.insert(name.to_owned(), value.to_owned());
                }
            }
            self.set_cookies.push(line);
        }
    }
}

pub fn no_redirects() -> reqwest::Client {
    authctl::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

/// A response read whole.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub html: String,
}

impl Page {
    pub async fn read(resp: reqwest::Response) -> Page {
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            html: resp.text().await.expect("body"),
        }
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header"))
            .unwrap_or_else(|| panic!("no {name} header (status {})", self.status))
    }

    pub fn is_html(&self) -> bool {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"))
    }

    pub fn is_login_page(&self) -> bool {
        self.is_html()
            && self.html.contains(r#"action="/oauth/login""#)
            && self.html.contains(r#"name="password""#)
    }

    pub fn is_mfa_page(&self) -> bool {
        self.is_html() && self.html.contains(r#"action="/oauth/login/mfa""#)
    }

    /// The value of the hidden input `name`.
    pub fn hidden(&self, name: &str) -> String {
        hidden(&self.html, name)
    }

    /// Asserts the login page (200, HTML, the form), with no redirect.
    pub fn assert_login_page(&self) {
        assert_eq!(self.status, 200, "the login page: {}", self.html);
        assert!(self.headers.get("location").is_none());
        assert!(self.is_login_page(), "the login page: {}", self.html);
    }

    /// Asserts an HTML error page: a 4xx, never a redirect.
    pub fn assert_error_page(&self) {
        assert!(
            (400..500).contains(&self.status),
            "an error page, got {}: {}",
            self.status,
            self.html
        );
        assert!(
            self.headers.get("location").is_none(),
            "an error page never redirects: {:?}",
            self.headers.get("location")
        );
        assert!(self.is_html(), "an HTML error page: {:?}", self.headers);
        assert!(!self.is_login_page(), "an error page, not the login page");
    }
}

/// The value of `<input … name="NAME" … value="…">`, whatever the attribute order.
pub fn hidden(html: &str, name: &str) -> String {
    let needle = format!(r#"name="{name}""#);
    for tag in html.split('<').filter(|t| t.starts_with("input")) {
        let tag = tag.split('>').next().unwrap_or_default();
        if tag.contains(&needle) {
            let value = tag
                .split(r#"value=""#)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no value on the {name} input: {tag}"));
            return unescape(value);
        }
    }
    panic!("no input named {name} in: {html}");
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2F;", "/")
        .replace("&#47;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The `Location` of a redirect, parsed.
pub fn location(resp: &reqwest::Response) -> url::Url {
    let loc = resp
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("a redirect, got {}", resp.status()))
        .to_str()
        .expect("ascii Location");
    url::Url::parse(loc).unwrap_or_else(|e| panic!("an absolute Location {loc}: {e}"))
}

pub fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `url` without its query, as a string.
pub fn without_query(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

// ---- authorization requests by hand ----------------------------------------------

/// An authorization request (PKCE S256, state, nonce), its parameters editable.
#[derive(Debug, Clone)]
pub struct Authz {
    pub params: Vec<(String, String)>,
    pub verifier: String,
    pub state: String,
    pub nonce: String,
}

fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

impl Authz {
    /// For `client` at its first redirect URI, scope `openid profile email offline_access`.
    pub fn new(client: &Client) -> Authz {
        Self::to(&client.id, &client.redirect_uri)
    }

    pub fn to(client_id: &str, redirect_uri: &str) -> Authz {
        let verifier = format!("{}{}", random(), random());
        let (state, nonce) = (random(), random());
        let params = [
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", "openid profile email offline_access"),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &s256(&verifier)),
            ("code_challenge_method", "S256"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Authz {
            params,
            verifier,
            state,
            nonce,
        }
    }

    /// Sets (or adds) a parameter.
    pub fn set(mut self, name: &str, value: &str) -> Authz {
        match self.params.iter_mut().find(|(k, _)| k == name) {
            Some(p) => p.1 = value.to_owned(),
            None => self.params.push((name.to_owned(), value.to_owned())),
        }
        self
    }

    pub fn remove(mut self, name: &str) -> Authz {
        self.params.retain(|(k, _)| k != name);
        self
    }

    pub fn get(&self, name: &str) -> &str {
        &self
            .params
            .iter()
            .find(|(k, _)| k == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .1
    }

    pub fn redirect_uri(&self) -> &str {
        self.get("redirect_uri")
    }

    pub fn url(&self, idp: &Idp) -> String {
        url::Url::parse_with_params(&idp.url("/oauth/authorize"), &self.params)
            .expect("authorize url")
            .to_string()
    }
}

/// POSTs the credentials into the login `page` (as its form would).
pub async fn submit_login(
    agent: &mut Agent,
    idp: &Idp,
    page: &Page,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let (csrf, request) = (page.hidden("csrf"), page.hidden("request"));
    agent
        .post(
            &idp.url("/oauth/login"),
            &[
                ("csrf", &csrf),
                ("request", &request),
                ("username", username),
                ("password", password),
            ],
        )
        .await
}

/// Asserts the redirect that carries a code back to the client (302 or 303, `state`, `iss`,
/// the request's own redirect URI); the code.
pub fn assert_code_redirect(resp: &reqwest::Response, authz: &Authz, idp: &Idp) -> String {
    assert!(
        matches!(resp.status().as_u16(), 302 | 303),
        "the redirect with a code: {}",
        resp.status()
    );
    let to = location(resp);
    assert_eq!(
        without_query(&to),
        authz.redirect_uri(),
        "back to the client"
    );
    assert_eq!(param(&to, "state").as_deref(), Some(authz.state.as_str()));
    assert_eq!(
        param(&to, "iss").as_deref(),
        Some(idp.issuer.as_str()),
        "RFC 9207"
    );
    assert!(param(&to, "error").is_none(), "{to}");
    param(&to, "code").unwrap_or_else(|| panic!("a code in {to}"))
}

/// Asserts an error redirect (RFC 6749 §4.1.2.1, RFC 9207); the `error`.
pub fn assert_error_redirect(resp: &reqwest::Response, authz: &Authz, idp: &Idp) -> String {
    assert!(
        matches!(resp.status().as_u16(), 302 | 303),
        "an error redirect, got {}",
        resp.status()
    );
    let to = location(resp);
    assert_eq!(without_query(&to), authz.redirect_uri());
    assert!(param(&to, "code").is_none(), "no code with an error: {to}");
    assert_eq!(param(&to, "state").as_deref(), Some(authz.state.as_str()));
    assert_eq!(param(&to, "iss").as_deref(), Some(idp.issuer.as_str()));
    assert!(param(&to, "error_description").is_some(), "{to}");
    param(&to, "error").unwrap_or_else(|| panic!("an error in {to}"))
}

/// The whole login without a browser: authorize → login page → credentials → code.
pub async fn sign_in(agent: &mut Agent, idp: &Idp, authz: &Authz, username: &str) -> String {
    let page = Page::read(agent.get(&authz.url(idp)).await).await;
    page.assert_login_page();
    let resp = submit_login(agent, idp, &page, username, PASSWORD).await;
    assert_code_redirect(&resp, authz, idp)
}

// ---- the token endpoint by hand ---------------------------------------------------

/// `POST /oauth/token` with `form`, authenticated with HTTP Basic when `basic` is given.
pub async fn token(
    idp: &Idp,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> reqwest::Response {
    let mut req = idp.app.client.post(idp.url("/oauth/token")).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    req.send().await.expect("token request")
}

/// Exchanges `code` as `client` would (Basic for a confidential one, `client_id` in
/// the form for a public one).
pub async fn exchange(idp: &Idp, client: &Client, authz: &Authz, code: &str) -> reqwest::Response {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", authz.redirect_uri()),
        ("code_verifier", authz.verifier.as_str()),
    ];
    match &client.secret {
        Some(secret) => token(idp, &form, Some((&client.id, secret))).await,
        None => {
            form.push(("client_id", &client.id));
            token(idp, &form, None).await
        }
    }
}

/// The token endpoint's JSON, after checking the status.
pub async fn token_json(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status, "token endpoint status");
    let cc = resp
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = resp.json().await.expect("token endpoint JSON");
    if status == 200 {
        assert_eq!(cc, "no-store", "RFC 6749 §5.1");
    }
    body
}

/// An OAuth error from the token endpoint: its `error` member.
pub async fn token_error(resp: reqwest::Response, status: u16) -> String {
    let body = token_json(resp, status).await;
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("an error member: {body}"))
        .to_owned()
}

/// Signs in `username` (a fresh agent) and exchanges the code; the token response.
pub async fn tokens_for(idp: &Idp, client: &Client, username: &str) -> Value {
    let mut agent = Agent::new();
    let authz = Authz::new(client);
    let code = sign_in(&mut agent, idp, &authz, username).await;
    token_json(exchange(idp, client, &authz, &code).await, 200).await
}

pub async fn refresh_grant(idp: &Idp, client: &Client, refresh: &str) -> reqwest::Response {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh)];
    match &client.secret {
        Some(secret) => token(idp, &form, Some((&client.id, secret))).await,
        None => {
            form.push(("client_id", &client.id));
            token(idp, &form, None).await
        }
    }
}

// ---- JWTs and TOTP -----------------------------------------------------------------

fn jwt_part(jwt: &str, n: usize) -> Value {
    let part = jwt.split('.').nth(n).expect("a JWT");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// A JWT's claims, unverified (the library verifies; this reads).
pub fn claims(jwt: &str) -> Value {
    jwt_part(jwt, 1)
}

pub fn jwt_header(jwt: &str) -> Value {
    jwt_part(jwt, 0)
}

/// The TOTP code of `secret` for the step `offset` steps from now.
pub fn totp(secret: &[u8], offset: i64) -> String {
    let totp = totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .build()
        .expect("totp");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64;
    totp.generate((now + 30 * offset) as u64).to_string()
}

/// Enrols and confirms TOTP for the user of `access` (SPEC §14); the secret. The
/// current step is spent by the confirmation: log in with `totp(&secret, 1)`.
pub async fn enable_totp(idp: &Idp, access: &str) -> Vec<u8> {
    let post = |path: &str, body: Value| {
        idp.app
            .client
            .post(idp.url(path))
            .bearer_auth(access)
            .json(&body)
            .send()
    };
    let r = post(
        "/api/v1/auth/mfa/totp",
        json!({"current_password": PASSWORD}),
    )
    .await
    .expect("enrol");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("enrolment");
    let secret = totp_rs::Secret::try_from_base32(body["secret"].as_str().expect("secret"))
        .expect("base32")
        .as_bytes()
        .to_vec();
    let r = post(
        "/api/v1/auth/mfa/totp/confirm",
        json!({"code": totp(&secret, 0)}),
    )
    .await
    .expect("confirm");
    assert_eq!(r.status(), 200);
    secret
}

/// An API login (the password grant at `/api/v1/auth/token`): the access token.
pub async fn api_access(idp: &Idp, username: &str) -> String {
    let r = idp.app.login(username, PASSWORD).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("pair");
    body["access_token"].as_str().expect("access").to_owned()
}
