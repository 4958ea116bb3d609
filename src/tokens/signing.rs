//! Asymmetric signing keys for access tokens (SPEC §9): Ed25519 (`EdDSA`) and P-256
//! (`ES256`) key pairs and the public JWKs the JWKS publishes. Nothing here touches the
//! database or the network; the service loads rows of the `signing_keys` table into
//! these types.
//!
//! Tokens are signed and verified by [`super::jwt::JwtKeys`], which holds HMAC and
//! asymmetric keys in one set (a generated HS* key rotates like an EdDSA one) and uses
//! [`SigningKeyPair`], [`PublicJwk`] and [`ReloadGate`] from here.
//!
//! - **Storage.** A private key is kept as PKCS#8 DER, the form jsonwebtoken signs with
//!   (`EncodingKey::from_ed_der` / `from_ec_der`); [`SigningKeyPair::from_pkcs8_der`]
//!   re-derives everything else (public key, JWK, `kid`) from it, so a row cannot carry
//!   a public half that does not belong to its private half.
//! - **`kid`** is the RFC 7638 JWK thumbprint (base64url SHA-256 of the canonical JSON
//!   of the public key): every replica and every restart computes the same `kid` for the
//!   same key without coordinating, and a resource server may recompute it.
//! - **Verification pins the algorithm per key** (in `JwtKeys`): a token is looked up by
//!   its `kid`, and only that key's own algorithm is accepted: `none` cannot be expressed
//!   at all, and an `HS256` token whose HMAC key is the public key (algorithm confusion)
//!   is refused. A token without `kid` verifies only with an HMAC key that has none
//!   (`SECRET_KEY`, or the imported legacy key). A `kid` of at most 64 characters that
//!   the set does not hold is reported as [`super::jwt::JwtFailure::UnknownKid`],
//!   distinct from every other failure, so the caller can reload the keys from the
//!   database (at most once a second, see [`ReloadGate`]) before refusing: that is how a
//!   rotation made by another replica or by the CLI is picked up without a restart.
//! - **Lifecycle** ([`KeyState`]): `current` signs; on rotation it becomes `previous`
//!   and keeps verifying until [`previous_key_expiry`] (rotation time + access-token
//!   TTL + leeway), after which no token it signed can be valid and housekeeping drops
//!   it; `retired` (a leaked key) verifies nothing from the moment it is retired.
//!
//! ## The grace secret
//! Grace mode (SPEC §5) hands a retried refresh the *same* successor, derived as an
//! HMAC of the parent token. That HMAC must not be keyed with the signing key: with
//! EdDSA/ES256 there is no shared secret to key it with, and a signing-key rotation would
//! change every successor in flight. It is keyed with a secret of its own instead,
//! generated once by [`generate_grace_secret`] (256 random bits, base64url) and kept in
//! the `settings` table under [`GRACE_SECRET_SETTING`]. The service reads it at start
//! with insert-if-absent-then-read (`INSERT … ON CONFLICT (name) DO NOTHING`, then
//! `SELECT`), so replicas started together agree on one value. It is never rotated with
//! the signing keys; replacing it only makes retries inside a grace window that is open
//! at that moment fall under the strict rule, which costs one re-login at most.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};

use super::LEEWAY_SECS;

/// The name of the grace-mode secret in the `settings` table (see the module comment).
pub const GRACE_SECRET_SETTING: &str = "refresh_grace_secret";

/// Why key material could not be generated, loaded or used. Messages never contain
/// key bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The configured algorithm is not one this module handles (HS* keys are secrets,
    /// never published; they stay with `SecretKey`).
    #[error("{0:?} is not an asymmetric signing algorithm (expected EdDSA or ES256)")]
    NotAsymmetric(Algorithm),
    /// A stored algorithm name that is neither `EdDSA` nor `ES256`.
    #[error("unknown signing-key algorithm {0:?} (expected EdDSA or ES256)")]
    UnknownAlgorithm(String),
    /// A stored state name that is not `current`, `previous` or `retired`.
    #[error("unknown signing-key state {0:?} (expected current, previous or retired)")]
    UnknownState(String),
    /// Stored private key bytes that are not a PKCS#8 key of the stated algorithm.
    #[error("the {alg} private key is not a valid PKCS#8 key of that algorithm: {reason}")]
    InvalidPrivateKey { alg: KeyAlgorithm, reason: String },
    /// A public JWK that is malformed or whose `kid` is not its thumbprint.
    #[error("invalid public JWK: {0}")]
    InvalidJwk(String),
    /// jsonwebtoken refused to sign (it should not with a key that loaded).
    #[error("signing a token with key {kid}")]
    Sign {
        kid: String,
        #[source]
        source: jsonwebtoken::errors::Error,
    },
}

