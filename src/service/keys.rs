//! Signing keys (SPEC §9): which keys sign and verify, generating the first one,
//! rotation, retirement, the JWKS, and picking up changes made by other processes.
//!
//! - **Two modes.** With an HS* algorithm and `SECRET_KEY` set, that one key signs
//!   tokens without `kid`, as before, and is rotated by changing `SECRET_KEY`. Otherwise
//!   keys live in `signing_keys` (generated HMAC keys included) and every token carries
//!   the `kid` of the key that signed it.
//! - **Provisioning** ([`provision`]) is done by `serve` and `migrate` only; read-only
//!   commands load what is there and never create keys. An HMAC key generated before
//!   issue 13 (`settings.jwt_secret_key`) is imported as the first key under
//!   [`LEGACY_HMAC_KID`], and kid-less tokens verify with it, so no token is lost.
//!   When the configured algorithm differs from the current key's, provisioning
//!   rotates to a new key of the configured algorithm.
//! - **Propagation.** Each server reloads the live keys every [`KEY_POLL_EVERY`]
//!   (a query of a handful of rows), and at once — at most once a second — when a
//!   token names a `kid` it has not loaded. A retired key is refused at once
//!   everywhere because `/me`'s one session query also checks the key's state; a
//!   kid-less token verified by the legacy key is checked as [`LEGACY_HMAC_KID`]'s.

use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::Algorithm;
use serde::Serialize;

use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::config::AuthSettings;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::store::keys::SigningKeyRow;
use crate::tokens::JwtKeys;
use crate::tokens::jwt::{LEGACY_HMAC_KID, StoredKey};
use crate::tokens::keys::SecretKey;
use crate::tokens::signing::{
    GRACE_SECRET_SETTING, Jwks, KeyAlgorithm, ReloadGate, SigningKeyPair, generate_grace_secret,
    previous_key_expiry,
};

/// How often a server re-reads the live keys (a rotation elsewhere reaches it within
/// this, well inside SPEC §9's 10 s).
pub const KEY_POLL_EVERY: Duration = Duration::from_secs(5);

/// The settings row that held a generated HMAC key before issue 13.
const LEGACY_KEY_SETTING: &str = "jwt_secret_key";

/// A key as `keys list` shows it (never its private part).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: String,
    pub state: String,
    pub created_at: DateTime<Utc>,
    /// For a previous key: when its last token expires; else none.
    pub expires_at: Option<DateTime<Utc>>,
    /// What it signs: `access` tokens, or `id_token`s of the OpenID Connect provider.
    #[serde(rename = "use")]
    pub use_: &'static str,
}

/// The keys one process holds, reloaded in place.
pub(super) struct LoadedKeys {
    jwt: RwLock<Arc<JwtKeys>>,
    /// What was loaded (kids and states), to tell whether a poll found a change.
    fingerprint: Mutex<String>,
    gate: ReloadGate,
    /// Whether keys come from the database (not `SECRET_KEY`).
    from_database: bool,
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::ES256 => "ES256",
        _ => "HS256",
    }
}

fn parse_alg(name: &str) -> Result<Algorithm> {
    crate::config::types::parse_algorithm(name)
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored signing key algorithm {e}")))
}

/// Whether the configured key is the static `SECRET_KEY` one.
fn static_key(settings: &AuthSettings) -> Option<&SecretKey> {
    settings
        .secret_key
        .as_ref()
        .filter(|_| is_hmac(settings.algorithm))
}

/// A fresh key of `alg`, as a row to insert as current.
fn generate(alg: Algorithm, now: DateTime<Utc>) -> Result<SigningKeyRow> {
    let (kid, private_key, public_jwk) = match KeyAlgorithm::try_from(alg) {
        Ok(asymmetric) => {
            let pair = SigningKeyPair::generate(asymmetric)
                .map_err(|e| Error::Internal(anyhow::Error::new(e).context("generating a key")))?;
            (
                pair.kid().to_owned(),
                pair.expose_pkcs8_der().to_vec(),
                Some(pair.public_jwk().to_json()),
            )
        }
        Err(_) => {
            // An HMAC key has no public half to take a thumbprint of: a random kid,
            // which says nothing about the secret.
            let secret = SecretKey::generate();
            let kid = SecretKey::generate().expose_str()[..43].to_owned();
            (kid, secret.expose().to_vec(), None)
        }
    };
    Ok(SigningKeyRow {
        kid,
        alg: alg_name(alg).to_owned(),
        private_key,
        public_jwk,
        state: "current".into(),
        created_at: now,
        rotated_at: None,
        expires_at: None,
        retired_at: None,
    })
}

