//! Headless Chromium for tests, driven over the DevTools protocol (a WebSocket on
//! 127.0.0.1): found on PATH, started quiet, reaching 127.0.0.1 only. Used by
//! tests/openapi.rs (Swagger UI) and tests/oidc (the login page).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The first Chromium on PATH.
pub fn find_browser() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for name in [
        "chromium-headless-shell",
        "chromium",
        "chromium-browser",
        "google-chrome",
    ] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// How every test runs Chromium: headless, quiet, and able to reach 127.0.0.1 only.
pub const HEADLESS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--metrics-recording-only",
    // Belt and braces: nothing but the test server could resolve anyway.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One Chromium with one page, and the DevTools connection to that page. The browser
/// and every process it started (zygote, renderer, GPU) are killed when this is
/// dropped: they run in a process group of their own, and the group is killed.
pub struct DevTools {
    child: tokio::process::Child,
    ws: Socket,
    next_id: u64,
    /// Every event the page sent while we waited for answers, oldest first.
    pub events: Vec<Value>,
    _dir: tempfile::TempDir,
}

impl Drop for DevTools {
    fn drop(&mut self) {
        // Killing the main process alone would leave its children to init.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl DevTools {
    pub async fn launch(browser: &Path) -> DevTools {
        authctl::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let child = tokio::process::Command::new(browser)
            .args(HEADLESS)
            .args([
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", dir.path().display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .process_group(0)
            .spawn()
            .expect("browser starts");
        // Chromium writes the port it chose to this file.
        let port_file = dir.path().join("DevToolsActivePort");
        let mut port = None;
        for _ in 0..300 {
            if let Ok(text) = std::fs::read_to_string(&port_file)
                && let Some(p) = text
                    .lines()
                    .next()
                    .and_then(|l| l.trim().parse::<u16>().ok())
            {
                port = Some(p);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let port = port.expect("the DevTools port within 30 s");
        let mut page = None;
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/json/list")).await
                && let Ok(targets) = r.json::<Value>().await
                && let Some(p) = targets
                    .as_array()
                    .and_then(|ts| ts.iter().find(|t| t["type"] == "page"))
            {
                page = Some(p.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let page = page.expect("a page target within 10 s");
        let (ws, _) =
            tokio_tungstenite::connect_async(page["webSocketDebuggerUrl"].as_str().unwrap())
                .await
                .expect("DevTools WebSocket");
        DevTools {
            child,
            ws,
            next_id: 0,
            events: Vec::new(),
            _dir: dir,
        }
    }

    /// Calls `method`; its `result` (a DevTools error is a panic).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .await
            .unwrap_or_else(|err| panic!("{method}: {err}"))
    }

    /// Calls `method`; its `result`, or the DevTools error (such as "not attached to
    /// an active page" while a navigation is under way).
    pub async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::text(msg.to_string())).await.unwrap();
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .expect("a DevTools answer within 60 s")
                .expect("the WebSocket stays open")
                .unwrap();
            if let Message::Text(text) = frame {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["id"] == id {
                    return match v.get("error") {
                        Some(err) => Err(err.clone()),
                        None => Ok(v["result"].clone()),
                    };
                }
                if v.get("method").is_some() {
                    self.events.push(v);
                }
            }
        }
    }

    /// Runs `script` in the page (awaiting a promise); its value.
    pub async fn eval(&mut self, script: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": script, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        r["result"]["value"].clone()
    }

    /// Opens `url`, and waits until the page at it has loaded.
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url })).await;
        let target = url.to_owned();
        self.wait_for("the page to load", |at, _| {
            at == target || at.starts_with(&target)
        })
        .await;
    }

    /// The URL of the page now shown (without JavaScript: the navigation history).
    pub async fn current_url(&mut self) -> String {
        let h = self.call("Page.getNavigationHistory", json!({})).await;
        let i = h["currentIndex"].as_u64().expect("currentIndex") as usize;
        h["entries"][i]["url"].as_str().expect("url").to_owned()
    }

    /// The page's HTML as the browser has it (the DOM, without JavaScript).
    pub async fn html(&mut self) -> String {
        let doc = self.call("DOM.getDocument", json!({"depth": 0})).await;
        let root = doc["root"]["nodeId"].clone();
        let html = self
            .call("DOM.getOuterHTML", json!({ "nodeId": root }))
            .await;
        html["outerHTML"].as_str().unwrap_or_default().to_owned()
    }

    /// Waits (at most 30 s) until the loaded page satisfies `done(url, html)`.
    pub async fn wait_for(&mut self, what: &str, done: impl Fn(&str, &str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let (mut url, mut html) = (String::new(), String::new());
        while Instant::now() < deadline {
            if let Some((u, h)) = self.loaded_page().await {
                (url, html) = (u, h);
                if done(&url, &html) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("waited 30 s for {what}; at {url}:\n{html}");
    }

    /// The URL and HTML of the page shown, once its document is the current entry's
    /// (`None` while a navigation is under way).
    async fn loaded_page(&mut self) -> Option<(String, String)> {
        let h = self
            .try_call("Page.getNavigationHistory", json!({}))
            .await
            .ok()?;
        let i = h["currentIndex"].as_u64()? as usize;
        let url = h["entries"][i]["url"].as_str()?.to_owned();
        let doc = self
            .try_call("DOM.getDocument", json!({"depth": 0}))
            .await
            .ok()?;
        if doc["root"]["documentURL"].as_str() != Some(url.as_str()) {
            return None;
        }
        let html = self
            .try_call(
                "DOM.getOuterHTML",
                json!({ "nodeId": doc["root"]["nodeId"] }),
            )
            .await
            .ok()?;
        let html = html["outerHTML"].as_str()?.to_owned();
        html.contains("</body>").then_some((url, html))
    }

    /// The node of the first element matching `selector`.
    pub async fn node(&mut self, selector: &str) -> Value {
        let doc = self.call("DOM.getDocument", json!({"depth": 0})).await;
        let found = self
            .call(
                "DOM.querySelector",
                json!({"nodeId": doc["root"]["nodeId"], "selector": selector}),
            )
            .await;
        let id = found["nodeId"].clone();
        assert!(id.as_i64().unwrap_or(0) > 0, "no element {selector}");
        id
    }

    /// Types `text` into the field `selector`, as a person would (focus, keyboard),
    /// over whatever the page prefilled (a field not yet typed into).
    pub async fn type_into(&mut self, selector: &str, text: &str) {
        let node = self.node(selector).await;
        self.call(
            "DOM.setAttributeValue",
            json!({"nodeId": node, "name": "value", "value": ""}),
        )
        .await;
        self.call("DOM.focus", json!({ "nodeId": node })).await;
        self.call("Input.insertText", json!({ "text": text })).await;
    }

    /// Clicks the middle of the element `selector` with the mouse.
    pub async fn click(&mut self, selector: &str) {
        let node = self.node(selector).await;
        self.call("DOM.scrollIntoViewIfNeeded", json!({ "nodeId": node }))
            .await;
        let model = self
            .call("DOM.getBoxModel", json!({ "nodeId": node }))
            .await;
        let q = model["model"]["content"].as_array().expect("a box").clone();
        let x = (q[0].as_f64().unwrap() + q[4].as_f64().unwrap()) / 2.0;
        let y = (q[1].as_f64().unwrap() + q[5].as_f64().unwrap()) / 2.0;
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// The events named `method` seen so far.
    pub fn events_named(&self, method: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| e["method"] == method)
            .collect()
    }
}
