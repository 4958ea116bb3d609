//! Health: whether the database answers in time and the schema is current (readiness,
//! `authctl migrate --status`).

use std::time::Duration;

use super::AuthService;
use crate::error::{Error, Result};
use crate::store::{MigrationState, Store};

impl AuthService {
    /// Ready: the database answers within `timeout` and the schema is current.
    pub async fn readiness(&self, timeout: Duration) -> Result<()> {
        check_database(self.store.as_ref(), timeout).await
    }

    pub async fn migration_status(&self) -> Result<Vec<MigrationState>> {
        self.store.migration_status().await
    }
}

/// Whether the database answers within `timeout` and its schema is current.
pub async fn check_database(store: &dyn Store, timeout: Duration) -> Result<()> {
    match tokio::time::timeout(timeout, store.schema_is_current()).await {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(Error::schema_not_current()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Error::Unavailable(format!(
            "database did not answer within {} ms",
            timeout.as_millis()
        ))),
    }
}
