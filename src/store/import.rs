//! Storage of `user import` / `user export` (SPEC §16): [`ImportStore`], a supertrait
//! of [`Store`](super::Store). Imports go in batches, one transaction each (rolled
//! back for `--dry-run`); exports page by id, so neither holds more than one batch.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;

/// One parsed, validated line of an import.
#[derive(Debug, Clone)]
pub struct ImportRow {
    pub line: u64,
    pub email: String,
    pub email_norm: String,
    pub username: String,
    pub username_norm: String,
    /// `None`: keep the stored hash on update; on create, `password_hash` below.
    pub password_hash: Option<String>,
    pub is_active: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    /// `None`: the line names no roles (an update keeps the stored ones); else the
    /// account's roles, replacing any it had.
    pub roles: Option<Vec<String>>,
}

/// `--on-conflict`: what a line matching an existing account (by email or username,
/// any case) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnConflict {
    Skip,
    Update,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowOutcome {
    Created,
    Updated,
    Skipped,
    /// The line conflicts (and `--on-conflict error`, or it matches two accounts).
    Conflict(String),
}

/// A stored account as export writes it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportRow {
    pub id: crate::domain::UserId,
    pub email: String,
    pub username: String,
    pub password_hash: String,
    pub is_active: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

/// The hash an account imported without one gets: no supported format, so it never
/// verifies (login checks the dummy hash instead, in the same time); only a reset
/// opens the account.
pub const UNUSABLE_HASH: &str = "!unusable";

#[async_trait]
pub trait ImportStore: Send + Sync {
    /// Applies one batch in one transaction; `commit: false` rolls it back.
    async fn import_batch(
        &self,
        rows: &[ImportRow],
        on_conflict: OnConflict,
        commit: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<RowOutcome>>;
    /// Up to `limit` accounts with an id above `after`, by id.
    async fn export_page(&self, after: i64, limit: i64) -> Result<Vec<ExportRow>>;
}

/// `import_store!(Store, Database, begin-write-transaction)`.
macro_rules! import_store {
    ($store:ident, $db:ty, $begin:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::import::ImportStore for $store {
            async fn import_batch(
                &self,
                rows: &[$crate::store::import::ImportRow],
                on_conflict: $crate::store::import::OnConflict,
                commit: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<Vec<$crate::store::import::RowOutcome>> {
                use $crate::store::import::{OnConflict, RowOutcome, UNUSABLE_HASH};
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let mut outcomes = Vec::with_capacity(rows.len());

                /// The account's roles become `roles` (a line without any keeps them).
                async fn set_roles(
                    tx: &mut sqlx::Transaction<'static, $db>,
                    email_norm: &str,
                    roles: Option<&[String]>,
                ) -> $crate::error::Result<()> {
                    let Some(roles) = roles else { return Ok(()) };
                    sqlx::query(
                        "DELETE FROM user_roles WHERE user_id = \
                         (SELECT id FROM users WHERE email_norm = $1)",
                    )
                    .bind(email_norm)
                    .execute(&mut **tx)
                    .await?;
                    for role in roles {
                        sqlx::query(
                            "INSERT INTO user_roles (user_id, role) SELECT id, $2 FROM users \
                             WHERE email_norm = $1 ON CONFLICT DO NOTHING",
                        )
                        .bind(email_norm)
                        .bind(role)
                        .execute(&mut **tx)
                        .await?;
                    }
                    Ok(())
                }
                for row in rows {
                    let found: Vec<(i64,)> = sqlx::query_as(
                        "SELECT id FROM users WHERE email_norm = $1 OR username_norm = $2",
                    )
                    .bind(&row.email_norm)
                    .bind(&row.username_norm)
                    .fetch_all(&mut *tx)
                    .await?;
                    let outcome = match (found.as_slice(), on_conflict) {
                        ([], _) => {
                            sqlx::query(
                                "INSERT INTO users (email, email_norm, username, username_norm, \
                                 password_hash, is_active, email_verified, created_at, updated_at) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                            )
                            .bind(&row.email)
                            .bind(&row.email_norm)
                            .bind(&row.username)
                            .bind(&row.username_norm)
                            .bind(row.password_hash.as_deref().unwrap_or(UNUSABLE_HASH))
                            .bind(row.is_active)
                            .bind(row.email_verified)
                            .bind(row.created_at)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                            set_roles(&mut tx, &row.email_norm, row.roles.as_deref()).await?;
                            RowOutcome::Created
                        }
                        ([_], OnConflict::Skip) => RowOutcome::Skipped,
                        ([(id,)], OnConflict::Update) => {
                            sqlx::query(
                                "UPDATE users SET email = $2, email_norm = $3, username = $4, \
                                 username_norm = $5, is_active = $6, email_verified = $7, \
                                 updated_at = $8 WHERE id = $1",
                            )
                            .bind(id)
                            .bind(&row.email)
                            .bind(&row.email_norm)
                            .bind(&row.username)
                            .bind(&row.username_norm)
                            .bind(row.is_active)
                            .bind(row.email_verified)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                            set_roles(&mut tx, &row.email_norm, row.roles.as_deref()).await?;
                            if let Some(hash) = &row.password_hash {
                                // A new credential: the account's sessions end with it.
                                sqlx::query(
                                    "UPDATE users SET password_hash = $2, \
                                     security_stamp = security_stamp + 1 \
                                     WHERE id = $1 AND password_hash <> $2",
                                )
                                .bind(id)
                                .bind(hash)
                                .execute(&mut *tx)
                                .await?;
                                sqlx::query(
                                    "UPDATE token_families SET revoked_at = $2, \
                                     revoked_reason = 'password imported' \
                                     WHERE user_id = $1 AND revoked_at IS NULL",
                                )
                                .bind(id)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                            }
                            if !row.is_active {
                                sqlx::query(
                                    "UPDATE token_families SET revoked_at = $2, \
                                     revoked_reason = 'user disabled' \
                                     WHERE user_id = $1 AND revoked_at IS NULL",
                                )
                                .bind(id)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                            }
                            RowOutcome::Updated
                        }
                        ([_], OnConflict::Error) => {
                            RowOutcome::Conflict("an account with this email or username exists".into())
                        }
                        (_, _) => RowOutcome::Conflict(
                            "the email and the username belong to two different accounts".into(),
                        ),
                    };
                    outcomes.push(outcome);
                }
                if commit {
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                Ok(outcomes)
            }

            async fn export_page(
                &self,
                after: i64,
                limit: i64,
            ) -> $crate::error::Result<Vec<$crate::store::import::ExportRow>> {
                Ok(sqlx::query_as(
                    "SELECT id, email, username, password_hash, is_active, email_verified, \
                     created_at FROM users WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }
        }
    };
}
