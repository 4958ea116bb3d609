//! How long a session lives and when a refresh token may be presented twice: the
//! rules of `auth.session_max_lifetime` and of grace mode (SPEC §5, §8).
//!
//! - A family (session) ends `session_max_lifetime` after its first login, however
//!   often it is refreshed: a refresh after that is a 401, and no refresh token of the
//!   family expires later than that end.
//! - Grace mode: a rotated token presented again within `refresh_reuse_grace_seconds`
//!   of its rotation gets the same successor again — but only while that successor is
//!   unspent (not itself rotated or revoked, not expired). Otherwise the replay is
//!   treated as theft, like any reuse: the family is revoked.

use chrono::{DateTime, Utc};

use super::AuthService;
use crate::error::Result;
use crate::store::RotationTx;
use crate::tokens::RefreshToken;

impl AuthService {
    /// When a session that began at `started` ends, whatever its refreshes.
    pub(super) fn session_end(&self, started: DateTime<Utc>) -> DateTime<Utc> {
        later_by(started, self.settings.session_max_lifetime)
    }

    /// The expiry of a refresh token issued at `now` in a session that began at
    /// `started`: a refresh lifetime from now, but never past the session's end.
    pub(super) fn refresh_expiry(
        &self,
        now: DateTime<Utc>,
        started: DateTime<Utc>,
    ) -> DateTime<Utc> {
        later_by(now, self.settings.refresh_token_ttl).min(self.session_end(started))
    }

    /// Whether a grace replay may hand out `successor` again: it was issued and is
    /// still the family's live token (read inside the rotation's transaction, so a
    /// concurrent rotation of the successor is seen once it commits).
    pub(super) async fn is_unspent(
        &self,
        tx: &mut dyn RotationTx,
        successor: &RefreshToken,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let Some(rec) = tx.find_refresh(&successor.digest()).await? else {
            return Ok(false);
        };
        Ok(rec.rotated_at.is_none()
            && rec.revoked_at.is_none()
            && rec.family_revoked_at.is_none()
            && rec.expires_at > now)
    }
}

/// `at + by`, saturating at the latest time chrono represents (a configured lifetime
/// of centuries must not overflow).
fn later_by(at: DateTime<Utc>, by: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(by)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}
