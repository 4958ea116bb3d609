//! [`AppState`]: what every request shares — the service once started, the rate
//! limits, the CORS origins, the metrics (when `metrics.bind` is set), and whether the
//! server is draining.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use ipnet::IpNet;

use super::rate_limit::RateLimits;
use crate::config::{CorsOrigins, Settings};
use crate::metrics::Metrics;
use crate::service::AuthService;

/// Shared by every request.
pub struct AppState {
    service: OnceLock<Arc<AuthService>>,
    pub limits: RateLimits,
    cors: CorsOrigins,
    /// `None` without `metrics.bind`: then requests are not observed at all.
    metrics: Option<Metrics>,
    draining: AtomicBool,
    /// `auth.issuer` and the trusted proxies, for the RFC 8414 metadata's URLs.
    pub site: Site,
}

/// What the metadata document needs to name this server's URLs.
pub struct Site {
    pub issuer: String,
    pub trusted_proxies: Vec<IpNet>,
}

impl AppState {
    pub fn new(settings: &Settings) -> Arc<Self> {
        Arc::new(AppState {
            service: OnceLock::new(),
            limits: RateLimits::new(&settings.rate_limit),
            cors: settings.cors.clone(),
            metrics: settings.metrics_bind.map(|_| Metrics::new()),
            draining: AtomicBool::new(false),
            site: Site {
                issuer: settings.auth.issuer.clone(),
                trusted_proxies: settings.rate_limit.trusted_proxies.clone(),
            },
        })
    }

    /// Marks startup finished; from now on the API answers.
    pub fn set_ready(&self, service: Arc<AuthService>) {
        let _ = self.service.set(service);
    }

    /// The service, once startup has finished.
    pub fn service(&self) -> Option<&Arc<AuthService>> {
        self.service.get()
    }

    /// The origins CORS answers (`cors.allowed_origins`).
    pub fn cors(&self) -> &CorsOrigins {
        &self.cors
    }

    /// The process's metrics, when `metrics.bind` is set.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.metrics.as_ref()
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}
