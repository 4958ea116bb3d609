//! The API's documentation: `/openapi.json` describes every route the server answers
//! (and only those), `/docs` and `/redoc` load nothing from another host, Swagger UI
//! calls the API with a password login or a pasted API key, and `authctl openapi`
//! prints the very document the server serves.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::browser::{DevTools, HEADLESS, find_browser};
use support::{Backend, TestApp, assert_problem, spawn_app};

/// SPEC §4: every route of the REST API. Each must be documented.
const SPEC_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/token"),
    ("GET", "/api/v1/auth/me"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/revoke"),
    ("GET", "/health/liveness"),
    ("GET", "/health/readiness"),
    ("GET", "/health/startup"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/redoc"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("POST", "/api/v1/auth/verify/request"),
    ("POST", "/api/v1/auth/verify"),
    ("POST", "/api/v1/auth/recover"),
    ("POST", "/api/v1/auth/reset"),
    // SPEC §14
    ("POST", "/api/v1/auth/mfa/totp"),
    ("DELETE", "/api/v1/auth/mfa/totp"),
    ("POST", "/api/v1/auth/mfa/totp/confirm"),
    ("POST", "/api/v1/auth/mfa/recovery-codes"),
    // SPEC §15
    ("POST", "/api/v1/auth/introspect"),
    // SPEC §18
    ("GET", "/.well-known/openid-configuration"),
    ("POST", "/oauth/token"),
    ("GET", "/oauth/userinfo"),
    ("POST", "/oauth/userinfo"),
    ("GET", "/api/v1/admin/users"),
    ("POST", "/api/v1/admin/users"),
    ("GET", "/api/v1/admin/users/{id}"),
    ("PATCH", "/api/v1/admin/users/{id}"),
    ("DELETE", "/api/v1/admin/users/{id}"),
    ("GET", "/api/v1/admin/users/{id}/sessions"),
    ("DELETE", "/api/v1/admin/users/{id}/sessions"),
    ("POST", "/api/v1/admin/users/{id}/unlock"),
    ("POST", "/api/v1/admin/users/{id}/reset-link"),
    ("GET", "/api/v1/admin/audit"),
];

/// The operations that take a body, and the refusals each must document.
const BODY_ERRORS: &[&str] = &["400", "411", "413", "415", "422", "503"];
const RATE_LIMITED: &[&str] = &[
    "/oauth/token",
    "/api/v1/auth/register",
    "/api/v1/auth/token",
    "/api/v1/auth/refresh",
    "/api/v1/auth/password",
    "/api/v1/auth/verify/request",
    "/api/v1/auth/recover",
    "/api/v1/auth/mfa/totp",
    "/api/v1/auth/mfa/totp/confirm",
    "/api/v1/auth/mfa/recovery-codes",
];
const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn document(app: &TestApp) -> Value {
    let r = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/json",
        "the document is JSON"
    );
    r.json().await.expect("the document parses as JSON")
}

/// `(METHOD, path)` of every documented operation.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if item.get(*method).is_some() {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

/// Follows a local `$ref` (`#/components/...`), or returns the value itself.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("{r} resolves"));
            resolve(doc, target)
        }
        None => v,
    }
}

