//! [`ReadLane`]: pool connections held for `/me`'s session lookup, the hottest query.
//! Lookups that arrive while the lane's connections are busy are answered many per
//! statement ([`super::batch`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::PING_IF_IDLE_FOR;

/// How long a [`ReadLane`] keeps a connection before giving it back to the pool, so the
/// pool's lifetime rules still apply.
pub const HOLD_AT_MOST: Duration = Duration::from_secs(60);

/// Pool connections held for the session lookup of every `/me`.
///
/// sqlx tests each connection on its way back to the pool (`PoolConnection`'s drop
/// spawns a task that pings it): a second round trip to PostgreSQL, or a second hop to
/// SQLite's worker thread, for every query — and, with `/me`'s one cheap indexed
/// query, the larger part of its cost. A held connection costs one round trip. Every
/// lookup still reads the database, so a revocation by another process or replica
/// counts at once; nothing is cached.
///
/// The lane holds at most `pool_max / 2` connections (none with a pool of one), so half
/// the pool stays free for everything else; lookups queue for whichever is free first.
/// A connection comes from the pool when needed, and goes back to it (where sqlx tests
/// it) after an error, if its lookup was cancelled, once it sat idle for
/// [`PING_IF_IDLE_FOR`], or after [`HOLD_AT_MOST`].
pub struct ReadLane<DB: sqlx::Database> {
    size: usize,
    turns: Semaphore,
    idle: Mutex<Vec<Held<DB>>>,
    closing: AtomicBool,
}

/// A connection out of the pool: since when, and when it last answered.
pub struct Held<DB: sqlx::Database> {
    pub conn: PoolConnection<DB>,
    taken: Instant,
    used: Instant,
}

impl<DB: sqlx::Database> Held<DB> {
    fn is_fresh(&self) -> bool {
        self.used.elapsed() < PING_IF_IDLE_FOR && self.taken.elapsed() < HOLD_AT_MOST
    }
}

impl<DB: sqlx::Database> ReadLane<DB> {
    pub fn new(pool_max: u32) -> Self {
        let size = usize::try_from(pool_max / 2).unwrap_or(0);
        ReadLane {
            size,
            turns: Semaphore::new(size),
            idle: Mutex::new(Vec::with_capacity(size)),
            closing: AtomicBool::new(false),
        }
    }

    /// Whether lookups go through the lane (not with a pool of one).
    pub fn is_on(&self) -> bool {
        self.size > 0
    }

    fn idle(&self) -> MutexGuard<'_, Vec<Held<DB>>> {
        // The vector stays consistent even if a holder panicked.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A turn and a connection; `None` when the lane is off or the store is closing (use
    /// the pool then). Hand the connection back with [`ReadLane::put_back`] before the
    /// turn ends; dropping it instead returns it to the pool.
    pub async fn take(
        &self,
        pool: &sqlx::Pool<DB>,
    ) -> Result<Option<(SemaphorePermit<'_>, Held<DB>)>, sqlx::Error> {
        if self.size == 0 || self.closing.load(Ordering::Acquire) {
            return Ok(None);
        }
        let Ok(turn) = self.turns.acquire().await else {
            return Ok(None);
        };
        let popped = self.idle().pop();
        // A stale one is dropped here, which returns it to the pool.
        let fresh = popped.filter(Held::is_fresh);
        let held = match fresh {
            Some(held) => held,
            None => {
                let conn = pool.acquire().await?;
                let now = Instant::now();
                Held {
                    conn,
                    taken: now,
                    used: now,
                }
            }
        };
        Ok(Some((turn, held)))
    }

    /// Keeps a connection that just answered for the next lookup.
    pub fn put_back(&self, mut held: Held<DB>) {
        if !self.closing.load(Ordering::Acquire) {
            held.used = Instant::now();
            self.idle().push(held);
        }
    }

    /// Connections held here between lookups: out of the pool, yet waiting for a query
    /// (the pool metrics count them as idle, not used).
    pub fn held_idle(&self) -> usize {
        self.idle().len()
    }

    /// Gives every connection that is no longer fresh back to the pool.
    pub fn release_stale(&self) {
        let stale: Vec<Held<DB>> = {
            let mut idle = self.idle();
            let (fresh, stale) = idle.drain(..).partition(Held::is_fresh);
            *idle = fresh;
            stale
        };
        // Dropped outside the lock: each drop spawns the pool's return task.
        drop(stale);
    }

