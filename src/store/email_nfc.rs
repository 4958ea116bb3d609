//! Stored email addresses brought into NFC (SPEC §4, look-alike accounts), once, after
//! the migrations: SQL cannot normalize Unicode portably, so migration
//! `20261204000002_email_nfc` only leaves a marker (`settings.email_nfc_pending`) and
//! [`email_nfc_store!`] does the work in Rust, under the migration lock.
//!
//! Only rows with a non-ASCII character are read (an ASCII address is already NFC).
//! A row whose normal form is another row's key is left exactly as it was and
//! reported ([`EmailCollision`]: a WARN line and `authctl migrate`'s output), never a
//! failed migration; while such rows remain, the marker stays, so every later
//! `migrate` or start reports them again (one scan of `users`). Once none remain the
//! marker goes and later runs cost one settings lookup.

use serde::Serialize;

use crate::domain::UserId;

/// The settings row the migration leaves while stored addresses may need the step.
pub const EMAIL_NFC_PENDING: &str = "email_nfc_pending";

/// A stored address left un-normalized: its NFC form is `conflicts_with`'s address.
/// An operator decides which account keeps it (e.g. `authctl user delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EmailCollision {
    pub user_id: UserId,
    pub conflicts_with: UserId,
}

/// `email_nfc_store!(Store, "SQL predicate true for a non-ASCII email or email_norm")`
macro_rules! email_nfc_store {
    ($store:ident, $non_ascii:literal) => {
        impl $store {
            /// Normalizes the stored addresses if the migration asked for it; returns
            /// the rows left alone because they collide (oldest account wins).
            async fn normalize_stored_emails(
                &self,
            ) -> $crate::error::Result<Vec<$crate::store::email_nfc::EmailCollision>> {
                use $crate::store::email_nfc::{EMAIL_NFC_PENDING, EmailCollision};
                if $crate::store::Store::setting_get(self, EMAIL_NFC_PENDING).await?.is_none() {
                    return Ok(Vec::new());
                }
                let rows: Vec<($crate::domain::UserId, String, String)> = sqlx::query_as(concat!(
                    "SELECT id, email, email_norm FROM users WHERE ",
                    $non_ascii,
                    " ORDER BY id"
                ))
                .fetch_all(&self.pool)
                .await?;
                let mut normalized = 0u64;
                let mut collisions = Vec::new();
                for (id, email, email_norm) in rows {
                    let (nfc, key) = $crate::domain::email::stored_forms(&email);
                    if nfc == email && key == email_norm {
                        continue;
                    }
                    let updated = sqlx::query(
                        "UPDATE users SET email = $1, email_norm = $2 WHERE id = $3",
                    )
                    .bind(&nfc)
                    .bind(&key)
                    .bind(id)
                    .execute(&self.pool)
                    .await;
                    match updated {
                        Ok(_) => normalized += 1,
                        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                            let other: Option<($crate::domain::UserId,)> =
                                sqlx::query_as("SELECT id FROM users WHERE email_norm = $1")
                                    .bind(&key)
                                    .fetch_optional(&self.pool)
                                    .await?;
                            if let Some((other,)) = other {
                                collisions.push(EmailCollision {
                                    user_id: id,
                                    conflicts_with: other,
                                });
                            }
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                if normalized > 0 {
                    tracing::info!(users = normalized, "stored email addresses normalized to NFC");
                }
                if collisions.is_empty() {
                    sqlx::query("DELETE FROM settings WHERE name = $1")
                        .bind(EMAIL_NFC_PENDING)
                        .execute(&self.pool)
                        .await?;
                } else {
                    let ids: Vec<String> = collisions
                        .iter()
                        .map(|c| format!("{} (same as {})", c.user_id, c.conflicts_with))
                        .collect();
                    tracing::warn!(
                        user_ids = %ids.join(", "),
                        "email addresses left un-normalized: in NFC they are another \
                         account's address; resolve them, then migrate again"
                    );
                }
                Ok(collisions)
            }
        }
    };
}
