//! Storage of the second factor (SPEC §14): [`MfaStore`], a supertrait of
//! [`Store`](super::Store), implemented for both backends by [`mfa_store!`] with the
//! same SQL. The rules are in `service/mfa.rs`; what must hold under concurrency and
//! across replicas is decided here, each by one conditional statement:
//!
//! - a TOTP time step is accepted only if it is greater than the last one accepted
//!   for the account ([`MfaStore::mfa_accept_step`]: `rows_affected() == 1` wins);
//! - a recovery code is spent once ([`MfaStore::mfa_use_recovery_code`]);
//! - an `mfa_token` counts each attempt before its code is checked and is spent once
//!   ([`MfaStore::mfa_token_claim`], [`MfaStore::mfa_token_spend`]).
//!
//! The TOTP secret is stored as it is: it must be usable to check codes (README,
//! "Security notes"). Recovery codes and `mfa_token`s are stored as SHA-256 digests.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{FamilyId, UserId};
use crate::error::Result;

/// A SHA-256 digest (of a recovery code, an `mfa_token`, a password hash).
pub type Digest = [u8; 32];

/// An account's TOTP enrolment.
#[derive(Clone, sqlx::FromRow)]
pub struct MfaRecord {
    /// The raw 160-bit secret.
    pub secret: Vec<u8>,
    /// `None` while the enrolment is pending.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The last time step accepted (RFC 6238 counter).
    pub last_step: Option<i64>,
}

impl std::fmt::Debug for MfaRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfaRecord")
            .field("secret", &"[REDACTED]")
            .field("confirmed_at", &self.confirmed_at)
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// The confirmation of a pending enrolment, in one transaction.
#[derive(Debug, Clone, Copy)]
pub struct MfaConfirm<'a> {
    pub user: UserId,
    /// The secret the code was checked against: a replaced enrolment is not confirmed.
    pub secret: &'a [u8],
    /// The step the confirming code matched: it counts as used.
    pub step: i64,
    /// The digests of the first recovery codes.
    pub recovery: &'a [Digest],
    /// The caller's session, which survives; every other one is revoked.
    pub keep: FamilyId,
    pub now: DateTime<Utc>,
}

/// A new `mfa_token` of the second login step.
#[derive(Debug, Clone, Copy)]
pub struct NewMfaToken<'a> {
    pub digest: &'a Digest,
    pub user: UserId,
    /// The SHA-256 of the password hash the first step verified: a password change
    /// in between spends the token.
    pub password_digest: &'a Digest,
    pub expires_at: DateTime<Utc>,
}

/// What a counted `mfa_token` attempt is bound to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MfaTokenClaim {
    pub user_id: UserId,
    pub password_digest: Vec<u8>,
}

