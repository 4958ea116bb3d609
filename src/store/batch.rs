//! [`Lookups`]: `/me`'s session lookups, answered many per query.
//!
//! Every lookup is a round trip to the database: a hop to one of SQLite's worker
//! threads, or a message to PostgreSQL and back. Under load most of a lookup's cost is
//! that trip (the thread switches on SQLite; profiling showed the kernel's scheduler
//! taking about 40 % of the server's CPU), not the indexed query. So lookups wait in
//! one queue, and whichever gets a [`ReadLane`](super::lane::ReadLane) connection first
//! takes up to [`MAX_BATCH`] of them and answers them all with one statement
//! ([`session_batch_sql`]) — group commit, for reads. Nothing waits for a batch to
//! fill: a lookup that finds a free connection runs at once, alone if it is alone, so
//! an idle server answers as fast as before. Every lookup still reads the database
//! after its request arrived: a revocation made anywhere counts at once.
//!
//! If the caller that runs a batch is cancelled (its client went away) or the
//! statement fails, the others in that batch are told to look up alone
//! ([`Answer::Alone`]), so nobody's answer depends on somebody else's request.

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use super::SessionUser;
use crate::domain::{FamilyId, UserId};

/// Most lookups one statement answers (three binds each).
pub const MAX_BATCH: usize = 32;

/// One lookup: the claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey {
    pub user: UserId,
    pub family: FamilyId,
    pub kid: Option<String>,
}

/// What a waiting lookup is told.
#[derive(Debug)]
pub enum Answer {
    /// The row (or its absence) as the batch read it.
    Found(Option<SessionUser>),
    /// The batch did not complete: run the lookup alone.
    Alone,
}

/// A lookup in the queue and where its answer goes.
pub struct Waiting {
    pub key: SessionKey,
    reply: oneshot::Sender<Answer>,
}

impl Waiting {
    pub fn answer(self, answer: Answer) {
        // The caller may have gone (its client disconnected): nobody to tell.
        let _ = self.reply.send(answer);
    }
}

/// One row of a batch: which lookup (`n`, its position in the batch) and its answer.
#[derive(Debug, sqlx::FromRow)]
pub struct BatchRow {
    pub n: i64,
    #[sqlx(flatten)]
    pub session: SessionUser,
}

/// The queue of lookups waiting for a connection.
#[derive(Default)]
pub struct Lookups {
    queue: Mutex<VecDeque<Waiting>>,
}

impl Lookups {
    fn queue(&self) -> MutexGuard<'_, VecDeque<Waiting>> {
        // A VecDeque stays consistent even if a holder panicked.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a lookup; its answer arrives on the receiver.
    pub fn push(&self, key: SessionKey) -> oneshot::Receiver<Answer> {
        let (reply, answer) = oneshot::channel();
        self.queue().push_back(Waiting { key, reply });
        answer
    }

    /// Takes up to [`MAX_BATCH`] lookups, oldest first, skipping those whose caller
    /// has gone.
    pub fn take_batch(&self) -> Vec<Waiting> {
        let mut queue = self.queue();
        let mut batch = Vec::with_capacity(queue.len().min(MAX_BATCH));
        while batch.len() < MAX_BATCH {
            match queue.pop_front() {
                Some(w) if w.reply.is_closed() => {}
                Some(w) => batch.push(w),
                None => break,
            }
        }
        batch
    }

    /// Hands each lookup of a batch its row (rows name their lookup by position).
    pub fn answer_all(batch: Vec<Waiting>, rows: Vec<BatchRow>) {
        let mut found: Vec<Option<SessionUser>> = (0..batch.len()).map(|_| None).collect();
        for row in rows {
            if let Some(slot) = usize::try_from(row.n).ok().and_then(|n| found.get_mut(n)) {
                *slot = Some(row.session);
            }
        }
        for (waiting, row) in batch.into_iter().zip(found) {
            waiting.answer(Answer::Found(row));
        }
    }
}

