//! The client a rate limit counts against, through a trusted proxy (SPEC §6, "Client
//! IP, precisely"): every `X-Forwarded-For` line in order, entries with ports, IPv6
//! clients by their network, IPv4-mapped peers against IPv4 CIDRs. Each story logs in
//! (wrongly) under a login limit of one a minute: a 401 is a fresh key, a 429 a key
//! already spent. The audit log and the sessions list record the client's full
//! address, not that key (SPEC §10).

use authctl::config::Settings;

use crate::prelude::*;

crate::on_both_backends!(
    the_line_the_proxy_added_wins_over_the_line_the_client_sent,
    entries_with_ports_are_keyed_by_their_address,
    ipv6_clients_in_one_prefix_share_a_limit,
    an_ipv4_mapped_peer_matches_an_ipv4_cidr,
    sessions_and_the_audit_log_record_the_full_ipv6_address_not_the_key,
);

/// A server behind a proxy on 127.0.0.1 that allows one login a minute per client.
async fn behind_a_proxy(backend: &Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app(backend, |s| {
        s.rate_limit.enabled = true;
        s.rate_limit.login_per_minute = std::num::NonZeroU32::new(1).unwrap();
        s.rate_limit.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        tweak(s);
    })
    .await
}

/// The status of a wrong login sent with these `X-Forwarded-For` lines, in order.
async fn login_through(app: &TestApp, lines: &[&str]) -> u16 {
    let mut request = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .form(&[("username", "nobody"), ("password", "wrong-password")]);
    for line in lines {
        // `header` appends: each call is a header line of its own.
        request = request.header("x-forwarded-for", *line);
    }
    let status = request.send().await.expect("login request").status();
    assert!(
        status == 401 || status == 429,
        "{lines:?}: unexpected {status}"
    );
    status.as_u16()
}

async fn the_line_the_proxy_added_wins_over_the_line_the_client_sent(backend: Backend) {
    let app = behind_a_proxy(&backend, |_| {}).await;
    // The client sent the first line itself; the proxy appended the second.
    assert_eq!(login_through(&app, &["6.6.6.6", "203.0.113.1"]).await, 401);
    assert_eq!(
        login_through(&app, &["7.7.7.7", "203.0.113.1"]).await,
        429,
        "a client picked a fresh key by changing the line it sends"
    );
    assert_eq!(
        login_through(&app, &["6.6.6.6", "203.0.113.2"]).await,
        401,
        "another client behind the same proxy shares nothing"
    );
    // Lines count as if comma-joined, so one line and two lines name the same client.
    assert_eq!(login_through(&app, &["6.6.6.6, 203.0.113.3"]).await, 401);
    assert_eq!(login_through(&app, &["9.9.9.9", "203.0.113.3"]).await, 429);
    // A chain of trusted proxies is walked through to the client.
    assert_eq!(
        login_through(&app, &["203.0.113.4", "127.0.0.2"]).await,
        401
    );
    assert_eq!(login_through(&app, &["203.0.113.4"]).await, 429);
    app.shutdown().await;
}

async fn entries_with_ports_are_keyed_by_their_address(backend: Backend) {
    let app = behind_a_proxy(&backend, |_| {}).await;
    assert_eq!(login_through(&app, &["203.0.113.5:5678"]).await, 401);
    assert_eq!(
        login_through(&app, &["203.0.113.5:1111"]).await,
        429,
        "a new source port is not a new client"
    );
    // Not the proxy's key either: a client with a port is its own client.
    assert_eq!(login_through(&app, &["203.0.113.6:80"]).await, 401);
    assert_eq!(login_through(&app, &["[2001:db8:5::1]:443"]).await, 401);
    assert_eq!(login_through(&app, &["2001:db8:5::1"]).await, 429);
    app.shutdown().await;
}

async fn ipv6_clients_in_one_prefix_share_a_limit(backend: Backend) {
    let app = behind_a_proxy(&backend, |_| {}).await;
    assert_eq!(login_through(&app, &["2001:db8:1:2::1"]).await, 401);
    assert_eq!(
        login_through(&app, &["2001:db8:1:2:ffff:ffff:ffff:9"]).await,
        429,
        "another address in the same /64 got a fresh limit"
    );
    assert_eq!(login_through(&app, &["2001:db8:1:3::1"]).await, 401);
    app.shutdown().await;

    // rate_limit.ipv6_prefix = 128 keys every address apart.
    let app = behind_a_proxy(&backend, |s| s.rate_limit.ipv6_prefix = 128).await;
    assert_eq!(login_through(&app, &["2001:db8:1:2::1"]).await, 401);
    assert_eq!(login_through(&app, &["2001:db8:1:2::2"]).await, 401);
    assert_eq!(login_through(&app, &["2001:db8:1:2::1"]).await, 429);
    app.shutdown().await;
}

async fn an_ipv4_mapped_peer_matches_an_ipv4_cidr(backend: Backend) {
    // An IPv6 socket on the IPv4-mapped loopback: its IPv4 peers arrive as
    // ::ffff:127.0.0.1, which must still be the trusted proxy 127.0.0.0/8.
    let app = behind_a_proxy(&backend, |s| {
        s.bind = "[::ffff:127.0.0.1]:0".parse().unwrap();
    })
    .await;
    assert!(app.addr.is_ipv6(), "{}", app.addr);
    assert_eq!(login_through(&app, &["203.0.113.7"]).await, 401);
    assert_eq!(
        login_through(&app, &["203.0.113.8"]).await,
        401,
        "the mapped peer was not trusted: both clients got its key"
    );
    assert_eq!(login_through(&app, &["203.0.113.7"]).await, 429);
    app.shutdown().await;
}

async fn sessions_and_the_audit_log_record_the_full_ipv6_address_not_the_key(backend: Backend) {
    let app = behind_a_proxy(&backend, |_| {}).await;
    assert_eq!(
        app.register("six@example.com", "six", PASSWORD)
            .await
            .status(),
        201
    );
    let r = app
        .client
        .post(app.url("/api/v1/auth/token"))
        .header("x-forwarded-for", "2001:db8::1234")
        .form(&[("username", "six"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let access = json(r).await["access_token"].as_str().unwrap().to_owned();
    // The limiter still keys the client by its /64: a neighbour shares its quota.
    assert_eq!(login_through(&app, &["2001:db8::5678"]).await, 429);

    let r = app
        .client
        .get(app.url("/api/v1/auth/sessions"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sessions = json(r).await;
    assert_eq!(sessions[0]["ip"], "2001:db8::1234", "{sessions}");

    let out = crate::cli_run(&app, &["audit", "list", "--output", "json"], None).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let login = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "login_succeeded")
        .unwrap_or_else(|| panic!("no login_succeeded event: {events}"));
    assert_eq!(login["ip"], "2001:db8::1234", "{login}");
    app.shutdown().await;
}