#[async_trait]
pub trait MfaStore: Send + Sync {
    async fn mfa_get(&self, user: UserId) -> Result<Option<MfaRecord>>;
    /// Starts (or replaces) a pending enrolment; false if TOTP is already on.
    async fn mfa_enrol(&self, user: UserId, secret: &[u8], now: DateTime<Utc>) -> Result<bool>;
    /// Turns a pending enrolment on, with its step used, its recovery codes, and the
    /// account's other sessions revoked, in one transaction. `None`: nothing pending
    /// with that secret (replaced or confirmed meanwhile). `Some(n)`: n revoked.
    async fn mfa_confirm(&self, c: &MfaConfirm<'_>) -> Result<Option<u64>>;
    /// Accepts time step `step` for the account if TOTP is on with `secret` and the
    /// step is greater than the last one accepted: one conditional UPDATE.
    async fn mfa_accept_step(&self, user: UserId, secret: &[u8], step: i64) -> Result<bool>;
    /// Spends an unused recovery code of the account; false if there is none.
    async fn mfa_use_recovery_code(
        &self,
        user: UserId,
        digest: &Digest,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Replaces the account's recovery codes (the old set is void).
    async fn mfa_replace_recovery_codes(&self, user: UserId, digests: &[Digest]) -> Result<()>;
    /// Removes TOTP, recovery codes and pending `mfa_token`s; whether TOTP was on.
    async fn mfa_remove(&self, user: UserId) -> Result<bool>;
    async fn mfa_token_insert(&self, token: &NewMfaToken<'_>) -> Result<()>;
    /// Counts an attempt on an `mfa_token` before its code is checked, if the token
    /// is unspent, unexpired and has had fewer than `max_attempts` attempts.
    async fn mfa_token_claim(
        &self,
        digest: &Digest,
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> Result<Option<MfaTokenClaim>>;
    /// Spends an `mfa_token` after a right code (its attempt no failure); false if
    /// another request spent it first.
    async fn mfa_token_spend(&self, digest: &Digest, now: DateTime<Utc>) -> Result<bool>;
    /// Records the RFC 8176 methods of a new session.
    async fn family_set_amr(&self, family: FamilyId, amr: &str) -> Result<()>;
    /// Deletes expired `mfa_token`s; returns how many.
    async fn mfa_prune(&self, now: DateTime<Utc>) -> Result<u64>;
}

/// `mfa_store!(Store, |pool| begin-write-transaction)`: [`MfaStore`] for a store with
/// a `pool` field.
macro_rules! mfa_store {
    ($store:ident, $begin:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::mfa::MfaStore for $store {
            async fn mfa_get(
                &self,
                user: $crate::domain::UserId,
            ) -> $crate::error::Result<Option<$crate::store::mfa::MfaRecord>> {
                Ok(sqlx::query_as(
                    "SELECT secret, confirmed_at, last_step FROM user_mfa WHERE user_id = $1",
                )
                .bind(user)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn mfa_enrol(
                &self,
                user: $crate::domain::UserId,
                secret: &[u8],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query(
                    "INSERT INTO user_mfa (user_id, secret, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, \
                     created_at = excluded.created_at, last_step = NULL \
                     WHERE user_mfa.confirmed_at IS NULL",
                )
                .bind(user)
                .bind(secret)
                .bind(now)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn mfa_confirm(
                &self,
                c: &$crate::store::mfa::MfaConfirm<'_>,
            ) -> $crate::error::Result<Option<u64>> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let r = sqlx::query(
                    "UPDATE user_mfa SET confirmed_at = $1, last_step = $2 \
                     WHERE user_id = $3 AND secret = $4 AND confirmed_at IS NULL \
                     AND (last_step IS NULL OR last_step < $2)",
                )
                .bind(c.now)
                .bind(c.step)
                .bind(c.user)
                .bind(c.secret)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Ok(None);
                }
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(c.user)
                    .execute(&mut *tx)
                    .await?;
                for digest in c.recovery {
                    sqlx::query("INSERT INTO recovery_codes (user_id, digest) VALUES ($1, $2)")
                        .bind(c.user)
                        .bind(&digest[..])
                        .execute(&mut *tx)
                        .await?;
                }
                // Made with the password alone: they end with the second factor's start.
                let revoked = sqlx::query(
                    "UPDATE token_families SET revoked_at = $1, revoked_reason = 'mfa enabled' \
                     WHERE user_id = $2 AND id <> $3 AND revoked_at IS NULL",
                )
                .bind(c.now)
                .bind(c.user)
                .bind(c.keep)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(Some(revoked))
            }

            async fn mfa_accept_step(
                &self,
                user: $crate::domain::UserId,
                secret: &[u8],
                step: i64,
            ) -> $crate::error::Result<bool> {
                // The replay rule, once for all replicas: the row is re-checked under
                // its write lock, so of N requests with one step exactly one matches.
                let r = sqlx::query(
                    "UPDATE user_mfa SET last_step = $1 WHERE user_id = $2 AND secret = $3 \
                     AND confirmed_at IS NOT NULL AND (last_step IS NULL OR last_step < $1)",
                )
                .bind(step)
                .bind(user)
                .bind(secret)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn mfa_use_recovery_code(
                &self,
                user: $crate::domain::UserId,
                digest: &$crate::store::mfa::Digest,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query(
                    "UPDATE recovery_codes SET used_at = $1 \
                     WHERE user_id = $2 AND digest = $3 AND used_at IS NULL",
                )
                .bind(now)
                .bind(user)
                .bind(&digest[..])
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn mfa_replace_recovery_codes(
                &self,
                user: $crate::domain::UserId,
                digests: &[$crate::store::mfa::Digest],
            ) -> $crate::error::Result<()> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                for digest in digests {
                    sqlx::query("INSERT INTO recovery_codes (user_id, digest) VALUES ($1, $2)")
                        .bind(user)
                        .bind(&digest[..])
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn mfa_remove(&self, user: $crate::domain::UserId) -> $crate::error::Result<bool> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let was_on = sqlx::query(
                    "DELETE FROM user_mfa WHERE user_id = $1 AND confirmed_at IS NOT NULL",
                )
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                for sql in [
                    "DELETE FROM user_mfa WHERE user_id = $1",
                    "DELETE FROM recovery_codes WHERE user_id = $1",
                    "DELETE FROM mfa_tokens WHERE user_id = $1",
                ] {
                    sqlx::query(sql).bind(user).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(was_on)
            }

            async fn mfa_token_insert(
                &self,
                t: &$crate::store::mfa::NewMfaToken<'_>,
            ) -> $crate::error::Result<()> {
                sqlx::query(
                    "INSERT INTO mfa_tokens (digest, user_id, password_digest, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&t.digest[..])
                .bind(t.user)
                .bind(&t.password_digest[..])
                .bind(t.expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn mfa_token_claim(
                &self,
                digest: &$crate::store::mfa::Digest,
                now: chrono::DateTime<chrono::Utc>,
                max_attempts: i32,
            ) -> $crate::error::Result<Option<$crate::store::mfa::MfaTokenClaim>> {
                Ok(sqlx::query_as(
                    "UPDATE mfa_tokens SET failures = failures + 1 \
                     WHERE digest = $1 AND used_at IS NULL AND expires_at > $2 AND failures < $3 \
                     RETURNING user_id, password_digest",
                )
                .bind(&digest[..])
                .bind(now)
                .bind(max_attempts)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn mfa_token_spend(
                &self,
                digest: &$crate::store::mfa::Digest,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query(
                    "UPDATE mfa_tokens SET used_at = $1, failures = failures - 1 \
                     WHERE digest = $2 AND used_at IS NULL",
                )
                .bind(now)
                .bind(&digest[..])
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn family_set_amr(
                &self,
                family: $crate::domain::FamilyId,
                amr: &str,
            ) -> $crate::error::Result<()> {
                sqlx::query("UPDATE token_families SET amr = $1 WHERE id = $2")
                    .bind(amr)
                    .bind(family)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn mfa_prune(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<u64> {
                let r = sqlx::query("DELETE FROM mfa_tokens WHERE expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected())
            }
        }
    };
}
