//! Storage of what the sessions API shows and does (SPEC §10): [`SessionStore`], a
//! supertrait of [`Store`](super::Store), implemented for both backends by
//! [`session_store!`] with the same SQL. A session is a token family.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{FamilyId, UserId};
use crate::error::Result;

/// A live session of a user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: FamilyId,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    /// When its live refresh token expires.
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Records the client and the time of a login or refresh on its family.
    async fn session_touch(
        &self,
        family: FamilyId,
        user_agent: Option<&str>,
        ip: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// The user's live sessions (not revoked, with an unspent unexpired token),
    /// newest first.
    async fn sessions_of(&self, user: UserId, now: DateTime<Utc>) -> Result<Vec<SessionRow>>;
    /// Revokes one of the user's live sessions; false if it is not one.
    async fn session_revoke(
        &self,
        user: UserId,
        family: FamilyId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Revokes every live session of the user but `keep`; returns how many.
    async fn sessions_revoke_others(
        &self,
        user: UserId,
        keep: FamilyId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64>;
}

/// `session_store!(Store)`: [`SessionStore`] for a store with a `pool` field.
macro_rules! session_store {
    ($store:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::sessions::SessionStore for $store {
            async fn session_touch(
                &self,
                family: $crate::domain::FamilyId,
                user_agent: Option<&str>,
                ip: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<()> {
                sqlx::query(
                    "UPDATE token_families SET user_agent = $1, ip = $2, last_used_at = $3 \
                     WHERE id = $4",
                )
                .bind(user_agent)
                .bind(ip)
                .bind(now)
                .bind(family)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn sessions_of(
                &self,
                user: $crate::domain::UserId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<Vec<$crate::store::sessions::SessionRow>> {
                // One live token per family at most; its expiry is the session's.
                Ok(sqlx::query_as(
                    "SELECT f.id, f.created_at, f.last_used_at, rt.expires_at, f.user_agent, f.ip \
                     FROM token_families f JOIN refresh_tokens rt ON rt.family_id = f.id \
                     WHERE f.user_id = $1 AND f.revoked_at IS NULL \
                     AND rt.rotated_at IS NULL AND rt.revoked_at IS NULL AND rt.expires_at > $2 \
                     ORDER BY f.created_at DESC",
                )
                .bind(user)
                .bind(now)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn session_revoke(
                &self,
                user: $crate::domain::UserId,
                family: $crate::domain::FamilyId,
                reason: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query(
                    "UPDATE token_families SET revoked_at = $1, revoked_reason = $2 \
                     WHERE id = $3 AND user_id = $4 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(reason)
                .bind(family)
                .bind(user)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn sessions_revoke_others(
                &self,
                user: $crate::domain::UserId,
                keep: $crate::domain::FamilyId,
                reason: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<u64> {
                let r = sqlx::query(
                    "UPDATE token_families SET revoked_at = $1, revoked_reason = $2 \
                     WHERE user_id = $3 AND id <> $4 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(reason)
                .bind(user)
                .bind(keep)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected())
            }
        }
    };
}
