//! Per-account lockout (SPEC §10). An attempt is counted *before* its password is
//! verified, by one atomic statement ([`LockoutStore::lockout_claim`]), so N
//! concurrent guesses verify at most `auth.lockout_threshold` of them against the real
//! hash. The attempt that reaches the threshold takes the lock in that same statement
//! (for `lockout_duration`, doubled for each lock since the last success, up to
//! `lockout_max_duration`; for good after `lockout_permanent_after` consecutive
//! failures): whatever becomes of the request later — a client that hangs up, a full
//! hash queue, a database error, a shutdown — the lock ends on time. A success clears
//! it all, the lock its own attempt took included; so does `authctl user unlock`.
//!
//! An attempt that finds the account locked while counted attempts are still being
//! checked waits for them (bounded by `auth.hash_queue_timeout`, then 503): one of
//! them may be the right password, which ends the lock, so a right password is
//! answered 401 only when the account really is locked. Attempts refused while
//! locked verify against the dummy hash (the same bcrypt work) and get the same
//! generic 401. The state is in the database: it holds across replicas and restarts;
//! waiting is woken at once by this process's own attempts and polls for other
//! replicas'.
//!
//! [`LockoutStore::lockout_claim`]: crate::store::lockout::LockoutStore::lockout_claim

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use serde::Serialize;

use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::domain::{UserId, UserRef};
use crate::error::{Error, Result};
use crate::store::User;
use crate::store::lockout::{Attempt, Claim, Outcome};

/// How often a login waiting for other attempts looks at the database again (for
/// attempts on other replicas; this process's own wake it at once).
const WAIT_POLL: Duration = Duration::from_millis(50);

/// Whether an attempt may check the real password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Lockout is off.
    Open,
    /// Counted; the password may be checked.
    Counted(Attempt),
    /// Locked: check nothing real.
    Locked,
}

/// What became of a counted attempt's password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Checked {
    Right,
    Wrong,
    /// Never checked (no hashing slot, an error): the attempt is taken back.
    Not,
}

/// A user with their lockout state, as `user show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct UserDetails {
    #[serde(flatten)]
    pub user: User,
    /// Failures counted towards the next lock.
    pub failed_logins: i32,
    pub locked_until: Option<DateTime<Utc>>,
    pub lock_count: i32,
    /// Failures since the last success, across locks (`auth.lockout_permanent_after`).
    pub consecutive_failures: i32,
    /// Locked until `user unlock` or a password reset.
    pub permanently_locked: bool,
}

/// The end of a lock for good: the last second of year 9999.
fn forever() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_300_799, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl AuthService {
    fn lockout_threshold(&self) -> Option<i32> {
        let t = self.settings.lockout_threshold;
        (t > 0).then(|| i32::try_from(t).unwrap_or(i32::MAX))
    }

    fn permanent_after(&self) -> i32 {
        match self.settings.lockout_permanent_after {
            0 => i32::MAX,
            n => i32::try_from(n).unwrap_or(i32::MAX),
        }
    }

    /// Counts an attempt at `user`'s password before it is verified. Waits while the
    /// account is locked but attempts that may end the lock are still being checked.
    pub(crate) async fn lockout_gate(&self, user: UserId) -> Result<Gate> {
        let Some(threshold) = self.lockout_threshold() else {
            return Ok(Gate::Open);
        };
        let wait = self.settings.hash_queue_timeout;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the state is read, so no wake-up between the two is lost.
            let changed = self.lockout_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let Some(state) = self.store().lockout_state(user).await? else {
                // Deleted meanwhile: the login fails on its own.
                return Ok(Gate::Open);
            };
            let now = Utc::now();
            if state.locked_at(now) {
                if !state.in_flight_at(now) {
                    return Ok(Gate::Locked);
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::Busy {
                        retry_after: wait.max(Duration::from_secs(1)),
                    });
                }
                let _ = tokio::time::timeout_at(
                    deadline.min(tokio::time::Instant::now() + WAIT_POLL),
                    changed,
                )
                .await;
                continue;
            }
            let to_chrono =
                |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX / 2);
            let claim = Claim {
                user,
                now,
                lock_count: state.lock_count,
                threshold,
                permanent_after: self.permanent_after(),
                // Microseconds: what PostgreSQL keeps, so the value compares equal later.
                lock_until: (now + to_chrono(self.lock_length(state.lock_count))).trunc_subsecs(6),
                forever: forever(),
                in_flight_until: now + to_chrono(wait + Duration::from_secs(30)),
            };
            if let Some(attempt) = self.store().lockout_claim(&claim).await? {
                return Ok(Gate::Counted(attempt));
            }
            // The lock count moved on (another attempt took a lock): read again.
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Busy {
                    retry_after: wait.max(Duration::from_secs(1)),
                });
            }
        }
    }

    /// Ends a counted attempt: a right password clears failures and locks, a wrong
    /// one stays counted (and, if it took the lock, the lock is audited), one never
    /// checked is taken back. Waiting attempts look again.
    pub(crate) async fn lockout_done(
        &self,
        ctx: &RequestContext,
        gate: Gate,
        user: &User,
        checked: Checked,
    ) -> Result<()> {
        let (Gate::Counted(attempt), Some(threshold)) = (gate, self.lockout_threshold()) else {
            return Ok(());
        };
        let outcome = match checked {
            Checked::Right => Outcome::Success,
            Checked::Wrong => Outcome::Failure,
            Checked::Not => Outcome::NotChecked {
                took_lock: attempt.locked_until,
                threshold,
            },
        };
        let result = self.store().lockout_resolve(user.id, outcome).await;
        self.lockout_changed.notify_waiters();
        result?;
        if let (Checked::Wrong, Some(until)) = (checked, attempt.locked_until) {
            let permanent = until >= forever();
            let seconds = (until - Utc::now()).num_seconds().max(0);
            tracing::warn!(
                user_id = user.id.0,
                lock_seconds = seconds,
                permanent,
                "account locked after failed logins"
            );
            let mut event = Audit::new(AuditKind::AccountLocked)
                .user(user)
                .detail("failed_logins", threshold)
                .detail("consecutive_failures", attempt.consecutive_failures)
                .detail("permanent", permanent);
            if !permanent {
                event = event
                    .detail("locked_until", until.to_rfc3339())
                    .detail("lock_seconds", seconds);
            }
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
    pub async fn unlock(&self, ctx: &RequestContext, user: &UserRef) -> Result<(User, bool)> {
        let found = self.find_user(user).await?;
        let was_locked = self
            .store()
            .lockout_state(found.id)
            .await?
            .is_some_and(|s| s.locked_at(Utc::now()));
        self.store().lockout_reset(found.id).await?;
        self.lockout_changed.notify_waiters();
        let event = Audit::new(AuditKind::AccountUnlocked)
            .user(&found)
            .detail("was_locked", was_locked);
        self.audit(ctx, event).await;
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
            consecutive_failures: state.consecutive_failures,
            permanently_locked: locked_until.is_some_and(|u| u >= forever()),
        })
    }
}
