//! The connection edge: serves the warp filter through hyper's HTTP/1.1 server with a
//! timer, because warp's own `serve` sets no timer (so hyper's header timeout is off)
//! and bounds nothing. Every bound of SPEC §8 "Hardening" lives here:
//!
//! - HTTP/1.1 only: an h2c preface is refused (hyper's HTTP/1 parser rejects it);
//! - `header_timeout`: a connection that has not sent a request's headers by then is
//!   closed, counted from its accept for the first request and from the first byte of
//!   each later one;
//! - `body_timeout`: a request whose body has not fully arrived by then is answered
//!   408 (a problem body, through the whole filter: security headers, request id, log
//!   line) and its connection closed;
//! - `idle_timeout`: a keep-alive connection with no request for that long is closed;
//! - `max_connections`: a semaphore taken before `accept`, so extra connections wait
//!   in the kernel's backlog instead of costing a task and a file descriptor each;
//! - `shutdown_timeout`: on shutdown, stop accepting, let in-flight requests finish,
//!   close idle connections, and abandon whatever is left when the deadline passes.
//!
//! The header and idle timers are ours, not hyper's: hyper 1.x starts its header read
//! timeout as soon as a keep-alive connection goes back to waiting for a request (see
//! `poll_read_head` in hyper's `proto/h1/conn.rs`), so with it an idle connection
//! lasts only `header_timeout`. Instead the socket is watched ([`Watched`]): bytes
//! arriving while no request is being served start the header clock, the request
//! reaching the service stops it. Two cases are approximate, both still bounded:
//! bytes of the next request that arrive while one is being served (pipelining) are
//! timed as idle (`idle_timeout`), not as a started head; and the unread rest of a
//! body that arrives after its answer (a refused upload) starts the header clock, so
//! that connection closes sooner than an idle one would.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use warp::http::header::{CONNECTION, HeaderValue};
use warp::http::{Request, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::problem;

/// The five bounds of the edge, read from `[server]` in the configuration.
pub use crate::config::EdgeLimits;

/// The socket peer of a request, put in its extensions by [`serve`] (warp's own
/// `warp::addr::remote()` only works under warp's server).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The peer address of the connection, like `warp::addr::remote()`.
pub fn remote() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Copy {
    warp::ext::optional::<PeerAddr>().map(|peer: Option<PeerAddr>| peer.map(|p| p.0))
}

/// Serves `filter` on `listener` within `limits` until `shutdown` resolves, then
/// drains: returns once every connection has closed or `shutdown_timeout` passed.
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: EdgeLimits,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (drain, draining) = watch::channel(false);
    let mut http = http1::Builder::new();
    // hyper's header timer is off (see the module comment); the timer stays for the
    // rest of hyper's timing.
    http.timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Reap finished connections so the set stays as large as the open ones.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        connections.spawn(connection(
            stream,
            peer,
            filter.clone(),
            http.clone(),
            limits,
            draining.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = drain.send(true);
    let drained = tokio::time::timeout(limits.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "shutdown timeout reached: closing the remaining connections"
        );
        connections.abort_all();
    }
}

/// Out of file descriptors and the like: wait a little rather than spin; a client
/// that gave up before we accepted it is not worth a line.
async fn accept_failed(e: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if !matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        tracing::warn!(error = %e, "accepting a connection failed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a connection's timers need to know about its requests.
struct Activity {
    clock: Mutex<Clock>,
    /// Woken whenever the clock changes state, so the timers are recomputed.
    changed: Notify,
}

struct Clock {
    in_flight: usize,
    /// When the head now being received began: the accept for a connection's first
    /// request, the first byte for a later one; `None` while idle or serving.
    head_since: Option<Instant>,
    /// When the last request ended (the accept, before any).
    last_done: Instant,
}

/// What a connection waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// A request is being served: no timer but the body's.
    Serving,
    /// Part of a head may have arrived: `header_timeout` from `since`.
    Head { since: Instant },
    /// Nothing: `idle_timeout` from `since`.
    Idle { since: Instant },
}

impl Activity {
    fn new(accepted: Instant) -> Arc<Self> {
        Arc::new(Activity {
            clock: Mutex::new(Clock {
                in_flight: 0,
                head_since: Some(accepted),
                last_done: accepted,
            }),
            changed: Notify::new(),
        })
    }

    /// Runs `f` on the clock; a poisoned lock only means another request of this
    /// connection panicked, and the counts are still whole.
    fn with<T>(&self, f: impl FnOnce(&mut Clock) -> T) -> T {
        let mut clock = self
            .clock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut clock)
    }

    fn waiting(&self) -> Waiting {
        self.with(|c| match (c.in_flight, c.head_since) {
            (1.., _) => Waiting::Serving,
            (0, Some(since)) => Waiting::Head { since },
            (0, None) => Waiting::Idle { since: c.last_done },
        })
    }

    /// Bytes arrived: while nothing is being served, they are the start of a head.
    fn read(&self) {
        let started = self.with(|c| {
            let starts = c.in_flight == 0 && c.head_since.is_none();
            if starts {
                c.head_since = Some(Instant::now());
            }
            starts
        });
        if started {
            self.changed.notify_one();
        }
    }
}

/// Marks a request in flight from its complete head until dropped (also when hyper
/// drops the request's future because its client went away).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.with(|c| {
            c.in_flight += 1;
            c.head_since = None;
        });
        activity.changed.notify_one();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.with(|c| {
            c.in_flight = c.in_flight.saturating_sub(1);
            c.last_done = Instant::now();
        });
        self.0.changed.notify_one();
    }
}

