//! `AuthService`: every rule of authctl, written once. The HTTP handlers and the CLI
//! commands are thin calls into it.
//!
//! Credential changes race-free: a login verifies the password (slowly, in bcrypt)
//! before it creates its session, and a password change, disable or delete may land in
//! between. The session is therefore created only if the user still exists, is active
//! and still has the exact hash that was verified (one conditional `INSERT … SELECT …
//! FROM users`, see `Store::create_family`); otherwise the login is the generic 401.
//! Credential changes update the user first and revoke the user's families second, so
//! a session created just before the change is revoked by it, and one attempted after
//! it is never created. A login racing a delete is the same 401, never a foreign-key
//! violation.
//!
//! - this file: logins, tokens, inspection; [`users`]: creating, finding, listing,
//!   disabling, deleting users and setting their passwords; [`health`]: readiness and migrations;
//! - [`keys`]: signing keys (SPEC §9): load, rotate, retire, reload;
//! - `metrics.rs`: what is counted for `/metrics`, and how the server's metrics are
//!   plugged in;
//! - [`lifetime`]: how long a session may live and when a replayed refresh token may
//!   still get its successor (grace mode);
//! - [`sessions`]: the sessions API and logout scopes; [`password`]: password change;
//! - [`lockout`]: per-account lockout; [`audit`]: the audit log;
//! - [`mfa`]: the second factor (TOTP, recovery codes, the `mfa_token` step);
//! - [`admin`]: roles, API keys (create, list, revoke, the per-request check) and the
//!   admin API's user operations (SPEC §15); [`introspect`]: RFC 7662 introspection.

pub mod admin;
pub mod audit;
pub mod email;
mod health;
pub mod introspect;
pub mod keys;
mod lifetime;
pub mod lockout;
mod metrics;
pub mod mfa;
pub mod oidc;
pub mod password;
mod revocation;
pub mod sessions;
mod user_ref;
mod users;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::AuthSettings;
use crate::domain::password::Policy;
use crate::domain::{Email, FamilyId, Password, UserId, UserRef};
use crate::error::{Error, Result};
use crate::hashing::{HashConfig, Hasher};
use crate::metrics::{LoginResult, Metrics, RefreshResult};
use crate::store::{PruneReport, RefreshRecord, Store, User};
use crate::tokens::RefreshToken;
use crate::tokens::jwt::{self, AccessClaims};
use crate::tokens::keys::SecretKey;

pub use audit::{Audit, AuditKind, RequestContext};
pub use health::check_database;
use lockout::{Checked, Gate};

/// What a successful login or refresh returns.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenPair {
    /// A signed JWT; send it as `Authorization: Bearer <access_token>`.
    #[schema(example = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl")]
    pub access_token: String,
    /// An opaque refresh token (43 characters of unpadded base64url); use it once at
    /// `/api/v1/auth/refresh` or `/api/v1/auth/revoke`.
    #[schema(example = "q4Xq3mJ2bqVn7ZkQyR0sT1uV2wX3yZ4a5B6c7D8e9F0")]
    pub refresh_token: String,
    /// Always `bearer`.
    #[schema(value_type = String, pattern = "^bearer$", example = "bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(minimum = 0, example = 1800)]
    pub expires_in: u64,
}

/// Who a new session's refresh token is for (SPEC §18): the REST API's clients, or
/// the login page's browser session cookie (never rotated at `/refresh`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    Api,
    Browser,
}

/// A session a login just created, before any token of it is issued.
pub struct Started {
    pub user: User,
    pub family: FamilyId,
    /// Its first refresh token (the browser session's cookie, for the login page).
    pub refresh: RefreshToken,
    pub amr: String,
    pub now: DateTime<Utc>,
}

/// A refresh token rotated (or a grace retry answered): its session as it was read,
/// and the successor to hand out.
pub(crate) struct Rotated {
    pub rec: RefreshRecord,
    pub refresh: RefreshToken,
    pub now: DateTime<Utc>,
}

