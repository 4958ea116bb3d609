//! The audit log's rules (SPEC §10): the kinds of event ([`AuditKind`]), where a
//! request came from ([`RequestContext`], built by the HTTP layer; the CLI has none),
//! and [`AuthService::audit`], which records an event and never fails the action it
//! records. What an event may hold is decided here: a user id and name, a family id,
//! the client's IP and request id, and a small `detail` object of non-secret facts —
//! never a password, token or key.

use std::net::IpAddr;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::AuthService;
use crate::domain::{FamilyId, UserId};
use crate::error::Result;
use crate::store::User;
use crate::store::audit::{AUDIT_PRUNE_BATCH, AuditFilter, AuditRow, NewAuditEvent};

/// Every kind of audit event (their names are the contract `audit list --kind` takes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum AuditKind {
    UserRegistered,
    UserCreated,
    LoginSucceeded,
    LoginFailed,
    /// A login refused because the account is locked.
    LoginLocked,
    /// An account reached the lockout threshold.
    AccountLocked,
    AccountUnlocked,
    RefreshReuseDetected,
    SessionRevoked,
    PasswordChanged,
    UserDisabled,
    UserEnabled,
    UserDeleted,
    KeysRotated,
    KeyRetired,
    /// A verification message was queued in the outbox (SPEC §13).
    EmailVerificationSent,
    EmailVerified,
    /// A reset message was queued, or an operator issued a reset link.
    PasswordResetRequested,
    PasswordReset,
    /// TOTP confirmed (SPEC §14).
    MfaEnabled,
    /// TOTP removed, by its user or an operator (`user mfa-reset`).
    MfaDisabled,
    /// A wrong second-factor code.
    MfaFailed,
    RecoveryCodeUsed,
    /// One `user import` run, with its counts (SPEC §16).
    UserImported,
    /// An API key was created (SPEC §15).
    ApikeyCreated,
    ApikeyRevoked,
    /// A user's email, username, verification or roles changed (admin API, `user
    /// role`).
    UserUpdated,
    /// A login through the OpenID Connect provider issued a client its tokens (§18).
    OidcLogin,
    /// An authorization code came back after its first use: what it issued is revoked.
    OidcCodeReuse,
    ClientCreated,
    ClientRemoved,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::UserRegistered => "user_registered",
            AuditKind::UserCreated => "user_created",
            AuditKind::UserImported => "user_imported",
            AuditKind::LoginSucceeded => "login_succeeded",
            AuditKind::LoginFailed => "login_failed",
            AuditKind::LoginLocked => "login_locked",
            AuditKind::AccountLocked => "account_locked",
            AuditKind::AccountUnlocked => "account_unlocked",
            AuditKind::RefreshReuseDetected => "refresh_reuse_detected",
            AuditKind::SessionRevoked => "session_revoked",
            AuditKind::PasswordChanged => "password_changed",
            AuditKind::UserDisabled => "user_disabled",
            AuditKind::UserEnabled => "user_enabled",
            AuditKind::UserDeleted => "user_deleted",
            AuditKind::KeysRotated => "keys_rotated",
            AuditKind::KeyRetired => "key_retired",
            AuditKind::EmailVerificationSent => "email_verification_sent",
            AuditKind::EmailVerified => "email_verified",
            AuditKind::PasswordResetRequested => "password_reset_requested",
            AuditKind::PasswordReset => "password_reset",
            AuditKind::MfaEnabled => "mfa_enabled",
            AuditKind::MfaDisabled => "mfa_disabled",
            AuditKind::MfaFailed => "mfa_failed",
            AuditKind::RecoveryCodeUsed => "recovery_code_used",
            AuditKind::ApikeyCreated => "apikey_created",
            AuditKind::ApikeyRevoked => "apikey_revoked",
            AuditKind::UserUpdated => "user_updated",
            AuditKind::OidcLogin => "oidc_login",
            AuditKind::OidcCodeReuse => "oidc_code_reuse",
            AuditKind::ClientCreated => "client_created",
            AuditKind::ClientRemoved => "client_removed",
        }
    }
}

/// Where a request came from, for the audit log: the client's full address (trusted
/// proxies resolved; not the rate limiter's key, SPEC §10), the request id its
/// response carries, and its user agent (for the sessions list). The CLI passes
/// [`RequestContext::none`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    pub ip: Option<IpAddr>,
    pub request_id: Option<String>,
    /// The client's `User-Agent`, for the sessions it starts (never audited).
    pub user_agent: Option<String>,
    /// The id of the API key an admin request came with: every event it causes
    /// records it as `detail.api_key` (SPEC §15).
    pub api_key: Option<i64>,
}

impl RequestContext {
    /// An operator's command: no client, no request.
    pub fn none() -> Self {
        RequestContext::default()
    }
}

