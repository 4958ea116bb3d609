//! Storage of the audit log (SPEC §10): [`AuditStore`], a supertrait of
//! [`Store`](super::Store), implemented for both backends by [`audit_store!`] with
//! the same SQL (as `sql.rs` does for the core). The store writes and reads rows; what
//! goes into an event, and that no secret does, is the service's business.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{FamilyId, UserId};
use crate::error::Result;

/// Rows deleted per statement by [`AuditStore::audit_prune`], so that retention never
/// holds SQLite's write lock for long (SPEC §8: ~100 ms at most).
pub const AUDIT_PRUNE_BATCH: i64 = 1000;

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    pub at: DateTime<Utc>,
    pub kind: &'static str,
    pub user_id: Option<UserId>,
    pub username: Option<String>,
    pub family_id: Option<FamilyId>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    /// A JSON object, as text (the same column type on both backends).
    pub detail: String,
}

/// A recorded event, as `audit list` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub user_id: Option<UserId>,
    pub username: Option<String>,
    pub family_id: Option<FamilyId>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
    pub detail: String,
}

/// Which events `audit list` wants; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user_id: Option<UserId>,
    pub kind: Option<&'static str>,
    pub since: Option<DateTime<Utc>>,
    pub limit: i64,
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn audit_insert(&self, event: &NewAuditEvent) -> Result<()>;
    /// Events matching `filter`, newest first.
    async fn audit_list(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>>;
    /// Deletes at most `batch` events older than `before`, oldest first; returns how
    /// many went (fewer than `batch`: nothing older is left).
    async fn audit_prune(&self, before: DateTime<Utc>, batch: i64) -> Result<u64>;
}

/// `audit_store!(Store)`: [`AuditStore`] for a store with a `pool` field.
macro_rules! audit_store {
    ($store:ident) => {
        #[async_trait::async_trait]
        impl $crate::store::audit::AuditStore for $store {
            async fn audit_insert(
                &self,
                e: &$crate::store::audit::NewAuditEvent,
            ) -> $crate::error::Result<()> {
                sqlx::query(
                    "INSERT INTO audit_log (at, kind, user_id, username, family_id, ip, \
                     request_id, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(e.at)
                .bind(e.kind)
                .bind(e.user_id)
                .bind(&e.username)
                .bind(e.family_id)
                .bind(&e.ip)
                .bind(&e.request_id)
                .bind(&e.detail)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn audit_list(
                &self,
                f: &$crate::store::audit::AuditFilter,
            ) -> $crate::error::Result<Vec<$crate::store::audit::AuditRow>> {
                // Each filter is "unset or equal", so one statement serves every
                // combination and each is answered from an (x, at) index.
                Ok(sqlx::query_as(
                    "SELECT at, kind, user_id, username, family_id, ip, request_id, detail \
                     FROM audit_log \
                     WHERE ($1 IS NULL OR user_id = $1) AND ($2 IS NULL OR kind = $2) \
                     AND ($3 IS NULL OR at >= $3) \
                     ORDER BY at DESC, id DESC LIMIT $4",
                )
                .bind(f.user_id)
                .bind(f.kind)
                .bind(f.since)
                .bind(f.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn audit_prune(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                batch: i64,
            ) -> $crate::error::Result<u64> {
                let r = sqlx::query(
                    "DELETE FROM audit_log WHERE id IN \
                     (SELECT id FROM audit_log WHERE at < $1 ORDER BY at LIMIT $2)",
                )
                .bind(before)
                .bind(batch)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected())
            }
        }
    };
}
