//! Metrics (SPEC §11): `GET /metrics` on a listener of its own, off by default. Known
//! requests are driven over real sockets and every family is read back from the
//! exposition as exact deltas, on both backends.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::prelude::*;

crate::on_both_backends!(
    known_requests_move_every_counter_by_exactly_what_they_did,
    the_pool_gauge_reads_the_database_pool_at_scrape_time,
);

/// One scrape: series (name and labels, as written) to value.
#[derive(Debug)]
struct Scrape(BTreeMap<String, f64>);

impl Scrape {
    /// The value of `series`, or 0 for a series not created yet (a label set seen for
    /// the first time since start).
    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// The value of `series`, which must be exposed.
    fn exposed(&self, series: &str) -> f64 {
        match self.0.get(series) {
            Some(v) => *v,
            None => panic!("{series} is not exposed: {:#?}", self.0.keys()),
        }
    }
}

async fn scrape(client: &reqwest::Client, addr: SocketAddr) -> Scrape {
    let resp = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("the metrics listener answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = resp.text().await.expect("exposition text");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("`series value`");
            (series.to_owned(), value.parse().expect("a number"))
        })
        .collect();
    Scrape(samples)
}

fn metrics_addr(app: &TestApp) -> SocketAddr {
    app.running()
        .metrics_addr
        .expect("metrics.bind is set, so the listener is up")
}

/// A server with metrics on a port of their own, and registration limited to 2 a
/// minute so that the third is a 429.
async fn app_with_metrics(backend: &Backend) -> TestApp {
    spawn_app(backend, |s| {
        s.metrics_bind = Some("127.0.0.1:0".parse().expect("addr"));
        s.rate_limit.enabled = true;
        s.rate_limit.register_per_minute = std::num::NonZeroU32::new(2).unwrap();
    })
    .await
}

fn requests(route: &str, method: &str, status: u16) -> String {
    format!(
        "authctl_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}"
    )
}

async fn known_requests_move_every_counter_by_exactly_what_they_did(backend: Backend) {
    let app = app_with_metrics(&backend).await;
    let addr = metrics_addr(&app);
    assert_ne!(addr.port(), app.addr.port());
    let before = scrape(&app.client, addr).await;

    // 2 registrations, then a 429.
    for name in ["mira", "otto"] {
        let r = app
            .register(&format!("{name}@example.com"), name, PASSWORD)
            .await;
        assert_eq!(r.status(), 201);
    }
    assert_problem(app.register("x@example.com", "xavier", PASSWORD).await, 429).await;
    // 1 failed and 1 good login.
    assert_problem(app.login("mira", "not-the-password").await, 401).await;
    let tokens = json(app.login("mira", PASSWORD).await).await;
    let access = tokens["access_token"].as_str().expect("access").to_owned();
    let r0 = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_eq!(app.me(&access).await.status(), 200);
    // A rotation, a reuse of the rotated token, and a token nobody issued.
    assert_eq!(app.refresh(&r0).await.status(), 200);
    assert_problem(app.refresh(&r0).await, 401).await;
    assert_problem(
        app.refresh("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            .await,
        401,
    )
    .await;
    // Nothing of the metrics on the API's port, and raw paths never become labels.
    for path in ["/metrics", "/api/v1/auth/probe-7f3a"] {
        let r = app.client.get(app.url(path)).send().await.expect("request");
        assert_eq!(r.status(), 404, "GET {path} on the API port");
    }

    let after = scrape(&app.client, addr).await;
    let delta = |series: &str| after.get(series) - before.get(series);
    let register = "/api/v1/auth/register";
    let token = "/api/v1/auth/token";
    let refresh = "/api/v1/auth/refresh";
    for (series, expected) in [
        ("authctl_registrations_total".to_owned(), 2.0),
        ("authctl_logins_total{result=\"success\"}".to_owned(), 1.0),
        ("authctl_logins_total{result=\"failure\"}".to_owned(), 1.0),
        ("authctl_logins_total{result=\"locked\"}".to_owned(), 0.0),
        ("authctl_refresh_total{result=\"rotated\"}".to_owned(), 1.0),
        (
            "authctl_refresh_total{result=\"reuse_detected\"}".to_owned(),
            1.0,
        ),
        ("authctl_refresh_total{result=\"invalid\"}".to_owned(), 1.0),
        ("authctl_refresh_total{result=\"grace\"}".to_owned(), 0.0),
        (
            "authctl_rate_limited_total{endpoint=\"register\"}".to_owned(),
            1.0,
        ),
        (
            "authctl_rate_limited_total{endpoint=\"token\"}".to_owned(),
            0.0,
        ),
        (
            "authctl_rate_limited_total{endpoint=\"refresh\"}".to_owned(),
            0.0,
        ),
        (requests(register, "POST", 201), 2.0),
        (requests(register, "POST", 429), 1.0),
        (requests(token, "POST", 401), 1.0),
        (requests(token, "POST", 200), 1.0),
        (requests("/api/v1/auth/me", "GET", 200), 1.0),
        (requests(refresh, "POST", 200), 1.0),
        (requests(refresh, "POST", 401), 2.0),
        (requests("unmatched", "GET", 404), 2.0),
        (
            format!("authctl_http_request_duration_seconds_count{{route=\"{register}\"}}"),
            3.0,
        ),
        (
            format!("authctl_http_request_duration_seconds_count{{route=\"{refresh}\"}}"),
            3.0,
        ),
        // Two hashes at registration and two verifies at login; the 429 hashed nothing.
        (
            "authctl_password_hash_duration_seconds_count".to_owned(),
            4.0,
        ),
        ("authctl_password_hash_rejected_total".to_owned(), 0.0),
    ] {
        assert_eq!(delta(&series), expected, "{series}");
    }
    assert_eq!(after.exposed("authctl_password_hash_waiting"), 0.0);
    assert_eq!(after.exposed("authctl_log_lines_dropped_total"), 0.0);
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        after.exposed(&format!("authctl_build_info{{version=\"{version}\"}}")),
        1.0
    );
    assert!(
        after.0.keys().all(|series| !series.contains("probe-7f3a")),
        "a raw path became a label"
    );

    // The listener stops with the server.
    let client = app.client.clone();
    app.shutdown().await;
    let after_stop = client.get(format!("http://{addr}/metrics")).send().await;
    assert!(
        after_stop.is_err(),
        "the metrics listener still answers: {after_stop:?}"
    );
}