/// One event about to be recorded. Built with the kind, then the subjects it is about.
#[derive(Debug, Clone)]
pub struct Audit {
    kind: AuditKind,
    user_id: Option<UserId>,
    username: Option<String>,
    family_id: Option<FamilyId>,
    detail: serde_json::Map<String, serde_json::Value>,
}

impl Audit {
    pub fn new(kind: AuditKind) -> Self {
        Audit {
            kind,
            user_id: None,
            username: None,
            family_id: None,
            detail: serde_json::Map::new(),
        }
    }

    /// The account the event is about.
    pub fn user(mut self, user: &User) -> Self {
        self.user_id = Some(user.id);
        self.username = Some(user.username.clone());
        self
    }

    /// The account, by id and name as known at the time.
    pub fn user_ref(mut self, id: UserId, username: Option<&str>) -> Self {
        self.user_id = Some(id);
        self.username = username.map(str::to_owned);
        self
    }

    pub fn family(mut self, family: FamilyId) -> Self {
        self.family_id = Some(family);
        self
    }

    /// A non-secret fact about the event (a reason, a count, a duration).
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }
}

/// `audit list`'s query, as the CLI parsed it.
#[derive(Debug, Clone)]
pub struct AuditQuery {
    pub user: Option<crate::domain::UserRef>,
    pub kind: Option<AuditKind>,
    pub since: Option<Duration>,
    pub limit: u32,
}

/// An event as `audit list --output json` prints it: `detail` as a JSON object.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub at: chrono::DateTime<Utc>,
    pub kind: String,
    pub user_id: Option<UserId>,
    pub username: Option<String>,
    pub family_id: Option<FamilyId>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: serde_json::Value,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            detail: serde_json::from_str(&r.detail)
                .unwrap_or(serde_json::Value::String(r.detail.clone())),
            at: r.at,
            kind: r.kind,
            user_id: r.user_id,
            username: r.username,
            family_id: r.family_id,
            ip: r.ip,
            request_id: r.request_id,
        }
    }
}

impl AuthService {
    /// Records an event. A failure to write is logged as a warning and swallowed: the
    /// action it records has happened, and refusing it now would help nobody.
    pub async fn audit(&self, ctx: &RequestContext, event: Audit) {
        let kind = event.kind.as_str();
        let mut event = event;
        if let Some(key) = ctx.api_key {
            event.detail.insert("api_key".into(), key.into());
        }
        let row = NewAuditEvent {
            at: Utc::now(),
            kind,
            user_id: event.user_id,
            username: event.username,
            family_id: event.family_id,
            ip: ctx.ip.map(|ip| ip.to_string()),
            request_id: ctx.request_id.clone(),
            detail: serde_json::Value::Object(event.detail).to_string(),
        };
        if let Err(e) = self.store().audit_insert(&row).await {
            tracing::warn!(kind, error = %e, "could not record an audit event");
        }
    }

    /// Events newest first, filtered as asked. Read-only.
    pub async fn audit_list(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let user_id = match &query.user {
            Some(user) => Some(self.find_user_id_for_audit(user).await?),
            None => None,
        };
        let since = query
            .since
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| Utc::now() - d);
        let rows = self
            .store()
            .audit_list(&AuditFilter {
                user_id,
                kind: query.kind.map(AuditKind::as_str),
                since,
                limit: i64::from(query.limit),
            })
            .await?;
        Ok(rows.into_iter().map(AuditEntry::from).collect())
    }

    /// An id for `--user`: a numeric id stands for itself (so the events of a deleted
    /// user stay reachable); a name or email must belong to an existing user.
    async fn find_user_id_for_audit(&self, user: &crate::domain::UserRef) -> Result<UserId> {
        match user {
            crate::domain::UserRef::Id(id) => Ok(*id),
            other => Ok(self.find_user(other).await?.id),
        }
    }

    /// Drops events older than `audit.retention`, in batches (each one short
    /// statement, so SQLite's write lock is never held for long). Returns how many.
    pub async fn prune_audit(&self) -> Result<u64> {
        let Ok(retention) = chrono::Duration::from_std(self.settings.audit_retention) else {
            return Ok(0);
        };
        let before = Utc::now() - retention;
        let mut total = 0;
        loop {
            let n = self.store().audit_prune(before, AUDIT_PRUNE_BATCH).await?;
            total += n;
            if n < AUDIT_PRUNE_BATCH as u64 {
                break;
            }
            // Let other writers in between batches.
            tokio::task::yield_now().await;
        }
        if total > 0 {
            tracing::info!(events = total, "pruned old audit events");
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_kind_is_named_the_same_by_serde_clap_and_the_store() {
        for kind in AuditKind::value_variants() {
            let serde_name = serde_json::to_value(kind).unwrap();
            let clap_name = kind.to_possible_value().unwrap();
            assert_eq!(serde_name, kind.as_str());
            assert_eq!(clap_name.get_name(), kind.as_str());
        }
        assert_eq!(AuditKind::value_variants().len(), 31);
    }
}
