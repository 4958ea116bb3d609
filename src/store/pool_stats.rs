//! [`PoolStats`]: how many database connections are open and what they are doing,
//! read at scrape time for `authctl_db_pool_connections{state}` (SPEC §11).
//!
//! Both backends answer from their sqlx pool and their [`ReadLane`](super::lane):
//! a connection the lane holds between `/me` lookups is out of the pool, yet waits
//! for a query like a pooled idle one, so it counts as idle; every other open
//! connection is checked out by a request or a task, so it counts as used.

use crate::metrics::PoolConnections;

/// The store's connection pool occupancy. No query: counters the pool keeps anyway.
pub trait PoolStats {
    fn pool_connections(&self) -> PoolConnections;
}

/// What the pool and the lane report, as idle and used connections.
pub(super) fn occupancy(size: u32, pool_idle: usize, lane_idle: usize) -> PoolConnections {
    let idle = u64::try_from(pool_idle.saturating_add(lane_idle)).unwrap_or(u64::MAX);
    // sqlx reads `size` and `num_idle` from two atomics, so a connection can move in
    // between: never report more idle than open.
    let idle = idle.min(u64::from(size));
    PoolConnections {
        idle,
        used: u64::from(size) - idle,
    }
}

/// `pool_stats!(Store)`: implements [`PoolStats`] for a store with `pool` and `lane`
/// fields, in the backend's own module (where those fields are visible).
macro_rules! pool_stats {
    ($store:ident) => {
        impl $crate::store::PoolStats for $store {
            fn pool_connections(&self) -> $crate::metrics::PoolConnections {
                $crate::store::pool_stats::occupancy(
                    self.pool.size(),
                    self.pool.num_idle(),
                    self.lane.held_idle(),
                )
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_held_connections_count_as_idle_and_the_rest_as_used() {
        assert_eq!(occupancy(0, 0, 0), PoolConnections { idle: 0, used: 0 });
        assert_eq!(occupancy(5, 1, 2), PoolConnections { idle: 3, used: 2 });
        assert_eq!(
            occupancy(2, 2, 1),
            PoolConnections { idle: 2, used: 0 },
            "a racing read never reports more idle than open"
        );
    }
}
