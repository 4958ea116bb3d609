//! Storage of email tokens and the durable outbox (SPEC §13): [`EmailStore`], a
//! supertrait of [`Store`](super::Store), implemented for both backends by
//! [`email_store!`] with the same SQL.
//!
//! - A request for a message is one write transaction whatever the address: the
//!   account is looked up and the per-address throttle row written (known address or
//!   not, so both cost the same), and only for an eligible account are the token and
//!   the message recorded. Nothing here talks to a mail server.
//! - Tokens are used by one conditional `UPDATE … WHERE used_at IS NULL`, so N
//!   concurrent uses of one token give exactly one success. A reset token is good only
//!   while the account's `security_stamp` (moved on by every change of password,
//!   email or state) is the one it was issued at; a verification token only while
//!   the account still has the address it was issued for.
//! - The sender claims one due message at a time with a lease (`claimed_until`):
//!   on PostgreSQL with `FOR UPDATE SKIP LOCKED`, so replicas never take the same
//!   message; a process that dies mid-send leaves a lease that runs out, and the
//!   message is tried again.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::UserId;
use crate::error::Result;
use crate::tokens::refresh::TokenDigest;

/// What a token is for: one purpose each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    Verify,
    Reset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
        }
    }
}

/// The account a request names, as the composer of its message sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MailAccount {
    pub id: UserId,
    pub email: String,
    pub username: String,
    pub is_active: bool,
    pub email_verified: bool,
}

/// A message to record in the outbox.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub to: String,
    pub subject: String,
    pub body: String,
    pub message_id: String,
}

