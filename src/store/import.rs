//! Storage of `user import` / `user export` (SPEC §16): [`ImportStore`], a supertrait
//! of [`Store`](super::Store). Imports go in batches, one transaction each (rolled
//! back for `--dry-run`); exports page by id, so neither holds more than one batch.
//!
//! A batch costs a fixed number of statements, not a few per line: one query reads
//! every stored account any line of the batch could conflict with ([`Names`]), each
//! line's conflict check is then a lookup in memory, and the accounts the batch
//! creates go in with one multi-row INSERT (and their roles with another). One
//! statement per line made 1M lines about 2M round trips: 140 s on PostgreSQL.
//! Only `--on-conflict update` of a matching line still costs its own statements.

use std::collections::HashMap;

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

/// Who holds an email or a username, as a batch sees the table so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Holder {
    /// A stored account, by id.
    Stored(i64),
    /// The account the batch's line at this index creates.
    Created(usize),
}

/// The names of every account a batch's lines can match, kept current line by line,
/// so that a line sees what the lines above it created or renamed, exactly as if each
/// line had queried the table. Only accounts holding one of the batch's emails or
/// usernames can ever match a line, and only they change during the batch, so
/// loading those once is enough.
#[derive(Debug, Default)]
pub struct Names {
    by_email: HashMap<String, Holder>,
    by_username: HashMap<String, Holder>,
    held: HashMap<Holder, (String, String)>,
}

/// What one line does, decided from [`Names`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Create,
    Update(Holder),
    Done(RowOutcome),
}

impl Names {
    /// `holder` now has these names (and no longer the ones it had).
    pub fn hold(&mut self, holder: Holder, email_norm: &str, username_norm: &str) {
        if let Some((email, username)) = self.held.remove(&holder) {
            if self.by_email.get(&email) == Some(&holder) {
                self.by_email.remove(&email);
            }
            if self.by_username.get(&username) == Some(&holder) {
                self.by_username.remove(&username);
            }
        }
        self.by_email.insert(email_norm.to_owned(), holder);
        self.by_username.insert(username_norm.to_owned(), holder);
        self.held
            .insert(holder, (email_norm.to_owned(), username_norm.to_owned()));
    }

    /// The line's step: a conflict is an account holding its email or its username.
    pub fn step(&self, row: &ImportRow, on_conflict: OnConflict) -> Step {
        let by_email = self.by_email.get(&row.email_norm).copied();
        let by_username = self.by_username.get(&row.username_norm).copied();
        let found = match (by_email, by_username) {
            (Some(a), Some(b)) if a != b => {
                return Step::Done(RowOutcome::Conflict(
                    "the email and the username belong to two different accounts".into(),
                ));
            }
            (a, b) => a.or(b),
        };
        match (found, on_conflict) {
            (None, _) => Step::Create,
            (Some(_), OnConflict::Skip) => Step::Done(RowOutcome::Skipped),
            (Some(holder), OnConflict::Update) => Step::Update(holder),
            (Some(_), OnConflict::Error) => Step::Done(RowOutcome::Conflict(
                "an account with this email or username exists".into(),
            )),
        }
    }
}