async fn the_pool_gauge_reads_the_database_pool_at_scrape_time(backend: Backend) {
    let app = spawn_app(&backend, |s| {
        s.metrics_bind = Some("127.0.0.1:0".parse().expect("addr"));
        s.pool_max = 4;
    })
    .await;
    let addr = metrics_addr(&app);
    let idle = "authctl_db_pool_connections{state=\"idle\"}";
    let used = "authctl_db_pool_connections{state=\"used\"}";
    let (_access, refresh) = app.user_with_tokens("pooled").await;
    // Startup and the requests above ran queries, so connections are open; none is
    // checked out while nothing runs.
    let quiet = wait_for_scrape(&app, addr, |s| s.exposed(used) == 0.0).await;
    assert!((1.0..=4.0).contains(&quiet.exposed(idle)), "{quiet:?}");

    // Another process holds the token (SQLite: the write lock; PostgreSQL: the row),
    // so the server's rotation waits inside the database on a checked-out connection.
    let blocker = authctl::store::connect(&app.settings).expect("a second store");
    let mut tx = blocker.begin_rotation().await.expect("a write transaction");
    let digest = authctl::tokens::RefreshToken::parse(&refresh)
        .expect("a refresh token")
        .digest();
    assert!(tx.find_refresh(&digest).await.expect("locked").is_some());
    let rotation = {
        let client = app.client.clone();
        let url = app.url("/api/v1/auth/refresh");
        tokio::spawn(async move {
            client
                .post(url)
                .json(&serde_json::json!({ "refresh_token": refresh }))
                .send()
                .await
        })
    };
    let busy = wait_for_scrape(&app, addr, |s| s.exposed(used) >= 1.0).await;
    assert!(
        busy.exposed(idle) + busy.exposed(used) <= 4.0,
        "never more than pool_max open: {busy:?}"
    );
    drop(tx);
    let resp = rotation.await.expect("task").expect("refresh");
    assert_eq!(resp.status(), 200);
    wait_for_scrape(&app, addr, |s| s.exposed(used) == 0.0).await;
    blocker.close().await;
    app.shutdown().await;
}

/// Scrapes until `ready` holds (every 20 ms, for at most 4 s, inside SQLite's 5 s
/// busy timeout); returns that scrape.
async fn wait_for_scrape(
    app: &TestApp,
    addr: SocketAddr,
    ready: impl Fn(&Scrape) -> bool,
) -> Scrape {
    let mut last = None;
    for _ in 0..200 {
        let now = scrape(&app.client, addr).await;
        if ready(&now) {
            return now;
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the pool never reached the expected state: {last:?}");
}

#[tokio::test]
async fn metrics_are_off_by_default_and_never_on_the_api_port() {
    let app = spawn_app(&Backend::Sqlite, |_| {}).await;
    assert!(app.running().metrics_addr.is_none());
    assert!(app.running().state.metrics().is_none());
    let r = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    app.shutdown().await;
}

#[tokio::test]
async fn a_metrics_address_that_cannot_be_bound_stops_startup_with_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let taken_addr = taken.local_addr().expect("its address");
    let dir = tempfile::tempdir().expect("temp dir");
    let api_port = authctl_testkit::free_port().expect("a free port");
    let out = std::process::Command::new(crate::support::authctl_bin())
        .current_dir(dir.path())
        .env_clear()
        .env("AUTHCTL_BIND", format!("127.0.0.1:{api_port}"))
        .env("AUTHCTL_METRICS_BIND", taken_addr.to_string())
        .arg("serve")
        .output()
        .expect("authctl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let error: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error.len(), 1, "{stderr}");
    assert!(
        error[0].contains("metrics.bind") && error[0].contains(&taken_addr.to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    drop(taken);

    // The API's own address is refused too, as a configuration error (exit 7).
    let same = format!("127.0.0.1:{api_port}");
    let out = std::process::Command::new(crate::support::authctl_bin())
        .current_dir(dir.path())
        .env_clear()
        .env("AUTHCTL_BIND", &same)
        .env("AUTHCTL_METRICS_BIND", &same)
        .arg("serve")
        .output()
        .expect("authctl runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("metrics.bind"), "{stderr}");
}
