//! Prometheus metrics (SPEC §11): every family the contract names, the route
//! templates that label requests, and the second listener that serves `GET /metrics`.
//!
//! - [`Metrics`] is the one handle the rest of the code holds (an `Arc` inside, so a
//!   clone is a pointer copy). Its methods (`observe_request`, `login`, `refresh`, …)
//!   are what the HTTP middleware, the service and the hasher call.
//! - Every label value is an enum of this module or a number bounded by HTTP
//!   (`status`), so the number of series is fixed by construction: a raw path never
//!   becomes a label, [`Route::of`] folds it into a template or `unmatched`.
//! - The hot path takes no lock it can avoid: the small fixed families (`result`,
//!   `endpoint`, the per-route histograms) are resolved once, at construction, into
//!   plain handles whose update is one atomic add (a histogram: one short mutex);
//!   only `authctl_http_requests_total`, whose `status` is open, looks its series up
//!   per request: a read lock and a hash of a 4-byte `Copy` key, no allocation after
//!   the first request of each kind.
//! - Values that live elsewhere (database pool occupancy, log lines dropped by the
//!   non-blocking writer) are read at scrape time from sources plugged in with
//!   [`Metrics::set_pool_source`] and [`Metrics::set_log_drop_source`].
//! - [`serve_metrics`] answers `GET /metrics` in the Prometheus text format 0.0.4
//!   (see [`CONTENT_TYPE`] for why that one) and 404 to anything else.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
    prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use warp::Filter;
use warp::http::header::{CONTENT_TYPE as CONTENT_TYPE_HEADER, HeaderValue};
use warp::http::{Method, StatusCode};
use warp::reply::Response;

/// The `Content-Type` of `/metrics`: the Prometheus text format, version 0.0.4.
///
/// SPEC §11 asks for "the Prometheus text format", and this is the one every
/// Prometheus release and every compatible scraper (Grafana Alloy, VictoriaMetrics,
/// the OpenTelemetry collector's receiver) reads without negotiation. OpenMetrics
/// would add only what authctl does not use (exemplars, `_created` series, the `info`
/// type), at the price of a stricter grammar (`# EOF`) for scrapers and for `curl`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Every family name starts with this (`authctl_logins_total`, …).
const PREFIX: &str = "authctl";

/// Request latency buckets (seconds): `/me` and health answer in well under a
/// millisecond, a login costs one bcrypt hash (~70 ms at cost 10, ~300 ms at 12), a
/// queued login waits up to `hash_queue_timeout` (5 s by default).
const REQUEST_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// bcrypt hash buckets (seconds): from cost 8 on a fast core to cost 14 on a slow one.
const HASH_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0];

