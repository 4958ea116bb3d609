//! ID-token keys (SPEC §18) in the service: generated on first need (RS256 when the
//! provider is on, EdDSA/ES256 when a client asks for them), reloaded with the access
//! keys (the same 5 s poll and reload-on-rotation), rotated and pruned as SPEC §9 does
//! for access keys: a previous key verifies, and stays in the JWKS, until every ID
//! token it signed has expired.

use std::sync::{Arc, PoisonError};

use chrono::Utc;

use crate::error::{Error, Result};
use crate::service::{Audit, AuditKind, AuthService, RequestContext};
use crate::store::Store;
use crate::store::oidc::IdKeyRow;
use crate::tokens::id_token::{self, IdAlg, IdKey, IdKeySet};
use crate::tokens::signing::previous_key_expiry;

/// The ID-token keys this process holds, and what they were built from.
#[derive(Debug, Default)]
pub struct IdKeys {
    set: std::sync::RwLock<Arc<IdKeySet>>,
    fingerprint: std::sync::Mutex<Vec<(String, String)>>,
}

fn new_row(alg: IdAlg) -> Result<IdKeyRow> {
    let der = id_token::generate(alg).map_err(|e| Error::Internal(e.into()))?;
    let key = IdKey::from_pkcs8_der(alg, &der).map_err(|e| Error::Internal(e.into()))?;
    Ok(IdKeyRow {
        kid: key.kid().to_owned(),
        alg: alg.as_str().to_owned(),
        private_key: der,
        state: "current".into(),
        created_at: Utc::now(),
        rotated_at: None,
        expires_at: None,
        retired_at: None,
    })
}

/// Makes sure a current key of `alg` exists (replicas racing: one insert wins).
pub async fn provision(store: &dyn Store, alg: IdAlg) -> Result<()> {
    let live = store.id_keys_live(Utc::now()).await?;
    if live
        .iter()
        .any(|k| k.state == "current" && k.alg == alg.as_str())
    {
        return Ok(());
    }
    let row = new_row(alg)?;
    if store.id_key_insert_first(&row).await? {
        tracing::info!(kid = %row.kid, alg = %alg, "ID-token key generated");
    }
    Ok(())
}

fn build(rows: &[IdKeyRow]) -> Result<IdKeySet> {
    let mut keys = Vec::with_capacity(rows.len());
    for row in rows {
        let alg: IdAlg = row
            .alg
            .parse()
            .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))?;
        let key = IdKey::from_pkcs8_der(alg, &row.private_key).map_err(|e| {
            Error::Internal(
                anyhow::Error::new(e).context(format!("loading ID-token key {}", row.kid)),
            )
        })?;
        keys.push((key, row.state == "current"));
    }
    Ok(IdKeySet::new(keys))
}

impl AuthService {
    /// The ID-token keys loaded now.
    pub(crate) fn id_keys(&self) -> Arc<IdKeySet> {
        self.id_keys
            .set
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Re-reads the live ID-token keys; swaps them in if they changed.
    pub(crate) async fn reload_id_keys(&self) -> Result<bool> {
        let rows = self.store.id_keys_live(Utc::now()).await?;
        let print: Vec<(String, String)> = rows
            .iter()
            .map(|r| (r.kid.clone(), r.state.clone()))
            .collect();
        if *self
            .id_keys
            .fingerprint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            == print
        {
            return Ok(false);
        }
        let fresh = Arc::new(build(&rows)?);
        *self
            .id_keys
            .set
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
        *self
            .id_keys
            .fingerprint
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = print;
        Ok(true)
    }

    /// A current key of `alg` exists and is loaded.
    pub(crate) async fn ensure_id_key(&self, alg: IdAlg) -> Result<()> {
        if self.id_keys().current(alg).is_some() {
            return Ok(());
        }
        provision(self.store.as_ref(), alg).await?;
        self.reload_id_keys().await?;
        Ok(())
    }

    /// `keys rotate --id-token`: a new current ID-token key of `alg`; the previous
    /// one verifies (and stays in the JWKS) until its ID tokens have expired.
    pub async fn rotate_id_key(&self, alg: IdAlg) -> Result<(String, String)> {
        let row = new_row(alg)?;
        let expires = previous_key_expiry(row.created_at, self.settings.access_token_ttl);
        self.store.id_key_rotate(&row, expires).await?;
        tracing::info!(kid = %row.kid, alg = %alg, "ID-token key rotated");
        let event = Audit::new(AuditKind::KeysRotated)
            .detail("kid", row.kid.as_str())
            .detail("alg", alg.as_str())
            .detail("use", "id_token");
        self.audit(&RequestContext::none(), event).await;
        self.reload_id_keys().await?;
        Ok((row.kid, row.alg))
    }

    /// Every ID-token key, for `keys list`.
    pub async fn list_id_keys(&self) -> Result<Vec<IdKeyRow>> {
        self.store.id_keys_all().await
    }

    /// Retires an ID-token key that is not current; false if there is none such.
    pub(crate) async fn retire_id_key(&self, kid: &str) -> Result<bool> {
        let retired = self.store.id_key_retire(kid, Utc::now()).await?;
        if retired {
            self.reload_id_keys().await?;
        }
        Ok(retired)
    }
}