/// The socket, telling [`Activity`] when bytes arrive.
struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

async fn connection<F>(
    stream: TcpStream,
    peer: SocketAddr,
    filter: F,
    http: http1::Builder,
    limits: EdgeLimits,
    mut draining: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let activity = Activity::new(Instant::now());
    let service = {
        let activity = activity.clone();
        let svc = warp::service(filter);
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let in_flight = InFlight::begin(&activity);
            handle(svc.clone(), req, peer, limits.body_timeout, in_flight)
        })
    };
    let io = Watched {
        stream,
        activity: activity.clone(),
    };
    let conn = http.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    loop {
        let waiting = activity.waiting();
        let deadline = match waiting {
            Waiting::Serving => None,
            Waiting::Head { since } => Some(since + limits.header_timeout),
            Waiting::Idle { since } => Some(since + limits.idle_timeout),
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                }
                return;
            }
            _ = draining.wait_for(|d| *d), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.changed.notified() => {}
            () = sleep_until_some(deadline) => {
                // Nothing is in flight on either timer, so there is nothing to finish:
                // dropping the connection closes the socket.
                if activity.waiting() == waiting {
                    if matches!(waiting, Waiting::Head { .. }) {
                        tracing::debug!(%peer, "request headers not received in time: closing");
                    }
                    return;
                }
            }
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Put in a request's extensions when its body did not arrive within `body_timeout`:
/// the request is passed through the filter again, body-less, and [`body_timed_out`]
/// answers it, so the 408 is shaped and logged like every other response.
#[derive(Debug, Clone, Copy)]
struct BodyTimedOut;

/// Answers a request whose body timed out (see [`BodyTimedOut`]) with a 408 problem
/// that closes the connection; rejects every other request. Goes first in the app's
/// filter, inside the middleware that adds headers and logs.
pub fn body_timed_out() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::ext::get::<BodyTimedOut>().map(|BodyTimedOut| {
        let mut resp = problem::problem(
            StatusCode::REQUEST_TIMEOUT,
            "The request body did not arrive in time.",
            None,
        );
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        resp
    })
}

/// One request: the peer goes into its extensions for the rate limiter, and the body
/// must arrive within `body_timeout` or the request is answered 408 and the
/// connection closed. A handler still working on a complete body is not cut off.
async fn handle<S>(
    mut svc: S,
    req: Request<Incoming>,
    peer: SocketAddr,
    body_timeout: Duration,
    _in_flight: InFlight,
) -> Result<Response, Infallible>
where
    S: tower_service::Service<Request<TimedBody>, Response = Response, Error = Infallible>,
{
    let (parts, body) = req.into_parts();
    // What the 408 needs to be logged and answered like the request (cheap clones:
    // the URI and header value share their bytes).
    let replay = {
        let mut r = Request::new(TimedBody::empty());
        *r.method_mut() = parts.method.clone();
        *r.uri_mut() = parts.uri.clone();
        *r.version_mut() = parts.version;
        if let Some(id) = parts.headers.get(X_REQUEST_ID) {
            r.headers_mut().insert(X_REQUEST_ID, id.clone());
        }
        r.extensions_mut().insert(PeerAddr(peer));
        r.extensions_mut().insert(BodyTimedOut);
        r
    };
    let received = Arc::new(AtomicBool::new(body.is_end_stream()));
    let body = TimedBody {
        inner: Some(body),
        received: received.clone(),
    };
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(PeerAddr(peer));
    let request_id = super::middleware::RequestId::for_request(req.headers());
    req.extensions_mut().insert(request_id);
    {
        // The first answer (and the body it holds) is dropped before the replay.
        let answer = tower_service::Service::call(&mut svc, req);
        let mut answer = std::pin::pin!(answer);
        tokio::select! {
            resp = answer.as_mut() => return resp,
            () = tokio::time::sleep(body_timeout) => {}
        }
        if received.load(Ordering::SeqCst) {
            return answer.await;
        }
    }
    tower_service::Service::call(&mut svc, replay).await
}

const X_REQUEST_ID: &str = "x-request-id";

/// The request body, noting when it has been received in full; empty for the 408's
/// replay.
struct TimedBody {
    inner: Option<Incoming>,
    received: Arc<AtomicBool>,
}

impl TimedBody {
    fn empty() -> Self {
        TimedBody {
            inner: None,
            received: Arc::new(AtomicBool::new(true)),
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(&mut *inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) || inner.is_end_stream() {
            this.received.store(true, Ordering::SeqCst);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}
