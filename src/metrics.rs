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
//! - [`exposition`] answers `GET /metrics` in the Prometheus text format 0.0.4
//!   (see [`CONTENT_TYPE`] for why that one) and 404 to anything else; `server`
//!   serves it on its own listener through the API's edge (`http::listener`).

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, prometheus_text,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
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

mod labels;
pub use labels::*;

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
struct EmailLabel {
    kind: EmailKind,
    result: EmailResult,
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
    emails: Family<EmailLabel, Counter>,
    outbox_pending: Gauge,
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

        let emails = Family::<EmailLabel, Counter>::default();
        for &kind in EmailKind::ALL {
            for &result in EmailResult::ALL {
                let _ = emails.get_or_create(&EmailLabel { kind, result });
            }
        }
        registry.register(
            "emails",
            "Email delivery tries, by kind and result",
            emails.clone(),
        );
        let outbox_pending = Gauge::default();
        registry.register(
            "email_outbox_pending",
            "Messages in the outbox waiting to be delivered",
            outbox_pending.clone(),
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
                emails,
                outbox_pending,
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

    /// One delivery try of a message (SPEC §13).
    pub fn email(&self, kind: EmailKind, result: EmailResult) {
        self.inner
            .emails
            .get_or_create(&EmailLabel { kind, result })
            .inc();
    }

    /// Messages waiting in the outbox, as the sender last counted them.
    pub fn set_outbox_pending(&self, pending: i64) {
        self.inner.outbox_pending.set(pending);
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

/// What the metrics listener (`metrics.bind`) answers: `GET /metrics` with the
/// exposition, 404 to anything else. Served through the API's edge (`server`), so it
/// has the same timeouts and drains within the same shutdown deadline; never on the
/// API's own port.
pub fn exposition(
    metrics: Metrics,
) -> impl Filter<Extract = (Response,), Error = std::convert::Infallible> + Clone {
    let exposition = warp::path!("metrics")
        .and(warp::get())
        .map(move || scrape(&metrics));
    let anything_else = warp::any().map(|| status_only(StatusCode::NOT_FOUND));
    exposition.or(anything_else).unify()
}

#[cfg(test)]
mod tests;