fn all_refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "$ref" {
                    out.push(v.as_str().expect("$ref is a string"));
                } else {
                    all_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| all_refs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_every_route_the_server_answers() {
    // The OpenID Connect provider on, so that its documented endpoints answer too.
    let addr = support::served::free_addr();
    let app = spawn_app(&Backend::Sqlite, |s| {
        s.bind = addr;
        s.auth.oidc_enabled = true;
        s.auth.issuer = format!("http://{addr}");
    })
    .await;
    let doc = document(&app).await;

    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3."), "OpenAPI 3.x, got {version}");
    assert_eq!(doc["info"]["title"], "authctl");
    let mut refs = Vec::new();
    all_refs(&doc, &mut refs);
    for r in refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{r} is local"));
        assert!(doc.pointer(pointer).is_some(), "{r} resolves");
    }

    // Every route of the contract is documented.
    let ops = operations(&doc);
    for (method, path) in SPEC_ROUTES {
        assert!(
            ops.contains(&(method.to_string(), path.to_string())),
            "{method} {path} has no documented operation"
        );
    }

    // Every documented operation exists: the server answers it (no body: 2xx, or the
    // operation's own refusal), never 404 or 405.
    for (method, path) in &ops {
        let r = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} is documented but the server answers {status}"
        );
        let documented = doc["paths"][path][method.to_lowercase()]["responses"]
            .as_object()
            .unwrap();
        assert!(
            documented.contains_key(&status.to_string()),
            "{method} {path} answered {status}, which it does not document"
        );
    }

    // On every documented path, the methods the server accepts (its 405's `Allow`) are
    // exactly the documented ones: an undocumented operation on a known path fails here.
    let mut by_path: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (method, path) in &ops {
        by_path.entry(path).or_default().insert(method);
    }
    for (path, documented) in by_path {
        // A method the path does not serve (PATCH is one the admin API serves).
        let probe = if documented.contains("PATCH") {
            "PUT"
        } else {
            "PATCH"
        };
        let r = app
            .client
            .request(probe.parse().unwrap(), app.url(path))
            .send()
            .await
            .unwrap();
        let allow: BTreeSet<String> = r
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("{probe} {path}: 405 with Allow"))
            .to_str()
            .unwrap()
            .split(',')
            .map(|m| m.trim().to_owned())
            .collect();
        let documented: BTreeSet<String> = documented.iter().map(|m| m.to_string()).collect();
        assert_eq!(
            allow, documented,
            "{path}: served methods vs documented ones"
        );
        assert_problem(r, 405).await;
    }

    // Errors: problem+json everywhere, with the Problem schema.
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail"] {
        assert!(
            problem["required"]
                .as_array()
                .unwrap()
                .contains(&Value::from(field)),
            "Problem requires {field}"
        );
    }
    assert_eq!(
        problem["properties"]["errors"]["items"]["$ref"],
        "#/components/schemas/FieldError"
    );
    for (method, path) in &ops {
        let op = &doc["paths"][path][method.to_lowercase()];
        for (status, response) in op["responses"].as_object().unwrap() {
            let response = resolve(&doc, response);
            assert!(
                response["headers"].get("X-Request-Id").is_some(),
                "{method} {path} {status}: X-Request-Id documented"
            );
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    response["content"]["application/problem+json"]["schema"]["$ref"],
                    "#/components/schemas/Problem",
                    "{method} {path} {status}: a problem+json body"
                );
            }
            if status == "401" {
                assert!(
                    response["headers"].get("WWW-Authenticate").is_some(),
                    "{method} {path} 401: WWW-Authenticate documented"
                );
            }
        }
        if let Some(body) = op.get("requestBody") {
            for status in BODY_ERRORS {
                assert!(
                    op["responses"].get(*status).is_some(),
                    "{method} {path} takes a body: documents {status}"
                );
            }
            // Logout's body (its scope) is the one optional body.
            let optional = path.as_str() == "/api/v1/auth/logout";
            assert_eq!(
                body["required"] == true,
                !optional,
                "{method} {path}: body required unless optional"
            );
        }
        let limited = RATE_LIMITED.contains(&path.as_str());
        let too_many = op["responses"].get("429");
        assert_eq!(
            too_many.is_some(),
            limited,
            "{method} {path}: 429 documented exactly where rate limited"
        );
        if let Some(too_many) = too_many {
            assert!(
                resolve(&doc, too_many)["headers"]
                    .get("Retry-After")
                    .is_some(),
                "{path}: 429 documents Retry-After"
            );
        }
    }

    // The bodies and the security scheme.
    let paths = &doc["paths"];
    let schema_of = |path: &str, ct: &str| {
        resolve(
            &doc,
            &paths[path]["post"]["requestBody"]["content"][ct]["schema"],
        )
        .clone()
    };
    let register = schema_of("/api/v1/auth/register", "application/json");
    assert_eq!(
        register["required"],
        serde_json::json!(["email", "username", "password"])
    );
    // The token endpoint's form holds every grant's fields, each optional by grant.
    let token = schema_of("/api/v1/auth/token", "application/x-www-form-urlencoded");
    let mut fields: Vec<&str> = token["properties"]
        .as_object()
        .expect("token form properties")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "code",
            "grant_type",
            "mfa_token",
            "password",
            "refresh_token",
            "username"
        ]
    );
    let grants = &token["properties"]["grant_type"];
    let grants = resolve(&doc, grants);
    assert!(
        grants["enum"]
            .as_array()
            .is_some_and(|e| e.contains(&Value::from("urn:authctl:grant-type:mfa"))),
        "the MFA grant is documented: {grants}"
    );
    for path in ["/api/v1/auth/refresh", "/api/v1/auth/revoke"] {
        assert_eq!(
            schema_of(path, "application/json")["required"],
            serde_json::json!(["refresh_token"])
        );
    }
    assert_eq!(
        schema_of("/api/v1/auth/revoke", "application/x-www-form-urlencoded")["required"],
        serde_json::json!(["token"])
    );
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(bearer["bearerFormat"], "JWT");
    // Swagger UI's Authorize: the OAuth2 password flow at the token endpoint, which
    // the protected operation accepts as well as a pasted Bearer token.
    let oauth2 = &doc["components"]["securitySchemes"]["oauth2"];
    assert_eq!(oauth2["type"], "oauth2");
    assert_eq!(
        oauth2["flows"]["password"]["tokenUrl"],
        "/api/v1/auth/token"
    );
    assert_eq!(
        paths["/api/v1/auth/me"]["get"]["security"],
        serde_json::json!([{"bearer": []}, {"oauth2": []}])
    );
    // The admin API and introspection: their own scheme, a pasted `ak_…` key, never
    // a user's token or the password flow.
    let api_key = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!(api_key["type"], "http");
    assert_eq!(api_key["scheme"], "bearer");
    assert_eq!(api_key["description"], "API key ak_…");
    for (method, path) in &ops {
        if path.starts_with("/api/v1/admin") || path == "/api/v1/auth/introspect" {
            assert_eq!(
                paths[path][method.to_lowercase()]["security"],
                serde_json::json!([{"api_key": []}]),
                "{method} {path}: the API key scheme only"
            );
        }
    }
    assert_eq!(
        resolve(
            &doc,
            &paths["/api/v1/auth/token"]["post"]["responses"]["200"]["content"]["application/json"]
                ["schema"]
        )["required"],
        serde_json::json!(["access_token", "refresh_token", "token_type", "expires_in"])
    );
    app.shutdown().await;
}

