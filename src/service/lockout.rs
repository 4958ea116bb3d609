//! Per-account lockout (SPEC §10). An attempt is counted *before* its password is
//! verified, by one atomic statement ([`LockoutStore::lockout_claim`]), so N
//! concurrent guesses verify at most `auth.lockout_threshold` of them against the real
//! hash; the others — and every attempt while the account is locked, the right
//! password too — verify against the dummy hash (the same bcrypt work) and get the
//! same generic 401. The `threshold`-th failure locks the account for
//! `lockout_duration`, doubled for each lock since the last success, up to
//! `lockout_max_duration`. A success clears it all; so does `authctl user unlock`.
//! The state is in the database: it holds across replicas and restarts.
//!
//! [`LockoutStore::lockout_claim`]: crate::store::lockout::LockoutStore::lockout_claim

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;

use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::domain::{UserId, UserRef};
use crate::error::{Error, Result};
use crate::store::User;
use crate::store::lockout::Attempt;

/// Whether an attempt may check the real password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Lockout is off.
    Open,
    /// Counted; the password may be checked.
    Counted(Attempt),
    /// Locked (or `threshold` attempts are already in flight): check nothing real.
    Locked,
}

/// A user with their lockout state, as `user show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct UserDetails {
    #[serde(flatten)]
    pub user: User,
    pub failed_logins: i32,
    pub locked_until: Option<chrono::DateTime<Utc>>,
    pub lock_count: i32,
}

impl AuthService {
    fn lockout_threshold(&self) -> Option<i32> {
        let t = self.settings.lockout_threshold;
        (t > 0).then(|| i32::try_from(t).unwrap_or(i32::MAX))
    }

    /// Counts an attempt at `user`'s password before it is verified.
    pub(crate) async fn lockout_gate(&self, user: UserId) -> Result<Gate> {
        let Some(threshold) = self.lockout_threshold() else {
            return Ok(Gate::Open);
        };
        Ok(
            match self
                .store()
                .lockout_claim(user, threshold, Utc::now())
                .await?
            {
                Some(attempt) => Gate::Counted(attempt),
                None => Gate::Locked,
            },
        )
    }

    /// After a verified password: the consecutive failures start again.
    pub(crate) async fn lockout_success(&self, gate: Gate, user: UserId) -> Result<()> {
        if let Gate::Counted(_) = gate {
            self.store().lockout_reset(user).await?;
        }
        Ok(())
    }

    /// After a wrong password: the attempt is already counted; the one that reached
    /// the threshold locks the account.
    pub(crate) async fn lockout_failure(
        &self,
        ctx: &RequestContext,
        gate: Gate,
        user: &User,
    ) -> Result<()> {
        let (Gate::Counted(attempt), Some(threshold)) = (gate, self.lockout_threshold()) else {
            return Ok(());
        };
        if attempt.failed_logins < threshold {
            return Ok(());
        }
        let length = self.lock_length(attempt.lock_count);
        let until =
            Utc::now() + chrono::Duration::from_std(length).unwrap_or(chrono::Duration::MAX / 2);
        if self.store().lockout_lock(user.id, threshold, until).await? {
            tracing::warn!(
                user_id = user.id.0,
                lock_seconds = length.as_secs(),
                "account locked after failed logins"
            );
            let event = Audit::new(AuditKind::AccountLocked)
                .user(user)
                .detail("failed_logins", attempt.failed_logins)
                .detail("locked_until", until.to_rfc3339())
                .detail("lock_seconds", length.as_secs());
            self.audit(ctx, event).await;
        }
        Ok(())
    }

    /// `lockout_duration` doubled for each earlier lock, at most `lockout_max_duration`.
    pub fn lock_length(&self, earlier_locks: i32) -> Duration {
        let base = self.settings.lockout_duration;
        let max = self.settings.lockout_max_duration;
        let factor = 1u32 << earlier_locks.clamp(0, 30);
        base.checked_mul(factor).map_or(max, |d| d.min(max))
    }

    /// Ends a lock (`authctl user unlock`): no failures, no lock, no escalation.
    /// Returns the user and whether the account was locked.
    pub async fn unlock(&self, user: &UserRef) -> Result<(User, bool)> {
        let found = self.find_user(user).await?;
        let was_locked = self
            .store()
            .lockout_state(found.id)
            .await?
            .and_then(|s| s.locked_until)
            .is_some_and(|until| until > Utc::now());
        self.store().lockout_reset(found.id).await?;
        let event = Audit::new(AuditKind::AccountUnlocked)
            .user(&found)
            .detail("was_locked", was_locked);
        self.audit(&RequestContext::none(), event).await;
        tracing::info!(user_id = found.id.0, was_locked, "account unlocked");
        Ok((found, was_locked))
    }

    /// A user with failures and `locked_until` (`authctl user show`). Read-only.
    pub async fn user_details(&self, user: &UserRef) -> Result<UserDetails> {
        let found = self.find_user(user).await?;
        let state = self
            .store()
            .lockout_state(found.id)
            .await?
            .ok_or_else(|| Error::NotFound(user.to_string()))?;
        // A lock that has run out is no lock.
        let locked_until = state.locked_until.filter(|u| *u > Utc::now());
        Ok(UserDetails {
            user: found,
            failed_logins: state.failed_logins,
            locked_until,
            lock_count: state.lock_count,
        })
    }
}
