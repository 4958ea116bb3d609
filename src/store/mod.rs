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
pub mod admin;
#[macro_use]
pub mod email;
#[macro_use]
pub mod audit;
#[macro_use]
pub mod lockout;
#[macro_use]
pub mod mfa;
#[macro_use]
pub mod oidc;
#[macro_use]
pub mod sessions;
pub mod backup;
#[macro_use]
pub mod import;
mod batch;
pub mod copy;
#[macro_use]
pub mod email_nfc;
mod lane;
#[macro_use]
pub mod pool_stats;
#[macro_use]
mod sql;
#[macro_use]
pub mod rate_limit;
#[macro_use]
pub mod keys;
pub mod locks;
pub mod postgres;
pub mod sqlite;
pub mod url;

pub use pool_stats::PoolStats;
pub use sql::{PRUNE_ORPHANS_SQL, PRUNE_REVOKED_SQL, PRUNE_TOKENS_SQL};
pub use url::DatabaseUrl;

/// A user as every surface shows it (never with its password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub username: String,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    /// The account proved it receives mail at its address (SPEC §13).
    pub email_verified: bool,
    /// Whether TOTP is on (SPEC §14); queries that do not select it read false.
    #[sqlx(default)]
    pub mfa_enabled: bool,
    /// The roles the user holds, sorted (SPEC §15); filled in by the service, from
    /// `user_roles`.
    #[sqlx(skip)]
    pub roles: Vec<String>,
}

/// A user with the bcrypt hash, for login only.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserCredentials {
    #[sqlx(flatten)]
    pub user: User,
    pub password_hash: String,
}

/// A new password hash, and the sessions it ends ([`Store::set_password_hash`]).
#[derive(Debug, Clone, Copy)]
pub struct PasswordChange<'a> {
    pub user: UserId,
    pub hash: &'a str,
    /// The session that survives (the caller's own, at the password API).
    pub keep: Option<crate::domain::FamilyId>,
    /// Why the sessions end (`revoked_reason`).
    pub reason: &'a str,
    pub now: DateTime<Utc>,
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
    /// When the session began (its first login): `auth.session_max_lifetime` counts
    /// from here.
    pub family_created_at: DateTime<Utc>,
    pub family_revoked_at: Option<DateTime<Utc>>,
    /// The session's RFC 8176 methods, space-separated (`pwd`, `pwd otp`).
    pub amr: String,
    /// `api`, `browser` or `oidc` (SPEC §18): who may present the token.
    pub kind: String,
    /// An `oidc` session's client, scope, first authentication and browser session.
    pub client_id: Option<String>,
    pub scope: Option<String>,
    pub auth_time: Option<DateTime<Utc>>,
    pub parent: Option<FamilyId>,
}

impl RefreshRecord {
    /// A session of the REST API's own logins (not the login page's cookie, not a
    /// client's): the only kind `/refresh` and `/api/v1/auth/token` rotate.
    pub fn is_api(&self) -> bool {
        self.kind == "api"
    }
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
    /// Whether the token's signing key was retired (checked in the same query, so a
    /// `keys retire` on another process refuses its tokens at once).
    pub key_retired: bool,
    /// The user's roles now, sorted, space-separated (`None`: none), read in the same
    /// statement: a role change shows at once (SPEC §15) without a query of its own.
    pub roles: Option<String>,
}

/// What [`Store::migrate`] did.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MigrateReport {
    /// The versions this call applied.
    pub applied: Vec<i64>,
    /// Stored addresses left un-normalized because their NFC form is another
    /// account's (see [`email_nfc`]).
    pub email_collisions: Vec<email_nfc::EmailCollision>,
}

/// A migration embedded in the binary and whether it is applied.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

/// The most rows of each kind (expired tokens, long-revoked families) one prune
/// batch deletes: small enough that a batch holds SQLite's write lock for about 10 ms
/// (README, "Pruning", has the measurements).
pub const PRUNE_BATCH: i64 = 500;

/// What `prune` removed.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct PruneReport {
    pub tokens: u64,
    pub families: u64,
}

/// The storage contract. Both backends pass the same test story.
#[async_trait]
pub trait Store:
    rate_limit::RateLimitStore
    + locks::Locks
    + PoolStats
    + keys::KeyStore
    + audit::AuditStore
    + lockout::LockoutStore
    + mfa::MfaStore
    + oidc::OidcStore
    + sessions::SessionStore
    + email::EmailStore
    + import::ImportStore
    + admin::AdminStore
    + Send
    + Sync
    + 'static
{
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// One round trip to the database.
    async fn ping(&self) -> Result<()>;
    /// Applies pending migrations, then the data steps SQL cannot do (stored emails
    /// to NFC, [`email_nfc`]); returns the versions applied now (by this call:
    /// processes migrating together take turns, so only one of them sees a version)
    /// and what the data steps left for an operator.
    async fn migrate(&self) -> Result<MigrateReport>;
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
    /// Sets a new hash and revokes the user's sessions (all of them, or all but
    /// `change.keep`) in one transaction: no request cancelled half-way leaves an old
    /// session alive beside the new password. `None`: no such user.
    async fn set_password_hash(&self, change: &PasswordChange<'_>) -> Result<Option<u64>>;
    /// Rehash on login: `new` replaces `old` only if `old` is still the stored hash
    /// (a concurrent password change wins). Sessions and the security stamp stay:
    /// the password is the same. `false`: nothing replaced.
    async fn replace_password_hash(&self, user: UserId, old: &str, new: &str) -> Result<bool>;
    async fn delete_user(&self, user: UserId) -> Result<bool>;

    /// Creates a session: a family and its first refresh token, atomically — but only
    /// if the user still exists, is active and still has `password_hash`, the hash the
    /// login verified. Returns whether it did. A concurrent password change, disable
    /// or delete that committed first leaves nothing to create (false); one that
    /// commits later finds the family and revokes (or deletes) it, because credential
    /// changes update the user first and revoke families second.
    async fn create_family(
        &self,
        user: UserId,
        password_hash: &str,
        family: FamilyId,
        digest: &TokenDigest,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<bool>;
    async fn find_refresh(&self, digest: &TokenDigest) -> Result<Option<RefreshRecord>>;
    async fn find_family(&self, family: FamilyId) -> Result<Option<FamilyRecord>>;
    /// The user and session of an access token; `kid` is the stored key that verified
    /// it (the legacy key's kid for its kid-less tokens), checked for retirement.
    async fn session_user(
        &self,
        user: UserId,
        family: FamilyId,
        kid: Option<&str>,
    ) -> Result<Option<SessionUser>>;
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
    /// left without tokens, in batches of at most [`PRUNE_BATCH`] rows of each kind,
    /// one short transaction per batch. On SQLite it rests between batches at least
    /// as long as the batch took, so other writers get the write lock in between.
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

/// What a command may do to the database (SPEC §8: read-only commands never write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// `serve` and `migrate`: a missing SQLite file is created (mode 0600).
    #[default]
    Create,
    /// Commands that change rows: the database must exist already.
    ReadWrite,
    /// Read-only commands: the database must exist, and nothing is written (SQLite is
    /// opened read-only; PostgreSQL sessions default to read-only transactions).
    ReadOnly,
}

/// What opening a store needs: where the database is and how many connections to keep.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub access: Access,
    pub url: DatabaseUrl,
    /// Connections kept open even when idle.
    pub pool_min: u32,
    /// The most connections at once (at least 1 is used).
    pub pool_max: u32,
}