/// `src="…"` and `href="…"` values of an HTML page.
fn referenced_urls(html: &str) -> Vec<String> {
    let mut urls = Vec::new();
    for attr in ["src=", "href="] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let quote = rest.chars().next().expect("attribute value");
            assert!(quote == '"' || quote == '\'', "quoted attribute in {html}");
            let end = rest[1..].find(quote).expect("closing quote") + 1;
            urls.push(rest[1..end].to_owned());
            rest = &rest[end..];
        }
    }
    urls
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_and_redoc_load_only_same_origin_assets() {
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    let client = no_redirects();

    for (page, needs) in [
        ("/docs", "/docs/swagger-initializer.js"),
        ("/docs/", "/docs/swagger-initializer.js"),
        ("/redoc", "/redoc/redoc.standalone.js"),
        ("/redoc/", "/redoc/redoc.standalone.js"),
    ] {
        let r = client.get(app.url(page)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{page}: served directly, no redirect");
        let h = r.headers().clone();
        assert_eq!(h["content-type"], "text/html; charset=utf-8", "{page}");
        let csp = h["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.contains("default-src 'none'"), "{page}: {csp}");
        assert!(
            !csp.contains("http") && !csp.contains('*'),
            "{page}: CSP allows no other host: {csp}"
        );
        for directive in [
            "script-src 'self'",
            "connect-src 'self'",
            "img-src 'self' data:",
        ] {
            assert!(csp.contains(directive), "{page}: {directive} in {csp}");
        }
        let html = r.text().await.unwrap();
        assert!(
            !html.contains("://"),
            "{page} names no absolute URL:\n{html}"
        );
        assert!(!html.contains("<script>"), "{page}: no inline scripts");
        let urls = referenced_urls(&html);
        assert!(urls.iter().any(|u| u == needs), "{page} loads {needs}");
        for url in urls {
            assert!(
                url.starts_with('/') && !url.starts_with("//"),
                "{page}: {url} is not a same-origin path"
            );
            let asset = client.get(app.url(&url)).send().await.unwrap();
            assert_eq!(asset.status(), 200, "{page} → {url}");
            let ct = asset.headers()["content-type"].to_str().unwrap().to_owned();
            let expected = match url.rsplit('.').next() {
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("png") => "image/png",
                other => panic!("{url}: unexpected asset type {other:?}"),
            };
            assert!(ct.starts_with(expected), "{url}: {ct}");
            assert!(
                !asset.bytes().await.unwrap().is_empty(),
                "{url} is not empty"
            );
        }
    }

    // ReDoc reads the document from this origin.
    let html = client.get(app.url("/redoc")).send().await.unwrap();
    assert!(
        html.text()
            .await
            .unwrap()
            .contains(r#"spec-url="/openapi.json""#)
    );
    // Swagger UI too, with the online validator off.
    let init = client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains(r#""url": "/openapi.json""#), "{init}");
    assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
    assert!(!init.contains("://"), "{init}");

    // ReDoc's licences travel with it.
    for (path, needle) in [
        ("/redoc/LICENSE", "MIT License"),
        ("/redoc/redoc.standalone.js.LICENSE.txt", "ReDoc"),
    ] {
        let r = client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        assert!(r.text().await.unwrap().contains(needle), "{path}");
    }

    // Unknown files are problem 404s, wrong methods 405 with Allow.
    for path in ["/docs/nope.js", "/redoc/nope.js", "/docsx", "/openapi.yaml"] {
        assert_problem(client.get(app.url(path)).send().await.unwrap(), 404).await;
    }
    for path in ["/openapi.json", "/docs", "/docs/swagger-ui.css", "/redoc"] {
        let r = client.post(app.url(path)).send().await.unwrap();
        assert_eq!(r.headers()["allow"], "GET", "POST {path}");
        assert_problem(r, 405).await;
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authctl_openapi_prints_the_served_document() {
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    let served = document(&app).await;
    app.shutdown().await;

    // No server, no database, no usable configuration: still the document.
    let dir = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::new(support::authctl_bin())
        .current_dir(dir.path())
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/nothing")
        .env("SECRET_KEY", "short")
        .arg("openapi")
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(
        printed, served,
        "`authctl openapi` prints the served document"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("\n  \"openapi\""),
        "pretty-printed"
    );
}

/// Sends raw HTTP/1.1 (no client adds or fixes framing headers); returns the status.
async fn raw_status(app: &TestApp, request: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    let status_line = response.lines().next().unwrap_or_default().to_owned();
    assert!(
        response.contains("content-type: application/problem+json"),
        "{response}"
    );
    status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {status_line}"))
}

/// Found by schemathesis: a POST with neither `Content-Length` nor `Transfer-Encoding`
/// has an empty body (RFC 9112 §6.3) and is answered as one, not with 411; only a body
/// of unknown length (chunked) is 411, as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_framing_is_an_empty_body_and_chunked_is_411() {
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    let head = |path: &str, ct: &str, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    let form = "application/x-www-form-urlencoded";
    let json = "application/json";
    // No body: the form lacks its fields (422), the JSON is not JSON (400).
    assert_eq!(
        raw_status(&app, &head("/api/v1/auth/token", form, "")).await,
        422
    );
    assert_eq!(
        raw_status(&app, &head("/api/v1/auth/register", json, "")).await,
        400
    );
    assert_eq!(
        raw_status(&app, &head("/api/v1/auth/refresh", json, "")).await,
        400
    );
    let chunked = "Transfer-Encoding: chunked\r\n";
    for (path, ct) in [("/api/v1/auth/token", form), ("/api/v1/auth/revoke", json)] {
        let request = head(path, ct, chunked) + "2\r\n{}\r\n0\r\n\r\n";
        assert_eq!(raw_status(&app, &request).await, 411, "{path}");
    }
    app.shutdown().await;
}

// ----- a real browser, when one is installed -----------------------------------------

/// Opens `url` in headless Chromium with a network log; returns (DOM, every URL the
/// browser requested or resolved).
fn browse(browser: &Path, url: &str, dir: &Path) -> (String, Vec<String>) {
    let netlog = dir.join("netlog.json");
    let dom_file = dir.join("dom.html");
    let mut child = std::process::Command::new(browser)
        .args(HEADLESS)
        .args(["--virtual-time-budget=15000", "--dump-dom"])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg(url)
        // A file, not a pipe: a pipe nobody reads while we wait would fill and stall it.
        .stdout(std::fs::File::create(&dom_file).expect("DOM file"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("browser starts");
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().expect("browser state").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the browser did not finish {url} within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dom = std::fs::read_to_string(&dom_file).expect("DOM");
    let log = std::fs::read_to_string(&netlog).expect("network log");
    let log: Value = serde_json::from_str(&log).expect("network log is JSON");
    let mut urls = Vec::new();
    collect_urls(&log["events"], &mut urls);
    (dom, urls)
}

fn collect_urls(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("url" | "host" | "origin", Value::String(s)) => out.push(s.clone()),
                    _ => collect_urls(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_urls(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_opening_docs_or_redoc_contacts_no_other_host() {
    let Some(browser) = find_browser() else {
        support::skip_or_fail(
            "no chromium on PATH (Debian: apt-get install chromium-headless-shell); \
             the same-origin checks in docs_and_redoc_load_only_same_origin_assets still ran",
        );
        return;
    };
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    for (page, rendered) in [
        ("/docs", r#"data-path="/api/v1/auth/register""#),
        ("/redoc", "Register a user"),
    ] {
        let url = app.url(page);
        let browser = browser.clone();
        let (dom, urls) = tokio::task::spawn_blocking(move || {
            let dir = tempfile::tempdir().unwrap();
            browse(&browser, &url, dir.path())
        })
        .await
        .unwrap();
        assert!(
            dom.contains(rendered),
            "{page} rendered the document:\n{dom}"
        );
        assert!(
            urls.iter().any(|u| u.contains("/openapi.json")),
            "{page} loaded /openapi.json"
        );
        let origin = format!("http://127.0.0.1:{}", app.addr.port());
        for u in &urls {
            let local = u == &origin
                || u.starts_with(&format!("{origin}/"))
                || u == "127.0.0.1"
                || ["data:", "blob:", "about:", "chrome:", "chrome-"]
                    .iter()
                    .any(|scheme| u.starts_with(scheme));
            assert!(local, "{page}: the browser contacted {u}");
        }
    }
    app.shutdown().await;
}

/// What a person does in Swagger UI, as a script run in the page: Authorize with a
/// username and a password (the OAuth2 password flow), close the dialog, then "Try it
/// out" → "Execute" on `/me`. Resolves to the status Swagger UI shows and the request
/// it sent (its curl line).
const AUTHORIZE_THEN_TRY_ME: &str = r##"
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const find = async (what, pick) => {
    for (let i = 0; i < 300; i++) {
      const found = pick();
      if (found) return found;
      await sleep(50);
    }
    throw new Error("not found: " + what);
  };
  const $ = (sel, root) => (root || document).querySelector(sel);
  // React inputs: set the value through the native setter, then say so.
  const type = (input, value) => {
    Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set.call(input, value);
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.dispatchEvent(new Event("change", { bubbles: true }));
  };
  const button = (root, text) => [...root.querySelectorAll("button")]
    .find(b => b.textContent.trim() === text);

  (await find("Authorize", () => $("button.btn.authorize"))).click();
  const user = await find("username", () => $("#oauth_username"));
  const flow = user.closest(".auth-container") || document;
  type(user, "__USER__");
  type(await find("password", () => $("#oauth_password", flow)), "__PASSWORD__");
  (await find("the flow's Authorize", () => button(flow, "Authorize"))).click();
  await find("Logout (logged in)", () => button(flow, "Logout"));
  (await find("Close", () => button(document, "Close"))).click();

  const me = await find("/me", () => $("#operations-auth-me"));
  ($(".opblock-summary-control", me) || $(".opblock-summary", me)).click();
  (await find("Try it out", () => $(".try-out__btn", me))).click();
  (await find("Execute", () => $(".execute", me))).click();
  const status = await find("a response", () => {
    // The live response's row (the table's header row says "Code").
    const cells = [...me.querySelectorAll(".live-responses-table .response-col_status")];
    const code = cells.map(c => c.textContent.trim()).find(t => /^[0-9]{3}/.test(t));
    return code && code.slice(0, 3);
  });
  const curl = ($(".curl", me) || {}).textContent || "";
  return JSON.stringify({ status, curl });
})()
"##;

/// Runs `script` (a promise) in `url` in headless Chromium over the DevTools protocol;
/// returns what it resolved to.
async fn run_in_page(browser: &Path, url: &str, script: &str) -> String {
    let mut page = DevTools::launch(browser).await;
    page.call("Page.navigate", serde_json::json!({ "url": url }))
        .await;
    let answer = page.eval(script).await;
    answer
        .as_str()
        .unwrap_or_else(|| panic!("the script resolved to a string: {answer}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_authorize_logs_in_with_a_password_and_try_it_out_on_me_works() {
    let Some(browser) = find_browser() else {
        support::skip_or_fail(
            "no chromium on PATH (Debian: apt-get install chromium-headless-shell); \
             the document's password flow is still checked by \
             the_document_describes_every_route_the_server_answers",
        );
        return;
    };
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    assert_eq!(
        app.register("uma@example.com", "uma", support::PASSWORD)
            .await
            .status(),
        201
    );
    let script = AUTHORIZE_THEN_TRY_ME
        .replace("__USER__", "uma")
        .replace("__PASSWORD__", support::PASSWORD);
    let outcome = run_in_page(&browser, &app.url("/docs/"), &script).await;
    let outcome: Value = serde_json::from_str(&outcome).unwrap();
    assert_eq!(outcome["status"], "200", "{outcome}");
    assert!(
        outcome["curl"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer ey"),
        "Swagger UI sent the access token it got: {outcome}"
    );
    app.shutdown().await;
}

/// What a service's operator does in Swagger UI, as a script run in the page: Authorize
/// by pasting an API key into the field of the scheme `__SCHEME__` (leaving the other
/// schemes alone), close the dialog, then "Try it out" → "Execute" on the admin API's
/// user list. Resolves to the status Swagger UI shows, the request it sent (its curl
/// line) and the response body it shows.
const PASTE_KEY_THEN_LIST_USERS: &str = r##"
(async () => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const find = async (what, pick) => {
    for (let i = 0; i < 300; i++) {
      const found = pick();
      if (found) return found;
      await sleep(50);
    }
    throw new Error("not found: " + what);
  };
  const $ = (sel, root) => (root || document).querySelector(sel);
  // React inputs: set the value through the native setter, then say so.
  const type = (input, value) => {
    Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value").set.call(input, value);
    input.dispatchEvent(new Event("input", { bubbles: true }));
    input.dispatchEvent(new Event("change", { bubbles: true }));
  };
  const button = (root, text) => [...root.querySelectorAll("button")]
    .find(b => b.textContent.trim() === text);

  (await find("Authorize", () => $("button.btn.authorize"))).click();
  // Each scheme has its own form, headed by the scheme's name.
  const scheme = await find("the __SCHEME__ scheme", () =>
    [...document.querySelectorAll(".auth-container")].find(c =>
      [...c.querySelectorAll("h4 code")].some(h => h.textContent.trim() === "__SCHEME__")));
  type(await find("the key's field", () => $("input", scheme)), "__KEY__");
  (await find("the scheme's Authorize", () => button(scheme, "Authorize"))).click();
  await find("Logout (authorized)", () => button(scheme, "Logout"));
  (await find("Close", () => button(document, "Close"))).click();

  const op = await find("admin_list_users", () => $("#operations-admin-admin_list_users"));
  ($(".opblock-summary-control", op) || $(".opblock-summary", op)).click();
  (await find("Try it out", () => $(".try-out__btn", op))).click();
  (await find("Execute", () => $(".execute", op))).click();
  const status = await find("a response", () => {
    // The live response's row (the table's header row says "Code").
    const cells = [...op.querySelectorAll(".live-responses-table .response-col_status")];
    const code = cells.map(c => c.textContent.trim()).find(t => /^[0-9]{3}/.test(t));
    return code && code.slice(0, 3);
  });
  const curl = ($(".curl", op) || {}).textContent || "";
  // The response body as shown: the live response's block that is JSON.
  const body = [...op.querySelectorAll(".live-responses-table .response-col_description pre")]
    .map(p => { try { return JSON.parse(p.textContent); } catch (e) { return null; } })
    .find(v => v && typeof v === "object") || null;
  return JSON.stringify({ status, curl, body });
})()
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_calls_the_admin_api_with_a_pasted_api_key() {
    let Some(browser) = find_browser() else {
        support::skip_or_fail(
            "no chromium on PATH (Debian: apt-get install chromium-headless-shell); \
             the document's api_key scheme is still checked by \
             the_document_describes_every_route_the_server_answers",
        );
        return;
    };
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    assert_eq!(
        app.register("vera@example.com", "vera", support::PASSWORD)
            .await
            .status(),
        201
    );
    // The scheme Swagger UI offers for the admin API: the one its operation requires,
    // as the served document names it.
    let doc = document(&app).await;
    let security = doc["paths"]["/api/v1/admin/users"]["get"]["security"]
        .as_array()
        .expect("the admin user list names its security");
    assert_eq!(security.len(), 1, "one scheme, the API key's: {security:?}");
    let scheme = security[0]
        .as_object()
        .and_then(|s| s.keys().next())
        .expect("a scheme name")
        .clone();
    let defined = &doc["components"]["securitySchemes"][&scheme];
    assert_eq!(defined["type"], "http", "{scheme}: {defined}");
    assert_eq!(defined["scheme"], "bearer", "{scheme}: {defined}");

    let out = support::cli::authctl(&app.db.url)
        .args([
            "apikey",
            "create",
            "--name",
            "swagger",
            "--scope",
            "users:read",
            "--output",
            "json",
        ])
        .output()
        .expect("apikey create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = support::cli::stdout_json(&out)["key"]
        .as_str()
        .expect("the key")
        .to_owned();
    assert!(key.starts_with("ak_"), "{key}");

    let script = PASTE_KEY_THEN_LIST_USERS
        .replace("__SCHEME__", &scheme)
        .replace("__KEY__", &key);
    let outcome = run_in_page(&browser, &app.url("/docs/"), &script).await;
    let outcome: Value = serde_json::from_str(&outcome).unwrap();
    assert_eq!(outcome["status"], "200", "{outcome}");
    assert!(
        outcome["curl"]
            .as_str()
            .unwrap()
            .contains(&format!("Authorization: Bearer {key}")),
        "Swagger UI sent the pasted key: {outcome}"
    );
    let users = outcome["body"]["users"]
        .as_array()
        .unwrap_or_else(|| panic!("Swagger UI showed a page of users: {outcome}"));
    assert!(
        users
            .iter()
            .any(|u| u["username"] == "vera" && u["email"] == "vera@example.com"),
        "the registered user is listed: {outcome}"
    );
    app.shutdown().await;
}