/// Where a token stands, as `token inspect` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    Active,
    Rotated,
    Revoked,
    Expired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// The result of `token inspect`. Never contains the token itself.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    pub kind: TokenKind,
    pub valid: bool,
    pub state: TokenState,
    pub family_id: FamilyId,
    pub user_id: UserId,
    pub username: Option<String>,
    pub issued_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<AccessClaims>,
}

pub struct AuthService {
    store: Arc<dyn Store>,
    hasher: Hasher,
    /// What a new password must meet (SPEC §16).
    policy: Policy,
    keys: keys::LoadedKeys,
    /// Keys grace-mode successors (SPEC §5), not the signing key: survives rotations.
    grace: SecretKey,
    settings: AuthSettings,
    metrics: Metrics,
    /// Woken when a counted login attempt ends or an account is unlocked: logins
    /// waiting on a locked account look again ([`lockout`]).
    lockout_changed: tokio::sync::Notify,
    /// Woken when a message is queued in the outbox: the sender looks at once.
    outbox_wake: tokio::sync::Notify,
    /// The OpenID Connect provider's ID-token keys (SPEC §18).
    id_keys: oidc::IdKeys,
    /// API-key lookups, coalesced per key (see [`admin::KeyLookups`]).
    key_lookups: admin::KeyLookups,
}

/// What new hashes are made with, from `auth.password_hash` and its parameters.
pub fn hash_config(settings: &AuthSettings) -> HashConfig {
    match settings.password_hash {
        crate::config::PasswordHashAlgorithm::Bcrypt => HashConfig::Bcrypt {
            cost: settings.bcrypt_cost,
        },
        crate::config::PasswordHashAlgorithm::Argon2id => HashConfig::Argon2id {
            memory_kib: settings.argon2_memory_kib,
            iterations: settings.argon2_iterations,
            parallelism: settings.argon2_parallelism,
        },
    }
}

/// The password policy: `auth.password_min_length`, the algorithm's byte limit and
/// `auth.password_blocklist_file` (read here, at startup; unreadable is exit 7).
fn password_policy(settings: &AuthSettings, max_bytes: usize) -> Result<Policy> {
    let min = usize::try_from(settings.password_min_length).unwrap_or(usize::MAX);
    let policy = Policy::new(min, max_bytes);
    match &settings.password_blocklist_file {
        None => Ok(policy),
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!(
                    "auth.password_blocklist_file {}: {e}",
                    path.display()
                ))
            })?;
            Ok(policy.with_blocklist(&text))
        }
    }
}

