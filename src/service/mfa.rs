//! The second factor (SPEC §14): TOTP (RFC 6238: SHA-1, 6 digits, 30 s, a 160-bit
//! secret, the previous, current or next step accepted) and recovery codes.
//!
//! - **Replay**: each time step is accepted at most once per account, and never one
//!   at or before the last accepted: [`totp_rs`] says which step a code matched, and
//!   the store accepts it by one conditional UPDATE (`last_step < step`), so N logins
//!   racing with one code over any number of replicas have one winner. The step that
//!   confirmed an enrolment is recorded the same way, so it cannot log in.
//! - **Login**: the password grant with the right password of an account with TOTP
//!   on and no `code` answers 403 `mfa_required` with an `mfa_token` (256 random
//!   bits, its SHA-256 stored, single use, 5 minutes, bound to the account and to the
//!   password hash the first step verified). That first step is neither a success
//!   nor a failure for the lockout (its count is taken back): the login succeeds
//!   only with the second factor. The `urn:authctl:grant-type:mfa` grant then takes
//!   the token and a code; each attempt is counted twice before its code is checked
//!   — on the token (5 attempts spend it) and on the account's lockout (a wrong code
//!   is a failed login). A `code` sent with the password does both steps at once; a
//!   wrong one is then the generic 401, like a wrong password, so nothing tells a
//!   caller without the password that it was right.
//! - **Recovery codes**: 10 codes of 60 random bits (12 Crockford base32
//!   characters), stored as SHA-256 digests — a fast digest suffices for secrets of
//!   that entropy — each spent once by a conditional UPDATE.
//! - **Sessions**: confirming an enrolment revokes the account's other sessions
//!   (they were made with the password alone); a session's `amr` is fixed at its
//!   login and kept by its refreshes.
//!
//! The secret and the codes appear only in the answers of enrolment, confirmation
//! and regeneration: never in a log line, the audit log or the CLI's output.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::lockout::{Checked, Gate};
use super::{Audit, AuditKind, AuthService, RequestContext, SessionKind, Started, TokenPair};
use crate::domain::{FamilyId, Password, UserRef};
use crate::error::{Error, Redacted, Result};
use crate::metrics::LoginResult;
use crate::store::User;
use crate::store::mfa::{MfaConfirm, MfaRecord, NewMfaToken};
use crate::tokens::RefreshToken;

mod codes;
use codes::{
    base32, is_totp_code, matched_step, new_recovery_codes, normalize_recovery, sha256, uri_encode,
};

/// The grant type of the second login step at the token endpoint.
pub const MFA_GRANT: &str = "urn:authctl:grant-type:mfa";
/// The `amr` (RFC 8176) of a password login, and of one with a second factor, as a
/// session keeps it (space-separated).
pub const AMR_PWD: &str = "pwd";
pub const AMR_PWD_OTP: &str = "pwd otp";

/// How long an `mfa_token` is good for.
const MFA_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// Attempts an `mfa_token` allows: the fifth wrong code spends it.
const MFA_TOKEN_ATTEMPTS: i32 = 5;
/// Recovery codes per set.
pub const RECOVERY_CODES: usize = 10;
pub(crate) const SECRET_BYTES: usize = 20;

/// What enrolment answers: shown once, never logged.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Enrolment {
    /// The shared secret, base32 (RFC 4648, unpadded): 160 bits.
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    pub secret: String,
    /// The same as an `otpauth://` URI for authenticator apps (a QR code of it).
    #[schema(
        example = "otpauth://totp/authctl:alice?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=authctl&algorithm=SHA1&digits=6&period=30"
    )]
    pub otpauth_uri: String,
}

impl std::fmt::Debug for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Enrolment([REDACTED])")
    }
}

/// A new set of recovery codes: shown once, never logged.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    /// 10 single-use codes (`XXXX-XXXX-XXXX`); each can stand in for a TOTP code once.
    #[schema(example = json!(["7K3M-Q9TD-2XWA", "…"]))]
    pub recovery_codes: Vec<String>,
}

