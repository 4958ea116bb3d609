//! Unit tests of `metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::TcpListener;

use super::*;

/// The value of the sample written exactly as `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// Asserts that each series reads its expected value.
fn assert_samples(text: &str, expected: &[(String, f64)]) {
    for (series, value) in expected {
        assert_eq!(sample(text, series), Some(*value), "{series} in:\n{text}");
    }
}

fn render(metrics: &Metrics) -> String {
    metrics.render().expect("the registry encodes")
}

#[test]
fn every_known_endpoint_maps_to_its_template() {
    let cases = [
        ("/api/v1/auth/register", "/api/v1/auth/register"),
        ("/api/v1/auth/token", "/api/v1/auth/token"),
        ("/api/v1/auth/me", "/api/v1/auth/me"),
        ("/api/v1/auth/refresh", "/api/v1/auth/refresh"),
        ("/api/v1/auth/revoke", "/api/v1/auth/revoke"),
        ("/api/v1/auth/sessions", "/api/v1/auth/sessions"),
        (
            "/api/v1/auth/sessions/0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b",
            "/api/v1/auth/sessions/{id}",
        ),
        ("/api/v1/auth/logout", "/api/v1/auth/logout"),
        ("/api/v1/auth/password", "/api/v1/auth/password"),
        ("/api/v1/auth/verify/request", "/api/v1/auth/verify/request"),
        ("/api/v1/auth/verify", "/api/v1/auth/verify"),
        ("/api/v1/auth/recover", "/api/v1/auth/recover"),
        ("/api/v1/auth/reset", "/api/v1/auth/reset"),
        ("/api/v1/auth/mfa/totp", "/api/v1/auth/mfa/totp"),
        (
            "/api/v1/auth/mfa/totp/confirm",
            "/api/v1/auth/mfa/totp/confirm",
        ),
        (
            "/api/v1/auth/mfa/recovery-codes",
            "/api/v1/auth/mfa/recovery-codes",
        ),
        ("/api/v1/auth/introspect", "/api/v1/auth/introspect"),
        ("/api/v1/admin/users", "/api/v1/admin/users"),
        ("/api/v1/admin/users/42", "/api/v1/admin/users/{id}"),
        (
            "/api/v1/admin/users/42/sessions",
            "/api/v1/admin/users/{id}/sessions",
        ),
        (
            "/api/v1/admin/users/42/unlock",
            "/api/v1/admin/users/{id}/unlock",
        ),
        (
            "/api/v1/admin/users/42/reset-link",
            "/api/v1/admin/users/{id}/reset-link",
        ),
        ("/api/v1/admin/audit", "/api/v1/admin/audit"),
        ("/.well-known/jwks.json", "/.well-known/jwks.json"),
        (
            "/.well-known/oauth-authorization-server",
            "/.well-known/oauth-authorization-server",
        ),
        ("/openapi.json", "/openapi.json"),
        (
            "/.well-known/openid-configuration",
            "/.well-known/openid-configuration",
        ),
        ("/oauth/authorize", "/oauth/authorize"),
        ("/oauth/login", "/oauth/login"),
        ("/oauth/login/mfa", "/oauth/login/mfa"),
        ("/oauth/token", "/oauth/token"),
        ("/oauth/userinfo", "/oauth/userinfo"),
        ("/oauth/logout", "/oauth/logout"),
        ("/oauth/assets/page.css", "/oauth/assets/page.css"),
        ("/docs", "/docs"),
        ("/redoc", "/redoc"),
        ("/health/liveness", "/health/liveness"),
        ("/health/readiness", "/health/readiness"),
        ("/health/startup", "/health/startup"),
    ];
    for (path, template) in cases {
        assert_eq!(Route::of(path).as_str(), template, "path {path}");
    }
    // Every route but `unmatched` is reachable from some path above.
    assert_eq!(cases.len(), Route::ALL.len() - 1);
}

#[test]
fn a_trailing_slash_and_docs_assets_keep_their_route_as_warp_does() {
    assert_eq!(Route::of("/api/v1/auth/me/"), Route::Me);
    assert_eq!(Route::of("/health/liveness/"), Route::Liveness);
    assert_eq!(Route::of("/api/v1/auth/sessions/abc/"), Route::Session);
    assert_eq!(Route::of("/docs/"), Route::Docs);
    assert_eq!(Route::of("/docs/swagger-ui-bundle.js"), Route::Docs);
    assert_eq!(Route::of("/redoc/redoc.standalone.js"), Route::Redoc);
}