/// What `serve` and `migrate` do before anything signs: the grace secret, and a
/// current key of the configured algorithm (generated, imported or rotated to).
pub async fn provision(store: &dyn Store, settings: &AuthSettings) -> Result<()> {
    store
        .setting_get_or_insert(
            GRACE_SECRET_SETTING,
            secrecy::ExposeSecret::expose_secret(&generate_grace_secret()),
        )
        .await?;
    if settings.oidc_enabled {
        // OIDC Discovery requires RS256 (SPEC §18); EdDSA and ES256 cost nothing to
        // make, and being in the JWKS from the start, a client that fetched it before
        // its registration finds its key.
        for alg in crate::tokens::id_token::IdAlg::ALL {
            super::oidc::keys::provision(store, alg).await?;
        }
    }
    if static_key(settings).is_some() {
        return Ok(());
    }
    let now = Utc::now();
    let all = store.all_signing_keys().await?;
    let wanted = alg_name(settings.algorithm);
    match all.iter().find(|k| k.state == "current") {
        Some(current) if current.alg == wanted => Ok(()),
        Some(current) => {
            tracing::warn!(from = %current.alg, to = wanted, "ALGORITHM changed: rotating to a new signing key");
            let key = generate(settings.algorithm, now)?;
            let expires = previous_key_expiry(now, settings.access_token_ttl);
            match store.rotate_signing_key(&key, expires).await {
                // Another replica rotated at the same moment: its key serves.
                Ok(()) | Err(Error::Conflict(_)) => Ok(()),
                Err(e) => Err(e),
            }
        }
        None => {
            let legacy =
                if is_hmac(settings.algorithm) && !all.iter().any(|k| k.kid == LEGACY_HMAC_KID) {
                    store.setting_get(LEGACY_KEY_SETTING).await?
                } else {
                    None
                };
            let key = match legacy {
                Some(secret) => SigningKeyRow {
                    kid: LEGACY_HMAC_KID.to_owned(),
                    private_key: secret.into_bytes(),
                    ..generate(settings.algorithm, now)?
                },
                None => generate(settings.algorithm, now)?,
            };
            if store.insert_first_signing_key(&key).await? {
                tracing::warn!(
                    backend = store.backend(),
                    kid = %key.kid,
                    alg = %key.alg,
                    "no SECRET_KEY configured: generated a signing key and stored it in the \
                     database (table `signing_keys`); `authctl keys rotate` replaces it"
                );
            }
            Ok(())
        }
    }
}

/// The grace-mode secret; a read-only command on an unprovisioned database (which
/// never refreshes) gets a throwaway one.
pub(super) async fn grace_secret(store: &dyn Store) -> Result<SecretKey> {
    match store.setting_get(GRACE_SECRET_SETTING).await? {
        Some(stored) => SecretKey::parse(&stored)
            .map_err(|e| Error::config(format!("the grace secret stored in the database {e}"))),
        None => Ok(SecretKey::generate()),
    }
}

fn fingerprint(rows: &[SigningKeyRow]) -> String {
    rows.iter()
        .map(|r| format!("{}:{};", r.kid, r.state))
        .collect()
}

fn build(rows: &[SigningKeyRow], settings: &AuthSettings) -> Result<JwtKeys> {
    let algs = rows
        .iter()
        .map(|r| parse_alg(&r.alg))
        .collect::<Result<Vec<_>>>()?;
    JwtKeys::from_stored(
        rows.iter().zip(algs).map(|(r, alg)| StoredKey {
            kid: &r.kid,
            alg,
            private_key: &r.private_key,
            current: r.state == "current",
        }),
        &settings.issuer,
        settings.access_token_ttl,
    )
}

impl LoadedKeys {
    pub(super) async fn load(store: &dyn Store, settings: &AuthSettings) -> Result<Self> {
        if let Some(key) = static_key(settings) {
            return Ok(LoadedKeys {
                jwt: RwLock::new(Arc::new(JwtKeys::new(
                    key,
                    settings.algorithm,
                    &settings.issuer,
                    settings.access_token_ttl,
                ))),
                fingerprint: Mutex::new(String::new()),
                gate: ReloadGate::new(),
                from_database: false,
            });
        }
        let rows = store.live_signing_keys(Utc::now()).await?;
        Ok(LoadedKeys {
            jwt: RwLock::new(Arc::new(build(&rows, settings)?)),
            fingerprint: Mutex::new(fingerprint(&rows)),
            gate: ReloadGate::new(),
            from_database: true,
        })
    }

