//! The SQL both backends share. SQLite and PostgreSQL accept the same statements
//! (`$n` placeholders, `RETURNING`, `ON CONFLICT`), so one macro implements
//! [`Store`](super::Store) for each pool type; the backends differ only in how a
//! write transaction starts and how a row is locked, which they pass in.

/// A refresh token with its family's and user's state, by digest.
macro_rules! refresh_select_sql {
    () => {
        "SELECT rt.family_id, f.user_id, u.username, u.is_active AS user_active, \
         rt.issued_at, rt.expires_at, rt.rotated_at, rt.revoked_at, \
         f.created_at AS family_created_at, f.revoked_at AS family_revoked_at, f.amr, \
         f.kind, f.client_id, f.scope, f.auth_time, f.parent \
         FROM refresh_tokens rt \
         JOIN token_families f ON f.id = rt.family_id \
         JOIN users u ON u.id = f.user_id \
         WHERE rt.digest = $1"
    };
}

/// Whether a `users` row has TOTP on (SPEC §14), as the `mfa_enabled` column.
macro_rules! mfa_enabled_sql {
    () => {
        "EXISTS (SELECT 1 FROM user_mfa m WHERE m.user_id = users.id \
         AND m.confirmed_at IS NOT NULL) AS mfa_enabled"
    };
}

/// Starts a session only for the user as the login verified it: still there, still
/// active, still with the verified hash (`$4`). `$share` locks the user row on
/// PostgreSQL (`FOR SHARE`) until the session commits, so a concurrent `UPDATE users`
/// either waits and then finds the family to revoke, or commits first and this
/// re-checks the updated row and inserts nothing. SQLite runs it under `BEGIN
/// IMMEDIATE`, which serializes it with every other write anyway.
macro_rules! create_family_sql {
    ($share:literal) => {
        concat!(
            "INSERT INTO token_families (id, user_id, created_at) \
             SELECT $1, id, $3 FROM users WHERE id = $2 AND password_hash = $4 AND is_active",
            $share
        )
    };
}

/// One prune batch of expired tokens, by key: the subquery walks the `expires_at`
/// index, the delete goes by primary key; the families the tokens belonged to come
/// back for the orphan check.
pub const PRUNE_TOKENS_SQL: &str = "DELETE FROM refresh_tokens WHERE digest IN \
     (SELECT digest FROM refresh_tokens WHERE expires_at < $1 LIMIT $2) RETURNING family_id";

/// Of the families a batch took tokens from, those left without any (the list of ids
/// follows, as binds): by primary key, the check by the `family_id` index.
pub const PRUNE_ORPHANS_SQL: &str = "DELETE FROM token_families WHERE NOT EXISTS \
     (SELECT 1 FROM refresh_tokens rt WHERE rt.family_id = token_families.id) AND id IN (";

/// One prune batch of families revoked long ago, by key: the subquery walks the
/// partial `revoked_at` index (migration `prune_indexes`); their tokens go by cascade.
pub const PRUNE_REVOKED_SQL: &str = "DELETE FROM token_families WHERE id IN \
     (SELECT id FROM token_families WHERE revoked_at < $1 LIMIT $2)";

