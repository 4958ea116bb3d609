//! What the service counts for `/metrics` (SPEC §11): logins and refreshes by
//! outcome, and registrations. Each is counted once, where the rule decides it (in
//! `mod.rs`); this file holds the wiring and the helpers those one-line call sites use.
//!
//! A login refused because the account is locked (SPEC §10) counts as
//! [`LoginResult::Locked`], not as a failure: where lockout refuses a login, count it
//! with `self.metrics.login(LoginResult::Locked)`.

use super::AuthService;
use crate::error::Error;
use crate::metrics::{LoginResult, Metrics, RefreshResult};

impl AuthService {
    /// Counts in `metrics` (the server's, which `/metrics` serves), hashing included,
    /// instead of a private set nobody reads (the CLI's case).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.hasher = self.hasher.with_metrics(metrics.clone());
        self.metrics = metrics;
        self
    }

    /// The one answer to a failed login, counted.
    pub(super) fn failed_login(&self) -> Error {
        self.metrics.login(LoginResult::Failure);
        Error::InvalidCredentials
    }

    /// A refused refresh token (unknown, revoked, expired, or its user disabled),
    /// counted as `invalid`.
    pub(super) fn invalid_refresh(&self, reason: &'static str) -> Error {
        self.metrics.refresh(RefreshResult::Invalid);
        Error::InvalidToken(reason)
    }
}