    pub(super) fn get(&self) -> Arc<JwtKeys> {
        self.jwt
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl AuthService {
    /// The keys tokens are signed and verified with right now.
    pub(super) fn jwt(&self) -> Arc<JwtKeys> {
        self.keys.get()
    }

    /// Re-reads the live keys; swaps them in if they changed. Returns whether they did.
    pub async fn reload_keys(&self) -> Result<bool> {
        if self.settings.oidc_enabled {
            self.reload_id_keys().await?;
        }
        if !self.keys.from_database {
            return Ok(false);
        }
        let rows = self.store.live_signing_keys(Utc::now()).await?;
        let print = fingerprint(&rows);
        if *self
            .keys
            .fingerprint
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            == print
        {
            return Ok(false);
        }
        let fresh = Arc::new(build(&rows, &self.settings)?);
        tracing::info!(current_kid = ?fresh.current_kid(), "signing keys reloaded");
        *self
            .keys
            .jwt
            .write()
            .unwrap_or_else(PoisonError::into_inner) = fresh;
        *self
            .keys
            .fingerprint
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = print;
        Ok(true)
    }

    /// For a token naming a `kid` not loaded here: reload (at most once a second per
    /// process) and say whether the key is now known.
    pub(super) async fn reload_for_unknown_kid(&self, kid: &str) -> Result<bool> {
        Ok(self.reload_if_allowed().await? && self.jwt().holds(Some(kid)))
    }

    /// Reloads unless this process already did in the last second (a flood of forged
    /// kids cannot turn into a flood of queries). Returns whether it reloaded.
    pub(super) async fn reload_if_allowed(&self) -> Result<bool> {
        if !self.keys.from_database || !self.keys.gate.try_acquire() {
            return Ok(false);
        }
        self.reload_keys().await?;
        Ok(true)
    }

    /// The public keys that verify tokens now (empty with HMAC).
    pub fn jwks(&self) -> Jwks {
        self.jwt().jwks().clone()
    }

    /// Every key: the access-token keys, then the ID-token keys (SPEC §18).
    pub async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        let access = self
            .store
            .all_signing_keys()
            .await?
            .into_iter()
            .map(|r| KeyInfo {
                kid: r.kid,
                alg: r.alg,
                state: r.state,
                created_at: r.created_at,
                expires_at: r.expires_at,
                use_: "access",
            });
        let id = self.list_id_keys().await?.into_iter().map(|r| KeyInfo {
            kid: r.kid,
            alg: r.alg,
            state: r.state,
            created_at: r.created_at,
            expires_at: r.expires_at,
            use_: "id_token",
        });
        Ok(access.chain(id).collect())
    }

    /// Makes a new current key (of `algorithm`, else the configured one); the previous
    /// keeps verifying until its tokens have expired.
    pub async fn rotate_keys(&self, algorithm: Option<Algorithm>) -> Result<KeyInfo> {
        if static_key(&self.settings).is_some() {
            return Err(Error::Internal(anyhow::anyhow!(
                "the signing key is SECRET_KEY: rotate it by changing SECRET_KEY (and restarting)"
            )));
        }
        let now = Utc::now();
        let key = generate(algorithm.unwrap_or(self.settings.algorithm), now)?;
        let expires = previous_key_expiry(now, self.settings.access_token_ttl);
        let had_current = self
            .store
            .all_signing_keys()
            .await?
            .iter()
            .any(|k| k.state == "current");
        if had_current {
            self.store.rotate_signing_key(&key, expires).await?;
        } else if !self.store.insert_first_signing_key(&key).await? {
            return Err(Error::Conflict("signing key"));
        }
        tracing::info!(kid = %key.kid, alg = %key.alg, "signing keys rotated");
        let event = Audit::new(AuditKind::KeysRotated)
            .detail("kid", key.kid.as_str())
            .detail("alg", key.alg.as_str());
        self.audit(&RequestContext::default(), event).await;
        self.reload_keys().await?;
        Ok(KeyInfo {
            kid: key.kid,
            alg: key.alg,
            state: key.state,
            created_at: key.created_at,
            expires_at: None,
            use_: "access",
        })
    }

    /// Stops trusting a key now. Retiring the current key first rotates to a new one,
    /// so that servers keep signing.
    pub async fn retire_key(&self, kid: &str) -> Result<()> {
        let all = self.store.all_signing_keys().await?;
        let Some(found) = all.iter().find(|k| k.kid == kid) else {
            // An ID-token key (SPEC §18) retires the same way, unless it is current.
            if self.retire_id_key(kid).await? {
                tracing::warn!(kid, "ID-token key retired");
                let event = Audit::new(AuditKind::KeyRetired)
                    .detail("kid", kid)
                    .detail("use", "id_token");
                self.audit(&RequestContext::default(), event).await;
                return Ok(());
            }
            return Err(Error::NotFound(format!("signing key {kid}")));
        };
        if found.state == "current" {
            self.rotate_keys(Some(parse_alg(&found.alg)?)).await?;
        }
        if !self.store.retire_signing_key(kid, Utc::now()).await? {
            return Err(Error::NotFound(format!("signing key {kid}")));
        }
        tracing::warn!(
            kid,
            "signing key retired: its tokens are refused from now on"
        );
        let event = Audit::new(AuditKind::KeyRetired).detail("kid", kid);
        self.audit(&RequestContext::default(), event).await;
        self.reload_keys().await?;
        Ok(())
    }

    /// Drops previous keys none of whose tokens can still be valid.
    pub async fn prune_keys(&self) -> Result<u64> {
        let n = self.store.prune_signing_keys(Utc::now()).await?
            + self.store.id_keys_prune(Utc::now()).await?;
        if n > 0 {
            tracing::info!(keys = n, "dropped expired previous signing keys");
        }
        Ok(n)
    }
}