/// The asymmetric JWT algorithms authctl signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// Ed25519 signatures (RFC 8037).
    #[serde(rename = "EdDSA")]
    EdDsa,
    /// ECDSA with P-256 and SHA-256.
    #[serde(rename = "ES256")]
    Es256,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 2] = [KeyAlgorithm::EdDsa, KeyAlgorithm::Es256];

    /// The JOSE name, as in the `alg` header, the JWK and the `signing_keys.alg` column.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EdDsa => "EdDSA",
            KeyAlgorithm::Es256 => "ES256",
        }
    }

    pub fn jwt(self) -> Algorithm {
        match self {
            KeyAlgorithm::EdDsa => Algorithm::EdDSA,
            KeyAlgorithm::Es256 => Algorithm::ES256,
        }
    }

    fn kty(self) -> &'static str {
        match self {
            KeyAlgorithm::EdDsa => "OKP",
            KeyAlgorithm::Es256 => "EC",
        }
    }

    fn crv(self) -> &'static str {
        match self {
            KeyAlgorithm::EdDsa => "Ed25519",
            KeyAlgorithm::Es256 => "P-256",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "EdDSA" => Ok(KeyAlgorithm::EdDsa),
            "ES256" => Ok(KeyAlgorithm::Es256),
            other => Err(KeyError::UnknownAlgorithm(other.to_owned())),
        }
    }
}

impl TryFrom<Algorithm> for KeyAlgorithm {
    type Error = KeyError;

    fn try_from(alg: Algorithm) -> Result<Self, KeyError> {
        match alg {
            Algorithm::EdDSA => Ok(KeyAlgorithm::EdDsa),
            Algorithm::ES256 => Ok(KeyAlgorithm::Es256),
            other => Err(KeyError::NotAsymmetric(other)),
        }
    }
}

/// Where a key is in its life, as stored in `signing_keys.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Signs new tokens (exactly one key at a time).
    Current,
    /// No longer signs; verifies until its `expires_at`.
    Previous,
    /// Trusted for nothing, from the moment it was retired.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Current => "current",
            KeyState::Previous => "previous",
            KeyState::Retired => "retired",
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyState {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "current" => Ok(KeyState::Current),
            "previous" => Ok(KeyState::Previous),
            "retired" => Ok(KeyState::Retired),
            other => Err(KeyError::UnknownState(other.to_owned())),
        }
    }
}

/// When a key rotated out at `rotated_at` stops mattering: the last token it signed was
/// issued at `rotated_at` at the latest and is refused after its TTL plus the leeway.
pub fn previous_key_expiry(rotated_at: DateTime<Utc>, access_ttl: Duration) -> DateTime<Utc> {
    let lifetime = access_ttl.saturating_add(Duration::from_secs(LEEWAY_SECS));
    chrono::Duration::from_std(lifetime)
        .ok()
        .and_then(|d| rotated_at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The public half of a signing key as a JWK: exactly the members SPEC §9 publishes
/// (`kty`, `crv`, `x`, `y` for P-256, `kid`, `alg`, `use`), in that order. Deserializing
/// checks it ([`PublicJwk::parse`]), so a value of this type always has a `kid` equal
/// to its thumbprint and coordinates of the right size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawJwk")]
pub struct PublicJwk {
    kty: String,
    crv: String,
    x: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    y: Option<String>,
    kid: String,
    alg: KeyAlgorithm,
    #[serde(rename = "use")]
    use_: String,
}

/// The unchecked wire form of [`PublicJwk`].
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    crv: String,
    x: String,
    #[serde(default)]
    y: Option<String>,
    kid: String,
    alg: KeyAlgorithm,
    #[serde(rename = "use")]
    use_: String,
}

impl TryFrom<RawJwk> for PublicJwk {
    type Error = KeyError;

    fn try_from(raw: RawJwk) -> Result<Self, KeyError> {
        let alg = raw.alg;
        if raw.kty != alg.kty() || raw.crv != alg.crv() {
            return Err(KeyError::InvalidJwk(format!(
                "kty {:?} / crv {:?} do not fit alg {alg}",
                raw.kty, raw.crv
            )));
        }
        if raw.use_ != "sig" {
            return Err(KeyError::InvalidJwk(format!(
                "use is {:?}, expected \"sig\"",
                raw.use_
            )));
        }
        let x = decode_coordinate("x", &raw.x)?;
        let y = match (alg, &raw.y) {
            (KeyAlgorithm::EdDsa, None) => None,
            (KeyAlgorithm::Es256, Some(y)) => Some(decode_coordinate("y", y)?),
            (KeyAlgorithm::EdDsa, Some(_)) => {
                return Err(KeyError::InvalidJwk("an Ed25519 key has no y".into()));
            }
            (KeyAlgorithm::Es256, None) => {
                return Err(KeyError::InvalidJwk("a P-256 key needs y".into()));
            }
        };
        // Re-deriving from the raw coordinates checks that they are a point of the curve
        // and recomputes the thumbprint, which the stored kid must equal.
        let jwk = PublicJwk::from_public_key(alg, &x, y.as_deref())?;
        if jwk.kid != raw.kid {
            return Err(KeyError::InvalidJwk(format!(
                "kid {:?} is not the key's RFC 7638 thumbprint",
                raw.kid
            )));
        }
        Ok(jwk)
    }
}

fn decode_coordinate(name: &str, value: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|e| KeyError::InvalidJwk(format!("{name} is not unpadded base64url: {e}")))?;
    if bytes.len() != 32 {
        return Err(KeyError::InvalidJwk(format!(
            "{name} is {} bytes, expected 32",
            bytes.len()
        )));
    }
    Ok(bytes)
}