#[test]
fn paths_the_api_does_not_serve_are_one_unmatched_route() {
    for path in [
        "",
        "/",
        "/metrics",
        "/api/v1/auth",
        "/api/v1/auth/",
        "/api/v1/auth/nope",
        "/api/v1/auth/me/extra",
        "/api/v1/auth/me//",
        "/api//v1/auth/me",
        "//api/v1/auth/me",
        "/API/v1/auth/me",
        "/api/v1/auth/sessions/a/b",
        "/api/v1/auth/register/../me",
        "/docsx",
        "/health",
        "/.well-known/jwks.json.bak",
        "/a/b/c/d/e/f/g/h",
    ] {
        assert_eq!(Route::of(path), Route::Unmatched, "path {path:?}");
    }
}

#[test]
fn standard_methods_are_labels_and_extension_methods_are_other() {
    assert_eq!(HttpMethod::of(&Method::GET).as_str(), "GET");
    assert_eq!(HttpMethod::of(&Method::DELETE).as_str(), "DELETE");
    let invented = Method::from_bytes(b"BREW").expect("a valid token");
    assert_eq!(HttpMethod::of(&invented), HttpMethod::Other);
}

#[test]
fn every_family_of_the_spec_is_exposed_with_help_and_type() {
    let metrics = Metrics::new();
    metrics.observe_request(
        Route::Me,
        &Method::GET,
        StatusCode::OK,
        Duration::from_millis(1),
    );
    metrics.set_pool_source(PoolConnections::default);
    metrics.set_log_drop_source(|| 0);
    let text = render(&metrics);

    for (name, kind) in [
        ("authctl_http_requests_total", "counter"),
        ("authctl_http_request_duration_seconds", "histogram"),
        ("authctl_logins_total", "counter"),
        ("authctl_refresh_total", "counter"),
        ("authctl_registrations_total", "counter"),
        ("authctl_rate_limited_total", "counter"),
        ("authctl_password_hash_duration_seconds", "histogram"),
        ("authctl_password_hash_waiting", "gauge"),
        ("authctl_password_hash_rejected_total", "counter"),
        ("authctl_db_pool_connections", "gauge"),
        ("authctl_log_lines_dropped_total", "counter"),
        ("authctl_build_info", "gauge"),
    ] {
        assert!(
            text.contains(&format!("\n# TYPE {name} {kind}\n"))
                || text.starts_with(&format!("# TYPE {name} {kind}\n")),
            "no `# TYPE {name} {kind}` in:\n{text}"
        );
        let help = format!("# HELP {name} ");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&help) && l.len() > help.len()),
            "no help text for {name}"
        );
    }
    for help in text.lines().filter(|l| l.starts_with("# HELP ")) {
        assert!(
            help.ends_with('.') && !help.ends_with(".."),
            "help text not ending in one period: {help}"
        );
    }
    // Nothing in the text format's OpenMetrics-only grammar.
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("# UNIT"));
}

#[test]
fn requests_are_counted_by_template_method_and_status() {
    let metrics = Metrics::new();
    let me = Route::of("/api/v1/auth/me");
    for _ in 0..2 {
        metrics.observe_request(me, &Method::GET, StatusCode::OK, Duration::from_millis(2));
    }
    metrics.observe_request(
        me,
        &Method::GET,
        StatusCode::UNAUTHORIZED,
        Duration::from_millis(3),
    );
    metrics.observe_request(
        me,
        &Method::POST,
        StatusCode::METHOD_NOT_ALLOWED,
        Duration::from_micros(100),
    );
    let text = render(&metrics);

    let requests = "authctl_http_requests_total{route=\"/api/v1/auth/me\"";
    let hist = "authctl_http_request_duration_seconds";
    let route = "route=\"/api/v1/auth/me\"";
    assert_samples(
        &text,
        &[
            (format!("{requests},method=\"GET\",status=\"200\"}}"), 2.0),
            (format!("{requests},method=\"GET\",status=\"401\"}}"), 1.0),
            (format!("{requests},method=\"POST\",status=\"405\"}}"), 1.0),
            (format!("{hist}_count{{{route}}}"), 4.0),
            // 0.1 ms falls in the first bucket, 2 and 3 ms in the 5 ms one.
            (format!("{hist}_bucket{{{route},le=\"0.0005\"}}"), 1.0),
            (format!("{hist}_bucket{{{route},le=\"0.005\"}}"), 4.0),
            (format!("{hist}_bucket{{{route},le=\"+Inf\"}}"), 4.0),
            // Other routes' histograms exist from the start, empty.
            (format!("{hist}_count{{route=\"/api/v1/auth/token\"}}"), 0.0),
        ],
    );
    let sum = sample(&text, &format!("{hist}_sum{{{route}}}")).expect("a sum");
    assert!((sum - 0.0071).abs() < 1e-9, "sum {sum}");
}

