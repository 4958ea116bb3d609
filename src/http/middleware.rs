//! What wraps every response, whatever the route: CORS for the configured origins,
//! the security headers, `Cache-Control: no-store` under `/api/v1/auth`, the request
//! id, and the request's one log line (with the cause of a 5xx, see [`ServerFault`],
//! or why a token was refused, see [`RefusalReason`]) together with its metrics (SPEC §11), so a request is observed exactly once, where
//! it is logged.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use warp::filters::BoxedFilter;
use warp::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, PRAGMA,
    RETRY_AFTER, WWW_AUTHENTICATE,
};
use warp::http::{Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::problem::{RefusalReason, ServerFault};
use crate::config::CorsOrigins;
use crate::metrics::{Metrics, Route};

/// Wraps every response: security headers, `no-store` under [`NO_STORE_PREFIX`], the
/// request id, and the request's one log line (with the cause of a 5xx, see
/// [`ServerFault`]); with `metrics`, the request is counted and timed under its route
/// template.
pub fn observed<F>(
    inner: F,
    metrics: Option<Metrics>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync,
{
    warp::any()
        .map(Instant::now)
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<RequestId>())
        .and(inner)
        .map(move |start, method, path, headers, decided, resp| {
            finish(
                metrics.as_ref(),
                start,
                method,
                path,
                headers,
                decided,
                resp,
            )
        })
}

/// The request's id, decided once before any filter runs (by the listener, which puts
/// it in the request's extensions), so that the audit log and the response's
/// `X-Request-Id` name the same one.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The client's own id if it sent a sane one, else a new one.
    pub fn for_request(headers: &HeaderMap) -> RequestId {
        RequestId(
            headers
                .get(&X_REQUEST_ID)
                .and_then(sane_request_id)
                .map(str::to_owned)
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
        )
    }
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// CORS for the configured origins (`cors.allowed_origins`); without any, no CORS
/// headers are sent and a preflight is a 405 like any other `OPTIONS`. warp answers
/// preflights itself, and refuses a request from an origin not on the list with 403
/// (a problem body, see `rejection`): a browser would hide the response anyway.
pub fn with_cors(
    routes: BoxedFilter<(Response,)>,
    origins: &CorsOrigins,
) -> BoxedFilter<(Response,)> {
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

/// Every response under this path is `Cache-Control: no-store`: it is all credentials
/// and identity. Set here, by path, so that answers no endpoint wrote (400, 404, 405,
/// 411, 413, 415, 422 and 429 from filters, 503s) carry it too.
pub const NO_STORE_PREFIX: &str = "/api/v1/auth";

/// Whether `path` is [`NO_STORE_PREFIX`] or below it (not `/api/v1/authx`).
fn is_no_store(path: &str) -> bool {
    path.strip_prefix(NO_STORE_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
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
    metrics: Option<&Metrics>,
    start: Instant,
    method: Method,
    path: warp::path::FullPath,
    headers: HeaderMap,
    decided: Option<RequestId>,
    mut resp: Response,
) -> Response {
    let request_id = decided
        .unwrap_or_else(|| RequestId::for_request(&headers))
        .0;
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
    if is_no_store(path.as_str()) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // For HTTP/1.0 caches, which know no Cache-Control.
        h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    }
    let status = resp.status();
    let elapsed = start.elapsed();
    if let Some(metrics) = metrics {
        metrics.observe_request(Route::of(path.as_str()), &method, status, elapsed);
    }
    let latency_ms = elapsed.as_secs_f64() * 1000.0;
    let fault = resp.extensions_mut().remove::<ServerFault>();
    let error = fault.as_ref().map(|f| f.0.as_str());
    // Why a token was refused: the client's 401 does not say, its log line does.
    let reason = resp.extensions_mut().remove::<RefusalReason>().map(|r| r.0);
    macro_rules! request_line {
        ($level:expr) => {
            tracing::event!(target: "authctl::http", $level, %method, path = path.as_str(),
                status = status.as_u16(), latency_ms, request_id, error, reason, "request")
        };
    }
    match status {
        StatusCode::INTERNAL_SERVER_ERROR => request_line!(tracing::Level::ERROR),
        s if s.is_server_error() => request_line!(tracing::Level::WARN),
        _ => request_line!(tracing::Level::INFO),
    }
    resp
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::http::problem;

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

    #[test]
    fn no_store_covers_the_auth_api_and_nothing_beside_it() {
        for path in [
            "/api/v1/auth",
            "/api/v1/auth/",
            "/api/v1/auth/token",
            "/api/v1/auth/x/y",
        ] {
            assert!(is_no_store(path), "{path}");
        }
        for path in ["/api/v1/authx", "/api/v1", "/health/liveness", "/docs", "/"] {
            assert!(!is_no_store(path), "{path}");
        }
    }

    #[tokio::test]
    async fn a_503_under_the_auth_api_is_no_store_too() {
        let inner =
            warp::any().map(|| problem::problem(StatusCode::SERVICE_UNAVAILABLE, "Busy.", None));
        let resp = warp::test::request()
            .path("/api/v1/auth/token")
            .reply(&observed(inner, None))
            .await;
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
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
            .reply(&observed(inner, None))
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

    #[tokio::test]
    async fn why_a_token_was_refused_is_logged_on_the_request_line_not_sent() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let inner = warp::any().map(|| {
            problem::from_error(&crate::Error::InvalidToken(
                "refresh token reuse detected; session revoked",
            ))
        });
        let resp = warp::test::request()
            .path("/api/v1/auth/refresh")
            .header("x-request-id", "req-43")
            .reply(&observed(inner, None))
            .await;
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        let body = String::from_utf8_lossy(resp.body()).into_owned();
        assert!(body.contains(problem::REFUSED_TOKEN_DETAIL), "{body}");
        assert!(!body.contains("reuse"), "{body}");

        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(logs.trim()).expect(&logs);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["request_id"], "req-43");
        assert_eq!(line["status"], 401);
        assert_eq!(
            line["reason"],
            "refresh token reuse detected; session revoked"
        );
    }
}
