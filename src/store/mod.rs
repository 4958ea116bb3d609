//! Storage: one [`Store`] contract, two implementations ([`sqlite`] and [`postgres`])
//! generated from the same SQL by [`sql_store!`](crate::sql_store). The backend is
//! chosen from the database URL's scheme. The store knows no rules: it runs queries;
//! [`crate::service`] decides.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{FamilyId, UserId, UserRef};
use crate::error::Result;
use crate::tokens::refresh::TokenDigest;

#[macro_use]
pub mod audit;
#[macro_use]
pub mod lockout;
#[macro_use]
pub mod sessions;
mod lane;
#[macro_use]
mod sql;
pub mod postgres;
pub mod sqlite;
pub mod url;

pub use url::DatabaseUrl;

/// A user as every surface shows it (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub username: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
}

/// A user with the bcrypt hash, for login only.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserCredentials {
    #[sqlx(flatten)]
    pub user: User,
    pub password_hash: String,
}

/// What a new user is made of; built by the service from parsed domain values.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub email_norm: String,
    pub username: String,
    pub username_norm: String,
    pub password_hash: String,
    pub is_active: bool,
    pub now: DateTime<Utc>,
}

/// A stored refresh token with its family's and user's state.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshRecord {
    pub family_id: FamilyId,
    pub user_id: UserId,
    pub username: String,
    pub user_active: bool,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub family_revoked_at: Option<DateTime<Utc>>,
}

/// A refresh-token family (session).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FamilyRecord {
    pub id: FamilyId,
    pub user_id: UserId,
    pub username: String,
    pub user_active: bool,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The row `/me` needs: the user and whether the token's session is still alive.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionUser {
    #[sqlx(flatten)]
    pub user: User,
    pub family_revoked_at: Option<DateTime<Utc>>,
}

/// A migration embedded in the binary and whether it is applied.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// What `prune` removed.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PruneReport {
    pub tokens: u64,
    pub families: u64,
}

/// The storage contract. Both backends pass the same test story.
#[async_trait]
pub trait Store:
    audit::AuditStore + lockout::LockoutStore + sessions::SessionStore + Send + Sync + 'static
{
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// One round trip to the database.
    async fn ping(&self) -> Result<()>;
    /// Applies pending migrations; returns the versions applied now.
    async fn migrate(&self) -> Result<Vec<i64>>;
    async fn migration_status(&self) -> Result<Vec<MigrationState>>;
    /// Whether every embedded migration is applied.
    async fn schema_is_current(&self) -> Result<bool>;
    /// Stores `value` under `name` unless one is there; returns the stored value.
    async fn setting_get_or_insert(&self, name: &str, value: &str) -> Result<String>;
    async fn setting_get(&self, name: &str) -> Result<Option<String>>;
    /// Gives back to the pool connections held for lookups that sat idle (call it
    /// periodically, so a quiet server lets the pool shrink).
    fn release_idle(&self);
    /// Closes the pool.
    async fn close(&self);

    /// Inserts a user; a duplicate email or username is [`crate::Error::Conflict`].
    async fn create_user(&self, user: NewUser) -> Result<User>;
    /// Finds a user by normalized username or email, with the hash.
    async fn find_credentials(&self, login_norm: &str) -> Result<Option<UserCredentials>>;
    async fn find_user(&self, user: &UserRef) -> Result<Option<User>>;
    async fn list_users(&self, limit: i64) -> Result<Vec<User>>;
    async fn set_active(&self, user: UserId, active: bool, now: DateTime<Utc>) -> Result<bool>;
    async fn set_password_hash(&self, user: UserId, hash: &str, now: DateTime<Utc>)
    -> Result<bool>;
    async fn delete_user(&self, user: UserId) -> Result<bool>;

    /// Creates a session: a family and its first refresh token, atomically.
    async fn create_family(
        &self,
        user: UserId,
        family: FamilyId,
        digest: &TokenDigest,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    async fn find_refresh(&self, digest: &TokenDigest) -> Result<Option<RefreshRecord>>;
    async fn find_family(&self, family: FamilyId) -> Result<Option<FamilyRecord>>;
    async fn session_user(&self, user: UserId, family: FamilyId) -> Result<Option<SessionUser>>;
    /// Revokes a family if it is alive; returns whether it exists.
    async fn revoke_family(
        &self,
        family: FamilyId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Revokes every live family of a user; returns how many.
    async fn revoke_user_families(
        &self,
        user: UserId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64>;
    /// Deletes expired tokens, families revoked before `revoked_before`, and families
    /// left without tokens.
    async fn prune(&self, now: DateTime<Utc>, revoked_before: DateTime<Utc>)
    -> Result<PruneReport>;

    /// Starts a write transaction for a rotation (serialized per token).
    async fn begin_rotation(&self) -> Result<Box<dyn RotationTx>>;
}

/// The steps of a refresh rotation, inside one transaction. Dropped without
/// [`RotationTx::commit`], it rolls back.
#[async_trait]
pub trait RotationTx: Send {
    /// Reads the token and locks it against concurrent rotations.
    async fn find_refresh(&mut self, digest: &TokenDigest) -> Result<Option<RefreshRecord>>;
    /// Marks the token rotated if it is still live; false if someone else got there first.
    async fn mark_rotated(&mut self, digest: &TokenDigest, now: DateTime<Utc>) -> Result<bool>;
    async fn insert_refresh(
        &mut self,
        family: FamilyId,
        digest: &TokenDigest,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    async fn revoke_family(
        &mut self,
        family: FamilyId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<()>;
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// A pooled connection idle for longer than this is pinged before it is handed out.
///
/// sqlx tests every connection when it goes back to the pool and, by default, again
/// when it is taken out: an extra round trip around every query. A connection returned
/// moments ago passed the first test, so only one that sat idle is tested again —
/// enough to replace connections that died with a database restart.
pub const PING_IF_IDLE_FOR: std::time::Duration = std::time::Duration::from_millis(100);

/// The pools' `before_acquire` hook: see [`PING_IF_IDLE_FOR`].
fn ping_if_idle<C: sqlx::Connection>(
    conn: &mut C,
    meta: sqlx::pool::PoolConnectionMetadata,
) -> std::pin::Pin<Box<dyn Future<Output = std::result::Result<bool, sqlx::Error>> + Send + '_>> {
    Box::pin(async move {
        if meta.idle_for >= PING_IF_IDLE_FOR {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// Opens the store the URL names. Connections are made lazily, so this fails only on
/// a malformed URL; the first query tells whether the database answers.
/// Takes anything that yields [`StoreOptions`] (the configuration's `&Settings` does).
pub fn connect(options: impl Into<StoreOptions>) -> Result<Arc<dyn Store>> {
    let options = options.into();
    if options.url.is_postgres() {
        Ok(Arc::new(postgres::PgStore::connect(&options)?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::connect(&options)?))
    }
}

/// What opening a store needs: where the database is and how many connections to keep.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub url: DatabaseUrl,
    /// Connections kept open even when idle.
    pub pool_min: u32,
    /// The most connections at once (at least 1 is used).
    pub pool_max: u32,
}