#[test]
fn a_flood_of_unknown_paths_adds_one_series_not_one_per_path() {
    let metrics = Metrics::new();
    for i in 0..500 {
        let path = format!("/probe/{i}/wp-login.php");
        metrics.observe_request(
            Route::of(&path),
            &Method::GET,
            StatusCode::NOT_FOUND,
            Duration::from_micros(50),
        );
    }
    let text = render(&metrics);
    let request_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("authctl_http_requests_total{"))
        .collect();
    assert_eq!(
        request_lines,
        ["authctl_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 500"]
    );
    assert!(!text.contains("wp-login"));
}

#[test]
fn outcomes_are_counted_by_result_and_endpoint_and_start_at_zero() {
    let metrics = Metrics::new();
    let before = render(&metrics);
    for result in LoginResult::ALL {
        let series = format!("authctl_logins_total{{result=\"{}\"}}", result.as_str());
        assert_eq!(sample(&before, &series), Some(0.0), "{series}");
    }
    for result in RefreshResult::ALL {
        let series = format!("authctl_refresh_total{{result=\"{}\"}}", result.as_str());
        assert_eq!(sample(&before, &series), Some(0.0), "{series}");
    }
    for endpoint in LimitedEndpoint::ALL {
        let series = format!(
            "authctl_rate_limited_total{{endpoint=\"{}\"}}",
            endpoint.as_str()
        );
        assert_eq!(sample(&before, &series), Some(0.0), "{series}");
    }
    assert_eq!(sample(&before, "authctl_registrations_total"), Some(0.0));

    metrics.login(LoginResult::Success);
    metrics.login(LoginResult::Failure);
    metrics.login(LoginResult::Failure);
    metrics.login(LoginResult::Locked);
    metrics.refresh(RefreshResult::Rotated);
    metrics.refresh(RefreshResult::Grace);
    metrics.refresh(RefreshResult::ReuseDetected);
    metrics.refresh(RefreshResult::Invalid);
    metrics.refresh(RefreshResult::Invalid);
    metrics.registration();
    metrics.rate_limited(LimitedEndpoint::Token);
    metrics.rate_limited(LimitedEndpoint::Password);
    metrics.rate_limited(LimitedEndpoint::Password);

    // A clone is the same metrics, not a copy.
    let elsewhere = metrics.clone();
    elsewhere.registration();

    let text = render(&metrics);
    for (series, value) in [
        ("authctl_logins_total{result=\"success\"}", 1.0),
        ("authctl_logins_total{result=\"failure\"}", 2.0),
        ("authctl_logins_total{result=\"locked\"}", 1.0),
        ("authctl_refresh_total{result=\"rotated\"}", 1.0),
        ("authctl_refresh_total{result=\"grace\"}", 1.0),
        ("authctl_refresh_total{result=\"reuse_detected\"}", 1.0),
        ("authctl_refresh_total{result=\"invalid\"}", 2.0),
        ("authctl_registrations_total", 2.0),
        ("authctl_rate_limited_total{endpoint=\"register\"}", 0.0),
        ("authctl_rate_limited_total{endpoint=\"token\"}", 1.0),
        ("authctl_rate_limited_total{endpoint=\"refresh\"}", 0.0),
        ("authctl_rate_limited_total{endpoint=\"password\"}", 2.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}");
    }
}

#[test]
fn a_429_counts_as_rate_limited_at_its_endpoint_and_nowhere_else() {
    let metrics = Metrics::new();
    let too_many = StatusCode::TOO_MANY_REQUESTS;
    let at = Duration::from_millis(1);
    for path in [
        "/api/v1/auth/token",
        "/api/v1/auth/token/",
        "/api/v1/auth/password",
    ] {
        metrics.observe_request(Route::of(path), &Method::POST, too_many, at);
    }
    // Other statuses at a limited endpoint, and a 429 elsewhere, are not limits.
    metrics.observe_request(Route::Register, &Method::POST, StatusCode::CREATED, at);
    metrics.observe_request(Route::Me, &Method::GET, too_many, at);
    let text = render(&metrics);
    for (series, value) in [
        ("authctl_rate_limited_total{endpoint=\"token\"}", 2.0),
        ("authctl_rate_limited_total{endpoint=\"password\"}", 1.0),
        ("authctl_rate_limited_total{endpoint=\"register\"}", 0.0),
        ("authctl_rate_limited_total{endpoint=\"refresh\"}", 0.0),
    ] {
        assert_eq!(sample(&text, series), Some(value), "{series}");
    }
}

