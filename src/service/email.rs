//! Email verification and password recovery (SPEC §13): who gets a message, what it
//! says, and what its token does.
//!
//! - A request never talks to a mail server: it records the token's digest and the
//!   message in the outbox, in one transaction (`EmailStore::mail_request`), and wakes
//!   the sender. The same transaction runs for an unknown address (it writes the
//!   throttle row and nothing else), so the answer's time and body do not say whether
//!   the account exists.
//! - At most one message per address and kind per [`THROTTLE`].
//! - Tokens are 256 random bits, base64url, stored as digests, one purpose each,
//!   single use; a reset token dies with any change of the account's password, email
//!   or state, and when a newer one is issued.
//! - A reset sets the password, revokes every session, clears the lockout (a lock for
//!   good included) and verifies the email, in one transaction; it issues no tokens.
//! - [`AuthService::deliver_due`] is the sender's one round: claim, send, record,
//!   with retries backing off up to 2 minutes in the first hour and 15 after, for
//!   [`GIVE_UP_AFTER`]; then a WARN line with the message's id, never its token.

use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::domain::{Email, Password, UserRef};
use crate::error::{Error, Result};
use crate::mail::{Mail, Mailer};
use crate::metrics::{EmailKind, EmailResult};
use crate::store::User;
use crate::store::email::{
    Delivery, MailAccount, MailRequest, NewMessage, NewToken, OutboxEntry, Purpose,
};
use crate::tokens::RefreshToken as OpaqueToken;

/// At most one message per address and kind this often.
pub const THROTTLE: Duration = Duration::from_secs(60);
/// How long a message is retried before it is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How long the sender may hold a claimed message before another may try it.
const LEASE: Duration = Duration::from_secs(120);

/// The wait before the next try after `attempts` failed ones, for a message of
/// `age`; `None` when it is time to give up.
pub fn retry_delay(attempts: i32, age: Duration) -> Option<Duration> {
    if age >= GIVE_UP_AFTER {
        return None;
    }
    let cap = if age < Duration::from_secs(3600) {
        Duration::from_secs(120)
    } else {
        Duration::from_secs(900)
    };
    let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    Some((Duration::from_secs(2) * 2u32.pow(exp)).min(cap))
}

/// What `user reset-link` prints and the admin API answers.
#[derive(Debug, Clone, Serialize)]
pub struct ResetLink {
    pub token: String,
    /// `email.reset_url` with the token in it; `None` without a template.
    pub link: Option<String>,
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX / 2)
}

fn kind_of(kind: &str) -> EmailKind {
    match kind {
        "reset" => EmailKind::Reset,
        "test" => EmailKind::Test,
        _ => EmailKind::Verify,
    }
}

/// A human length for a TTL in a message: "30 minutes", "24 hours".
fn lasting(d: Duration) -> String {
    let minutes = d.as_secs() / 60;
    match minutes {
        m if m >= 120 && m % 60 == 0 => format!("{} hours", m / 60),
        m if m >= 2 => format!("{m} minutes"),
        _ => format!("{} seconds", d.as_secs()),
    }
}

impl AuthService {
    /// Whether email is configured (`email.url`).
    pub fn email_enabled(&self) -> bool {
        self.settings.email.url.is_some()
    }

    /// `email.*`, for the sender's transport.
    pub fn email_settings(&self) -> &crate::config::email::EmailSettings {
        &self.settings.email
    }

    /// Expired tokens, stale throttle rows, and finished messages older than the
    /// audit retention (housekeeping).
    pub async fn prune_email(&self) -> Result<u64> {
        let now = Utc::now();
        self.store()
            .email_prune(
                now,
                now - to_chrono(THROTTLE),
                now - to_chrono(self.settings.audit_retention),
            )
            .await
    }

    /// Woken when a message is queued: the sender looks at once.
    pub fn outbox_wake(&self) -> &tokio::sync::Notify {
        &self.outbox_wake
    }

    /// `POST /verify/request` and `/recover`, and register's own verification: queues
    /// a message for an eligible account; the same work and answer for any address.
    pub async fn request_email(
        &self,
        ctx: &RequestContext,
        purpose: Purpose,
        email: &Email,
    ) -> Result<()> {
        if !self.email_enabled() {
            return Err(Error::NotConfigured("email is not configured"));
        }
        let now = Utc::now();
        let email_norm = email.normalized();
        let token = OpaqueToken::generate();
        let ttl = match purpose {
            Purpose::Verify => self.settings.email.verify_ttl,
            Purpose::Reset => self.settings.email.reset_ttl,
        };
        let request = MailRequest {
            purpose,
            address_digest: Sha256::digest(email_norm.as_bytes()).into(),
            email_norm,
            token: token.digest(),
            now,
            throttle_since: now - to_chrono(THROTTLE),
            expires_at: now + to_chrono(ttl),
        };
        let compose = |account: &MailAccount| {
            let eligible = match purpose {
                Purpose::Verify => account.is_active && !account.email_verified,
                Purpose::Reset => account.is_active,
            };
            eligible.then(|| self.compose(purpose, account, token.expose(), ttl))
        };
        let Some((account, outbox_id)) = self.store().mail_request(&request, &compose).await?
        else {
            return Ok(());
        };
        let kind = match purpose {
            Purpose::Verify => AuditKind::EmailVerificationSent,
            Purpose::Reset => AuditKind::PasswordResetRequested,
        };
        tracing::info!(
            user_id = account.id.0,
            outbox_id,
            kind = purpose.as_str(),
            "email queued"
        );
        let event = Audit::new(kind)
            .user_ref(account.id, Some(&account.username))
            .detail("outbox_id", outbox_id);
        self.audit(ctx, event).await;
        self.outbox_wake.notify_one();
        Ok(())
    }