/// Declares a label enum: its variants, their label values, the list of all of them
/// (so a family can be resolved for each at start) and how it encodes as a value.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $value:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every variant, in declaration order (the order of their indices).
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The label value, as it appears in the exposition.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $value,)+ }
            }

            /// The position in [`Self::ALL`], for a table of pre-resolved handles.
            #[allow(dead_code)] // `method` is looked up per request, never tabled
            const fn index(self) -> usize {
                self as usize
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), fmt::Error> {
                fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

label_enum! {
    /// The route template of a request: the `route` label. Never a raw path.
    pub enum Route {
        Register => "/api/v1/auth/register",
        Token => "/api/v1/auth/token",
        Me => "/api/v1/auth/me",
        Refresh => "/api/v1/auth/refresh",
        Revoke => "/api/v1/auth/revoke",
        Sessions => "/api/v1/auth/sessions",
        Session => "/api/v1/auth/sessions/{id}",
        Logout => "/api/v1/auth/logout",
        Password => "/api/v1/auth/password",
        Jwks => "/.well-known/jwks.json",
        AuthorizationServer => "/.well-known/oauth-authorization-server",
        OpenApi => "/openapi.json",
        /// Swagger UI: `/docs` and every asset below it.
        Docs => "/docs",
        /// ReDoc: `/redoc` and every asset below it.
        Redoc => "/redoc",
        Liveness => "/health/liveness",
        Readiness => "/health/readiness",
        Startup => "/health/startup",
        /// Any path the API does not serve (its 404s), as one series.
        Unmatched => "unmatched",
    }
}

label_enum! {
    /// The `method` label: the methods HTTP defines, anything else as `OTHER`.
    pub enum HttpMethod {
        Get => "GET",
        Head => "HEAD",
        Post => "POST",
        Put => "PUT",
        Delete => "DELETE",
        Patch => "PATCH",
        Options => "OPTIONS",
        Connect => "CONNECT",
        Trace => "TRACE",
        /// An extension method: its name is client-chosen, so it is not a label.
        Other => "OTHER",
    }
}

label_enum! {
    /// The outcome of a password login: `authctl_logins_total{result}`.
    pub enum LoginResult {
        Success => "success",
        /// Unknown user, wrong password or inactive user (the generic 401).
        Failure => "failure",
        /// Refused because the account is locked (SPEC §10), the right password too.
        Locked => "locked",
    }
}

label_enum! {
    /// The outcome of a refresh (either endpoint): `authctl_refresh_total{result}`.
    pub enum RefreshResult {
        /// The presented token was spent and a successor issued.
        Rotated => "rotated",
        /// A replay inside the grace window got the same successor again.
        Grace => "grace",
        /// A spent token was presented again: its family is now revoked (theft).
        ReuseDetected => "reuse_detected",
        /// Unknown, expired or revoked token, or a family past its lifetime.
        Invalid => "invalid",
    }
}

label_enum! {
    /// A rate-limited endpoint: `authctl_rate_limited_total{endpoint}`.
    pub enum LimitedEndpoint {
        Register => "register",
        Token => "token",
        Refresh => "refresh",
        Password => "password",
    }
}

impl Route {
    /// The template of `path` (the request URI's path, without the query).
    ///
    /// It matches the way warp's `path!` filters do, so the label names the route
    /// that answered: one optional trailing slash, no empty segment inside, and the
    /// docs viewers own everything below their prefix. Anything else is
    /// [`Route::Unmatched`]. The method plays no part: a wrong method on a known path
    /// is that route's 405, and it is told apart by the `method` and `status` labels.
    pub fn of(path: &str) -> Route {
        let path = path.strip_prefix('/').unwrap_or(path);
        let first = path.split('/').next().unwrap_or_default();
        match first {
            "docs" => return Route::Docs,
            "redoc" => return Route::Redoc,
            _ => {}
        }
        let path = path.strip_suffix('/').unwrap_or(path);

        // The longest known route has five segments; a longer path is no route.
        let mut segments = [""; 5];
        let mut len = 0;
        for segment in path.split('/') {
            if segment.is_empty() || len == segments.len() {
                return Route::Unmatched;
            }
            segments[len] = segment;
            len += 1;
        }

        match segments[..len] {
            ["api", "v1", "auth", endpoint] => match endpoint {
                "register" => Route::Register,
                "token" => Route::Token,
                "me" => Route::Me,
                "refresh" => Route::Refresh,
                "revoke" => Route::Revoke,
                "sessions" => Route::Sessions,
                "logout" => Route::Logout,
                "password" => Route::Password,
                _ => Route::Unmatched,
            },
            ["api", "v1", "auth", "sessions", _id] => Route::Session,
            [".well-known", "jwks.json"] => Route::Jwks,
            [".well-known", "oauth-authorization-server"] => Route::AuthorizationServer,
            ["openapi.json"] => Route::OpenApi,
            ["health", "liveness"] => Route::Liveness,
            ["health", "readiness"] => Route::Readiness,
            ["health", "startup"] => Route::Startup,
            _ => Route::Unmatched,
        }
    }
}

impl LimitedEndpoint {
    /// The rate-limited endpoint `route` is, if it is one: a 429 there counts in
    /// `authctl_rate_limited_total` (see [`Metrics::observe_request`]).
    pub const fn of_route(route: Route) -> Option<LimitedEndpoint> {
        match route {
            Route::Register => Some(LimitedEndpoint::Register),
            Route::Token => Some(LimitedEndpoint::Token),
            Route::Refresh => Some(LimitedEndpoint::Refresh),
            Route::Password => Some(LimitedEndpoint::Password),
            _ => None,
        }
    }
}

impl HttpMethod {
    /// The label of `method`.
    pub fn of(method: &Method) -> HttpMethod {
        match *method {
            Method::GET => HttpMethod::Get,
            Method::HEAD => HttpMethod::Head,
            Method::POST => HttpMethod::Post,
            Method::PUT => HttpMethod::Put,
            Method::DELETE => HttpMethod::Delete,
            Method::PATCH => HttpMethod::Patch,
            Method::OPTIONS => HttpMethod::Options,
            Method::CONNECT => HttpMethod::Connect,
            Method::TRACE => HttpMethod::Trace,
            _ => HttpMethod::Other,
        }
    }
}

/// The labels of `authctl_http_requests_total`: four bytes, `Copy`, cheap to hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: Route,
    method: HttpMethod,
    /// `StatusCode` only holds 100–999, so this label is bounded too.
    status: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabel {
    route: Route,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LoginLabel {
    result: LoginResult,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefreshLabel {
    result: RefreshResult,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: LimitedEndpoint,
}

/// The database pool's connections at one moment: `authctl_db_pool_connections`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolConnections {
    /// Open and waiting for a query.
    pub idle: u64,
    /// Checked out by a request or a housekeeping task.
    pub used: u64,
}

type PoolSource = Box<dyn Fn() -> PoolConnections + Send + Sync>;
type LogDropSource = Box<dyn Fn() -> u64 + Send + Sync>;

/// Values owned elsewhere, read at each scrape (never on the request path).
#[derive(Default)]
struct Sources {
    pool: RwLock<Option<PoolSource>>,
    log_lines_dropped: RwLock<Option<LogDropSource>>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources").finish_non_exhaustive()
    }
}

/// Reads [`Sources`] at scrape time; a source not plugged in yet is left out of the
/// exposition rather than reported as a made-up zero.
#[derive(Debug)]
struct SourceCollector(Arc<Sources>);

impl Collector for SourceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // A poisoned lock only means a source panicked once; the slot is still usable.
        let pool = self.0.pool.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(read) = pool.as_ref() {
            let PoolConnections { idle, used } = read();
            let mut family = encoder.encode_descriptor(
                "db_pool_connections",
                "Database pool connections, by state.",
                None,
                MetricType::Gauge,
            )?;
            for (state, value) in [("idle", idle), ("used", used)] {
                let labels = [("state", state)];
                ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
            }
        }
        drop(pool);

        let dropped = self
            .0
            .log_lines_dropped
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(read) = dropped.as_ref() {
            let counter = ConstCounter::new(read());
            let metric = encoder.encode_descriptor(
                "log_lines_dropped",
                "Log lines dropped because the log consumer fell behind.",
                None,
                counter.metric_type(),
            )?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

/// The metrics of one process. Clone it freely: every clone updates the same values.
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// One histogram per [`Route`], indexed by [`Route::index`].
    request_durations: Vec<Histogram>,
    /// Indexed by [`LoginResult::index`].
    logins: Vec<Counter>,
    /// Indexed by [`RefreshResult::index`].
    refreshes: Vec<Counter>,
    registrations: Counter,
    /// Indexed by [`LimitedEndpoint::index`].
    rate_limited: Vec<Counter>,
    hash_durations: Histogram,
    hash_waiting: Gauge,
    hash_rejected: Counter,
    sources: Arc<Sources>,
}

/// Creates the series of `family` for each of `labels`, in order: the handles the
/// hot path then updates without a lookup, and series that read 0 from the first
/// scrape (so `rate()` and alerts see them before their first event).
fn resolve<L, M, C>(family: &Family<L, M, C>, labels: impl IntoIterator<Item = L>) -> Vec<M>
where
    L: Clone + std::hash::Hash + Eq,
    M: Clone,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    labels
        .into_iter()
        .map(|label| family.get_or_create_owned(&label))
        .collect()
}

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family of SPEC §11, registered and (for fixed label sets) resolved.
    pub fn new() -> Metrics {
        // The registry ends each help text with a period itself; the collector's
        // texts are written as they are, so they carry their own.
        let mut registry = Registry::with_prefix(PREFIX);

        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );

        let durations = Family::<RouteLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            request_histogram,
        );
        let request_durations = resolve(
            &durations,
            Route::ALL.iter().map(|&route| RouteLabel { route }),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response, by route template",
            Unit::Seconds,
            durations,
        );

        let login_family = Family::<LoginLabel, Counter>::default();
        let logins = resolve(
            &login_family,
            LoginResult::ALL.iter().map(|&result| LoginLabel { result }),
        );
        registry.register("logins", "Password logins, by result", login_family);

        let refresh_family = Family::<RefreshLabel, Counter>::default();
        let refreshes = resolve(
            &refresh_family,
            RefreshResult::ALL
                .iter()
                .map(|&result| RefreshLabel { result }),
        );
        registry.register(
            "refresh",
            "Refresh token presentations, by result",
            refresh_family,
        );

        let registrations = Counter::default();
        registry.register(
            "registrations",
            "Accounts created through the register endpoint",
            registrations.clone(),
        );

        let limited_family = Family::<EndpointLabel, Counter>::default();
        let rate_limited = resolve(
            &limited_family,
            LimitedEndpoint::ALL
                .iter()
                .map(|&endpoint| EndpointLabel { endpoint }),
        );
        registry.register(
            "rate_limited",
            "Requests refused with 429 by the rate limiter, by endpoint",
            limited_family,
        );

        let hash_durations = Histogram::new(HASH_BUCKETS);
        registry.register_with_unit(
            "password_hash_duration",
            "Time one bcrypt hash or verify took, once it had a slot",
            Unit::Seconds,
            hash_durations.clone(),
        );

        let hash_waiting = Gauge::default();
        registry.register(
            "password_hash_waiting",
            "Password hashes waiting for a hashing slot right now",
            hash_waiting.clone(),
        );

        let hash_rejected = Counter::default();
        registry.register(
            "password_hash_rejected",
            "Password hashes refused (503) after waiting hash_queue_timeout for a slot",
            hash_rejected.clone(),
        );

        registry.register(
            "build",
            "The running build; the value is always 1",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );

        let sources = Arc::new(Sources::default());
        registry.register_collector(Box::new(SourceCollector(sources.clone())));

        Metrics {
            inner: Arc::new(Inner {
                registry,
                requests,
                request_durations,
                logins,
                refreshes,
                registrations,
                rate_limited,
                hash_durations,
                hash_waiting,
                hash_rejected,
                sources,
            }),
        }
    }

    /// One answered request: call once per response, where its log line is written.
    ///
    /// A 429 on a rate-limited endpoint also counts in `authctl_rate_limited_total`:
    /// only the rate limiter answers 429 (a locked account gets the generic 401), and
    /// every refusal passes here whichever limiter store refused it, so this is the one
    /// place it is counted.
    pub fn observe_request(
        &self,
        route: Route,
        method: &Method,
        status: StatusCode,
        elapsed: Duration,
    ) {
        let labels = RequestLabels {
            route,
            method: HttpMethod::of(method),
            status: status.as_u16(),
        };
        self.inner.requests.get_or_create(&labels).inc();
        if let Some(histogram) = self.inner.request_durations.get(route.index()) {
            histogram.observe(elapsed.as_secs_f64());
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            && let Some(endpoint) = LimitedEndpoint::of_route(route)
        {
            self.rate_limited(endpoint);
        }
    }

    /// One password login decided, with its outcome.
    pub fn login(&self, result: LoginResult) {
        inc(&self.inner.logins, result.index());
    }

    /// One refresh token presented (at `/refresh` or the token endpoint's
    /// `refresh_token` grant), with its outcome.
    pub fn refresh(&self, result: RefreshResult) {
        inc(&self.inner.refreshes, result.index());
    }

    /// One account created through `POST /api/v1/auth/register`.
    pub fn registration(&self) {
        self.inner.registrations.inc();
    }

    /// One request refused with 429 at `endpoint`.
    pub fn rate_limited(&self, endpoint: LimitedEndpoint) {
        inc(&self.inner.rate_limited, endpoint.index());
    }

    /// One bcrypt hash or verify finished after running for `elapsed`.
    pub fn observe_hash(&self, elapsed: Duration) {
        self.inner.hash_durations.observe(elapsed.as_secs_f64());
    }

    /// A hash starts waiting for a slot; it counts in `authctl_password_hash_waiting`
    /// until the returned guard is dropped (slot granted, timed out or cancelled).
    #[must_use = "the hash counts as waiting only while the guard lives"]
    pub fn hash_waiting(&self) -> HashWaiting {
        self.inner.hash_waiting.inc();
        HashWaiting(self.inner.hash_waiting.clone())
    }

    /// One hash refused because no slot freed within `hash_queue_timeout`.
    pub fn hash_rejected(&self) {
        self.inner.hash_rejected.inc();
    }

    /// Reads the database pool's idle and used connections at each scrape. A later
    /// call replaces the source.
    pub fn set_pool_source(&self, source: impl Fn() -> PoolConnections + Send + Sync + 'static) {
        let mut slot = self
            .inner
            .sources
            .pool
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Some(Box::new(source));
    }

    /// Reads the total of log lines dropped so far (a monotonic count, such as
    /// tracing-appender's `ErrorCounter::dropped_lines`) at each scrape. A later call
    /// replaces the source.
    pub fn set_log_drop_source(&self, source: impl Fn() -> u64 + Send + Sync + 'static) {
        let mut slot = self
            .inner
            .sources
            .log_lines_dropped
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *slot = Some(Box::new(source));
    }

    /// The exposition in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(16 * 1024);
        prometheus_text::encode(&mut text, &self.inner.registry)?;
        Ok(text)
    }
}

