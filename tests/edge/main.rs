//! The connection edge (SPEC §8 "Hardening"), driven the way an attacker would: raw
//! TCP sockets that stall, idle, speak HTTP/2 or give up mid-login, against a server
//! in this process (with short bounds) or the real binary (for signals and stderr).
//! The metrics listener's share of the same edge is in `metrics.rs`.

#[path = "../support/mod.rs"]
mod support;

mod metrics;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use authctl::http::listener::EdgeLimits;
use authctl::server::{self, Running, ServeOptions};
use support::served::Served;
use support::{Backend, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

on_both_backends!(a_disconnecting_login_flood_never_runs_more_hashes_than_cores);

/// Short bounds, so each test takes about a second.
fn short_limits() -> EdgeLimits {
    EdgeLimits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        max_connections: 64,
        shutdown_timeout: Duration::from_secs(1),
    }
}

/// A server in this process on a fresh database, ready to answer.
async fn edge_app(
    backend: &Backend,
    limits: EdgeLimits,
    tweak: impl FnOnce(&mut authctl::config::Settings),
) -> (TestDb, Running) {
    authctl::install_crypto_provider();
    let db = TestDb::new(backend).await;
    let mut settings = support::test_settings(&db.url);
    settings.edge = limits;
    tweak(&mut settings);
    let running = server::spawn(settings, ServeOptions::default())
        .await
        .expect("server starts");
    wait_ready(&format!("http://{}", running.addr)).await;
    (db, running)
}

async fn wait_ready(base: &str) {
    authctl::install_crypto_provider();
    let client = reqwest::Client::new();
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{base}/health/startup")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("server did not finish starting");
}