    /// The message for `account`: text/plain, the token in it exactly once, as a
    /// whole word (inside the link when there is a template).
    fn compose(
        &self,
        purpose: Purpose,
        account: &MailAccount,
        token: &str,
        ttl: Duration,
    ) -> NewMessage {
        let e = &self.settings.email;
        let (subject, ask, template, what) = match purpose {
            Purpose::Verify => (
                "Confirm your email address",
                "please confirm that this is your email address.",
                e.verify_url.as_ref(),
                "If you did not create an account, ignore this message.",
            ),
            Purpose::Reset => (
                "Reset your password",
                "someone (hopefully you) asked to reset your password.",
                e.reset_url.as_ref(),
                "If it was not you, ignore this message:\nyour password stays as it is.",
            ),
        };
        let action = match template {
            Some(t) => format!("Open this link:\n\n{}\n", t.link(token)),
            None => format!("Enter this code in the application:\n\n{token}\n"),
        };
        let body = format!(
            "Hello {},\n\n{ask}\n{action}\nIt is valid for {} and works once.\n{what}\n",
            account.username,
            lasting(ttl),
        );
        NewMessage {
            to: account.email.clone(),
            subject: subject.to_owned(),
            body,
            message_id: crate::mail::message_id(e.from.as_deref()),
        }
    }

    /// `POST /verify`: the token's account has its email verified.
    pub async fn verify_email(&self, ctx: &RequestContext, raw: &str) -> Result<()> {
        let token = OpaqueToken::parse(raw.trim()).ok_or(Error::InvalidEmailToken)?;
        let user = self
            .store()
            .token_verify(&token.digest(), Utc::now())
            .await?
            .ok_or(Error::InvalidEmailToken)?;
        tracing::info!(user_id = user.0, "email verified");
        let event = Audit::new(AuditKind::EmailVerified)
            .user_ref(user, None)
            .detail("by", "token");
        self.audit(ctx, event).await;
        Ok(())
    }

    /// `POST /reset`: a new password, every session revoked, the lockout cleared, the
    /// email verified — once per token, even under concurrency.
    pub async fn reset_password(
        &self,
        ctx: &RequestContext,
        raw: &str,
        new_password: &Password,
    ) -> Result<u64> {
        let token = OpaqueToken::parse(raw.trim()).ok_or(Error::InvalidEmailToken)?;
        let digest = token.digest();
        // Checked before the slow hash, used (conditionally) after it.
        let user = self
            .store()
            .token_check(&digest, Purpose::Reset, Utc::now())
            .await?
            .ok_or(Error::InvalidEmailToken)?;
        let account = self.find_user(&crate::domain::UserRef::Id(user)).await?;
        self.check_password(
            "new_password",
            new_password,
            &account.username,
            &account.email,
        )?;
        let hash = self.hasher.hash(new_password).await?;
        let done = self
            .store()
            .token_reset(&digest, &hash, Utc::now())
            .await?
            .ok_or(Error::InvalidEmailToken)?;
        self.lockout_changed.notify_waiters();
        tracing::info!(
            user_id = done.user.0,
            revoked_sessions = done.revoked_sessions,
            "password reset"
        );
        let event = Audit::new(AuditKind::PasswordReset)
            .user_ref(done.user, None)
            .detail("revoked_sessions", done.revoked_sessions);
        self.audit(ctx, event).await;
        Ok(done.revoked_sessions)
    }

    /// `authctl user reset-link` (and the admin API): a reset token for an operator to
    /// pass on; works without `email.url`. Voids the account's other reset tokens.
    pub async fn reset_link(&self, ctx: &RequestContext, user: &UserRef) -> Result<ResetLink> {
        let found = self.find_user(user).await?;
        let token = OpaqueToken::generate();
        let now = Utc::now();
        let issued = self
            .store()
            .token_issue(&NewToken {
                user: found.id,
                purpose: Purpose::Reset,
                digest: token.digest(),
                now,
                expires_at: now + to_chrono(self.settings.email.reset_ttl),
            })
            .await?;
        if !issued {
            return Err(Error::NotFound(user.to_string()));
        }
        let event = Audit::new(AuditKind::PasswordResetRequested)
            .user(&found)
            .detail("by", "operator");
        self.audit(ctx, event).await;
        let link = self
            .settings
            .email
            .reset_url
            .as_ref()
            .map(|t| t.link(token.expose()));
        Ok(ResetLink {
            token: token.expose().to_owned(),
            link,
        })
    }