/// Increments the pre-resolved counter at `index`. The index comes from a label
/// enum whose variants built the table, so it is always in range.
fn inc(counters: &[Counter], index: usize) {
    if let Some(counter) = counters.get(index) {
        counter.inc();
    }
}

/// A hash waiting for a slot; see [`Metrics::hash_waiting`].
#[derive(Debug)]
pub struct HashWaiting(Gauge);

impl Drop for HashWaiting {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The `/metrics` answer: the exposition, or a 500 if it could not be encoded.
fn scrape(metrics: &Metrics) -> Response {
    match metrics.render() {
        Ok(text) => {
            let mut resp = Response::new(text.into());
            resp.headers_mut()
                .insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "could not encode the metrics exposition");
            status_only(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

fn status_only(status: StatusCode) -> Response {
    let mut resp = Response::new(bytes::Bytes::new().into());
    *resp.status_mut() = status;
    resp
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves; every other
/// request is a 404. Run it on its own listener (`metrics.bind`), never the API's.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let exposition = warp::path!("metrics")
        .and(warp::get())
        .map(move || scrape(&metrics));
    let anything_else = warp::any().map(|| status_only(StatusCode::NOT_FOUND));
    warp::serve(exposition.or(anything_else).unify())
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

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
            ("/.well-known/jwks.json", "/.well-known/jwks.json"),
            (
                "/.well-known/oauth-authorization-server",
                "/.well-known/oauth-authorization-server",
            ),
            ("/openapi.json", "/openapi.json"),
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
        let server = tokio::spawn(serve_metrics(listener, metrics.clone(), async {
            let _ = stopped.await;
        }));

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
}
