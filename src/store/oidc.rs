//! Storage of the OpenID Connect provider (SPEC §18): [`OidcStore`], a supertrait of
//! [`Store`](super::Store), implemented for both backends by [`oidc_store!`] with the
//! same SQL. The rules are in `service/oidc/`; what must hold under concurrency and
//! across replicas is decided here, each by one conditional statement:
//!
//! - an authorization code is exchanged once ([`OidcStore::code_exchange`]: the
//!   `UPDATE … WHERE used_at IS NULL` that matches wins, and creates the session in
//!   the same transaction, so a later use, which waits for that row, always finds the
//!   session to revoke);
//! - a client's sessions are revoked with its removal, in one transaction;
//! - at most one ID-token key per algorithm is current (a unique index).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{FamilyId, UserId};
use crate::error::Result;

/// A SHA-256 digest (of a client secret, of a code).
pub type Digest = [u8; 32];

/// A registered client, as stored. The secret is only ever its digest.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    /// `None` for a public client.
    pub secret_digest: Option<Vec<u8>>,
    /// JSON arrays of exact URI strings.
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    pub id_token_alg: String,
    pub created_at: DateTime<Utc>,
}

/// A new authorization code.
#[derive(Debug, Clone)]
pub struct NewCode<'a> {
    pub digest: &'a Digest,
    pub client_id: &'a str,
    pub user: UserId,
    pub browser_family: FamilyId,
    pub redirect_uri: &'a str,
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub code_challenge: &'a str,
    pub auth_time: DateTime<Utc>,
    pub amr: &'a str,
    pub expires_at: DateTime<Utc>,
}

/// A code as its (first) exchange reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CodeRow {
    pub client_id: String,
    pub user_id: UserId,
    pub browser_family: FamilyId,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub auth_time: DateTime<Utc>,
    pub amr: String,
    pub expires_at: DateTime<Utc>,
}

