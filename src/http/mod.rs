//! The warp HTTP layer: routes, request parsing and response shaping over
//! [`AuthService`]. Nothing here decides a rule.
//!
//! - [`routes`]: every endpoint, one filter each, plus 404/405 handling;
//! - [`handlers`]: parse the request, call the service, shape the reply;
//! - [`rejection`]: the single `recover` for warp's own rejections;
//! - [`problem`]: errors as `application/problem+json`;
//! - [`rate_limit`]: per-IP governor limits;
//! - [`client_ip`]: the rate-limit key from the peer and `X-Forwarded-For`;
//! - [`listener`]: the connection edge (HTTP/1.1 only, timeouts, bounds, drain);
//! - [`docs`]: the OpenAPI document, Swagger UI and ReDoc, served from the binary.

pub mod client_ip;
pub mod docs;
pub mod handlers;
pub mod listener;
pub mod problem;
pub mod rate_limit;
pub mod rejection;
pub mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use warp::filters::BoxedFilter;
use warp::http::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE,
};
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::config::{CorsOrigins, Settings};
use crate::service::AuthService;
use rate_limit::RateLimits;

/// Shared by every request.
pub struct AppState {
    service: OnceLock<Arc<AuthService>>,
    pub limits: RateLimits,
    cors: CorsOrigins,
    draining: AtomicBool,
}

impl AppState {
    pub fn new(settings: &Settings) -> Arc<Self> {
        Arc::new(AppState {
            service: OnceLock::new(),
            limits: RateLimits::new(&settings.rate_limit),
            cors: settings.cors.clone(),
            draining: AtomicBool::new(false),
        })
    }

    /// Marks startup finished; from now on the API answers.
    pub fn set_ready(&self, service: Arc<AuthService>) {
        let _ = self.service.set(service);
    }

    pub fn service(&self) -> Option<&Arc<AuthService>> {
        self.service.get()
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The whole application: routes, rejection handling, security headers, request ids
/// and the per-request log line.
pub fn app(state: Arc<AppState>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    // Rejections become problem responses inside the CORS wrapper, so browsers can read
    // them too; the outer `recover` answers the wrapper's own refusals.
    let routes = routes::routes(state.clone())
        .recover(rejection::handle)
        .unify()
        .boxed();
    let inner = with_cors(routes, &state.cors)
        .recover(rejection::handle)
        .unify();
    observed(inner)
}

/// Wraps every response: security headers, the request id, and the request's one log
/// line (with the cause of a 5xx, see [`problem::ServerFault`]).
fn observed<F>(inner: F) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync,
{
    warp::any()
        .map(Instant::now)
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(inner)
        .map(finish)
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// CORS for the configured origins (`cors.allowed_origins`); without any, no CORS
/// headers are sent and a preflight is a 405 like any other `OPTIONS`. warp answers
/// preflights itself, and refuses a request from an origin not on the list with 403
/// (a problem body, see [`rejection`]): a browser would hide the response anyway.
fn with_cors(routes: BoxedFilter<(Response,)>, origins: &CorsOrigins) -> BoxedFilter<(Response,)> {
    let builder = match origins {
        CorsOrigins::Off => return routes,
        CorsOrigins::Any => warp::cors().allow_any_origin(),
        // Each origin was validated when the configuration was read.
        CorsOrigins::Only(list) => warp::cors().allow_origins(list.iter().map(String::as_str)),
    };
    let cors = builder
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE, X_REQUEST_ID.clone()])
        .expose_headers([X_REQUEST_ID.clone(), RETRY_AFTER, WWW_AUTHENTICATE])
        .max_age(Duration::from_secs(600));
    routes.with(cors).map(Reply::into_response).boxed()
}

/// Whether a client's request id is safe to echo and log.
fn sane_request_id(v: &HeaderValue) -> Option<&str> {
    let s = v.to_str().ok()?;
    let ok = !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    ok.then_some(s)
}

fn finish(
    start: Instant,
    method: Method,
    path: warp::path::FullPath,
    headers: HeaderMap,
    mut resp: Response,
) -> Response {
    let request_id = headers
        .get(&X_REQUEST_ID)
        .and_then(sane_request_id)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert(X_REQUEST_ID.clone(), v);
    }
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    let status = resp.status();
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    let fault = resp.extensions_mut().remove::<problem::ServerFault>();
    let error = fault.as_ref().map(|f| f.0.as_str());
    macro_rules! request_line {
        ($level:expr) => {
            tracing::event!(target: "authctl::http", $level, %method, path = path.as_str(),
                status = status.as_u16(), latency_ms, request_id, error, "request")
        };
    }
    match status {
        StatusCode::INTERNAL_SERVER_ERROR => request_line!(tracing::Level::ERROR),
        s if s.is_server_error() => request_line!(tracing::Level::WARN),
        _ => request_line!(tracing::Level::INFO),
    }
    resp
}

/// Serves `state` on `listener` within `limits` until `shutdown` resolves, then
/// finishes in-flight requests (for at most `limits.shutdown_timeout`) and returns.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: listener::EdgeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let drain_state = state.clone();
    let shutdown = async move {
        shutdown.await;
        drain_state.start_draining();
        tracing::info!("shutting down: finishing in-flight requests");
    };
    listener::serve(listener, app(state), limits, shutdown).await;
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Mutex;

    use super::*;

    /// Collects what the fmt layer writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_server_fault_is_logged_on_the_request_line_not_sent() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let inner = warp::any().map(|| {
            problem::with_fault(
                problem::problem(StatusCode::INTERNAL_SERVER_ERROR, "Opaque.", None),
                "internal error: disk on fire".into(),
            )
        });
        let resp = warp::test::request()
            .path("/api/v1/auth/me")
            .header("x-request-id", "req-42")
            .reply(&observed(inner))
            .await;
        assert_eq!(resp.status(), 500);
        let body = String::from_utf8_lossy(resp.body()).into_owned();
        assert!(!body.contains("disk on fire"), "{body}");

        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(logs.trim()).expect(&logs);
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["request_id"], "req-42");
        assert_eq!(line["status"], 500);
        assert_eq!(line["error"], "internal error: disk on fire");
    }
}