    /// `authctl user verify`: marks the account's email verified.
    pub async fn mark_email_verified(&self, user: &UserRef) -> Result<User> {
        let found = self.find_user(user).await?;
        if !self.store().set_email_verified(found.id, true).await? {
            return Err(Error::NotFound(user.to_string()));
        }
        let event = Audit::new(AuditKind::EmailVerified)
            .user(&found)
            .detail("by", "operator");
        self.audit(&RequestContext::none(), event).await;
        self.find_user(&UserRef::Id(found.id)).await
    }

    /// `authctl email outbox`: newest first, metadata only.
    pub async fn outbox(&self, limit: u32) -> Result<Vec<OutboxEntry>> {
        self.store().outbox_list(i64::from(limit)).await
    }

    /// `authctl email test ADDRESS`: one message now, synchronously; the error is the
    /// server's reply.
    pub async fn send_test_email(&self, to: &Email) -> Result<()> {
        let mailer = crate::mail::mailer(&self.settings.email)
            .map_err(Error::config)?
            .ok_or(Error::NotConfigured("email is not configured (email.url)"))?;
        let mail = Mail {
            to: to.as_str().to_owned(),
            subject: "authctl test message".into(),
            body: format!(
                "This is a test message from authctl ({}).\nIf you can read it, email works.\n",
                self.settings.issuer
            ),
            message_id: crate::mail::message_id(self.settings.email.from.as_deref()),
        };
        let result = mailer.send(&mail).await;
        let outcome = if result.is_ok() {
            EmailResult::Sent
        } else {
            EmailResult::Failed
        };
        self.metrics.email(EmailKind::Test, outcome);
        result.map_err(|reply| Error::Internal(anyhow::anyhow!("the mail server said: {reply}")))
    }

    /// One round of the sender: every due message is claimed, sent and recorded.
    /// Returns how many were tried.
    pub async fn deliver_due(&self, mailer: &dyn Mailer) -> Result<usize> {
        let mut tried = 0;
        loop {
            let now = Utc::now();
            let Some(message) = self
                .store()
                .outbox_claim(now, now + to_chrono(LEASE))
                .await?
            else {
                break;
            };
            tried += 1;
            let kind = kind_of(&message.kind);
            let Some(body) = message.body.clone() else {
                // A body already dropped cannot be sent again.
                let failed = Delivery::Failed {
                    error: "the message body is gone".into(),
                };
                self.store().outbox_finish(message.id, &failed, now).await?;
                continue;
            };
            let mail = Mail {
                to: message.to_addr.clone(),
                subject: message.subject.clone(),
                body,
                message_id: message.message_id.clone(),
            };
            let result = mailer.send(&mail).await;
            let now = Utc::now();
            let delivery = match result {
                Ok(()) => {
                    tracing::info!(
                        outbox_id = message.id,
                        attempts = message.attempts,
                        "email sent"
                    );
                    self.metrics.email(kind, EmailResult::Sent);
                    Delivery::Sent
                }
                Err(error) => {
                    let age = (now - message.created_at).to_std().unwrap_or_default();
                    match retry_delay(message.attempts, age) {
                        Some(wait) => {
                            tracing::info!(
                                outbox_id = message.id,
                                attempts = message.attempts,
                                retry_in_seconds = wait.as_secs(),
                                error = %error,
                                "email delivery failed; will retry"
                            );
                            self.metrics.email(kind, EmailResult::Retry);
                            Delivery::Retry {
                                next: now + to_chrono(wait),
                                error,
                            }
                        }
                        None => {
                            tracing::warn!(
                                outbox_id = message.id,
                                attempts = message.attempts,
                                error = %error,
                                "email delivery failed for good; the message is dropped"
                            );
                            self.metrics.email(kind, EmailResult::Failed);
                            Delivery::Failed { error }
                        }
                    }
                }
            };
            self.store()
                .outbox_finish(message.id, &delivery, now)
                .await?;
        }
        let pending = self.store().outbox_pending().await?;
        self.metrics.set_outbox_pending(pending);
        Ok(tried)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_two_minutes_in_the_first_hour_fifteen_after_and_stop_after_a_day() {
        let minute = Duration::from_secs(60);
        assert_eq!(retry_delay(1, Duration::ZERO), Some(Duration::from_secs(2)));
        assert_eq!(retry_delay(2, Duration::ZERO), Some(Duration::from_secs(4)));
        assert_eq!(retry_delay(30, 30 * minute), Some(2 * minute));
        assert_eq!(retry_delay(30, 61 * minute), Some(15 * minute));
        assert_eq!(retry_delay(300, 23 * 60 * minute), Some(15 * minute));
        assert_eq!(retry_delay(300, GIVE_UP_AFTER), None);
    }
}