impl AuthService {
    /// Builds the service on a migrated store: loads the signing keys (configured, or
    /// those in the database; [`keys::provision`] creates them) and prepares the
    /// hashing pool. Creates nothing, so read-only commands may use it.
    pub async fn new(store: Arc<dyn Store>, settings: &AuthSettings) -> Result<Self> {
        let keys = keys::LoadedKeys::load(store.as_ref(), settings).await?;
        let grace = keys::grace_secret(store.as_ref()).await?;
        let hasher = Hasher::new(hash_config(settings), settings.hash_queue_timeout)?;
        let policy = password_policy(settings, hasher.max_password_bytes())?;
        let service = AuthService {
            store,
            hasher,
            policy,
            keys,
            grace,
            settings: settings.clone(),
            metrics: Metrics::new(),
            lockout_changed: tokio::sync::Notify::new(),
            outbox_wake: tokio::sync::Notify::new(),
            id_keys: oidc::IdKeys::default(),
            key_lookups: admin::KeyLookups::default(),
        };
        if settings.oidc_enabled {
            // In the JWKS from the first request on.
            service.reload_id_keys().await?;
        }
        Ok(service)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Refuses a new password the policy does not allow for this account: a 422 (or
    /// exit 2) naming `field`, with the reason.
    pub(crate) fn check_password(
        &self,
        field: &str,
        password: &Password,
        username: &str,
        email: &str,
    ) -> Result<()> {
        self.policy
            .check(password, username, email)
            .map_err(|reason| Error::validation(field, reason))
    }

    // ----- sessions ------------------------------------------------------------

    /// Logs in by username or email (case-insensitively). Every failure is the same
    /// [`Error::InvalidCredentials`] after the same bcrypt work. An account with TOTP
    /// on needs `code` too, or answers [`Error::MfaRequired`] (see [`mfa`]).
    ///
    /// The attempt runs to its end in a task of its own: a client that hangs up
    /// mid-login drops only its wait for the answer, never the lockout bookkeeping
    /// of an attempt already counted.
    pub async fn login(
        self: &Arc<Self>,
        ctx: &RequestContext,
        login: &str,
        password: &str,
    ) -> Result<TokenPair> {
        self.login_with_code(ctx, login, password, None).await
    }

    /// [`AuthService::login`] with the second factor's `code` in the same request
    /// (one-step clients, SPEC §14); ignored for an account without TOTP.
    pub async fn login_with_code(
        self: &Arc<Self>,
        ctx: &RequestContext,
        login: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<TokenPair> {
        let started = self
            .login_as(ctx, login, password, code, SessionKind::Api)
            .await?;
        self.tokens_of(started).await
    }

    /// A password login (with its second factor's `code`, if any) that starts a
    /// session of `kind`. Runs to its end in a task of its own.
    pub(crate) async fn login_as(
        self: &Arc<Self>,
        ctx: &RequestContext,
        login: &str,
        password: &str,
        code: Option<&str>,
        kind: SessionKind,
    ) -> Result<Started> {
        let this = Arc::clone(self);
        let ctx = ctx.clone();
        let login = login.to_owned();
        let password = secrecy::SecretString::from(password);
        let code = code.map(secrecy::SecretString::from);
        tokio::spawn(async move {
            use secrecy::ExposeSecret;
            let code = code.as_ref().map(|c| c.expose_secret());
            this.login_attempt(&ctx, &login, password.expose_secret(), code, kind)
                .await
        })
        .await
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("the login task failed")))?
    }

    async fn login_attempt(
        &self,
        ctx: &RequestContext,
        login: &str,
        password: &str,
        code: Option<&str>,
        kind: SessionKind,
    ) -> Result<Started> {
        let plausible = login.len() <= Email::MAX_LEN
            && !login.contains('\0')
            && password.len() <= Password::MAX_BYTES
            && !password.contains('\0');
        let found = if plausible {
            self.store
                .find_credentials(&crate::domain::email::login_key(login))
                .await?
        } else {
            None
        };
        let candidate = if plausible { password } else { "" };
        // Counted before the verify (see `lockout`); a locked account verifies
        // against the dummy hash, for the same time and the same answer.
        let gate = match &found {
            Some(c) => self.lockout_gate(c.user.id).await?,
            None => Gate::Open,
        };
        let real_hash = match gate {
            Gate::Locked => None,
            Gate::Open | Gate::Counted(_) => found.as_ref().map(|c| c.password_hash.as_str()),
        };
        let verified = match self.hasher.verify(candidate, real_hash).await {
            Ok(verified) => verified,
            Err(e) => {
                if let Some(c) = &found {
                    self.lockout_done(ctx, gate, &c.user, Checked::Not).await?;
                }
                return Err(e);
            }
        };
        let (user, verified_hash, amr) = match found {
            Some(c) if gate == Gate::Locked => {
                tracing::info!(user_id = c.user.id.0, "login refused: account locked");
                self.audit(ctx, Audit::new(AuditKind::LoginLocked).user(&c.user))
                    .await;
                self.metrics.login(LoginResult::Locked);
                return Err(Error::InvalidCredentials);
            }
            Some(c) if verified && c.user.is_active && c.user.mfa_enabled => {
                let amr = self
                    .login_second_factor(ctx, gate, &c.user, &c.password_hash, code)
                    .await?;
                (c.user, c.password_hash, amr)
            }
            Some(c) if verified && c.user.is_active => {
                self.lockout_done(ctx, gate, &c.user, Checked::Right)
                    .await?;
                if self.settings.require_verified_email && !c.user.email_verified {
                    // Only the right password learns this (a wrong one is the 401).
                    let event = Audit::new(AuditKind::LoginFailed)
                        .user(&c.user)
                        .detail("reason", "email_not_verified");
                    self.audit(ctx, event).await;
                    return Err(Error::EmailNotVerified);
                }
                (c.user, c.password_hash, mfa::AMR_PWD)
            }
            Some(c) => {
                let reason = if verified {
                    "inactive"
                } else {
                    "wrong_password"
                };
                let event = Audit::new(AuditKind::LoginFailed)
                    .user(&c.user)
                    .detail("reason", reason);
                self.audit(ctx, event).await;
                let checked = if verified {
                    Checked::Right
                } else {
                    Checked::Wrong
                };
                self.lockout_done(ctx, gate, &c.user, checked).await?;
                return Err(self.failed_login());
            }
            None => {
                // No identifier at all: what was typed may be someone's password.
                let event = Audit::new(AuditKind::LoginFailed).detail("reason", "unknown_account");
                self.audit(ctx, event).await;
                return Err(self.failed_login());
            }
        };
        let user_id = user.id;
        let started = self
            .start_session(ctx, user, &verified_hash, amr, kind)
            .await?;
        // After the session: it was created for the hash that verified, and the
        // rehash replaces that hash only if it is still the stored one.
        self.rehash_later(user_id, &verified_hash, candidate);
        Ok(started)
    }

    /// Rehash on login (SPEC §16): a hash that verified but is of another algorithm
    /// or other parameters than configured is replaced by a fresh one, in a task of
    /// its own (the login does not wait for it), conditional on the old hash still
    /// being stored, so it never undoes a concurrent password change.
    fn rehash_later(&self, user: UserId, old_hash: &str, password: &str) {
        if !self.hasher.needs_rehash(old_hash, password.len()) {
            return;
        }
        let (hasher, store) = (self.hasher.clone(), Arc::clone(&self.store));
        let old_hash = old_hash.to_owned();
        let password = secrecy::SecretString::from(password);
        tokio::spawn(async move {
            let result = async {
                let new_hash = hasher.hash_str(password).await?;
                store
                    .replace_password_hash(user, &old_hash, &new_hash)
                    .await
            }
            .await;
            match result {
                Ok(true) => tracing::info!(
                    user_id = user.0,
                    algorithm = hasher.config().name(),
                    "password rehashed"
                ),
                Ok(false) => tracing::info!(
                    user_id = user.0,
                    "rehash skipped: the password changed meanwhile"
                ),
                Err(e) => tracing::warn!(user_id = user.0, error = %e, "rehash failed"),
            }
        });
    }

    /// Creates the session of a login whose every factor checked out, for the user
    /// as verified (`verified_hash`), with its `amr` (space-separated).
    pub(crate) async fn start_session(
        &self,
        ctx: &RequestContext,
        user: User,
        verified_hash: &str,
        amr: &str,
        kind: SessionKind,
    ) -> Result<Started> {
        let now = Utc::now();
        let family = FamilyId::new();
        let refresh = RefreshToken::generate();
        let created = self
            .store
            .create_family(
                user.id,
                verified_hash,
                family,
                &refresh.digest(),
                now,
                self.refresh_expiry(now, now),
            )
            .await?;
        if !created {
            // The password changed, or the user was disabled or deleted, while this
            // login verified the old state.
            tracing::info!(
                user_id = user.id.0,
                "login refused: the user changed while the password was verified"
            );
            return Err(self.failed_login());
        }
        if amr != mfa::AMR_PWD {
            // Before any token exists: a failure here leaves a session that claims less.
            self.store.family_set_amr(family, amr).await?;
        }
        if kind == SessionKind::Browser {
            // Before the cookie exists: until then no one holds its token.
            self.store.family_set_browser(family).await?;
        }
        tracing::info!(user_id = user.id.0, family_id = %family, amr, "login");
        self.metrics.login(LoginResult::Success);
        self.touch_session(ctx, family, now).await;
        let mut event = Audit::new(AuditKind::LoginSucceeded)
            .user(&user)
            .family(family)
            .detail("amr", amr);
        if kind == SessionKind::Browser {
            event = event.detail("via", "login_page");
        }
        self.audit(ctx, event).await;
        Ok(Started {
            user,
            family,
            refresh,
            amr: amr.to_owned(),
            now,
        })
    }

    /// The REST API's tokens for a session just started.
    pub(crate) async fn tokens_of(&self, s: Started) -> Result<TokenPair> {
        self.pair(s.user.id, s.family, s.refresh, &s.amr, s.now)
            .await
    }

    /// The user behind an access token, if its session is alive and the user active.
    /// With the user's current roles (a change shows at once, SPEC §15), read by the
    /// session lookup itself.
    pub async fn authenticate(&self, access_token: &str) -> Result<User> {
        Ok(self.authenticate_session(access_token).await?.0)
    }

    /// Rotates a refresh token: the presented token is retired and its successor issued
    /// in the same family, in one transaction. Presenting a retired token again revokes
    /// the family (theft detection), unless it comes within the grace window of its
    /// rotation while that successor is still unspent, which returns the same
    /// successor. No family is refreshed past `auth.session_max_lifetime`.
    pub async fn refresh(&self, ctx: &RequestContext, raw: &str) -> Result<TokenPair> {
        let r = self.rotate(ctx, raw, RefreshRecord::is_api).await?;
        self.pair(r.rec.user_id, r.rec.family_id, r.refresh, &r.rec.amr, r.now)
            .await
    }

    /// The rotation itself (see [`AuthService::refresh`]), for a token whose session
    /// `accept` takes (its kind and client): any other is an unknown token, before
    /// any rule runs, so a token presented at the wrong endpoint changes nothing.
    pub(crate) async fn rotate(
        &self,
        ctx: &RequestContext,
        raw: &str,
        accept: impl Fn(&RefreshRecord) -> bool,
    ) -> Result<Rotated> {
        let token = RefreshToken::parse(raw.trim())
            .ok_or_else(|| self.invalid_refresh("unknown refresh token"))?;
        let digest = token.digest();
        let successor = token.successor(&self.grace);
        let now = Utc::now();

        let mut tx = self.store.begin_rotation().await?;
        let rec = tx
            .find_refresh(&digest)
            .await?
            .filter(|rec| accept(rec))
            .ok_or_else(|| self.invalid_refresh("unknown refresh token"))?;
        let family = rec.family_id;
        let user = rec.user_id;

        if rec.family_revoked_at.is_some() {
            return Err(self.invalid_refresh("refresh token revoked"));
        }
        if now >= self.session_end(rec.family_created_at) {
            return Err(self.invalid_refresh("session expired"));
        }
        if rec.rotated_at.is_some() || rec.revoked_at.is_some() {
            if self.within_grace(&rec, now) && self.is_unspent(tx.as_mut(), &successor, now).await?
            {
                tx.commit().await?;
                tracing::info!(user_id = user.0, family_id = %family, "refresh retried within grace window");
                self.metrics.refresh(RefreshResult::Grace);
                return Ok(Rotated {
                    rec,
                    refresh: successor,
                    now,
                });
            }
            return Err(self.reuse_detected(ctx, tx, &rec, now).await);
        }
        if rec.expires_at <= now {
            return Err(self.invalid_refresh("refresh token expired"));
        }
        if !rec.user_active {
            return Err(self.invalid_refresh("user disabled"));
        }
        if !tx.mark_rotated(&digest, now).await? {
            return Err(self.reuse_detected(ctx, tx, &rec, now).await);
        }
        let expires_at = self.refresh_expiry(now, rec.family_created_at);
        tx.insert_refresh(family, &successor.digest(), now, expires_at)
            .await?;
        tx.commit().await?;
        tracing::debug!(user_id = user.0, family_id = %family, "refresh token rotated");
        self.metrics.refresh(RefreshResult::Rotated);
        self.touch_session(ctx, family, now).await;
        Ok(Rotated {
            rec,
            refresh: successor,
            now,
        })
    }

    fn within_grace(&self, rec: &RefreshRecord, now: DateTime<Utc>) -> bool {
        let grace = self.settings.refresh_reuse_grace;
        match (rec.rotated_at, rec.revoked_at) {
            (Some(rotated), None) if !grace.is_zero() && rec.user_active => {
                (now - rotated).to_std().map_or(true, |age| age <= grace)
            }
            _ => false,
        }
    }

    /// Revokes the family of a replayed token; the error to answer with.
    async fn reuse_detected(
        &self,
        ctx: &RequestContext,
        mut tx: Box<dyn crate::store::RotationTx>,
        rec: &RefreshRecord,
        now: DateTime<Utc>,
    ) -> Error {
        let (family, user) = (rec.family_id, rec.user_id);
        let revoked = async {
            tx.revoke_family(family, "refresh token reuse", now).await?;
            tx.commit().await
        };
        if let Err(e) = revoked.await {
            return e;
        }
        tracing::warn!(user_id = user.0, family_id = %family, "refresh token reuse detected: session revoked");
        self.metrics.refresh(RefreshResult::ReuseDetected);
        let event = Audit::new(AuditKind::RefreshReuseDetected)
            .user_ref(user, Some(&rec.username))
            .family(family);
        self.audit(ctx, event).await;
        Error::InvalidToken("refresh token reuse detected; session revoked")
    }

    /// Logout: revokes the token's whole family. Unknown tokens are ignored.
    pub async fn revoke(&self, ctx: &RequestContext, raw: &str) -> Result<()> {
        let Some(token) = RefreshToken::parse(raw.trim()) else {
            return Ok(());
        };
        if let Some(rec) = self.store.find_refresh(&token.digest()).await? {
            self.store
                .revoke_family(rec.family_id, "logout", Utc::now())
                .await?;
            tracing::info!(user_id = rec.user_id.0, family_id = %rec.family_id, "session revoked (logout)");
            let event = Audit::new(AuditKind::SessionRevoked)
                .user_ref(rec.user_id, Some(&rec.username))
                .family(rec.family_id)
                .detail("reason", "logout");
            self.audit(ctx, event).await;
        }
        Ok(())
    }

    /// Revokes one family by id.
    pub async fn revoke_family(&self, family: FamilyId) -> Result<()> {
        let Some(found) = self.store.find_family(family).await? else {
            return Err(Error::NotFound(format!("family {family}")));
        };
        if !self
            .store
            .revoke_family(family, "revoked by operator", Utc::now())
            .await?
        {
            return Err(Error::NotFound(format!("family {family}")));
        }
        tracing::info!(family_id = %family, "session revoked by operator");
        let event = Audit::new(AuditKind::SessionRevoked)
            .user_ref(found.user_id, Some(&found.username))
            .family(family)
            .detail("reason", "operator");
        self.audit(&RequestContext::none(), event).await;
        Ok(())
    }

    /// The family a token (refresh or access) belongs to.
    pub async fn family_of(&self, token: &str) -> Result<FamilyId> {
        let token = token.trim();
        if jwt::looks_like_jwt(token) {
            let claims = self
                .jwt()
                .verify_ignoring_expiry(token)
                .map_err(|_| Error::InvalidToken("not signed by this server's key"))?;
            return claims.family_id();
        }
        let rec = self.stored_refresh(token).await?;
        Ok(rec.family_id)
    }

    /// The stored record of a refresh token: garbage is an invalid token, a well-formed
    /// but unknown one is not found.
    async fn stored_refresh(&self, token: &str) -> Result<RefreshRecord> {
        let refresh = RefreshToken::parse(token)
            .ok_or(Error::InvalidToken("neither a JWT nor a refresh token"))?;
        self.store
            .find_refresh(&refresh.digest())
            .await?
            .ok_or_else(|| Error::NotFound("refresh token".into()))
    }

    /// Revokes every session of a user.
    pub async fn revoke_user(&self, ctx: &RequestContext, user: &UserRef) -> Result<(User, u64)> {
        let found = self.find_user(user).await?;
        let n = self
            .store
            .revoke_user_families(found.id, "revoked by operator", Utc::now())
            .await?;
        let event = Audit::new(AuditKind::SessionRevoked)
            .user(&found)
            .detail("reason", "operator")
            .detail("sessions", n);
        self.audit(ctx, event).await;
        Ok((found, n))
    }

    /// Deletes expired tokens and sessions revoked longer ago than a refresh lifetime.
    pub async fn prune(&self) -> Result<PruneReport> {
        let now = Utc::now();
        let report = self.store.prune(now, now - self.refresh_ttl()).await?;
        let mfa_tokens = self.store.mfa_prune(now).await?;
        // At debug: the caller (housekeeping, `token prune`) reports it once.
        tracing::debug!(
            tokens = report.tokens,
            families = report.families,
            mfa_tokens,
            "pruned expired rows"
        );
        Ok(report)
    }

    /// What a token is and whether it is still good. Errors only when it is not a
    /// token of this server at all.
    pub async fn inspect(&self, token: &str) -> Result<Inspection> {
        let token = token.trim();
        let now = Utc::now();
        if jwt::looks_like_jwt(token) {
            let claims = self.jwt().verify_ignoring_expiry(token).map_err(|_| {
                Error::InvalidToken("not a valid token signed by this server's key")
            })?;
            let family = claims.family_id()?;
            let session = self.store.find_family(family).await?;
            let expired = claims.exp < now.timestamp();
            let state = match &session {
                _ if expired => TokenState::Expired,
                Some(f) if f.revoked_at.is_none() && f.user_active => TokenState::Active,
                _ => TokenState::Revoked,
            };
            return Ok(Inspection {
                kind: TokenKind::Access,
                valid: state == TokenState::Active,
                state,
                family_id: family,
                user_id: claims.user_id()?,
                username: session.map(|s| s.username),
                issued_at: claims.issued_at(),
                expires_at: claims.expires_at(),
                claims: Some(claims),
            });
        }
        let rec = self.stored_refresh(token).await?;
        let state =
            if rec.revoked_at.is_some() || rec.family_revoked_at.is_some() || !rec.user_active {
                TokenState::Revoked
            } else if rec.rotated_at.is_some() {
                TokenState::Rotated
            } else if rec.expires_at <= now {
                TokenState::Expired
            } else {
                TokenState::Active
            };
        Ok(Inspection {
            kind: TokenKind::Refresh,
            valid: state == TokenState::Active,
            state,
            family_id: rec.family_id,
            user_id: rec.user_id,
            username: Some(rec.username),
            issued_at: Some(rec.issued_at),
            expires_at: Some(rec.expires_at),
            claims: None,
        })
    }

    fn refresh_ttl(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.settings.refresh_token_ttl).unwrap_or(chrono::Duration::MAX)
    }

    /// The tokens of a session: the access token carries the user's roles as they
    /// are now (a role change reaches the tokens issued from then on).
    async fn pair(
        &self,
        user: UserId,
        family: FamilyId,
        refresh: RefreshToken,
        amr: &str,
        now: DateTime<Utc>,
    ) -> Result<TokenPair> {
        let roles = self.store.roles_of(user).await?;
        let jwt = self.jwt();
        let amr: Vec<&str> = amr.split_whitespace().collect();
        Ok(TokenPair {
            access_token: jwt.issue_with_roles(user, family, &amr, &roles, now)?,
            refresh_token: refresh.expose().to_owned(),
            token_type: "bearer",
            expires_in: jwt.ttl().as_secs(),
        })
    }
}