/// `sql_store!(Store, Tx, Database, "row lock suffix", "user row share lock", |pool| begin-write-transaction)`
macro_rules! sql_store {
    ($store:ident, $tx:ident, $db:ty, $lock:literal, $share:literal, $begin:expr) => {

        fn user_query(user: &$crate::domain::UserRef) -> (&'static str, UserKey) {
            use $crate::domain::UserRef;
            match user {
                UserRef::Id(id) => (
                    concat!("SELECT id, email, username, is_active, created_at, email_verified, ", mfa_enabled_sql!(), " FROM users WHERE id = $1"),
                    UserKey::Id(*id),
                ),
                UserRef::Email(e) => (
                    concat!("SELECT id, email, username, is_active, created_at, email_verified, ", mfa_enabled_sql!(), " FROM users WHERE email_norm = $1"),
                    UserKey::Text($crate::domain::email::login_key(e)),
                ),
                UserRef::Username(u) => (
                    concat!("SELECT id, email, username, is_active, created_at, email_verified, ", mfa_enabled_sql!(), " FROM users WHERE username_norm = $1"),
                    UserKey::Text(u.to_ascii_lowercase()),
                ),
            }
        }

        enum UserKey {
            Id($crate::domain::UserId),
            Text(String),
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> &'static str {
                Self::BACKEND
            }

            async fn ping(&self) -> $crate::error::Result<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn migrate(&self) -> $crate::error::Result<$crate::store::MigrateReport> {
                // Before, run and after under one lock: replicas started together
                // take turns, and only the one that applied a version reports it.
                let lock = $crate::store::locks::Locks::migration_lock(self).await?;
                let applied = async {
                    let before = self.applied_versions().await?;
                    Self::MIGRATOR.run(&self.pool).await?;
                    let after = self.applied_versions().await?;
                    let email_collisions = self.normalize_stored_emails().await?;
                    Ok($crate::store::MigrateReport {
                        applied: after.into_iter().filter(|v| !before.contains(v)).collect(),
                        email_collisions,
                    })
                }
                .await;
                lock.release().await;
                applied
            }

            async fn migration_status(&self) -> $crate::error::Result<Vec<$crate::store::MigrationState>> {
                let applied = self.applied_versions().await?;
                Ok(Self::MIGRATOR
                    .iter()
                    .filter(|m| m.migration_type.is_up_migration())
                    .map(|m| $crate::store::MigrationState {
                        version: m.version,
                        description: m.description.to_string(),
                        applied: applied.contains(&m.version),
                    })
                    .collect())
            }

            async fn schema_is_current(&self) -> $crate::error::Result<bool> {
                Ok(self.migration_status().await?.iter().all(|m| m.applied))
            }

            async fn setting_get_or_insert(&self, name: &str, value: &str) -> $crate::error::Result<String> {
                sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .bind(value)
                    .execute(&self.pool)
                    .await?;
                let stored: (String,) = sqlx::query_as("SELECT value FROM settings WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(stored.0)
            }

            async fn setting_get(&self, name: &str) -> $crate::error::Result<Option<String>> {
                let stored: Option<(String,)> = sqlx::query_as("SELECT value FROM settings WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(stored.map(|s| s.0))
            }

            fn release_idle(&self) {
                self.lane.release_stale();
            }

            async fn close(&self) {
                self.lane.close().await;
                self.pool.close().await;
            }

            async fn create_user(&self, user: $crate::store::NewUser) -> $crate::error::Result<$crate::store::User> {
                let inserted = sqlx::query_as::<_, $crate::store::User>(
                    "INSERT INTO users (email, email_norm, username, username_norm, password_hash, \
                     is_active, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                     RETURNING id, email, username, is_active, created_at, email_verified",
                )
                .bind(&user.email)
                .bind(&user.email_norm)
                .bind(&user.username)
                .bind(&user.username_norm)
                .bind(&user.password_hash)
                .bind(user.is_active)
                .bind(user.now)
                .fetch_one(&self.pool)
                .await;
                match inserted {
                    Ok(u) => Ok(u),
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        // Which one clashed? SQLite does not name constraints portably.
                        let email_taken: Option<(i64,)> =
                            sqlx::query_as("SELECT id FROM users WHERE email_norm = $1")
                                .bind(&user.email_norm)
                                .fetch_optional(&self.pool)
                                .await?;
                        Err($crate::error::Error::Conflict(if email_taken.is_some() {
                            "email"
                        } else {
                            "username"
                        }))
                    }
                    Err(e) => Err(e.into()),
                }
            }

            async fn find_credentials(
                &self,
                login_norm: &str,
            ) -> $crate::error::Result<Option<$crate::store::UserCredentials>> {
                Ok(sqlx::query_as(
                    concat!("SELECT id, email, username, is_active, created_at, email_verified, password_hash, ",
                     mfa_enabled_sql!(), " FROM users WHERE username_norm = $1 OR email_norm = $1"),
                )
                .bind(login_norm)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn find_user(
                &self,
                user: &$crate::domain::UserRef,
            ) -> $crate::error::Result<Option<$crate::store::User>> {
                let (sql, key) = user_query(user);
                let q = sqlx::query_as(sql);
                let q = match key {
                    UserKey::Id(id) => q.bind(id),
                    UserKey::Text(t) => q.bind(t),
                };
                Ok(q.fetch_optional(&self.pool).await?)
            }

            async fn list_users(&self, limit: i64) -> $crate::error::Result<Vec<$crate::store::User>> {
                Ok(sqlx::query_as(
                    concat!("SELECT id, email, username, is_active, created_at, email_verified, ", mfa_enabled_sql!(),
                     " FROM users ORDER BY id LIMIT $1"),
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn set_active(
                &self,
                user: $crate::domain::UserId,
                active: bool,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query("UPDATE users SET is_active = $1, updated_at = $2, \
                     security_stamp = security_stamp + 1 WHERE id = $3")
                    .bind(active)
                    .bind(now)
                    .bind(user)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn set_password_hash(
                &self,
                c: &$crate::store::PasswordChange<'_>,
            ) -> $crate::error::Result<Option<u64>> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let r = sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2, \
                     security_stamp = security_stamp + 1 WHERE id = $3")
                    .bind(c.hash)
                    .bind(c.now)
                    .bind(c.user)
                    .execute(&mut *tx)
                    .await?;
                if r.rows_affected() != 1 {
                    return Ok(None);
                }
                // `keep` NULL matches no family: every session ends.
                let revoked = sqlx::query(
                    "UPDATE token_families SET revoked_at = $1, revoked_reason = $2 \
                     WHERE user_id = $3 AND revoked_at IS NULL \
                     AND ($4 IS NULL OR id <> $4)",
                )
                .bind(c.now)
                .bind(c.reason)
                .bind(c.user)
                .bind(c.keep)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                tx.commit().await?;
                Ok(Some(revoked))
            }

            async fn replace_password_hash(
                &self,
                user: $crate::domain::UserId,
                old: &str,
                new: &str,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query(
                    "UPDATE users SET password_hash = $3 WHERE id = $1 AND password_hash = $2",
                )
                .bind(user)
                .bind(old)
                .bind(new)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn delete_user(&self, user: $crate::domain::UserId) -> $crate::error::Result<bool> {
                let r = sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(user)
                    .execute(&self.pool)
                    .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn create_family(
                &self,
                user: $crate::domain::UserId,
                password_hash: &str,
                family: $crate::domain::FamilyId,
                digest: &$crate::tokens::refresh::TokenDigest,
                now: chrono::DateTime<chrono::Utc>,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let created = sqlx::query(create_family_sql!($share))
                    .bind(family)
                    .bind(user)
                    .bind(now)
                    .bind(password_hash)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if created == 0 {
                    // Dropped, the transaction rolls back: nothing was written.
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO refresh_tokens (digest, family_id, issued_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&digest[..])
                .bind(family)
                .bind(now)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn find_refresh(
                &self,
                digest: &$crate::tokens::refresh::TokenDigest,
            ) -> $crate::error::Result<Option<$crate::store::RefreshRecord>> {
                Ok(sqlx::query_as(refresh_select_sql!())
                    .bind(&digest[..])
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn find_family(
                &self,
                family: $crate::domain::FamilyId,
            ) -> $crate::error::Result<Option<$crate::store::FamilyRecord>> {
                Ok(sqlx::query_as(
                    "SELECT f.id, f.user_id, u.username, u.is_active AS user_active, f.created_at, \
                     f.revoked_at FROM token_families f JOIN users u ON u.id = f.user_id WHERE f.id = $1",
                )
                .bind(family)
                .fetch_optional(&self.pool)
                .await?)
            }

            async fn session_user(
                &self,
                user: $crate::domain::UserId,
                family: $crate::domain::FamilyId,
                kid: Option<&str>,
            ) -> $crate::error::Result<Option<$crate::store::SessionUser>> {
                use $crate::store::batch::{Answer, Lookups, SessionKey, session_batch_sql};
                let key = SessionKey { user, family, kid: kid.map(str::to_owned) };
                if !self.lane.is_on() {
                    return self.session_user_alone(&key).await;
                }
                // Queued; answered by whichever lookup gets a lane connection first
                // (see `store::batch`), perhaps this one.
                let mut answer = self.lookups.push(key.clone());
                let got = loop {
                    tokio::select! {
                        biased;
                        got = &mut answer => break got,
                        taken = self.lane.take(&self.pool) => {
                            // `None`: the store is closing.
                            let Some((turn, mut held)) = taken? else { break Ok(Answer::Alone) };
                            let batch = self.lookups.take_batch();
                            if batch.is_empty() {
                                // Another lookup took this one's key and answers it: wait
                                // for that without holding a turn.
                                self.lane.put_back(held);
                                drop(turn);
                                break (&mut answer).await;
                            }
                            let mut query = sqlx::query_as::<_, $crate::store::batch::BatchRow>(
                                session_batch_sql(batch.len()),
                            );
                            for w in &batch {
                                query = query.bind(w.key.family).bind(w.key.user).bind(w.key.kid.as_deref());
                            }
                            match query.fetch_all(&mut *held.conn).await {
                                Ok(rows) => {
                                    self.lane.put_back(held);
                                    Lookups::answer_all(batch, rows);
                                }
                                Err(e) => {
                                    // `held` goes back to the pool, which tests it.
                                    tracing::debug!(error = %e, "batched session lookup failed");
                                    for w in batch {
                                        w.answer(Answer::Alone);
                                    }
                                }
                            }
                        }
                    }
                };
                match got {
                    Ok(Answer::Found(row)) => Ok(row),
                    // The batch failed or its runner went away: alone, on the pool.
                    Ok(Answer::Alone) | Err(_) => self.session_user_alone(&key).await,
                }
            }

            async fn revoke_family(
                &self,
                family: $crate::domain::FamilyId,
                reason: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                sqlx::query(
                    "UPDATE token_families SET revoked_at = $1, revoked_reason = $2 \
                     WHERE id = $3 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(reason)
                .bind(family)
                .execute(&self.pool)
                .await?;
                let exists: Option<(i64,)> = sqlx::query_as("SELECT user_id FROM token_families WHERE id = $1")
                    .bind(family)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(exists.is_some())
            }

            async fn revoke_user_families(
                &self,
                user: $crate::domain::UserId,
                reason: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<u64> {
                let r = sqlx::query(
                    "UPDATE token_families SET revoked_at = $1, revoked_reason = $2 \
                     WHERE user_id = $3 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(reason)
                .bind(user)
                .execute(&self.pool)
                .await?;
                Ok(r.rows_affected())
            }

            async fn prune(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                revoked_before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<$crate::store::PruneReport> {
                let mut report = $crate::store::PruneReport::default();
                loop {
                    let started = std::time::Instant::now();
                    let batch = self.prune_batch(now, revoked_before).await?;
                    tracing::debug!(
                        tokens = batch.tokens,
                        families = batch.families,
                        took_ms = started.elapsed().as_millis() as u64,
                        "prune batch"
                    );
                    report.tokens += batch.tokens;
                    report.families += batch.families;
                    let limit = $crate::store::PRUNE_BATCH as u64;
                    if batch.tokens < limit && batch.revoked < limit {
                        return Ok(report);
                    }
                    if let Some(least) = Self::PRUNE_PAUSE {
                        tokio::time::sleep(started.elapsed().max(least)).await;
                    }
                }
            }

            async fn begin_rotation(&self) -> $crate::error::Result<Box<dyn $crate::store::RotationTx>> {
                let begin = $begin;
                Ok(Box::new($tx { tx: begin(&self.pool).await? }))
            }
        }

        /// What one prune batch removed; `revoked` (families revoked long ago) is a
        /// part of `families` and tells whether another batch of them may be waiting.
        struct PruneBatch {
            tokens: u64,
            families: u64,
            revoked: u64,
        }

        impl $store {
            /// One session lookup on its own: a pool connection, one row.
            async fn session_user_alone(
                &self,
                key: &$crate::store::batch::SessionKey,
            ) -> $crate::error::Result<Option<$crate::store::SessionUser>> {
                Ok(sqlx::query_as(
                    "SELECT u.id, u.email, u.username, u.is_active, u.created_at, u.email_verified, \
                     EXISTS (SELECT 1 FROM user_mfa m WHERE m.user_id = u.id \
                     AND m.confirmed_at IS NOT NULL) AS mfa_enabled, \
                     f.revoked_at AS family_revoked_at, \
                     EXISTS (SELECT 1 FROM signing_keys k WHERE k.kid = $3 \
                     AND k.state = 'retired') AS key_retired, \
                     (SELECT string_agg(r.role, ' ' ORDER BY r.role) FROM user_roles r \
                     WHERE r.user_id = u.id) AS roles FROM token_families f \
                     JOIN users u ON u.id = f.user_id WHERE f.id = $1 AND u.id = $2",
                )
                .bind(key.family)
                .bind(key.user)
                .bind(key.kid.as_deref())
                .fetch_optional(&self.pool)
                .await?)
            }

            /// One prune batch, in one short write transaction: at most
            /// [`PRUNE_BATCH`]($crate::store::PRUNE_BATCH) expired tokens (and the
            /// families they leave empty), then at most as many families revoked
            /// before `revoked_before` (their tokens by cascade).
            async fn prune_batch(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                revoked_before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<PruneBatch> {
                let limit = $crate::store::PRUNE_BATCH;
                let begin = $begin;
                let mut tx = begin(&self.pool).await?;
                let emptied: Vec<($crate::domain::FamilyId,)> =
                    sqlx::query_as($crate::store::sql::PRUNE_TOKENS_SQL)
                        .bind(now)
                        .bind(limit)
                        .fetch_all(&mut *tx)
                        .await?;
                let tokens = emptied.len() as u64;
                let mut emptied: Vec<$crate::domain::FamilyId> =
                    emptied.into_iter().map(|(f,)| f).collect();
                emptied.sort_unstable_by_key(|f| f.0);
                emptied.dedup();
                let mut orphans = 0;
                if !emptied.is_empty() {
                    let mut q = sqlx::QueryBuilder::<$db>::new($crate::store::sql::PRUNE_ORPHANS_SQL);
                    let mut ids = q.separated(", ");
                    for family in emptied {
                        ids.push_bind(family);
                    }
                    q.push(")");
                    orphans = q.build().execute(&mut *tx).await?.rows_affected();
                }
                let revoked = sqlx::query($crate::store::sql::PRUNE_REVOKED_SQL)
                    .bind(revoked_before)
                    .bind(limit)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(PruneBatch {
                    tokens,
                    families: orphans + revoked,
                    revoked,
                })
            }

            async fn applied_versions(&self) -> $crate::error::Result<Vec<i64>> {
                let table: Option<(i64,)> = sqlx::query_as(Self::MIGRATIONS_TABLE_EXISTS)
                    .fetch_optional(&self.pool)
                    .await?;
                if table.is_none() {
                    return Ok(Vec::new());
                }
                let rows: Vec<(i64,)> =
                    sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
                        .fetch_all(&self.pool)
                        .await?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }
        }

        pub struct $tx {
            tx: sqlx::Transaction<'static, $db>,
        }

        #[async_trait::async_trait]
        impl $crate::store::RotationTx for $tx {
            async fn find_refresh(
                &mut self,
                digest: &$crate::tokens::refresh::TokenDigest,
            ) -> $crate::error::Result<Option<$crate::store::RefreshRecord>> {
                Ok(sqlx::query_as(concat!(refresh_select_sql!(), $lock))
                .bind(&digest[..])
                .fetch_optional(&mut *self.tx)
                .await?)
            }

            async fn mark_rotated(
                &mut self,
                digest: &$crate::tokens::refresh::TokenDigest,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<bool> {
                let r = sqlx::query(
                    "UPDATE refresh_tokens SET rotated_at = $1 \
                     WHERE digest = $2 AND rotated_at IS NULL AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(&digest[..])
                .execute(&mut *self.tx)
                .await?;
                Ok(r.rows_affected() == 1)
            }

            async fn insert_refresh(
                &mut self,
                family: $crate::domain::FamilyId,
                digest: &$crate::tokens::refresh::TokenDigest,
                now: chrono::DateTime<chrono::Utc>,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<()> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (digest, family_id, issued_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&digest[..])
                .bind(family)
                .bind(now)
                .bind(expires_at)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn revoke_family(
                &mut self,
                family: $crate::domain::FamilyId,
                reason: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::error::Result<()> {
                sqlx::query(
                    "UPDATE token_families SET revoked_at = $1, revoked_reason = $2 \
                     WHERE id = $3 AND revoked_at IS NULL",
                )
                .bind(now)
                .bind(reason)
                .bind(family)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn commit(self: Box<Self>) -> $crate::error::Result<()> {
                self.tx.commit().await?;
                Ok(())
            }
        }
    };
}