    /// Waits for lookups in flight and gives every held connection back to the pool,
    /// for good (before the pool closes).
    pub async fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let size = u32::try_from(self.size).unwrap_or(u32::MAX);
        let all = self.turns.acquire_many(size).await;
        let held = std::mem::take(&mut *self.idle());
        drop(held);
        self.turns.close();
        drop(all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqlitePool, SqlitePoolOptions};

    /// `sqlite::memory:` is one database per connection, so a table tells connections
    /// apart.
    fn pool(max: u32) -> SqlitePool {
        SqlitePoolOptions::new()
            .max_connections(max)
            .connect_lazy("sqlite::memory:")
            .unwrap()
    }

    async fn settle(pool: &SqlitePool, idle: usize) {
        for _ in 0..200 {
            if pool.num_idle() == idle {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "pool has {} idle connections, expected {idle}",
            pool.num_idle()
        );
    }

    #[tokio::test]
    async fn a_pool_of_one_has_no_lane() {
        let pool = pool(1);
        let lane = ReadLane::new(1);
        assert!(lane.take(&pool).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_connection_put_back_answers_the_next_lookup() {
        let pool = pool(4);
        let lane = ReadLane::new(4);
        let (turn, mut held) = lane.take(&pool).await.unwrap().unwrap();
        sqlx::query("CREATE TABLE marker (x INTEGER)")
            .execute(&mut *held.conn)
            .await
            .unwrap();
        lane.put_back(held);
        drop(turn);

        let (_turn, mut held) = lane.take(&pool).await.unwrap().unwrap();
        let n: (i64,) = sqlx::query_as("SELECT count(*) FROM marker")
            .fetch_one(&mut *held.conn)
            .await
            .unwrap();
        assert_eq!(n.0, 0, "the same connection, with its table");
        assert_eq!(pool.size(), 1, "no second connection was opened");
        lane.put_back(held);
    }

    #[tokio::test]
    async fn the_lane_holds_at_most_half_the_pool() {
        let pool = pool(4);
        let lane = ReadLane::new(4);
        let first = lane.take(&pool).await.unwrap().unwrap();
        let second = lane.take(&pool).await.unwrap().unwrap();
        let third = tokio::time::timeout(Duration::from_millis(50), lane.take(&pool)).await;
        assert!(third.is_err(), "a third lookup waits for a turn");
        // The rest of the pool stays free for everything else.
        let other = pool.acquire().await.unwrap();
        drop((first, second, other));
    }

    #[tokio::test]
    async fn idle_connections_go_back_to_the_pool() {
        let pool = pool(4);
        let lane = ReadLane::new(4);
        let (turn, held) = lane.take(&pool).await.unwrap().unwrap();
        lane.put_back(held);
        drop(turn);
        lane.release_stale();
        assert_eq!(pool.num_idle(), 0, "a fresh connection stays in the lane");

        tokio::time::sleep(PING_IF_IDLE_FOR + Duration::from_millis(20)).await;
        lane.release_stale();
        settle(&pool, 1).await;
    }

    #[tokio::test]
    async fn close_gives_every_connection_back_and_ends_the_lane() {
        let pool = pool(4);
        let lane = std::sync::Arc::new(ReadLane::new(4));
        let (turn, held) = lane.take(&pool).await.unwrap().unwrap();
        lane.put_back(held);
        drop(turn);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let lookup = tokio::spawn({
            let (lane, pool) = (lane.clone(), pool.clone());
            async move {
                let (_turn, held) = lane.take(&pool).await.unwrap().unwrap();
                let _ = done_rx.await;
                drop(held);
            }
        });
        // The lookup holds one of the lane's two turns.
        while lane.turns.available_permits() > 1 {
            tokio::task::yield_now().await;
        }
        let closing = tokio::spawn({
            let lane = lane.clone();
            async move { lane.close().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !closing.is_finished(),
            "close waits for the lookup in flight"
        );
        done_tx.send(()).unwrap();
        lookup.await.unwrap();
        closing.await.unwrap();
        settle(&pool, pool.size() as usize).await;
        assert!(lane.take(&pool).await.unwrap().is_none());
    }
}
