//! PostgreSQL: for production and for several replicas sharing one database. A
//! rotation locks its token row (`FOR UPDATE`), so concurrent refreshes of one token
//! queue and the losers see it rotated.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use super::StoreOptions;
use crate::error::{Error, Result};

pub struct PgStore {
    pub(super) pool: PgPool,
    lane: super::lane::ReadLane<Postgres>,
    lookups: super::batch::Lookups,
}

impl PgStore {
    const BACKEND: &'static str = "postgres";
    const MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
    const MIGRATIONS_TABLE_EXISTS: &'static str = "SELECT 1::BIGINT FROM information_schema.tables WHERE table_name = '_sqlx_migrations' \
         AND table_schema = current_schema()";
    /// No pause between prune batches: PostgreSQL has no database-wide write lock, and
    /// each batch's row locks end with its transaction.
    const PRUNE_PAUSE: Option<Duration> = None;

    pub fn connect(store: &StoreOptions) -> Result<Self> {
        let options = PgConnectOptions::from_str(store.url.expose())
            .map_err(|e| {
                Error::config(format!("DATABASE_URL is not a usable PostgreSQL URL: {e}"))
            })?
            .application_name("authctl");
        // Read-only commands: the server refuses any write in their sessions.
        let options = if store.access == super::Access::ReadOnly {
            options.options([("default_transaction_read_only", "on")])
        } else {
            options
        };
        let pool = PgPoolOptions::new()
            .min_connections(store.pool_min)
            .max_connections(store.pool_max.max(1))
            .acquire_timeout(Duration::from_secs(3))
            .test_before_acquire(false)
            .before_acquire(super::ping_if_idle)
            .connect_lazy_with(options);
        Ok(PgStore {
            pool,
            lane: super::lane::ReadLane::new(store.pool_max),
            lookups: super::batch::Lookups::default(),
        })
    }
}

async fn begin(
    pool: &PgPool,
) -> std::result::Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

sql_store!(
    PgStore,
    PgRotation,
    Postgres,
    " FOR UPDATE OF rt",
    " FOR SHARE",
    begin
);
rate_limit_store!(PgStore, "(EXTRACT(EPOCH FROM now()) * 1000)::BIGINT");
pool_stats!(PgStore);
keys_store!(PgStore, begin);
audit_store!(PgStore);
lockout_store!(PgStore);
session_store!(PgStore);
email_nfc_store!(PgStore, "(email !~ '^[ -~]*$' OR email_norm !~ '^[ -~]*$')");
email_store!(PgStore, Postgres, begin, " FOR UPDATE SKIP LOCKED");
mfa_store!(PgStore, begin);
oidc_store!(PgStore, begin);
import_store!(PgStore, Postgres, begin);
admin_store!(PgStore, Postgres, begin);