/// Reads until the peer closes or `within` passes; returns what arrived and whether
/// the connection was closed (EOF or reset).
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (Vec<u8>, bool) {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Reads one response's head and body (by Content-Length) from a keep-alive stream.
async fn read_response(stream: &mut TcpStream, within: Duration) -> String {
    let deadline = tokio::time::Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!(
                "no complete response ({other:?}); got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

const LIVENESS: &[u8] = b"GET /health/liveness HTTP/1.1\r\nHost: edge\r\n\r\n";

/// A registration whose body stops after 9 of its 100 bytes.
const SLOW_BODY: &[u8] = b"POST /api/v1/auth/register HTTP/1.1\r\nHost: edge\r\n\
    Content-Type: application/json\r\nX-Request-Id: slow-body-1\r\n\
    Content-Length: 100\r\n\r\n{\"email\":";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stalls_in_its_headers_is_closed_after_the_header_timeout() {
    let (_db, running) = edge_app(&Backend::Sqlite, short_limits(), |_| {}).await;
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(b"GET /health/liveness HTTP/1.1\r\nHost: ed")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(closed, "a half-sent request was kept open for 5 s");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "closed after {waited:?}, expected about the 1 s header timeout"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_gets_a_408_problem_and_the_connection_is_closed() {
    let (_db, running) = edge_app(&Backend::Sqlite, short_limits(), |_| {}).await;
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(SLOW_BODY).await.unwrap();
    let started = Instant::now();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let head = text.to_ascii_lowercase();
    // Shaped like every other response: a problem body, the security headers, the
    // client's request id echoed.
    for header in [
        "content-type: application/problem+json",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "referrer-policy: no-referrer",
        "x-request-id: slow-body-1",
        "connection: close",
    ] {
        assert!(head.contains(header), "no {header:?} in {text}");
    }
    assert!(text.contains("\"status\":408"), "{text}");
    assert!(closed, "the connection stayed open after the 408");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let limits = EdgeLimits {
        header_timeout: Duration::from_secs(10),
        ..short_limits()
    };
    let (_db, running) = edge_app(&Backend::Sqlite, limits, |_| {}).await;
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(LIVENESS).await.unwrap();
    let first = read_response(&mut s, Duration::from_secs(5)).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Still usable right away: keep-alive works.
    s.write_all(LIVENESS).await.unwrap();
    let second = read_response(&mut s, Duration::from_secs(5)).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(closed, "an idle keep-alive connection was kept for 5 s");
    assert!(
        waited >= Duration::from_millis(700) && waited < Duration::from_secs(3),
        "closed after {waited:?}, expected about the 1 s idle timeout"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_outlives_the_header_timeout() {
    // The header timeout bounds a request that has started, not the wait for one:
    // idle, the connection lasts the idle timeout.
    let limits = EdgeLimits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(4),
        ..short_limits()
    };
    let (_db, running) = edge_app(&Backend::Sqlite, limits, |_| {}).await;
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(LIVENESS).await.unwrap();
    let first = read_response(&mut s, Duration::from_secs(5)).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    // Idle for twice the header timeout: still open, and still served.
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(2)).await;
    assert!(
        !closed,
        "an idle connection was closed at the header timeout"
    );
    s.write_all(LIVENESS).await.unwrap();
    let second = read_response(&mut s, Duration::from_secs(5)).await;
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    // And it is closed at the idle timeout after that request.
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(8)).await;
    let waited = started.elapsed();
    assert!(closed, "an idle keep-alive connection was kept for 8 s");
    assert!(
        waited >= Duration::from_millis(3500) && waited < Duration::from_secs(6),
        "closed after {waited:?}, expected about the 4 s idle timeout"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_request_that_stalls_in_its_headers_is_closed_after_the_header_timeout() {
    let limits = EdgeLimits {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(30),
        ..short_limits()
    };
    let (_db, running) = edge_app(&Backend::Sqlite, limits, |_| {}).await;
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(LIVENESS).await.unwrap();
    let first = read_response(&mut s, Duration::from_secs(5)).await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Idle past the header timeout, then half a request: its clock starts now.
    s.write_all(b"GET /health/liveness HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let waited = started.elapsed();
    assert!(closed, "a half-sent second request was kept open for 5 s");
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(3),
        "closed after {waited:?}, expected about the 1 s header timeout"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_prior_knowledge_preface_is_refused() {
    let (_db, running) = edge_app(&Backend::Sqlite, short_limits(), |_| {}).await;
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    // The HTTP/2 preface, then an empty SETTINGS frame.
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(3)).await;
    assert!(closed, "an h2c connection was kept open");
    // An HTTP/2 server would answer with its own SETTINGS frame (type 4 at byte 3).
    assert!(
        got.is_empty() || got.starts_with(b"HTTP/1.1 4") || got.starts_with(b"HTTP/1.1 5"),
        "answered h2c: {got:?}"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_max_connections_wait_until_one_closes() {
    let limits = EdgeLimits {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(10),
        max_connections: 2,
        ..short_limits()
    };
    let (_db, running) = edge_app(&Backend::Sqlite, limits, |_| {}).await;
    // Let the readiness probe's connection close before counting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(running.addr).await.unwrap();
        s.write_all(LIVENESS).await.unwrap();
        let r = read_response(&mut s, Duration::from_secs(5)).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        held.push(s);
    }
    // The third connects (the kernel's backlog) but is not served...
    let mut third = TcpStream::connect(running.addr).await.unwrap();
    third.write_all(LIVENESS).await.unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond max_connections: {early:?}");
    // ...until one of the two closes.
    drop(held.pop());
    let r = read_response(&mut third, Duration::from_secs(5)).await;
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_a_stalled_client_returns_within_the_shutdown_timeout() {
    let limits = EdgeLimits {
        header_timeout: Duration::from_secs(30),
        ..short_limits()
    };
    let (_db, running) = edge_app(&Backend::Sqlite, limits, |_| {}).await;
    let mut stalled = TcpStream::connect(running.addr).await.unwrap();
    stalled.write_all(b"GET /health/liv").await.unwrap();
    let mut idle = TcpStream::connect(running.addr).await.unwrap();
    idle.write_all(LIVENESS).await.unwrap();
    read_response(&mut idle, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), running.shutdown())
        .await
        .expect("shutdown finished")
        .expect("clean shutdown");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(1)).await;
    assert!(closed, "the idle connection outlived the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_in_flight_login_finishes_during_the_drain() {
    let limits = EdgeLimits {
        shutdown_timeout: Duration::from_secs(10),
        ..short_limits()
    };
    let (_db, running) = edge_app(&Backend::Sqlite, limits, |s| s.auth.bcrypt_cost = 12).await;
    let base = format!("http://{}", running.addr);
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/register"))
        .json(
            &serde_json::json!({"email": "drain@example.com", "username": "drain",
            "password": support::PASSWORD}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body = format!(
        "username=drain&password={}",
        support::PASSWORD.replace(' ', "+")
    );
    let mut s = TcpStream::connect(running.addr).await.unwrap();
    s.write_all(
        format!(
            "POST /api/v1/auth/token HTTP/1.1\r\nHost: edge\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // The login is hashing when the shutdown starts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let shutdown = tokio::spawn(running.shutdown());
    let answer = read_response(&mut s, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("access_token"), "{answer}");
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("shutdown finished")
        .unwrap()
        .expect("clean shutdown");
}

/// How many of process `pid`'s tokio threads (`tokio-rt-worker`: the runtime's
/// workers and its blocking pool, where hashes run) are running or waiting for a CPU
/// (Linux thread state `R`). SQLite's and the log writer's threads have names of
/// their own and do not count.
fn runnable_tokio_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                // The state follows the parenthesised thread name.
                stat.split_once(" (tokio-")
                    .and_then(|(_, rest)| rest.split_once(") "))
                    .is_some_and(|(_, rest)| rest.starts_with('R'))
            })
        })
        .count()
}

/// Logins arriving every 25 ms whose clients give up after 60 ms: each hash they
/// started keeps its slot to the end, so no more hashes run at once than there are
/// cores. Without that, every give-up let the next login start a hash beside the
/// abandoned ones (about ten at once at cost 12). The real
/// binary, so that its threads can be counted apart from the test's.
async fn a_disconnecting_login_flood_never_runs_more_hashes_than_cores(backend: Backend) {
    let db = TestDb::new(&backend).await;
    let served = Served::start_on(&db.url, "12", Stdio::null());
    served.wait_ready().await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", served.addr);
    let r = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(
            &serde_json::json!({"email": "flood@example.com", "username": "flood",
            "password": support::PASSWORD}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let pid = served.child.id();
        std::thread::spawn(move || {
            // A count that holds over two samples 3 ms apart: a hash runs for
            // hundreds of milliseconds, while a slot's hand-over from one blocking
            // thread to the next (both briefly runnable) lasts microseconds.
            let (mut most, mut previous) = (0, 0);
            while sampling.load(std::sync::atomic::Ordering::SeqCst) {
                let now = runnable_tokio_threads(pid);
                most = most.max(now.min(previous));
                previous = now;
                std::thread::sleep(Duration::from_millis(3));
            }
            most
        })
    };
    let body = format!(
        "username=flood&password={}",
        support::PASSWORD.replace(' ', "+")
    );
    let request = format!(
        "POST /api/v1/auth/token HTTP/1.1\r\nHost: edge\r\nContent-Type: \
         application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut flood = Vec::new();
    for _ in 0..20 {
        let addr = served.addr;
        let request = request.clone();
        flood.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut buf = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_millis(60), s.read(&mut buf)).await;
            // Dropping the socket here is the client giving up.
        }));
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for f in flood {
        f.await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let most = sampler.join().unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The hashes, and the runtime's workers (one per core) busy beside them.
    assert!(
        most <= 2 * cores,
        "{most} tokio threads ran at once on {cores} cores: more hashes than cores"
    );
    // The server is still there and answers.
    let r = client
        .get(format!("{base}/health/liveness"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

// ---- the real binary: signals and a stalled stderr --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_stalled_client_exits_0_within_the_shutdown_timeout() {
    let mut served = Served::start(Stdio::null());
    served.wait_ready().await;
    let mut stalled = TcpStream::connect(served.addr).await.unwrap();
    stalled.write_all(b"GET /health/liv").await.unwrap();
    let mut idle = TcpStream::connect(served.addr).await.unwrap();
    idle.write_all(LIVENESS).await.unwrap();
    read_response(&mut idle, Duration::from_secs(5)).await;

    let started = Instant::now();
    served.signal("TERM");
    let limit = EdgeLimits::default().shutdown_timeout + Duration::from_secs(1);
    let status = served
        .wait_exit(limit + Duration::from_secs(2))
        .expect("the server did not exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() <= limit,
        "exit took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_during_the_drain_exits_at_once() {
    let mut served = Served::start(Stdio::null());
    served.wait_ready().await;
    // A stalled client keeps the drain going until the shutdown timeout.
    let mut stalled = TcpStream::connect(served.addr).await.unwrap();
    stalled.write_all(b"GET /health/liv").await.unwrap();
    served.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "exited before the drain ended"
    );
    let started = Instant::now();
    served.signal("INT");
    let status = served
        .wait_exit(Duration::from_secs(3))
        .expect("a second signal did not end the process");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stderr_does_not_stall_liveness_and_the_drops_are_reported() {
    let mut served = Served::start(Stdio::piped());
    let mut stderr = served.child.stderr.take().unwrap();
    served.wait_ready().await;
    // Nobody reads stderr: its pipe fills, and the request log lines back up.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let url = format!("http://{}/health/liveness", served.addr);
    for i in 0..3000 {
        let r = client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert_eq!(r.status(), 200, "request {i}");
    }
    // Reading again lets the writer catch up, and it says how many lines it dropped.
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => return seen,
                Ok(n) => {
                    seen.extend_from_slice(&buf[..n]);
                    if String::from_utf8_lossy(&seen).contains("log lines dropped") {
                        return seen;
                    }
                }
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while !reader.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served.signal("TERM");
    let seen = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    let warning = seen
        .lines()
        .find(|l| l.contains("log lines dropped"))
        .unwrap_or_else(|| panic!("no warning about dropped lines in {} bytes", seen.len()));
    let dropped: u64 = warning
        .split("dropped_lines=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {warning:?}"));
    assert!(dropped > 0, "{warning}");
    let _ = served.wait_exit(Duration::from_secs(10));
}

/// Reads `stderr` (on a thread) until `wanted` appears or `within` passes; returns
/// everything read by then.
fn read_stderr_until(
    mut stderr: std::process::ChildStderr,
    wanted: &str,
    within: Duration,
) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stderr.read(&mut buf) {
            if tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(wanted) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(chunk) => seen.extend_from_slice(&chunk),
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_bounds_come_from_the_environment_and_a_408_gets_its_log_line() {
    let served = Served::start_with(
        Stdio::piped(),
        &[
            ("AUTHCTL_HEADER_TIMEOUT", "1s"),
            ("AUTHCTL_BODY_TIMEOUT", "1s"),
        ],
    );
    let mut served = served;
    let stderr = served.child.stderr.take().unwrap();
    served.wait_ready().await;

    // AUTHCTL_HEADER_TIMEOUT: a half-sent request is closed after about a second.
    let mut stalled = TcpStream::connect(served.addr).await.unwrap();
    stalled.write_all(b"GET /health/liv").await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut stalled, Duration::from_secs(5)).await;
    assert!(
        closed,
        "the 10 s default applied instead of AUTHCTL_HEADER_TIMEOUT"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // AUTHCTL_BODY_TIMEOUT: a stalled body is a 408, logged like any request.
    let mut s = TcpStream::connect(served.addr).await.unwrap();
    s.write_all(SLOW_BODY).await.unwrap();
    let (got, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(closed);
    let log = read_stderr_until(stderr, "slow-body-1", Duration::from_secs(5));
    let line = log
        .lines()
        .find(|l| l.contains("slow-body-1"))
        .unwrap_or_else(|| panic!("no log line for the 408 in {log}"));
    for field in ["POST", "/api/v1/auth/register", "status=408"] {
        assert!(line.contains(field), "no {field} in {line}");
    }
    served.signal("TERM");
    let status = served.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status:?}");
}
