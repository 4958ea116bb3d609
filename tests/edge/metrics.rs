//! The metrics listener (`metrics.bind`, SPEC §11) at the same edge as the API: its
//! header and idle timeouts, a connection cap of its own, and SIGTERM's deadline,
//! whatever its connections do.

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use authctl::http::listener::EdgeLimits;
use authctl::server::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{LIVENESS, edge_app, read_response, read_until_closed, short_limits};
use crate::support::served::{Served, free_addr};
use crate::support::{Backend, TestDb};

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n";

/// A server in this process with `/metrics` on a port of its own, and that port.
async fn metrics_app(limits: EdgeLimits) -> (TestDb, Running, SocketAddr) {
    let (db, running) = edge_app(&Backend::Sqlite, limits, |s| {
        s.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = running.metrics_addr.expect("metrics are listening");
    (db, running, metrics)
}

/// `authctl serve` with `/metrics` on a free port of its own, and that port.
fn served_with_metrics(env: &[(&str, &str)]) -> (Served, SocketAddr) {
    let metrics = free_addr();
    let bind = metrics.to_string();
    let mut env = env.to_vec();
    env.push(("AUTHCTL_METRICS_BIND", &bind));
    (Served::start_with(Stdio::null(), &env), metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_connection_that_stalls_in_its_headers_is_closed_after_the_header_timeout() {
    let (served, metrics) = served_with_metrics(&[("AUTHCTL_HEADER_TIMEOUT", "1s")]);
    served.wait_ready().await;
    let mut s = TcpStream::connect(metrics).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: me")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(closed, "a half-sent scrape was kept open for 5 s");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "closed after {waited:?}, expected about the 1 s header timeout"
    );
    // A whole scrape is still answered.
    let mut s = TcpStream::connect(metrics).await.unwrap();
    s.write_all(SCRAPE).await.unwrap();
    let r = read_response(&mut s, Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_idle_and_stalled_metrics_connections_exits_0_within_the_shutdown_timeout() {
    let (mut served, metrics) = served_with_metrics(&[("AUTHCTL_SHUTDOWN_TIMEOUT", "2s")]);
    served.wait_ready().await;
    // A scraper's keep-alive connection, one that never said anything, and one
    // stalled in its headers (the 10 s header timeout is far off).
    let mut idle = TcpStream::connect(metrics).await.unwrap();
    idle.write_all(SCRAPE).await.unwrap();
    let r = read_response(&mut idle, Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let mut silent = TcpStream::connect(metrics).await.unwrap();
    let mut stalled = TcpStream::connect(metrics).await.unwrap();
    stalled.write_all(b"GET /metr").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    served.signal("TERM");
    let limit = Duration::from_secs(2 + 1);
    let status = served
        .wait_exit(limit + Duration::from_secs(5))
        .expect("the server did not exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() <= limit,
        "exit took {:?}, past shutdown_timeout + 1 s",
        started.elapsed()
    );
    for s in [&mut idle, &mut silent, &mut stalled] {
        let (_, closed) = read_until_closed(s, Duration::from_secs(1)).await;
        assert!(closed, "a metrics connection outlived the server");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_metrics_connection_is_closed_after_the_idle_timeout() {
    let limits = EdgeLimits {
        header_timeout: Duration::from_secs(10),
        ..short_limits()
    };
    let (_db, running, metrics) = metrics_app(limits).await;
    let mut s = TcpStream::connect(metrics).await.unwrap();
    s.write_all(SCRAPE).await.unwrap();
    let r = read_response(&mut s, Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(closed, "an idle scraper connection was kept for 5 s");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_connections_beyond_their_own_cap_wait_and_the_api_still_answers() {
    let limits = EdgeLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        max_connections: EdgeLimits::default().max_connections,
        ..short_limits()
    };
    let (_db, running, metrics) = metrics_app(limits).await;
    let cap = authctl::server::METRICS_MAX_CONNECTIONS;
    let mut held = Vec::new();
    for _ in 0..cap {
        let mut s = TcpStream::connect(metrics).await.unwrap();
        s.write_all(SCRAPE).await.unwrap();
        let r = read_response(&mut s, Duration::from_secs(5)).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        held.push(s);
    }
    // One more connects (the kernel's backlog) but is not served...
    let mut extra = TcpStream::connect(metrics).await.unwrap();
    extra.write_all(SCRAPE).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), extra.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the metrics cap: {early:?}");
    // ...while the API, with its own bound, answers...
    let mut api = TcpStream::connect(running.addr).await.unwrap();
    api.write_all(LIVENESS).await.unwrap();
    let r = read_response(&mut api, Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // ...and a metrics connection closing lets the waiting one in.
    drop(held.pop());
    let r = read_response(&mut extra, Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    running.shutdown().await.unwrap();
}