/// `(user id, role)` pairs of lines that name roles.
pub fn role_pairs<'a>(
    lines: impl IntoIterator<Item = (i64, &'a ImportRow)>,
) -> Vec<(i64, &'a str)> {
    lines
        .into_iter()
        .flat_map(|(id, row)| {
            row.roles
                .iter()
                .flatten()
                .map(move |role| (id, role.as_str()))
        })
        .collect()
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
                use $crate::store::copy::{BATCH_ROWS, MAX_BINDS};
                use $crate::store::import::{
                    role_pairs, Holder, ImportRow, Names, RowOutcome, Step, UNUSABLE_HASH,
                };
                type Tx = sqlx::Transaction<'static, $db>;

                /// Adds `(user, role)` pairs, as many per INSERT as the bind limit allows.
                async fn insert_roles(
                    tx: &mut Tx,
                    pairs: &[(i64, &str)],
                ) -> $crate::error::Result<()> {
                    for chunk in pairs.chunks(MAX_BINDS / 2) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO user_roles (user_id, role) ",
                        );
                        q.push_values(chunk, |mut b, (user, role)| {
                            b.push_bind(*user).push_bind(*role);
                        });
                        q.push(" ON CONFLICT DO NOTHING");
                        q.build().execute(&mut **tx).await?;
                    }
                    Ok(())
                }

                /// Inserts the accounts of the lines in `pending` (indexes into `rows`)
                /// with their roles, and records their ids.
                async fn flush(
                    tx: &mut Tx,
                    rows: &[ImportRow],
                    pending: &mut Vec<usize>,
                    ids: &mut [Option<i64>],
                    now: chrono::DateTime<chrono::Utc>,
                ) -> $crate::error::Result<()> {
                    const COLUMNS: usize = 9;
                    for chunk in pending.chunks((MAX_BINDS / COLUMNS).min(BATCH_ROWS)) {
                        let mut q = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO users (email, email_norm, username, username_norm, \
                             password_hash, is_active, email_verified, created_at, updated_at) ",
                        );
                        q.push_values(chunk.iter().map(|&i| &rows[i]), |mut b, row| {
                            b.push_bind(row.email.as_str())
                                .push_bind(row.email_norm.as_str())
                                .push_bind(row.username.as_str())
                                .push_bind(row.username_norm.as_str())
                                .push_bind(row.password_hash.as_deref().unwrap_or(UNUSABLE_HASH))
                                .push_bind(row.is_active)
                                .push_bind(row.email_verified)
                                .push_bind(row.created_at)
                                .push_bind(now);
                        });
                        // RETURNING's order is not promised: match the ids by email.
                        q.push(" RETURNING id, email_norm");
                        let inserted: Vec<(i64, String)> =
                            q.build_query_as().fetch_all(&mut **tx).await?;
                        let line_of: std::collections::HashMap<&str, usize> = chunk
                            .iter()
                            .map(|&i| (rows[i].email_norm.as_str(), i))
                            .collect();
                        for (id, email_norm) in &inserted {
                            let i = line_of.get(email_norm.as_str()).ok_or_else(|| {
                                $crate::error::Error::Internal(anyhow::anyhow!(
                                    "importing: the database returned an account \
                                     ({email_norm}) the batch did not insert"
                                ))
                            })?;
                            ids[*i] = Some(*id);
                        }
                        if inserted.len() != chunk.len() {
                            return Err($crate::error::Error::Internal(anyhow::anyhow!(
                                "importing: {} accounts inserted, {} expected",
                                inserted.len(),
                                chunk.len()
                            )));
                        }
                    }
                    let pairs = role_pairs(
                        pending
                            .iter()
                            .filter_map(|&i| ids[i].map(|id| (id, &rows[i]))),
                    );
                    insert_roles(tx, &pairs).await?;
                    pending.clear();
                    Ok(())
                }

                /// `--on-conflict update` of account `id` by `row`.
                async fn update(
                    tx: &mut Tx,
                    id: i64,
                    row: &ImportRow,
                    now: chrono::DateTime<chrono::Utc>,
                ) -> $crate::error::Result<()> {
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
                    .execute(&mut **tx)
                    .await?;
                    // The account's roles become the line's (a line without any keeps them).
                    if row.roles.is_some() {
                        sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
                            .bind(id)
                            .execute(&mut **tx)
                            .await?;
                        insert_roles(tx, &role_pairs([(id, row)])).await?;
                    }
                    if let Some(hash) = &row.password_hash {
                        // A new credential: the account's sessions end with it.
                        sqlx::query(
                            "UPDATE users SET password_hash = $2, \
                             security_stamp = security_stamp + 1 \
                             WHERE id = $1 AND password_hash <> $2",
                        )
                        .bind(id)
                        .bind(hash)
                        .execute(&mut **tx)
                        .await?;
                        revoke_sessions(tx, id, "password imported", now).await?;
                    }
                    if !row.is_active {
                        revoke_sessions(tx, id, "user disabled", now).await?;
                    }
                    Ok(())
                }

                /// Ends the account's live sessions, giving `reason`.
                async fn revoke_sessions(
                    tx: &mut Tx,
                    id: i64,
                    reason: &str,
                    now: chrono::DateTime<chrono::Utc>,
                ) -> $crate::error::Result<()> {
                    sqlx::query(
                        "UPDATE token_families SET revoked_at = $2, revoked_reason = $3 \
                         WHERE user_id = $1 AND revoked_at IS NULL",
                    )
                    .bind(id)
                    .bind(now)
                    .bind(reason)
                    .execute(&mut **tx)
                    .await?;
                    Ok(())
                }

                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                // Every stored account holding one of the batch's emails or usernames:
                // the only ones a line can match (two binds a line).
                let mut names = Names::default();
                for chunk in rows.chunks(MAX_BINDS / 2) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, email_norm, username_norm FROM users WHERE email_norm IN (",
                    );
                    let mut list = q.separated(", ");
                    for row in chunk {
                        list.push_bind(row.email_norm.as_str());
                    }
                    q.push(") OR username_norm IN (");
                    let mut list = q.separated(", ");
                    for row in chunk {
                        list.push_bind(row.username_norm.as_str());
                    }
                    q.push(")");
                    let found: Vec<(i64, String, String)> =
                        q.build_query_as().fetch_all(&mut *tx).await?;
                    for (id, email_norm, username_norm) in found {
                        names.hold(Holder::Stored(id), &email_norm, &username_norm);
                    }
                }

                // Creations wait in `pending` and go in together; an update of one of
                // them inserts those waiting first, so it finds its row. Updates of
                // stored accounts run at once: the table then holds a subset of the
                // accounts the lines so far describe, whose names never collide.
                let mut pending = Vec::new();
                let mut ids: Vec<Option<i64>> = vec![None; rows.len()];
                let mut outcomes = Vec::with_capacity(rows.len());
                for (i, row) in rows.iter().enumerate() {
                    let outcome = match names.step(row, on_conflict) {
                        Step::Done(outcome) => outcome,
                        Step::Create => {
                            names.hold(Holder::Created(i), &row.email_norm, &row.username_norm);
                            pending.push(i);
                            RowOutcome::Created
                        }
                        Step::Update(holder) => {
                            let id = match holder {
                                Holder::Stored(id) => Some(id),
                                Holder::Created(k) => {
                                    if ids[k].is_none() {
                                        flush(&mut tx, rows, &mut pending, &mut ids, now).await?;
                                    }
                                    ids[k]
                                }
                            };
                            let id = id.ok_or_else(|| {
                                $crate::error::Error::Internal(anyhow::anyhow!(
                                    "importing line {}: the account it updates was not inserted",
                                    row.line
                                ))
                            })?;
                            update(&mut tx, id, row, now).await?;
                            names.hold(holder, &row.email_norm, &row.username_norm);
                            RowOutcome::Updated
                        }
                    };
                    outcomes.push(outcome);
                }
                flush(&mut tx, rows, &mut pending, &mut ids, now).await?;
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
