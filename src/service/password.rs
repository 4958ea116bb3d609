//! A user changes their own password (SPEC §10): the current one is checked (a wrong
//! one is 403 and counts towards the lockout, like a failed login), then the hash is
//! updated, then every other session is revoked — in that order, so a login verified
//! against the old hash cannot leave a session behind that outlives the change once
//! `create_family` only inserts for the hash it verified (issue 12). The caller's own
//! session survives.

use chrono::Utc;

use super::lockout::Gate;
use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::domain::Password;
use crate::error::{Error, Result};

impl AuthService {
    /// Changes the caller's password; returns how many other sessions were revoked.
    pub async fn change_password(
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
        let verified = self.hasher.verify(candidate, real_hash).await?;
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
            self.lockout_failure(ctx, gate, &user).await?;
            return Err(Error::Forbidden("the current password is not correct"));
        }
        self.lockout_success(gate, user.id).await?;
        let hash = self.hasher.hash(new).await?;
        let now = Utc::now();
        // First the hash, then the revocation (see the module comment).
        self.store.set_password_hash(user.id, &hash, now).await?;
        let revoked = self
            .store
            .sessions_revoke_others(user.id, session, "password changed", now)
            .await?;
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