impl std::fmt::Debug for RecoveryCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecoveryCodes([REDACTED])")
    }
}

/// Which codes a check takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accepts {
    TotpOnly,
    TotpOrRecovery,
}

impl AuthService {
    // ----- login -----------------------------------------------------------------

    /// The second factor of a password login whose password was right (the attempt
    /// counted by `gate`), for an account with TOTP on. Returns the session's `amr`;
    /// without a code, the 403 `mfa_required` with a new `mfa_token`.
    pub(crate) async fn login_second_factor(
        &self,
        ctx: &RequestContext,
        gate: Gate,
        user: &User,
        password_hash: &str,
        code: Option<&str>,
    ) -> Result<&'static str> {
        let Some(code) = code else {
            // Neither a success nor a failure yet: the count is taken back.
            self.lockout_done(ctx, gate, user, Checked::Not).await?;
            let token = RefreshToken::generate();
            let expires_at = Utc::now()
                + chrono::Duration::from_std(MFA_TOKEN_TTL).unwrap_or(chrono::Duration::MAX);
            self.store
                .mfa_token_insert(&NewMfaToken {
                    digest: &token.digest(),
                    user: user.id,
                    password_digest: &sha256(password_hash.as_bytes()),
                    expires_at,
                })
                .await?;
            tracing::info!(user_id = user.id.0, "login needs a second factor");
            self.metrics.login(LoginResult::MfaRequired);
            return Err(Error::MfaRequired {
                mfa_token: Redacted(token.expose().to_owned()),
            });
        };
        if self
            .counted_code_check(ctx, gate, user, code, Accepts::TotpOrRecovery, "login")
            .await?
        {
            Ok(AMR_PWD_OTP)
        } else {
            // The generic 401: a caller without the password learns nothing. (The
            // check counted it in the metrics already.)
            Err(Error::InvalidCredentials)
        }
    }

    /// The `urn:authctl:grant-type:mfa` grant: an `mfa_token` and a TOTP or recovery
    /// code. Runs to its end in a task of its own, like a login.
    pub async fn login_mfa(
        self: &Arc<Self>,
        ctx: &RequestContext,
        mfa_token: &str,
        code: &str,
    ) -> Result<TokenPair> {
        let started = self
            .login_mfa_as(ctx, mfa_token, code, SessionKind::Api)
            .await?;
        self.tokens_of(started).await
    }

    /// The MFA grant's second step, starting a session of `kind`.
    pub(crate) async fn login_mfa_as(
        self: &Arc<Self>,
        ctx: &RequestContext,
        mfa_token: &str,
        code: &str,
        kind: SessionKind,
    ) -> Result<Started> {
        let this = Arc::clone(self);
        let ctx = ctx.clone();
        let mfa_token = secrecy::SecretString::from(mfa_token);
        let code = secrecy::SecretString::from(code);
        tokio::spawn(async move {
            use secrecy::ExposeSecret;
            this.login_mfa_attempt(&ctx, mfa_token.expose_secret(), code.expose_secret(), kind)
                .await
        })
        .await
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("the MFA login task failed")))?
    }

    async fn login_mfa_attempt(
        &self,
        ctx: &RequestContext,
        mfa_token: &str,
        code: &str,
        kind: SessionKind,
    ) -> Result<Started> {
        let token = RefreshToken::parse(mfa_token.trim()).ok_or(Error::InvalidSecondFactor)?;
        let digest = token.digest();
        let now = Utc::now();
        // Counted on the token before the code is checked: 5 attempts at most.
        let Some(claim) = self
            .store
            .mfa_token_claim(&digest, now, MFA_TOKEN_ATTEMPTS)
            .await?
        else {
            self.metrics.login(LoginResult::Failure);
            return Err(Error::InvalidSecondFactor);
        };
        let creds = match self.store.find_user(&UserRef::Id(claim.user_id)).await? {
            Some(user) => self
                .store
                .find_credentials(&user.username.to_ascii_lowercase())
                .await?
                .filter(|c| c.user.id == user.id),
            None => None,
        };
        // The account as the first step saw it: same password, active, TOTP on.
        let Some(creds) = creds.filter(|c| {
            c.user.is_active
                && c.user.mfa_enabled
                && sha256(c.password_hash.as_bytes())[..] == claim.password_digest[..]
        }) else {
            tracing::info!(
                user_id = claim.user_id.0,
                "mfa_token refused: the account changed"
            );
            self.metrics.login(LoginResult::Failure);
            return Err(Error::InvalidSecondFactor);
        };
        let gate = self.lockout_gate(creds.user.id).await?;
        let right = self
            .counted_code_check(
                ctx,
                gate,
                &creds.user,
                code,
                Accepts::TotpOrRecovery,
                "login",
            )
            .await?;
        if !right {
            return Err(Error::InvalidSecondFactor);
        }
        if !self.store.mfa_token_spend(&digest, now).await? {
            self.metrics.login(LoginResult::Failure);
            return Err(Error::InvalidSecondFactor);
        }
        self.start_session(ctx, creds.user, &creds.password_hash, AMR_PWD_OTP, kind)
            .await
    }

    /// Checks a code for `user` within a counted attempt (`gate`) and ends the
    /// attempt: a wrong code is a failed login (audited `mfa_failed`), a right one a
    /// success. A locked account's code is not checked at all (audited `login_locked`).
    async fn counted_code_check(
        &self,
        ctx: &RequestContext,
        gate: Gate,
        user: &User,
        code: &str,
        accepts: Accepts,
        action: &'static str,
    ) -> Result<bool> {
        let right = if gate == Gate::Locked {
            false
        } else {
            match self.check_code(ctx, user, code, accepts).await {
                Ok(right) => right,
                Err(e) => {
                    self.lockout_done(ctx, gate, user, Checked::Not).await?;
                    return Err(e);
                }
            }
        };
        if right {
            self.lockout_done(ctx, gate, user, Checked::Right).await?;
            return Ok(true);
        }
        let (kind, result) = if gate == Gate::Locked {
            (AuditKind::LoginLocked, LoginResult::Locked)
        } else {
            (AuditKind::MfaFailed, LoginResult::Failure)
        };
        tracing::info!(user_id = user.id.0, action, "second factor refused");
        let event = Audit::new(kind)
            .user(user)
            .detail("reason", "wrong_code")
            .detail("action", action);
        self.audit(ctx, event).await;
        if action == "login" {
            self.metrics.login(result);
        }
        self.lockout_done(ctx, gate, user, Checked::Wrong).await?;
        Ok(false)
    }

    /// Whether `code` is a right TOTP code (its step then used) or, if accepted, an
    /// unused recovery code (then spent, audited `recovery_code_used`).
    async fn check_code(
        &self,
        ctx: &RequestContext,
        user: &User,
        code: &str,
        accepts: Accepts,
    ) -> Result<bool> {
        let Some(mfa) = self.active_mfa(user).await? else {
            return Ok(false);
        };
        if is_totp_code(code) {
            return match matched_step(&mfa.secret, code)? {
                Some(step) => self.store.mfa_accept_step(user.id, &mfa.secret, step).await,
                None => Ok(false),
            };
        }
        let Some(canonical) =
            normalize_recovery(code).filter(|_| accepts == Accepts::TotpOrRecovery)
        else {
            return Ok(false);
        };
        let digest = sha256(canonical.as_bytes());
        let spent = self
            .store
            .mfa_use_recovery_code(user.id, &digest, Utc::now())
            .await?;
        if spent {
            tracing::info!(user_id = user.id.0, "recovery code used");
            self.audit(ctx, Audit::new(AuditKind::RecoveryCodeUsed).user(user))
                .await;
        }
        Ok(spent)
    }

    async fn active_mfa(&self, user: &User) -> Result<Option<MfaRecord>> {
        Ok(self
            .store
            .mfa_get(user.id)
            .await?
            .filter(|m| m.confirmed_at.is_some()))
    }

    // ----- the caller's own factor (Bearer) -----------------------------------------

    /// Starts (or restarts) an enrolment: checks the current password (a wrong one is
    /// 403 and counts towards the lockout), then stores a new pending secret.
    pub async fn enrol_totp(
        self: &Arc<Self>,
        ctx: &RequestContext,
        access_token: &str,
        current_password: &str,
    ) -> Result<Enrolment> {
        let this = Arc::clone(self);
        let ctx = ctx.clone();
        let access_token = access_token.to_owned();
        let current = secrecy::SecretString::from(current_password);
        tokio::spawn(async move {
            use secrecy::ExposeSecret;
            this.enrol_totp_now(&ctx, &access_token, current.expose_secret())
                .await
        })
        .await
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("the enrolment failed")))?
    }

    async fn enrol_totp_now(
        &self,
        ctx: &RequestContext,
        access_token: &str,
        current: &str,
    ) -> Result<Enrolment> {
        let (user, session) = self.authenticate_session(access_token).await?;
        self.check_current_password(ctx, &user, session, current)
            .await?;
        let mut secret = [0u8; SECRET_BYTES];
        rand::fill(&mut secret);
        if !self.store.mfa_enrol(user.id, &secret, Utc::now()).await? {
            return Err(Error::StateConflict("TOTP is already on for this account"));
        }
        tracing::info!(user_id = user.id.0, "TOTP enrolment started");
        let secret = base32(&secret);
        let issuer = uri_encode(&self.settings.issuer);
        let otpauth_uri = format!(
            "otpauth://totp/{issuer}:{}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits=6&period=30",
            uri_encode(&user.username)
        );
        Ok(Enrolment {
            secret,
            otpauth_uri,
        })
    }

    /// The current password of the caller, checked as a login would be (counted
    /// before the verify; a wrong one, or any while locked, is 403).
    async fn check_current_password(
        &self,
        ctx: &RequestContext,
        user: &User,
        session: FamilyId,
        current: &str,
    ) -> Result<()> {
        let creds = self
            .store
            .find_credentials(&user.username.to_ascii_lowercase())
            .await?
            .filter(|c| c.user.id == user.id)
            .ok_or(Error::InvalidToken("user not found"))?;
        let gate = self.lockout_gate(user.id).await?;
        let real_hash = match gate {
            Gate::Locked => None,
            Gate::Open | Gate::Counted(_) => Some(creds.password_hash.as_str()),
        };
        let plausible = current.len() <= Password::MAX_BYTES && !current.contains('\0');
        let candidate = if plausible { current } else { "" };
        let verified = match self.hasher.verify(candidate, real_hash).await {
            Ok(verified) => verified,
            Err(e) => {
                self.lockout_done(ctx, gate, user, Checked::Not).await?;
                return Err(e);
            }
        };
        if gate == Gate::Locked || !verified {
            let kind = if gate == Gate::Locked {
                AuditKind::LoginLocked
            } else {
                AuditKind::LoginFailed
            };
            let event = Audit::new(kind)
                .user(user)
                .family(session)
                .detail("reason", "wrong_current_password")
                .detail("action", "mfa_enrol");
            self.audit(ctx, event).await;
            self.lockout_done(ctx, gate, user, Checked::Wrong).await?;
            return Err(Error::Forbidden("the current password is not correct"));
        }
        self.lockout_done(ctx, gate, user, Checked::Right).await
    }

    /// Confirms the pending enrolment with a code of its secret: TOTP is on, that
    /// step used, the first recovery codes made, every other session revoked.
    pub async fn confirm_totp(
        &self,
        ctx: &RequestContext,
        access_token: &str,
        code: &str,
    ) -> Result<RecoveryCodes> {
        let (user, session) = self.authenticate_session(access_token).await?;
        if !is_totp_code(code) {
            return Err(Error::validation("code", "must be 6 digits"));
        }
        let pending = match self.store.mfa_get(user.id).await? {
            Some(m) if m.confirmed_at.is_some() => {
                return Err(Error::StateConflict("TOTP is already on for this account"));
            }
            Some(m) => m,
            None => {
                return Err(Error::StateConflict(
                    "no TOTP enrolment is pending: POST /api/v1/auth/mfa/totp first",
                ));
            }
        };
        let wrong = Error::Forbidden("the code is not correct");
        let Some(step) = matched_step(&pending.secret, code)? else {
            let event = Audit::new(AuditKind::MfaFailed)
                .user(&user)
                .family(session)
                .detail("reason", "wrong_code")
                .detail("action", "mfa_confirm");
            self.audit(ctx, event).await;
            return Err(wrong);
        };
        let (codes, digests) = new_recovery_codes();
        let confirm = MfaConfirm {
            user: user.id,
            secret: &pending.secret,
            step,
            recovery: &digests,
            keep: session,
            now: Utc::now(),
        };
        // `None`: replaced by a new enrolment, or confirmed by a racing request.
        let revoked = self.store.mfa_confirm(&confirm).await?.ok_or(wrong)?;
        tracing::info!(
            user_id = user.id.0,
            revoked_sessions = revoked,
            "TOTP enabled"
        );
        let event = Audit::new(AuditKind::MfaEnabled)
            .user(&user)
            .family(session)
            .detail("revoked_sessions", revoked);
        self.audit(ctx, event).await;
        Ok(RecoveryCodes {
            recovery_codes: codes,
        })
    }

    /// A new set of recovery codes, for a right TOTP code (the old set is void).
    pub async fn regenerate_recovery_codes(
        &self,
        ctx: &RequestContext,
        access_token: &str,
        code: &str,
    ) -> Result<RecoveryCodes> {
        let user = self
            .own_factor_check(ctx, access_token, code, Accepts::TotpOnly, "recovery_codes")
            .await?;
        let (codes, digests) = new_recovery_codes();
        self.store
            .mfa_replace_recovery_codes(user.id, &digests)
            .await?;
        tracing::info!(user_id = user.id.0, "recovery codes regenerated");
        Ok(RecoveryCodes {
            recovery_codes: codes,
        })
    }

    /// Turns TOTP off for a right TOTP or recovery code.
    pub async fn disable_totp(
        &self,
        ctx: &RequestContext,
        access_token: &str,
        code: &str,
    ) -> Result<()> {
        let user = self
            .own_factor_check(
                ctx,
                access_token,
                code,
                Accepts::TotpOrRecovery,
                "mfa_disable",
            )
            .await?;
        self.store.mfa_remove(user.id).await?;
        tracing::info!(user_id = user.id.0, "TOTP disabled by its user");
        let event = Audit::new(AuditKind::MfaDisabled)
            .user(&user)
            .detail("by", "user");
        self.audit(ctx, event).await;
        Ok(())
    }

    /// The caller, once a code of their active factor checked out (counted towards
    /// the lockout; a wrong one is 403, TOTP off is 409).
    async fn own_factor_check(
        &self,
        ctx: &RequestContext,
        access_token: &str,
        code: &str,
        accepts: Accepts,
        action: &'static str,
    ) -> Result<User> {
        let (user, _session) = self.authenticate_session(access_token).await?;
        if !user.mfa_enabled {
            return Err(Error::StateConflict("TOTP is not on for this account"));
        }
        let gate = self.lockout_gate(user.id).await?;
        if !self
            .counted_code_check(ctx, gate, &user, code, accepts, action)
            .await?
        {
            return Err(Error::Forbidden("the code is not correct"));
        }
        Ok(user)
    }

    // ----- the operator ------------------------------------------------------------

    /// `authctl user mfa-reset`: removes TOTP and recovery codes. Returns the user and
    /// whether TOTP was on.
    pub async fn mfa_reset(&self, user: &UserRef) -> Result<(User, bool)> {
        let found = self.find_user(user).await?;
        let was_on = self.store.mfa_remove(found.id).await?;
        tracing::info!(user_id = found.id.0, was_on, "TOTP reset by operator");
        let event = Audit::new(AuditKind::MfaDisabled)
            .user(&found)
            .detail("by", "operator")
            .detail("was_on", was_on);
        self.audit(&RequestContext::none(), event).await;
        Ok((self.find_user(&UserRef::Id(found.id)).await?, was_on))
    }
}