/// One request for a verification or reset message.
#[derive(Debug, Clone)]
pub struct MailRequest {
    pub purpose: Purpose,
    pub email_norm: String,
    /// SHA-256 of the normalized address: the throttle's key (no address is stored).
    pub address_digest: TokenDigest,
    pub token: TokenDigest,
    pub now: DateTime<Utc>,
    /// A message queued for this address and kind after this instant throttles.
    pub throttle_since: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A token issued without a message (`user reset-link`, the admin API).
#[derive(Debug, Clone, Copy)]
pub struct NewToken {
    pub user: UserId,
    pub purpose: Purpose,
    pub digest: TokenDigest,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A claimed message, ready to send.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxMessage {
    pub id: i64,
    pub kind: String,
    pub to_addr: String,
    pub subject: String,
    pub body: Option<String>,
    pub message_id: String,
    /// Tries so far, this one included.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// A row of `authctl email outbox`: metadata only, never the body.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OutboxEntry {
    pub id: i64,
    pub kind: String,
    pub to: String,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// How a delivery try ended.
#[derive(Debug, Clone)]
pub enum Delivery {
    Sent,
    /// Refused or failed: try again at `next`.
    Retry {
        next: DateTime<Utc>,
        error: String,
    },
    /// Given up: the body is dropped.
    Failed {
        error: String,
    },
}

/// Builds an account's message, or `None` when the account gets none.
pub type Compose<'c> = dyn for<'a> Fn(&'a MailAccount) -> Option<NewMessage> + Send + Sync + 'c;

/// What a reset did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetDone {
    pub user: UserId,
    pub revoked_sessions: u64,
}

#[async_trait]
pub trait EmailStore: Send + Sync {
    /// Records a request: the throttle row always; for an account that `compose`
    /// gives a message to (and that is not throttled), the token and the message.
    /// Returns the account and the message's outbox id when one was queued.
    async fn mail_request(
        &self,
        request: &MailRequest,
        compose: &Compose<'_>,
    ) -> Result<Option<(MailAccount, i64)>>;
    /// Issues a token without a message. A reset token voids the account's others.
    /// `false`: no such user.
    async fn token_issue(&self, token: &NewToken) -> Result<bool>;
    /// Whether a token is good now (read-only): its account.
    async fn token_check(
        &self,
        digest: &TokenDigest,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>>;
    /// Uses a verification token: the account's email is verified.
    async fn token_verify(
        &self,
        digest: &TokenDigest,
        now: DateTime<Utc>,
    ) -> Result<Option<UserId>>;
    /// Uses a reset token, in one transaction: the new hash, every session revoked,
    /// the lockout cleared, the email verified, every other reset token void.
    async fn token_reset(
        &self,
        digest: &TokenDigest,
        new_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ResetDone>>;
    /// Marks a user's email verified (or not); `false`: no such user.
    async fn set_email_verified(&self, user: UserId, verified: bool) -> Result<bool>;
    /// Claims the next due message until `lease_until`, counting the try.
    async fn outbox_claim(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<OutboxMessage>>;
    async fn outbox_finish(&self, id: i64, delivery: &Delivery, now: DateTime<Utc>) -> Result<()>;
    /// Newest first.
    async fn outbox_list(&self, limit: i64) -> Result<Vec<OutboxEntry>>;
    async fn outbox_pending(&self) -> Result<i64>;
    /// Drops expired tokens, stale throttle rows and finished messages older than
    /// `finished_before`.
    async fn email_prune(
        &self,
        now: DateTime<Utc>,
        throttle_before: DateTime<Utc>,
        finished_before: DateTime<Utc>,
    ) -> Result<u64>;
}

/// `email_store!(Store, Database, |pool| begin-write-transaction, "claim lock suffix")`.
macro_rules! email_store {
    ($store:ident, $db:ty, $begin:expr, $skip_locked:literal) => {
        #[async_trait::async_trait]
        impl $crate::store::email::EmailStore for $store {
            async fn mail_request(
                &self,
                r: &$crate::store::email::MailRequest,
                compose: &$crate::store::email::Compose<'_>,
            ) -> $crate::error::Result<Option<($crate::store::email::MailAccount, i64)>> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let account: Option<$crate::store::email::MailAccount> = sqlx::query_as(
                    "SELECT id, email, username, is_active, email_verified FROM users \
                     WHERE email_norm = $1",
                )
                .bind(&r.email_norm)
                .fetch_optional(&mut *tx)
                .await?;
                // Written for every request, so a known and an unknown address cost the same.
                let fresh = sqlx::query(
                    "INSERT INTO email_throttle (address_digest, kind, last_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (address_digest, kind) DO UPDATE SET last_at = $3 \
                     WHERE email_throttle.last_at <= $4",
                )
                .bind(&r.address_digest[..])
                .bind(r.purpose.as_str())
                .bind(r.now)
                .bind(r.throttle_since)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                let queued = match account {
                    Some(account) if fresh => match compose(&account) {
                        Some(message) => {
                            let id = queue(&mut tx, r, &account, &message).await?;
                            Some((account, id))
                        }
                        None => None,
                    },
                    _ => None,
                };
                tx.commit().await?;
                return Ok(queued);

                async fn queue(
                    tx: &mut sqlx::Transaction<'static, $db>,
                    r: &$crate::store::email::MailRequest,
                    account: &$crate::store::email::MailAccount,
                    message: &$crate::store::email::NewMessage,
                ) -> $crate::error::Result<i64> {
                    if r.purpose == $crate::store::email::Purpose::Reset {
                        sqlx::query(
                            "UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 \
                             AND purpose = 'reset' AND used_at IS NULL",
                        )
                        .bind(r.now)
                        .bind(account.id)
                        .execute(&mut **tx)
                        .await?;
                    }
                    sqlx::query(
                        "INSERT INTO email_tokens (digest, user_id, purpose, email_norm, stamp, \
                         created_at, expires_at) SELECT $1, id, $2, email_norm, security_stamp, $3, $4 \
                         FROM users WHERE id = $5",
                    )
                    .bind(&r.token[..])
                    .bind(r.purpose.as_str())
                    .bind(r.now)
                    .bind(r.expires_at)
                    .bind(account.id)
                    .execute(&mut **tx)
                    .await?;
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO email_outbox (kind, user_id, to_addr, subject, body, message_id, \
                         created_at, next_attempt_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING id",
                    )
                    .bind(r.purpose.as_str())
                    .bind(account.id)
                    .bind(&message.to)
                    .bind(&message.subject)
                    .bind(&message.body)
                    .bind(&message.message_id)
                    .bind(r.now)
                    .fetch_one(&mut **tx)
                    .await?;
                    Ok(id)
                }
            }

            async fn token_issue(
                &self,
                t: &$crate::store::email::NewToken,
            ) -> $crate::error::Result<bool> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                if t.purpose == $crate::store::email::Purpose::Reset {
                    sqlx::query(
                        "UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 \
                         AND purpose = 'reset' AND used_at IS NULL",
                    )
                    .bind(t.now)
                    .bind(t.user)
                    .execute(&mut *tx)
                    .await?;
                }
                let n = sqlx::query(
                    "INSERT INTO email_tokens (digest, user_id, purpose, email_norm, stamp, \
                     created_at, expires_at) SELECT $1, id, $2, email_norm, security_stamp, $3, $4 \
                     FROM users WHERE id = $5",
                )
                .bind(&t.digest[..])
                .bind(t.purpose.as_str())
                .bind(t.now)
                .bind(t.expires_at)
                .bind(t.user)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(n == 1)
            }

            async fn token_check(
                &self,
                digest: &$crate::tokens::refresh::TokenDigest,
                purpose: $crate::store::email::Purpose,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<Option<$crate::domain::UserId>> {
                Ok(sqlx::query_scalar(
                    "SELECT t.user_id FROM email_tokens t JOIN users u ON u.id = t.user_id \
                     WHERE t.digest = $1 AND t.purpose = $2 AND t.used_at IS NULL \
                     AND t.expires_at > $3 AND t.email_norm = u.email_norm \
                     AND (t.purpose = 'verify' OR t.stamp = u.security_stamp)",
                )
                .bind(&digest[..])
                .bind(purpose.as_str())
                .bind(now)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn token_verify(
                &self,
                digest: &$crate::tokens::refresh::TokenDigest,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<Option<$crate::domain::UserId>> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let user: Option<$crate::domain::UserId> = sqlx::query_scalar(
                    "UPDATE email_tokens SET used_at = $2 WHERE digest = $1 AND purpose = 'verify' \
                     AND used_at IS NULL AND expires_at > $2 AND email_norm = \
                     (SELECT u.email_norm FROM users u WHERE u.id = email_tokens.user_id) \
                     RETURNING user_id",
                )
                .bind(&digest[..])
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(user) = user {
                    sqlx::query("UPDATE users SET email_verified = TRUE WHERE id = $1")
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(user)
            }

            async fn token_reset(
                &self,
                digest: &$crate::tokens::refresh::TokenDigest,
                new_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<Option<$crate::store::email::ResetDone>> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let user: Option<$crate::domain::UserId> = sqlx::query_scalar(
                    "UPDATE email_tokens SET used_at = $2 WHERE digest = $1 AND purpose = 'reset' \
                     AND used_at IS NULL AND expires_at > $2 AND (stamp, email_norm) = \
                     (SELECT u.security_stamp, u.email_norm FROM users u \
                     WHERE u.id = email_tokens.user_id) RETURNING user_id",
                )
                .bind(&digest[..])
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(user) = user else {
                    return Ok(None);
                };
                sqlx::query(
                    "UPDATE users SET password_hash = $1, updated_at = $2, \
                     security_stamp = security_stamp + 1, email_verified = TRUE, \
                     failed_logins = 0, lock_count = 0, locked_until = NULL, \
                     consecutive_failures = 0 WHERE id = $3",
                )
                .bind(new_hash)
                .bind(now)
                .bind(user)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE email_tokens SET used_at = $1 WHERE user_id = $2 \
                     AND purpose = 'reset' AND used_at IS NULL",
                )
                .bind(now)
                .bind(user)
                .execute(&mut *tx)
                .await?;
                let revoked = sqlx::query(
                    "UPDATE token_families SET revoked_at = $1, revoked_reason = 'password reset' \
                     WHERE user_id = $2 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(Some($crate::store::email::ResetDone {
                    user,
                    revoked_sessions: revoked,
                }))
            }

            async fn set_email_verified(
                &self,
                user: $crate::domain::UserId,
                verified: bool,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query("UPDATE users SET email_verified = $1 WHERE id = $2")
                    .bind(verified)
                    .bind(user)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn outbox_claim(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<Option<$crate::store::email::OutboxMessage>> {
                Ok(sqlx::query_as(concat!(
                    "UPDATE email_outbox SET claimed_until = $2, attempts = attempts + 1 \
                     WHERE id = (SELECT id FROM email_outbox WHERE state = 'pending' \
                     AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) \
                     ORDER BY next_attempt_at, id LIMIT 1",
                    $skip_locked,
                    ") RETURNING id, kind, to_addr, subject, body, message_id, attempts, created_at"
                ))
                .bind(now)
                .bind(lease_until)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn outbox_finish(
                &self,
                id: i64,
                delivery: &$crate::store::email::Delivery,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<()> {
                use $crate::store::email::Delivery;
                let query = match delivery {
                    Delivery::Sent => sqlx::query(
                        "UPDATE email_outbox SET state = 'sent', body = NULL, claimed_until = NULL, \
                         last_error = NULL, finished_at = $2 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(now),
                    Delivery::Retry { next, error } => sqlx::query(
                        "UPDATE email_outbox SET next_attempt_at = $2, claimed_until = NULL, \
                         last_error = $3 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(*next)
                    .bind(error.as_str()),
                    Delivery::Failed { error } => sqlx::query(
                        "UPDATE email_outbox SET state = 'failed', body = NULL, claimed_until = NULL, \
                         last_error = $3, finished_at = $2 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(now)
                    .bind(error.as_str()),
                };
                query.execute(&self.pool).await?;
                Ok(())
            }

            async fn outbox_list(
                &self,
                limit: i64,
            ) -> $crate::error::Result<Vec<$crate::store::email::OutboxEntry>> {
                Ok(sqlx::query_as(
                    "SELECT id, kind, to_addr AS \"to\", state, attempts, \
                     CASE WHEN state = 'pending' THEN next_attempt_at ELSE NULL END AS next_attempt_at, \
                     last_error FROM email_outbox ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn outbox_pending(&self) -> $crate::error::Result<i64> {
                Ok(sqlx::query_scalar("SELECT COUNT(*) FROM email_outbox WHERE state = 'pending'")
                    .fetch_one(&self.pool)
                    .await?)
            }

            async fn email_prune(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                throttle_before: chrono::DateTime<chrono::Utc>,
                finished_before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<u64> {
                let mut n = sqlx::query("DELETE FROM email_tokens WHERE expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                n += sqlx::query("DELETE FROM email_throttle WHERE last_at < $1")
                    .bind(throttle_before)
                    .execute(&self.pool)
                    .await?
                    .rows_affected();
                n += sqlx::query(
                    "DELETE FROM email_outbox WHERE state <> 'pending' AND finished_at < $1",
                )
                .bind(finished_before)
                .execute(&self.pool)
                .await?
                .rows_affected();
                Ok(n)
            }
        }
    };
}