/// The statement that answers `n` lookups (1 ≤ n ≤ [`MAX_BATCH`]): binds `$3i+1`,
/// `$3i+2`, `$3i+3` are lookup i's family, user and `kid`. The same rules as the
/// one-lookup query: the family must belong to the user the token names; the key
/// check is per lookup.
pub fn session_batch_sql(n: usize) -> &'static str {
    static SQL: LazyLock<Vec<String>> = LazyLock::new(|| (1..=MAX_BATCH).map(build).collect());
    SQL[n.clamp(1, MAX_BATCH) - 1].as_str()
}

fn build(n: usize) -> String {
    let rows: Vec<String> = (0..n)
        .map(|i| format!("({i}, ${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
        .collect();
    format!(
        "WITH req (n, fid, uid, kid) AS (VALUES {}) \
         SELECT CAST(req.n AS BIGINT) AS n, u.id, u.email, u.username, u.is_active, \
         u.created_at, u.email_verified, EXISTS (SELECT 1 FROM user_mfa m WHERE m.user_id = u.id \
         AND m.confirmed_at IS NOT NULL) AS mfa_enabled, f.revoked_at AS family_revoked_at, \
         EXISTS (SELECT 1 FROM signing_keys k WHERE k.kid = req.kid \
         AND k.state = 'retired') AS key_retired, \
         (SELECT string_agg(r.role, ' ' ORDER BY r.role) FROM user_roles r \
         WHERE r.user_id = u.id) AS roles \
         FROM req JOIN token_families f ON f.id = req.fid \
         JOIN users u ON u.id = f.user_id AND u.id = req.uid",
        rows.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: i64) -> SessionKey {
        SessionKey {
            user: UserId(n),
            family: FamilyId::new(),
            kid: None,
        }
    }

    #[test]
    fn statements_number_their_binds_in_order() {
        assert!(session_batch_sql(1).contains("VALUES (0, $1, $2, $3))"));
        assert!(session_batch_sql(2).contains("VALUES (0, $1, $2, $3), (1, $4, $5, $6))"));
        assert!(session_batch_sql(MAX_BATCH).contains("(31, $94, $95, $96))"));
        assert_eq!(session_batch_sql(0), session_batch_sql(1));
        assert_eq!(
            session_batch_sql(MAX_BATCH + 5),
            session_batch_sql(MAX_BATCH)
        );
    }

    #[tokio::test]
    async fn a_batch_takes_the_oldest_live_lookups_and_answers_each_its_own_row() {
        let lookups = Lookups::default();
        let mut answers: Vec<_> = (0..40).map(|i| lookups.push(key(i))).collect();
        // A caller that went away is skipped, not answered.
        drop(answers.remove(1));
        let batch = lookups.take_batch();
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(batch[0].key.user, UserId(0));
        assert_eq!(
            batch[1].key.user,
            UserId(2),
            "the dropped lookup was skipped"
        );
        let rest = lookups.take_batch();
        assert_eq!(rest.len(), 39 - MAX_BATCH);
        assert!(lookups.take_batch().is_empty());

        // No row for lookup 0; a row for the others is theirs.
        let rows = vec![BatchRow {
            n: 1,
            session: SessionUser {
                user: crate::store::User {
                    id: UserId(2),
                    email: "b@example.com".into(),
                    username: "bob".into(),
                    is_active: true,
                    created_at: chrono::Utc::now(),
                    email_verified: false,
                    mfa_enabled: false,
                    roles: Vec::new(),
                },
                family_revoked_at: None,
                key_retired: false,
                roles: None,
            },
        }];
        Lookups::answer_all(batch, rows);
        match answers.remove(0).await.unwrap() {
            Answer::Found(None) => {}
            other => panic!("lookup 0: {other:?}"),
        }
        match answers.remove(0).await.unwrap() {
            Answer::Found(Some(s)) => assert_eq!(s.user.id, UserId(2)),
            other => panic!("lookup 2: {other:?}"),
        }
        // A batch dropped unanswered (its runner was cancelled) tells its lookups so.
        drop(rest);
        assert!(answers.pop().unwrap().await.is_err());
    }
}