/// The exchange's own checks of a code it spends: why it is refused, if it is.
pub type CodeCheck<'a> = dyn for<'r> Fn(&'r CodeRow) -> Option<&'static str> + Send + Sync + 'a;

/// What presenting a code found.
#[derive(Debug, Clone)]
pub enum CodeClaim {
    /// The first use, and it checked out: the code is spent and the session created.
    First(CodeRow),
    /// The first use, refused (by the caller's check, or the user or the browser
    /// session is gone): the code is spent all the same.
    Refused(&'static str),
    /// A code already spent: the session its first use created (if it got that far).
    Reused {
        issued: Option<FamilyId>,
        user: UserId,
        client_id: String,
    },
    Unknown,
}

/// One row of `id_token_keys`. No `Debug` of the private part.
#[derive(Clone, sqlx::FromRow)]
pub struct IdKeyRow {
    pub kid: String,
    pub alg: String,
    /// PKCS#8 DER. Never logged or shown.
    pub private_key: Vec<u8>,
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for IdKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdKeyRow")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A client's new session (SPEC §18), made from its code: the user, scope, first
/// authentication, methods and browser session (`parent`, the ID token's `sid`) are
/// the code's. Created only while the user is active and that browser session alive.
#[derive(Debug, Clone)]
pub struct NewOidcFamily<'a> {
    pub family: FamilyId,
    /// Its first refresh token.
    pub digest: &'a crate::tokens::refresh::TokenDigest,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Who exchanged the code (the sessions list's `ip` and `user_agent`).
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// Storage of clients, codes and ID-token keys.
#[async_trait]
pub trait OidcStore: Send + Sync {
    async fn client_insert(&self, client: &ClientRow) -> Result<()>;
    async fn client_get(&self, client_id: &str) -> Result<Option<ClientRow>>;
    async fn client_list(&self) -> Result<Vec<ClientRow>>;
    /// Deletes a client and revokes its sessions; returns whether it existed.
    async fn client_remove(&self, client_id: &str, now: DateTime<Utc>) -> Result<bool>;
    /// Replaces a confidential client's secret digest; false for an unknown or public
    /// client.
    async fn client_set_secret(&self, client_id: &str, digest: &Digest) -> Result<bool>;

    async fn code_insert(&self, code: &NewCode<'_>) -> Result<()>;
    /// Spends a code and, if `check` finds nothing wrong with it (`None`), creates
    /// the session `family` for it in the same transaction (see the module comment).
    /// A code already spent is marked reused, and answers the session it created.
    async fn code_exchange(
        &self,
        digest: &Digest,
        family: &NewOidcFamily<'_>,
        check: &CodeCheck<'_>,
    ) -> Result<CodeClaim>;
    /// Deletes codes that expired more than a day ago; returns how many.
    async fn codes_prune(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Revokes the live client sessions a browser session started; returns how many.
    async fn revoke_children(
        &self,
        parent: FamilyId,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<u64>;
    /// Marks a new session (created by `create_family`) as the login page's.
    async fn family_set_browser(&self, family: FamilyId) -> Result<()>;

    /// The current ID-token keys and the previous ones still verifying at `now`.
    async fn id_keys_live(&self, now: DateTime<Utc>) -> Result<Vec<IdKeyRow>>;
    async fn id_keys_all(&self) -> Result<Vec<IdKeyRow>>;
    /// Inserts `key` as the current key of its algorithm unless there is one.
    async fn id_key_insert_first(&self, key: &IdKeyRow) -> Result<bool>;
    /// The current key of `key.alg` becomes previous until `previous_expires_at`;
    /// `key` becomes current. Returns whether there was a current key to replace.
    async fn id_key_rotate(
        &self,
        key: &IdKeyRow,
        previous_expires_at: DateTime<Utc>,
    ) -> Result<bool>;
    /// Marks a non-current key retired; returns whether it exists.
    async fn id_key_retire(&self, kid: &str, now: DateTime<Utc>) -> Result<bool>;
    /// Deletes previous keys whose tokens have all expired.
    async fn id_keys_prune(&self, now: DateTime<Utc>) -> Result<u64>;
}

macro_rules! client_columns {
    () => {
        "client_id, name, secret_digest, redirect_uris, post_logout_redirect_uris, id_token_alg, created_at"
    };
}

macro_rules! id_key_columns {
    () => {
        "kid, alg, private_key, state, created_at, rotated_at, expires_at, retired_at"
    };
}

/// `oidc_store!(Store, |pool| begin-write-transaction)`: [`OidcStore`] for a store
/// with a `pool` field.
macro_rules! oidc_store {
    ($store:ident, $begin:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::oidc::OidcStore for $store {
            async fn client_insert(
                &self,
                c: &$crate::store::oidc::ClientRow,
            ) -> $crate::error::Result<()> {
                sqlx::query(concat!(
                    "INSERT INTO oauth_clients (",
                    client_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
                ))
                .bind(&c.client_id)
                .bind(&c.name)
                .bind(c.secret_digest.as_deref())
                .bind(&c.redirect_uris)
                .bind(&c.post_logout_redirect_uris)
                .bind(&c.id_token_alg)
                .bind(c.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn client_get(
                &self,
                client_id: &str,
            ) -> $crate::error::Result<Option<$crate::store::oidc::ClientRow>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    client_columns!(),
                    " FROM oauth_clients WHERE client_id = $1"
                ))
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn client_list(
                &self,
            ) -> $crate::error::Result<Vec<$crate::store::oidc::ClientRow>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    client_columns!(),
                    " FROM oauth_clients ORDER BY created_at, client_id"
                ))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn client_remove(
                &self,
                client_id: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let removed = sqlx::query("DELETE FROM oauth_clients WHERE client_id = $1")
                    .bind(client_id)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                sqlx::query(
                    "UPDATE token_families SET revoked_at = $1, revoked_reason = 'client removed' \
                     WHERE client_id = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(client_id)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(removed)
            }

            async fn client_set_secret(
                &self,
                client_id: &str,
                digest: &$crate::store::oidc::Digest,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query(
                    "UPDATE oauth_clients SET secret_digest = $1 \
                     WHERE client_id = $2 AND secret_digest IS NOT NULL",
                )
                .bind(&digest[..])
                .bind(client_id)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn code_insert(
                &self,
                c: &$crate::store::oidc::NewCode<'_>,
            ) -> $crate::error::Result<()> {
                sqlx::query(
                    "INSERT INTO oauth_codes (digest, client_id, user_id, browser_family, \
                     redirect_uri, scope, nonce, code_challenge, auth_time, amr, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                )
                .bind(&c.digest[..])
                .bind(c.client_id)
                .bind(c.user)
                .bind(c.browser_family)
                .bind(c.redirect_uri)
                .bind(c.scope)
                .bind(c.nonce)
                .bind(c.code_challenge)
                .bind(c.auth_time)
                .bind(c.amr)
                .bind(c.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn code_exchange(
                &self,
                digest: &$crate::store::oidc::Digest,
                f: &$crate::store::oidc::NewOidcFamily<'_>,
                check: &$crate::store::oidc::CodeCheck<'_>,
            ) -> $crate::error::Result<$crate::store::oidc::CodeClaim> {
                use $crate::store::oidc::CodeClaim;
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let first: Option<$crate::store::oidc::CodeRow> = sqlx::query_as(
                    "UPDATE oauth_codes SET used_at = $1, issued_family = $2 \
                     WHERE digest = $3 AND used_at IS NULL \
                     RETURNING client_id, user_id, browser_family, redirect_uri, scope, nonce, \
                     code_challenge, auth_time, amr, expires_at",
                )
                .bind(f.now)
                .bind(f.family)
                .bind(&digest[..])
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = first else {
                    let again: Option<(
                        Option<$crate::domain::FamilyId>,
                        $crate::domain::UserId,
                        String,
                    )> = sqlx::query_as(
                        "UPDATE oauth_codes SET reused_at = COALESCE(reused_at, $1) \
                         WHERE digest = $2 RETURNING issued_family, user_id, client_id",
                    )
                    .bind(f.now)
                    .bind(&digest[..])
                    .fetch_optional(&mut *tx)
                    .await?;
                    tx.commit().await?;
                    return Ok(match again {
                        Some((issued, user, client_id)) => CodeClaim::Reused {
                            issued,
                            user,
                            client_id,
                        },
                        None => CodeClaim::Unknown,
                    });
                };
                if let Some(reason) = check(&row) {
                    // Spent all the same: a code is tried once.
                    tx.commit().await?;
                    return Ok(CodeClaim::Refused(reason));
                }
                let created = sqlx::query(
                    "INSERT INTO token_families (id, user_id, created_at, amr, kind, client_id, \
                     scope, auth_time, parent, ip, user_agent, last_used_at) \
                     SELECT $1, u.id, $3, $4, 'oidc', $5, $6, $7, $8, $9, $10, $3 FROM users u \
                     WHERE u.id = $2 AND u.is_active AND EXISTS (SELECT 1 FROM token_families p \
                     WHERE p.id = $8 AND p.user_id = $2 AND p.revoked_at IS NULL)",
                )
                .bind(f.family)
                .bind(row.user_id)
                .bind(f.now)
                .bind(&row.amr)
                .bind(&row.client_id)
                .bind(&row.scope)
                .bind(row.auth_time)
                .bind(row.browser_family)
                .bind(f.ip)
                .bind(f.user_agent)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if created == 0 {
                    tx.commit().await?;
                    return Ok(CodeClaim::Refused(
                        "the user is disabled or the login session has ended",
                    ));
                }
                sqlx::query(
                    "INSERT INTO refresh_tokens (digest, family_id, issued_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&f.digest[..])
                .bind(f.family)
                .bind(f.now)
                .bind(f.expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(CodeClaim::First(row))
            }

            async fn codes_prune(
                &self,
                before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<u64> {
                let r = sqlx::query("DELETE FROM oauth_codes WHERE expires_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected())
            }

            async fn revoke_children(
                &self,
                parent: $crate::domain::FamilyId,
                reason: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<u64> {
                let r = sqlx::query(
                    "UPDATE token_families SET revoked_at = $1, revoked_reason = $2 \
                     WHERE parent = $3 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(reason)
                .bind(parent)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected())
            }

            async fn family_set_browser(
                &self,
                family: $crate::domain::FamilyId,
            ) -> $crate::error::Result<()> {
                sqlx::query("UPDATE token_families SET kind = 'browser' WHERE id = $1")
                    .bind(family)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn id_keys_live(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<Vec<$crate::store::oidc::IdKeyRow>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    id_key_columns!(),
                    " FROM id_token_keys WHERE state = 'current' \
                     OR (state = 'previous' AND expires_at > $1) ORDER BY created_at, kid"
                ))
                .bind(now)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn id_keys_all(
                &self,
            ) -> $crate::error::Result<Vec<$crate::store::oidc::IdKeyRow>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    id_key_columns!(),
                    " FROM id_token_keys ORDER BY created_at, kid"
                ))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn id_key_insert_first(
                &self,
                k: &$crate::store::oidc::IdKeyRow,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO id_token_keys (kid, alg, private_key, state, created_at) \
                     VALUES ($1, $2, $3, 'current', $4) ON CONFLICT DO NOTHING",
                )
                .bind(&k.kid)
                .bind(&k.alg)
                .bind(&k.private_key)
                .bind(k.created_at)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn id_key_rotate(
                &self,
                k: &$crate::store::oidc::IdKeyRow,
                previous_expires_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let replaced = sqlx::query(
                    "UPDATE id_token_keys SET state = 'previous', rotated_at = $1, expires_at = $2 \
                     WHERE alg = $3 AND state = 'current'",
                )
                .bind(k.created_at)
                .bind(previous_expires_at)
                .bind(&k.alg)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    > 0;
                sqlx::query(
                    "INSERT INTO id_token_keys (kid, alg, private_key, state, created_at) \
                     VALUES ($1, $2, $3, 'current', $4)",
                )
                .bind(&k.kid)
                .bind(&k.alg)
                .bind(&k.private_key)
                .bind(k.created_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(replaced)
            }

            async fn id_key_retire(
                &self,
                kid: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query(
                    "UPDATE id_token_keys SET state = 'retired', retired_at = $1 \
                     WHERE kid = $2 AND state <> 'current'",
                )
                .bind(now)
                .bind(kid)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn id_keys_prune(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<u64> {
                let r = sqlx::query(
                    "DELETE FROM id_token_keys WHERE state = 'previous' AND expires_at <= $1",
                )
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected())
            }
        }
    };
}
