//! The `signing_keys` table (SPEC §9): the store half of signing-key rotation. One
//! [`KeyStore`] contract, implemented for both backends by [`keys_store!`] from the
//! same SQL, as [`super::sql`] does for [`super::Store`]. The rules (when to generate,
//! how long a previous key verifies) live in `service::keys`.

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;

/// One row of `signing_keys`. No `Debug` of the private part (see the impl).
#[derive(Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    /// PKCS#8 DER (EdDSA/ES256) or the raw HMAC secret. Never logged or shown.
    pub private_key: Vec<u8>,
    pub public_jwk: Option<String>,
    /// `current`, `previous` or `retired`.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub retired_at: Option<DateTime<Utc>>,
}

impl fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRow")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Storage of signing keys.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The keys that may verify now: the current one and previous ones whose tokens
    /// may still be valid at `now`. Cheap (a handful of rows): servers poll it.
    async fn live_signing_keys(&self, now: DateTime<Utc>) -> Result<Vec<SigningKeyRow>>;
    /// Every stored key, oldest first (for `keys list`).
    async fn all_signing_keys(&self) -> Result<Vec<SigningKeyRow>>;
    /// Inserts `key` as the current key unless there is one already (two replicas
    /// starting together): returns whether it was inserted.
    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> Result<bool>;
    /// In one transaction: the current key becomes `previous` (verifying until
    /// `previous_expires_at`) and `key` becomes current. A concurrent rotation makes
    /// one of them fail with [`crate::Error::Conflict`].
    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRow,
        previous_expires_at: DateTime<Utc>,
    ) -> Result<()>;
    /// Marks a non-current key retired; returns whether the kid exists.
    async fn retire_signing_key(&self, kid: &str, now: DateTime<Utc>) -> Result<bool>;
    /// Deletes previous keys whose every token has expired; returns how many.
    async fn prune_signing_keys(&self, now: DateTime<Utc>) -> Result<u64>;
}

macro_rules! key_columns {
    () => {
        "kid, alg, private_key, public_jwk, state, created_at, rotated_at, expires_at, retired_at"
    };
}

/// `keys_store!(Store, |pool| begin-write-transaction)`
macro_rules! keys_store {
    ($store:ident, $begin:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::keys::KeyStore for $store {
            async fn live_signing_keys(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<Vec<$crate::store::keys::SigningKeyRow>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM signing_keys WHERE state = 'current' \
                     OR (state = 'previous' AND expires_at > $1) ORDER BY created_at, kid"
                ))
                .bind(now)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn all_signing_keys(
                &self,
            ) -> $crate::error::Result<Vec<$crate::store::keys::SigningKeyRow>> {
                Ok(sqlx::query_as(concat!(
                    "SELECT ",
                    key_columns!(),
                    " FROM signing_keys ORDER BY created_at, kid"
                ))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn insert_first_signing_key(
                &self,
                key: &$crate::store::keys::SigningKeyRow,
            ) -> $crate::error::Result<bool> {
                // No conflict target: the partial unique index on the current state
                // and the kid both count.
                let done = sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, state, created_at) \
                     VALUES ($1, $2, $3, $4, 'current', $5) ON CONFLICT DO NOTHING",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.private_key)
                .bind(&key.public_jwk)
                .bind(key.created_at)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn rotate_signing_key(
                &self,
                key: &$crate::store::keys::SigningKeyRow,
                previous_expires_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<()> {
                let mut tx = $begin(&self.pool).await?;
                sqlx::query(
                    "UPDATE signing_keys SET state = 'previous', rotated_at = $1, expires_at = $2 \
                     WHERE state = 'current'",
                )
                .bind(key.created_at)
                .bind(previous_expires_at)
                .execute(&mut *tx)
                .await?;
                let inserted = sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, state, created_at) \
                     VALUES ($1, $2, $3, $4, 'current', $5)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.private_key)
                .bind(&key.public_jwk)
                .bind(key.created_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        return Err($crate::error::Error::Conflict("signing key"));
                    }
                    Err(e) => return Err(e.into()),
                }
                tx.commit().await?;
                Ok(())
            }

            async fn retire_signing_key(
                &self,
                kid: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                sqlx::query(
                    "UPDATE signing_keys SET state = 'retired', retired_at = $2 \
                     WHERE kid = $1 AND state = 'previous'",
                )
                .bind(kid)
                .bind(now)
                .execute(&self.pool)
                .await?;
                let found: Option<(String,)> =
                    sqlx::query_as("SELECT kid FROM signing_keys WHERE kid = $1")
                        .bind(kid)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(found.is_some())
            }

            async fn prune_signing_keys(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<u64> {
                Ok(sqlx::query(
                    "DELETE FROM signing_keys WHERE state = 'previous' AND expires_at <= $1",
                )
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected())
            }
        }
    };
}
