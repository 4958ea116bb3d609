//! A user changes their own password (SPEC §10): the current one is checked (a wrong
//! one is 403 and counts towards the lockout, like a failed login), then the hash is
//! updated and every other session revoked, in one transaction, so a request
//! cancelled half-way leaves no old session alive; a login verified against the old
//! hash cannot leave a session behind either, since `create_family` only inserts for
//! the hash it verified (issue 12). The caller's own session survives. Like a login,
//! the change runs to its end in a task of its own once it started.

use std::sync::Arc;

use chrono::Utc;

use super::lockout::{Checked, Gate};
use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::domain::Password;
use crate::error::{Error, Result};
use crate::store::PasswordChange;

impl AuthService {
    /// Changes the caller's password; returns how many other sessions were revoked.
    pub async fn change_password(
        self: &Arc<Self>,
        ctx: &RequestContext,
        access_token: &str,
        current: &str,
        new: &Password,
    ) -> Result<u64> {
        let this = Arc::clone(self);
        let ctx = ctx.clone();
        let access_token = access_token.to_owned();
        let current = secrecy::SecretString::from(current);
        let new = new.clone();
        tokio::spawn(async move {
            use secrecy::ExposeSecret;
            this.change_password_now(&ctx, &access_token, current.expose_secret(), &new)
                .await
        })
        .await
        .map_err(|e| Error::Internal(anyhow::Error::new(e).context("the password change failed")))?
    }

    async fn change_password_now(
        &self,
        ctx: &RequestContext,
        access_token: &str,
        current: &str,
        new: &Password,
    ) -> Result<u64> {
        let (user, session) = self.authenticate_session(access_token).await?;
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
                self.lockout_done(ctx, gate, &user, Checked::Not).await?;
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
                .user(&user)
                .family(session)
                .detail("reason", "wrong_current_password")
                .detail("action", "password_change");
            self.audit(ctx, event).await;
            self.lockout_done(ctx, gate, &user, Checked::Wrong).await?;
            return Err(Error::Forbidden("the current password is not correct"));
        }
        self.lockout_done(ctx, gate, &user, Checked::Right).await?;
        self.check_password("new_password", new, &user.username, &user.email)?;
        let hash = self.hasher.hash(new).await?;
        let change = PasswordChange {
            user: user.id,
            hash: &hash,
            keep: Some(session),
            reason: "password changed",
            now: Utc::now(),
        };
        let revoked = self
            .store
            .set_password_hash(&change)
            .await?
            .ok_or(Error::InvalidToken("user not found"))?;
        tracing::info!(
            user_id = user.id.0,
            revoked_sessions = revoked,
            "password changed by its user"
        );
        let event = Audit::new(AuditKind::PasswordChanged)
            .user(&user)
            .family(session)
            .detail("by", "user")
            .detail("revoked_sessions", revoked);
        self.audit(ctx, event).await;
        Ok(revoked)
    }
}