impl PublicJwk {
    /// Parses and checks a JWK stored as JSON (the `signing_keys.public_jwk` column).
    pub fn parse(json: &str) -> Result<Self, KeyError> {
        serde_json::from_str(json).map_err(|e| KeyError::InvalidJwk(e.to_string()))
    }

    /// The JSON text to store and publish.
    pub fn to_json(&self) -> String {
        // Cannot fail: a flat struct of strings has no map keys or floats to reject.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The RFC 7638 thumbprint, used as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.alg
    }

    /// The key a verifier uses, built from the JWK alone, as a resource server would.
    pub fn decoding_key(&self) -> Result<DecodingKey, KeyError> {
        DecodingKey::from_jwk(&self.to_jsonwebtoken()?)
            .map_err(|e| KeyError::InvalidJwk(format!("jsonwebtoken refused it: {e}")))
    }

    /// Builds the JWK of a raw public key: Ed25519's 32 bytes, or P-256's x and y.
    fn from_public_key(alg: KeyAlgorithm, x: &[u8], y: Option<&[u8]>) -> Result<Self, KeyError> {
        match (alg, y) {
            (KeyAlgorithm::EdDsa, None) => {
                let bytes = <&[u8; 32]>::try_from(x)
                    .map_err(|_| KeyError::InvalidJwk("an Ed25519 key is 32 bytes".into()))?;
                ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|_| KeyError::InvalidJwk("x is not an Ed25519 point".into()))?;
            }
            (KeyAlgorithm::Es256, Some(y)) if x.len() == 32 && y.len() == 32 => {
                // SEC1 uncompressed form: 0x04 ‖ x ‖ y.
                let point = [&[4u8][..], x, y].concat();
                p256::PublicKey::from_sec1_bytes(&point)
                    .map_err(|_| KeyError::InvalidJwk("x, y is not a P-256 point".into()))?;
            }
            _ => return Err(KeyError::InvalidJwk("coordinates do not fit alg".into())),
        }
        let mut jwk = PublicJwk {
            kty: alg.kty().to_owned(),
            crv: alg.crv().to_owned(),
            x: URL_SAFE_NO_PAD.encode(x),
            y: y.map(|y| URL_SAFE_NO_PAD.encode(y)),
            kid: String::new(),
            alg,
            use_: "sig".to_owned(),
        };
        jwk.kid = jwk
            .to_jsonwebtoken()?
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| KeyError::InvalidJwk(format!("thumbprint: {e}")))?;
        Ok(jwk)
    }

    /// The same JWK as jsonwebtoken's type, read from our JSON: what a resource server
    /// that fetched the JWKS would hold.
    fn to_jsonwebtoken(&self) -> Result<Jwk, KeyError> {
        serde_json::to_value(self)
            .and_then(serde_json::from_value)
            .map_err(|e| KeyError::InvalidJwk(format!("jsonwebtoken cannot read it: {e}")))
    }
}

/// The body of `GET /.well-known/jwks.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<PublicJwk>,
}

/// A private signing key with its derived public JWK. `Debug` shows only `alg` and
/// `kid`; the private bytes leave only through [`SigningKeyPair::expose_pkcs8_der`].
pub struct SigningKeyPair {
    pkcs8: SecretSlice<u8>,
    public: PublicJwk,
    encoding: EncodingKey,
}

impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyPair")
            .field("alg", &self.public.alg)
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKeyPair {
    /// A fresh key from the operating system's randomness (through `rand`, as the rest of
    /// authctl; the curve crates' own `rand_core` 0.6 is deliberately not used).
    pub fn generate(alg: KeyAlgorithm) -> Result<Self, KeyError> {
        let der = match alg {
            KeyAlgorithm::EdDsa => {
                let seed = random_32();
                let key = ed25519_dalek::SigningKey::from_bytes(seed.expose_secret());
                key.to_pkcs8_der().map_err(|e| invalid(alg, e))?
            }
            KeyAlgorithm::Es256 => {
                // A random 32-byte string is a valid scalar unless it is 0 or ≥ the group
                // order, a chance of about 2^-32; a few attempts make failure impossible
                // in practice without an unbounded loop.
                let key = (0..8)
                    .find_map(|_| p256::SecretKey::from_slice(random_32().expose_secret()).ok())
                    .ok_or_else(|| KeyError::InvalidPrivateKey {
                        alg,
                        reason: "no valid P-256 scalar in 8 random draws".into(),
                    })?;
                p256::pkcs8::EncodePrivateKey::to_pkcs8_der(&key).map_err(|e| invalid(alg, e))?
            }
        };
        Self::from_pkcs8_der(alg, der.as_bytes())
    }

    /// Loads a stored key (`signing_keys.private_key`), refusing bytes that are not a
    /// PKCS#8 key of `alg`. The public JWK and `kid` are derived, never trusted.
    pub fn from_pkcs8_der(alg: KeyAlgorithm, der: &[u8]) -> Result<Self, KeyError> {
        let (public, encoding) = match alg {
            KeyAlgorithm::EdDsa => {
                let key =
                    ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(|e| invalid(alg, e))?;
                let x = key.verifying_key().to_bytes();
                (
                    PublicJwk::from_public_key(alg, &x, None)?,
                    EncodingKey::from_ed_der(der),
                )
            }
            KeyAlgorithm::Es256 => {
                let key = <p256::SecretKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_der(der)
                    .map_err(|e| invalid(alg, e))?;
                let point = key.public_key().to_encoded_point(false);
                let (Some(x), Some(y)) = (point.x(), point.y()) else {
                    return Err(KeyError::InvalidPrivateKey {
                        alg,
                        reason: "its public key is the identity point".into(),
                    });
                };
                (
                    PublicJwk::from_public_key(alg, x, Some(y))?,
                    EncodingKey::from_ec_der(der),
                )
            }
        };
        Ok(SigningKeyPair {
            pkcs8: SecretSlice::from(der.to_vec()),
            public,
            encoding,
        })
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.public.alg
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    pub fn public_jwk(&self) -> &PublicJwk {
        &self.public
    }

    /// The PKCS#8 DER bytes, for storing the key. Never log them.
    pub fn expose_pkcs8_der(&self) -> &[u8] {
        self.pkcs8.expose_secret()
    }

    /// Signs `claims` with this key; the header carries `alg`, `typ` and `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(self.public.alg.jwt());
        header.kid = Some(self.public.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|source| KeyError::Sign {
            kid: self.public.kid.clone(),
            source,
        })
    }
}

fn random_32() -> SecretBox<[u8; 32]> {
    let mut bytes = SecretBox::new(Box::new([0u8; 32]));
    rand::fill(bytes.expose_secret_mut());
    bytes
}

fn invalid(alg: KeyAlgorithm, e: impl fmt::Display) -> KeyError {
    KeyError::InvalidPrivateKey {
        alg,
        reason: e.to_string(),
    }
}

/// A fresh grace-mode secret: 256 random bits as unpadded base64url (43 characters), to
/// store under [`GRACE_SECRET_SETTING`] (see the module comment).
pub fn generate_grace_secret() -> SecretString {
    SecretString::from(URL_SAFE_NO_PAD.encode(random_32().expose_secret()))
}

/// Lets a key reload through at most once a second, however many tokens with unknown
/// `kid`s arrive: an attacker sending random `kid`s costs one database read a second.
/// Callers serialize the reload itself (one at a time) and ask the gate inside it.
pub struct ReloadGate(DefaultDirectRateLimiter);

impl ReloadGate {
    pub fn new() -> Self {
        ReloadGate(RateLimiter::direct(Quota::per_second(NonZeroU32::MIN)))
    }

    /// True if a reload may run now (and counts it).
    pub fn try_acquire(&self) -> bool {
        self.0.check().is_ok()
    }
}

impl Default for ReloadGate {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ReloadGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadGate").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
