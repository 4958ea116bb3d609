//! Which signing key a command runs with, and who may create one (SPEC §8: only
//! `serve` and `migrate` create keys).
//!
//! - `serve` ([`AuthService::new`]) and `migrate` ([`ensure_signing_key`]): the
//!   configured SECRET_KEY, else the key stored in the database, generated and stored
//!   first if there is none.
//! - Every other command ([`AuthService::for_command`]): the configured key, else the
//!   stored one, read without writing. With neither, the command still runs; whatever
//!   needs a key (verifying a JWT in `token inspect` or `token revoke-family --token`)
//!   fails with a configuration error (exit 7) saying so — a key generated on the spot
//!   would verify nothing the server signed, and storing it would make the next
//!   `serve` sign with a key nobody chose.

use std::sync::Arc;

use super::{AuthService, KEY_SETTING, resolve_stored_key};
use crate::config::AuthSettings;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::tokens::JwtKeys;
use crate::tokens::keys::SecretKey;

impl AuthService {
    /// The service for a CLI command: never writes a key (see the module comment).
    pub async fn for_command(store: Arc<dyn Store>, settings: &AuthSettings) -> Result<Self> {
        let key = match &settings.secret_key {
            Some(key) => Some(key.clone()),
            None => match store.setting_get(KEY_SETTING).await? {
                Some(stored) => Some(SecretKey::parse(&stored).map_err(|e| {
                    Error::config(format!("the signing key stored in the database {e}"))
                })?),
                None => None,
            },
        };
        Self::with_key(store, settings, key)
    }

    pub(super) fn jwt(&self) -> Result<&JwtKeys> {
        self.jwt.as_ref().ok_or_else(no_key)
    }

    pub(super) fn key(&self) -> Result<&SecretKey> {
        self.key.as_ref().ok_or_else(no_key)
    }
}

fn no_key() -> Error {
    Error::config(
        "no signing key: SECRET_KEY is not set and the database holds no generated key, so \
         no token can be verified; run `authctl migrate` (or start `authctl serve`) once to \
         generate one, or set SECRET_KEY",
    )
}

/// `migrate`: makes sure the database holds a signing key when none is configured, so
/// that every later command verifies with the key `serve` signs with.
pub async fn ensure_signing_key(store: &dyn Store, settings: &AuthSettings) -> Result<()> {
    if settings.secret_key.is_none() {
        resolve_stored_key(store).await?;
    }
    Ok(())
}
