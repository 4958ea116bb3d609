//! Storage of roles, API keys and the admin API's views of users (SPEC §15):
//! [`AdminStore`], a supertrait of [`Store`](super::Store), implemented for both
//! backends by [`admin_store!`] with the same SQL.
//!
//! An API key is found by its digest through the unique index (one indexed read, no
//! cache: a revocation counts on every replica at the next request); `last_used_at`
//! moves by one conditional UPDATE at most once a minute per key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::User;
use crate::domain::UserId;
use crate::error::Result;

/// A stored API key (never the key itself: only its digest is kept, and not shown).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiKeyRow {
    pub id: i64,
    pub name: String,
    /// Space-separated scope names.
    pub scopes: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey<'a> {
    pub name: &'a str,
    pub digest: &'a [u8],
    pub scopes: String,
    pub now: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A user with what the admin API shows besides (`locked_until`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminUserRow {
    #[sqlx(flatten)]
    pub user: User,
    pub locked_until: Option<DateTime<Utc>>,
}

/// One page of the admin user list: ids greater than `after`, in id order (keyset:
/// a user inserted meanwhile gets a greater id, so no page skips or repeats a row).
#[derive(Debug, Clone)]
pub struct UserPageQuery {
    pub after: i64,
    /// A `LIKE` pattern on the normalized username or email (`prefix%`, escaped
    /// with `\`).
    pub pattern: Option<String>,
    pub role: Option<String>,
    pub limit: i64,
}

/// A change of a user's identity fields; `None` leaves a field as it is. Moves
/// `security_stamp` on (reset tokens die) whenever it changes anything.
#[derive(Debug, Clone)]
pub struct UserUpdate {
    pub user: UserId,
    /// The email as given and its normalized form.
    pub email: Option<(String, String)>,
    pub username: Option<(String, String)>,
    pub email_verified: Option<bool>,
    pub now: DateTime<Utc>,
}

#[async_trait]
pub trait AdminStore: Send + Sync {
    /// The user's roles, sorted.
    async fn roles_of(&self, user: UserId) -> Result<Vec<String>>;
    /// The roles of each of `users` (pairs, sorted by user then role).
    async fn roles_of_many(&self, users: &[UserId]) -> Result<Vec<(UserId, String)>>;
    /// Adds roles (those held already stay); returns how many were new.
    async fn roles_add(&self, user: UserId, roles: &[String]) -> Result<u64>;
    /// Removes roles; returns how many were held.
    async fn roles_remove(&self, user: UserId, roles: &[String]) -> Result<u64>;
    /// Replaces the user's roles with `roles`, in one transaction.
    async fn roles_set(&self, user: UserId, roles: &[String]) -> Result<()>;

    async fn admin_users_page(&self, query: &UserPageQuery) -> Result<Vec<AdminUserRow>>;
    async fn admin_user(&self, user: UserId) -> Result<Option<AdminUserRow>>;
    /// Changes identity fields; false if no such user; a taken email or username is
    /// [`crate::Error::Conflict`].
    async fn user_update(&self, change: &UserUpdate) -> Result<bool>;

    async fn apikey_insert(&self, key: &NewApiKey<'_>) -> Result<ApiKeyRow>;
    /// Every key, oldest first.
    async fn apikey_list(&self) -> Result<Vec<ApiKeyRow>>;
    /// Revokes a key (a revoked one keeps its first revocation time); `None` if no
    /// such key.
    async fn apikey_revoke(&self, id: i64, now: DateTime<Utc>) -> Result<Option<ApiKeyRow>>;
    /// The key with this digest, by the unique index.
    async fn apikey_find(&self, digest: &[u8]) -> Result<Option<ApiKeyRow>>;
    /// Sets `last_used_at = now` unless it is already after `since` (at most one
    /// write per key per minute).
    async fn apikey_touch(&self, id: i64, now: DateTime<Utc>, since: DateTime<Utc>) -> Result<()>;
}

/// The `users` columns of a [`User`] and `locked_until`, for the admin API.
macro_rules! admin_user_columns {
    () => {
        "SELECT id, email, username, is_active, created_at, email_verified, \
         EXISTS (SELECT 1 FROM user_mfa m WHERE m.user_id = users.id \
         AND m.confirmed_at IS NOT NULL) AS mfa_enabled, locked_until FROM users "
    };
}

/// `admin_store!(Store, Database, |pool| begin-write-transaction)`: [`AdminStore`]
/// for a store with a `pool` field.
macro_rules! admin_store {
    ($store:ident, $db:ty, $begin:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::admin::AdminStore for $store {
            async fn roles_of(
                &self,
                user: $crate::domain::UserId,
            ) -> $crate::error::Result<Vec<String>> {
                let rows: Vec<(String,)> =
                    sqlx::query_as("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
                        .bind(user)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn roles_of_many(
                &self,
                users: &[$crate::domain::UserId],
            ) -> $crate::error::Result<Vec<($crate::domain::UserId, String)>> {
                if users.is_empty() {
                    return Ok(Vec::new());
                }
                let mut q = sqlx::QueryBuilder::<$db>::new(
                    "SELECT user_id, role FROM user_roles WHERE user_id IN (",
                );
                let mut ids = q.separated(", ");
                for user in users {
                    ids.push_bind(*user);
                }
                q.push(") ORDER BY user_id, role");
                Ok(q.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn roles_add(
                &self,
                user: $crate::domain::UserId,
                roles: &[String],
            ) -> $crate::error::Result<u64> {
                let mut added = 0;
                for role in roles {
                    added += sqlx::query(
                        "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) \
                         ON CONFLICT (user_id, role) DO NOTHING",
                    )
                    .bind(user)
                    .bind(role)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                }
                Ok(added)
            }

            async fn roles_remove(
                &self,
                user: $crate::domain::UserId,
                roles: &[String],
            ) -> $crate::error::Result<u64> {
                let mut removed = 0;
                for role in roles {
                    removed += sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role = $2")
                        .bind(user)
                        .bind(role)
                        .execute(&self.pool)
                        .await?
                        .rows_affected();
                }
                Ok(removed)
            }

            async fn roles_set(
                &self,
                user: $crate::domain::UserId,
                roles: &[String],
            ) -> $crate::error::Result<()> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                for role in roles {
                    sqlx::query(
                        "INSERT INTO user_roles (user_id, role) VALUES ($1, $2) \
                         ON CONFLICT (user_id, role) DO NOTHING",
                    )
                    .bind(user)
                    .bind(role)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn admin_users_page(
                &self,
                p: &$crate::store::admin::UserPageQuery,
            ) -> $crate::error::Result<Vec<$crate::store::admin::AdminUserRow>> {
                Ok(sqlx::query_as(concat!(
                    admin_user_columns!(),
                    "WHERE id > $1 \
                     AND ($2 IS NULL OR username_norm LIKE $2 ESCAPE '\\' OR email_norm LIKE $2 ESCAPE '\\') \
                     AND ($3 IS NULL OR EXISTS (SELECT 1 FROM user_roles r \
                     WHERE r.user_id = users.id AND r.role = $3)) \
                     ORDER BY id LIMIT $4"
                ))
                .bind(p.after)
                .bind(p.pattern.as_deref())
                .bind(p.role.as_deref())
                .bind(p.limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn admin_user(
                &self,
                user: $crate::domain::UserId,
            ) -> $crate::error::Result<Option<$crate::store::admin::AdminUserRow>> {
                Ok(sqlx::query_as(concat!(admin_user_columns!(), "WHERE id = $1"))
                    .bind(user)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn user_update(
                &self,
                c: &$crate::store::admin::UserUpdate,
            ) -> $crate::error::Result<bool> {
                let (email, email_norm) = c.email.clone().unzip();
                let (username, username_norm) = c.username.clone().unzip();
                let r = sqlx::query(
                    "UPDATE users SET email = COALESCE($1, email), \
                     email_norm = COALESCE($2, email_norm), \
                     username = COALESCE($3, username), \
                     username_norm = COALESCE($4, username_norm), \
                     email_verified = COALESCE($5, email_verified), \
                     updated_at = $6, security_stamp = security_stamp + 1 WHERE id = $7",
                )
                .bind(email.as_deref())
                .bind(email_norm.as_deref())
                .bind(username.as_deref())
                .bind(username_norm.as_deref())
                .bind(c.email_verified)
                .bind(c.now)
                .bind(c.user)
                .execute(&self.pool)
                .await;
                match r {
                    Ok(r) => Ok(r.rows_affected() == 1),
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        let email_taken: Option<(i64,)> = match &email_norm {
                            Some(norm) => {
                                sqlx::query_as("SELECT id FROM users WHERE email_norm = $1 AND id <> $2")
                                    .bind(norm)
                                    .bind(c.user)
                                    .fetch_optional(&self.pool)
                                    .await?
                            }
                            None => None,
                        };
                        Err($crate::error::Error::Conflict(if email_taken.is_some() {
                            "email"
                        } else {
                            "username"
                        }))
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn apikey_insert(
                &self,
                k: &$crate::store::admin::NewApiKey<'_>,
            ) -> $crate::error::Result<$crate::store::admin::ApiKeyRow> {
                Ok(sqlx::query_as(
                    "INSERT INTO api_keys (name, digest, scopes, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id, name, scopes, created_at, \
                     expires_at, last_used_at, revoked_at",
                )
                .bind(k.name)
                .bind(k.digest)
                .bind(&k.scopes)
                .bind(k.now)
                .bind(k.expires_at)
                .fetch_one(&self.pool)
                .await?)
            }

            async fn apikey_list(
                &self,
            ) -> $crate::error::Result<Vec<$crate::store::admin::ApiKeyRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, name, scopes, created_at, expires_at, last_used_at, revoked_at \
                     FROM api_keys ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn apikey_revoke(
                &self,
                id: i64,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<Option<$crate::store::admin::ApiKeyRow>> {
                Ok(sqlx::query_as(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 \
                     RETURNING id, name, scopes, created_at, expires_at, last_used_at, revoked_at",
                )
                .bind(now)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn apikey_find(
                &self,
                digest: &[u8],
            ) -> $crate::error::Result<Option<$crate::store::admin::ApiKeyRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, name, scopes, created_at, expires_at, last_used_at, revoked_at \
                     FROM api_keys WHERE digest = $1",
                )
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn apikey_touch(
                &self,
                id: i64,
                now: chrono::DateTime<chrono::Utc>,
                since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<()> {
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 \
                     AND (last_used_at IS NULL OR last_used_at < $3)",
                )
                .bind(now)
                .bind(id)
                .bind(since)
                .execute(&self.pool)
                .await?;
                Ok(())
            }
        }
    };
}