#[test]
fn the_hashing_queue_gauge_follows_its_guards() {
    let metrics = Metrics::new();
    let first = metrics.hash_waiting();
    let second = metrics.hash_waiting();
    assert_eq!(
        sample(&render(&metrics), "authctl_password_hash_waiting"),
        Some(2.0)
    );
    drop(first);
    assert_eq!(
        sample(&render(&metrics), "authctl_password_hash_waiting"),
        Some(1.0)
    );
    drop(second);
    metrics.hash_rejected();
    metrics.observe_hash(Duration::from_millis(270));
    metrics.observe_hash(Duration::from_millis(70));

    let text = render(&metrics);
    assert_eq!(sample(&text, "authctl_password_hash_waiting"), Some(0.0));
    assert_eq!(
        sample(&text, "authctl_password_hash_rejected_total"),
        Some(1.0)
    );
    let hist = "authctl_password_hash_duration_seconds";
    assert_samples(
        &text,
        &[
            (format!("{hist}_count"), 2.0),
            (format!("{hist}_bucket{{le=\"0.1\"}}"), 1.0),
            (format!("{hist}_bucket{{le=\"0.3\"}}"), 2.0),
        ],
    );
    let sum = sample(&text, &format!("{hist}_sum")).expect("a sum");
    assert!((sum - 0.34).abs() < 1e-9, "sum {sum}");
}

#[test]
fn pool_and_log_sources_are_read_at_each_scrape_once_plugged_in() {
    let metrics = Metrics::new();
    let before = render(&metrics);
    assert!(!before.contains("authctl_db_pool_connections"));
    assert!(!before.contains("authctl_log_lines_dropped_total"));

    let used = Arc::new(AtomicU64::new(3));
    let dropped = Arc::new(AtomicU64::new(0));
    let (u, d) = (used.clone(), dropped.clone());
    metrics.set_pool_source(move || PoolConnections {
        idle: 7,
        used: u.load(Ordering::Relaxed),
    });
    metrics.set_log_drop_source(move || d.load(Ordering::Relaxed));

    let text = render(&metrics);
    assert_eq!(
        sample(&text, "authctl_db_pool_connections{state=\"idle\"}"),
        Some(7.0)
    );
    assert_eq!(
        sample(&text, "authctl_db_pool_connections{state=\"used\"}"),
        Some(3.0)
    );
    assert_eq!(sample(&text, "authctl_log_lines_dropped_total"), Some(0.0));

    used.store(5, Ordering::Relaxed);
    dropped.store(42, Ordering::Relaxed);
    let text = render(&metrics);
    assert_eq!(
        sample(&text, "authctl_db_pool_connections{state=\"used\"}"),
        Some(5.0)
    );
    assert_eq!(sample(&text, "authctl_log_lines_dropped_total"), Some(42.0));
}

#[test]
fn build_info_names_this_version() {
    let text = render(&Metrics::new());
    let series = format!(
        "authctl_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &series), Some(1.0));
}

/// A response read off a real socket: status, content type, body.
async fn get(client: &reqwest::Client, url: String) -> (u16, String, String) {
    let resp = client.get(url).send().await.expect("the listener answers");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = resp.text().await.expect("a body");
    (status, content_type, body)
}

#[tokio::test]
async fn the_metrics_listener_serves_the_exposition_and_nothing_else() {
    crate::install_crypto_provider();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local address");
    let metrics = Metrics::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::http::listener::serve(
        listener,
        exposition(metrics.clone()),
        crate::config::EdgeLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));

    metrics.login(LoginResult::Locked);
    metrics.observe_request(
        Route::of("/api/v1/auth/sessions/3f0c"),
        &Method::DELETE,
        StatusCode::NO_CONTENT,
        Duration::from_millis(4),
    );

    let client = reqwest::Client::new();
    let (status, content_type, body) = get(&client, format!("http://{addr}/metrics")).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        sample(&body, "authctl_logins_total{result=\"locked\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &body,
            "authctl_http_requests_total{route=\"/api/v1/auth/sessions/{id}\",method=\"DELETE\",status=\"204\"}"
        ),
        Some(1.0)
    );
    assert!(body.contains("# TYPE authctl_http_request_duration_seconds histogram\n"));

    // A second scrape sees what happened in between.
    metrics.login(LoginResult::Locked);
    let (_, _, body) = get(&client, format!("http://{addr}/metrics")).await;
    assert_eq!(
        sample(&body, "authctl_logins_total{result=\"locked\"}"),
        Some(2.0)
    );

    for path in ["/", "/metrics/x", "/api/v1/auth/me", "/health/liveness"] {
        let (status, _, body) = get(&client, format!("http://{addr}{path}")).await;
        assert_eq!(status, 404, "GET {path}");
        assert!(body.is_empty(), "GET {path} answered {body:?}");
    }
    let resp = client
        .post(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("the listener answers");
    assert_eq!(resp.status().as_u16(), 404);

    stop.send(()).expect("the server is still running");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops after its shutdown signal")
        .expect("the server task did not panic");
}
