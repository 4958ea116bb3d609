//! The connection edge: serves the warp filter through hyper's HTTP/1.1 server with a
//! timer, because warp's own `serve` sets no timer (so hyper's header timeout is off)
//! and bounds nothing. Every bound of SPEC §8 "Hardening" lives here:
//!
//! - HTTP/1.1 only: an h2c preface is refused (hyper's HTTP/1 parser rejects it);
//! - `header_timeout`: a connection that has not sent a request's headers by then is
//!   closed (hyper's header read timeout; it also runs while a keep-alive connection
//!   waits for its next request, so an idle connection lasts at most
//!   min(`header_timeout`, `idle_timeout`));
//! - `body_timeout`: a request whose body has not fully arrived by then is answered
//!   408 (a problem body) and its connection closed;
//! - `idle_timeout`: a keep-alive connection with no request for that long is closed;
//! - `max_connections`: a semaphore taken before `accept`, so extra connections wait
//!   in the kernel's backlog instead of costing a task and a file descriptor each;
//! - `shutdown_timeout`: on shutdown, stop accepting, let in-flight requests finish,
//!   close idle connections, and abandon whatever is left when the deadline passes.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use warp::Filter;
use warp::http::header::{CONNECTION, HeaderValue};
use warp::http::{Request, StatusCode};
use warp::reply::Response;

use super::problem;

/// The five bounds of the edge (SPEC §8: `server.header_timeout`, `body_timeout`,
/// `idle_timeout`, `max_connections`, `shutdown_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub shutdown_timeout: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
            shutdown_timeout: Duration::from_secs(8),
        }
    }
}

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
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
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

/// What the idle timer needs to know about a connection's requests.
struct Activity {
    in_flight: AtomicUsize,
    last_done: Mutex<Instant>,
}

/// Marks a request in flight until dropped (also when hyper drops the request's future
/// because its client went away).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut last) = self.0.last_done.lock() {
            *last = Instant::now();
        }
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
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
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last_done: Mutex::new(Instant::now()),
    });
    let service = {
        let activity = activity.clone();
        let svc = warp::service(filter);
        hyper::service::service_fn(move |req: Request<Incoming>| {
            let in_flight = InFlight::begin(&activity);
            handle(svc.clone(), req, peer, limits.body_timeout, in_flight)
        })
    };
    let conn = http.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let mut closing = false;
    loop {
        // While a request runs, look again an idle timeout later (not in a loop).
        let idle_check = if activity.in_flight.load(Ordering::SeqCst) > 0 {
            Instant::now()
        } else {
            activity
                .last_done
                .lock()
                .map_or_else(|_| Instant::now(), |last| *last)
        } + limits.idle_timeout;
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
            () = tokio::time::sleep_until(idle_check), if !closing => {
                let idle = activity.in_flight.load(Ordering::SeqCst) == 0
                    && activity.last_done.lock().map_or(true, |last| last.elapsed() >= limits.idle_timeout);
                if idle {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
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
    let received = Arc::new(AtomicBool::new(body.is_end_stream()));
    let body = TimedBody {
        inner: body,
        received: received.clone(),
    };
    let mut req = Request::from_parts(parts, body);
    req.extensions_mut().insert(PeerAddr(peer));
    let request_id = super::middleware::RequestId::for_request(req.headers());
    req.extensions_mut().insert(request_id);
    let answer = tower_service::Service::call(&mut svc, req);
    let mut answer = std::pin::pin!(answer);
    tokio::select! {
        resp = answer.as_mut() => return resp,
        () = tokio::time::sleep(body_timeout) => {}
    }
    if received.load(Ordering::SeqCst) {
        return answer.await;
    }
    tracing::info!(%peer, "request body not received in time: 408, closing the connection");
    let mut resp = problem::problem(
        StatusCode::REQUEST_TIMEOUT,
        "The request body did not arrive in time.",
        None,
    );
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    Ok(resp)
}

/// The request body, noting when it has been received in full.
struct TimedBody {
    inner: Incoming,
    received: Arc<AtomicBool>,
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(frame, Poll::Ready(None | Some(Err(_)))) || this.inner.is_end_stream() {
            this.received.store(true, Ordering::SeqCst);
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
