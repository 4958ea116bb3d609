//! Asymmetric signing keys for access tokens (SPEC §9): Ed25519 (`EdDSA`) and P-256
//! (`ES256`) key pairs, the public JWKs the JWKS publishes, and the [`KeyRing`] that
//! signs with the current key and verifies with every key that may still have valid
//! tokens. Nothing here touches the database or the network; the service loads rows
//! of the `signing_keys` table into these types.
//!
//! The service signs and verifies through [`super::jwt::JwtKeys`], which holds HMAC
//! and asymmetric keys in one set (a generated HS* key rotates like an EdDSA one) and
//! uses [`SigningKeyPair`], [`PublicJwk`] and [`ReloadGate`] from here. [`KeyRing`] is
//! the asymmetric-only ring these types were designed and tested with; fold it into
//! `JwtKeys` or drop it when it is next touched.
//!
//! - **Storage.** A private key is kept as PKCS#8 DER, the form jsonwebtoken signs with
//!   (`EncodingKey::from_ed_der` / `from_ec_der`); [`SigningKeyPair::from_pkcs8_der`]
//!   re-derives everything else (public key, JWK, `kid`) from it, so a row cannot carry
//!   a public half that does not belong to its private half.
//! - **`kid`** is the RFC 7638 JWK thumbprint (base64url SHA-256 of the canonical JSON
//!   of the public key): every replica and every restart computes the same `kid` for the
//!   same key without coordinating, and a resource server may recompute it.
//! - **Verification pins the algorithm per key.** A token is looked up by its `kid`, and
//!   only that key's own algorithm is accepted: `none` cannot be expressed at all, and an
//!   `HS256` token whose HMAC key is the public key (algorithm confusion) is refused.
//!   A token without `kid` is refused. A well-formed `kid` that the ring does not hold
//!   is reported as [`VerifyError::UnknownKid`], distinct from every other failure, so the
//!   caller can reload the keys from the database (at most once a second, see
//!   [`ReloadGate`]) before refusing: that is how a rotation made by another replica or
//!   by the CLI is picked up without a restart.
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

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretSlice, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::jwt::LEEWAY_SECS;

/// The name of the grace-mode secret in the `settings` table (see the module comment).
pub const GRACE_SECRET_SETTING: &str = "refresh_grace_secret";

/// Length of an RFC 7638 SHA-256 thumbprint in unpadded base64url: 32 bytes → 43 chars.
const THUMBPRINT_LEN: usize = 43;

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

/// Why a token was refused by a [`KeyRing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// The header has no `kid`: every token authctl signs asymmetrically has one.
    MissingKid,
    /// A well-formed `kid` this ring does not hold (yet): reload the keys, at most once
    /// a second ([`ReloadGate`]), and verify again before refusing.
    UnknownKid(String),
    /// Signature and key are fine but `exp` (plus leeway) has passed.
    Expired,
    /// Anything else: bad signature, wrong algorithm for the key, bad claims, garbage.
    Invalid,
}

/// A key the ring verifies with: its JWK, the decoding key and a `Validation` that
/// accepts this key's algorithm only.
struct Verifier {
    jwk: PublicJwk,
    decoding: DecodingKey,
    validation: Validation,
}

/// The current signing key plus every key that may still verify, by `kid`. Built
/// afresh on every reload and swapped in whole, so it needs no interior locking.
pub struct KeyRing {
    current: SigningKeyPair,
    verifiers: HashMap<String, Verifier>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<&str> = self.verifiers.keys().map(String::as_str).collect();
        kids.sort_unstable();
        f.debug_struct("KeyRing")
            .field("current", &self.current)
            .field("verifies", &kids)
            .finish()
    }
}

impl KeyRing {
    /// `current` signs; it and every key of `still_valid` (the `previous` keys that
    /// have not expired) verify. `validation` carries the claim rules (issuer, leeway,
    /// required claims); its `algorithms` are replaced per key by that key's own.
    pub fn new(
        current: SigningKeyPair,
        still_valid: impl IntoIterator<Item = PublicJwk>,
        validation: &Validation,
    ) -> Result<Self, KeyError> {
        let mut verifiers = HashMap::new();
        for jwk in std::iter::once(current.public.clone()).chain(still_valid) {
            let mut pinned = validation.clone();
            pinned.algorithms = vec![jwk.alg.jwt()];
            let decoding = jwk.decoding_key()?;
            verifiers.insert(
                jwk.kid.clone(),
                Verifier {
                    jwk,
                    decoding,
                    validation: pinned,
                },
            );
        }
        Ok(KeyRing { current, verifiers })
    }

    pub fn current(&self) -> &SigningKeyPair {
        &self.current
    }

    /// Whether tokens with this `kid` verify here.
    pub fn contains(&self, kid: &str) -> bool {
        self.verifiers.contains_key(kid)
    }

    /// Signs with the current key.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        self.current.sign(claims)
    }

    /// Verifies signature (with the key named by `kid`, in its algorithm only) and
    /// claims.
    pub fn verify<T: DeserializeOwned>(&self, token: &str) -> Result<T, VerifyError> {
        let verifier = self.verifier_for(token)?;
        match jsonwebtoken::decode::<T>(token, &verifier.decoding, &verifier.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(VerifyError::Expired),
            Err(_) => Err(VerifyError::Invalid),
        }
    }

    /// As [`KeyRing::verify`] but accepts an expired token (for `token inspect`).
    pub fn verify_ignoring_expiry<T: DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<T, VerifyError> {
        let verifier = self.verifier_for(token)?;
        let mut validation = verifier.validation.clone();
        validation.validate_exp = false;
        jsonwebtoken::decode::<T>(token, &verifier.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|_| VerifyError::Invalid)
    }

    /// The JWKS: the current key first, then the others by `kid`, so the document is
    /// stable between reloads that change nothing.
    pub fn jwks(&self) -> Jwks {
        let mut others: Vec<&PublicJwk> = self
            .verifiers
            .values()
            .map(|v| &v.jwk)
            .filter(|jwk| jwk.kid != self.current.public.kid)
            .collect();
        others.sort_unstable_by(|a, b| a.kid.cmp(&b.kid));
        Jwks {
            keys: std::iter::once(&self.current.public)
                .chain(others)
                .cloned()
                .collect(),
        }
    }

    fn verifier_for(&self, token: &str) -> Result<&Verifier, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Invalid)?;
        // Only a token in one of our algorithms with a kid shaped like a thumbprint can
        // be ours; anything else is refused without making the caller reload.
        if KeyAlgorithm::try_from(header.alg).is_err() {
            return Err(VerifyError::Invalid);
        }
        let kid = header.kid.ok_or(VerifyError::MissingKid)?;
        if let Some(verifier) = self.verifiers.get(&kid) {
            return Ok(verifier);
        }
        let thumbprint_shaped = kid.len() == THUMBPRINT_LEN
            && kid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if thumbprint_shaped {
            Err(VerifyError::UnknownKid(kid))
        } else {
            Err(VerifyError::Invalid)
        }
    }
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
mod tests {
    use super::*;
    use serde_json::Value;
    use sha2::{Digest, Sha256};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        sub: String,
        iss: String,
        iat: i64,
        exp: i64,
    }

    fn claims(ttl_secs: i64) -> Claims {
        let now = Utc::now().timestamp();
        Claims {
            sub: "42".into(),
            iss: "authctl".into(),
            iat: now,
            exp: now + ttl_secs,
        }
    }

    fn validation() -> Validation {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = LEEWAY_SECS;
        v.validate_aud = false;
        v.set_issuer(&["authctl"]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        v
    }

    fn ring(alg: KeyAlgorithm) -> KeyRing {
        KeyRing::new(SigningKeyPair::generate(alg).unwrap(), [], &validation()).unwrap()
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with an arbitrary header and payload and an empty or given signature.
    fn forged(header: &Value, claims: &Claims, signature: &str) -> String {
        format!(
            "{}.{}.{signature}",
            b64(header.to_string()),
            b64(serde_json::to_string(claims).unwrap())
        )
    }

    #[test]
    fn tokens_of_both_algorithms_round_trip_and_name_their_key() {
        for alg in KeyAlgorithm::ALL {
            let ring = ring(alg);
            let sent = claims(60);
            let token = ring.sign(&sent).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, alg.jwt());
            assert_eq!(header.kid.as_deref(), Some(ring.current().kid()));
            assert_eq!(ring.verify::<Claims>(&token).unwrap(), sent, "{alg}");
        }
    }

    #[test]
    fn an_independent_verifier_accepts_tokens_with_nothing_but_the_jwks_json() {
        for alg in KeyAlgorithm::ALL {
            let ring = ring(alg);
            let token = ring.sign(&claims(60)).unwrap();
            let published = serde_json::to_string(&ring.jwks()).unwrap();

            // What a resource server does: fetch the JSON, pick the key by kid, verify.
            let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(&published).unwrap();
            let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
            let jwk = set.find(&kid).expect("the token's kid is in the JWKS");
            let key = DecodingKey::from_jwk(jwk).unwrap();
            let alg_of_jwk = Algorithm::try_from(jwk.common.key_algorithm.unwrap()).unwrap();
            assert_eq!(alg_of_jwk, alg.jwt());
            let mut v = Validation::new(alg_of_jwk);
            v.set_issuer(&["authctl"]);
            let data = jsonwebtoken::decode::<Claims>(&token, &key, &v).unwrap();
            assert_eq!(data.claims.sub, "42");
        }
    }

    #[test]
    fn the_jwks_holds_exactly_the_published_members_and_no_private_part() {
        for alg in KeyAlgorithm::ALL {
            let ring = ring(alg);
            let doc: Value = serde_json::to_value(ring.jwks()).unwrap();
            let keys = doc["keys"].as_array().unwrap();
            assert_eq!(keys.len(), 1);
            let key = keys[0].as_object().unwrap();
            let mut members: Vec<&str> = key.keys().map(String::as_str).collect();
            members.sort_unstable();
            let expected: &[&str] = match alg {
                KeyAlgorithm::EdDsa => &["alg", "crv", "kid", "kty", "use", "x"],
                KeyAlgorithm::Es256 => &["alg", "crv", "kid", "kty", "use", "x", "y"],
            };
            assert_eq!(members, expected, "{alg}");
            assert_eq!(key["use"], "sig");
            assert_eq!(key["alg"], alg.as_str());
            assert_eq!(key["kid"], ring.current().kid());
            let (kty, crv) = match alg {
                KeyAlgorithm::EdDsa => ("OKP", "Ed25519"),
                KeyAlgorithm::Es256 => ("EC", "P-256"),
            };
            assert_eq!(
                (key["kty"].as_str(), key["crv"].as_str()),
                (Some(kty), Some(crv))
            );
        }
    }

    #[test]
    fn the_kid_of_the_rfc_8037_example_key_is_its_published_thumbprint() {
        // RFC 8037 Appendix A.1 (private key d), A.2 (public key x), A.3 (thumbprint).
        let d = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let seed: [u8; 32] = d.try_into().unwrap();
        let der = ed25519_dalek::SigningKey::from_bytes(&seed)
            .to_pkcs8_der()
            .unwrap();
        let key = SigningKeyPair::from_pkcs8_der(KeyAlgorithm::EdDsa, der.as_bytes()).unwrap();
        let jwk: Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
        assert_eq!(jwk["x"], "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo");
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn the_es256_kid_is_the_sha256_of_the_canonical_members_in_lexical_order() {
        let key = SigningKeyPair::generate(KeyAlgorithm::Es256).unwrap();
        let jwk: Value = serde_json::from_str(&key.public_jwk().to_json()).unwrap();
        // RFC 7638 §3.2: required members only, sorted, no whitespace.
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        assert_eq!(key.kid(), b64(Sha256::digest(canonical.as_bytes())));
    }

    #[test]
    fn an_hs256_token_keyed_with_the_public_key_is_refused() {
        for alg in KeyAlgorithm::ALL {
            let ring = ring(alg);
            let jwk = ring.current().public_jwk();
            let json: Value = serde_json::to_value(jwk).unwrap();
            let mut raw_public = URL_SAFE_NO_PAD.decode(json["x"].as_str().unwrap()).unwrap();
            if let Some(y) = json["y"].as_str() {
                // The SEC1 uncompressed point, as a confused verifier might hold it.
                let mut point = vec![4u8];
                point.extend(&raw_public);
                point.extend(URL_SAFE_NO_PAD.decode(y).unwrap());
                raw_public = point;
            }
            let candidates = [
                raw_public,
                jwk.to_json().into_bytes(),
                jwk.x.clone().into_bytes(),
            ];
            for hmac_key in candidates {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(jwk.kid().to_owned());
                let token = jsonwebtoken::encode(
                    &header,
                    &claims(60),
                    &EncodingKey::from_secret(&hmac_key),
                )
                .unwrap();
                assert_eq!(
                    ring.verify::<Claims>(&token),
                    Err(VerifyError::Invalid),
                    "{alg}"
                );
            }
        }
    }

    #[test]
    fn alg_none_is_refused_with_or_without_a_signature() {
        for alg in KeyAlgorithm::ALL {
            let ring = ring(alg);
            let kid = ring.current().kid();
            let genuine = ring.sign(&claims(60)).unwrap();
            let signature = genuine.rsplit('.').next().unwrap();
            for header_alg in ["none", "None", "NONE"] {
                let header = serde_json::json!({"alg": header_alg, "typ": "JWT", "kid": kid});
                for sig in ["", signature] {
                    let token = forged(&header, &claims(60), sig);
                    assert_eq!(ring.verify::<Claims>(&token), Err(VerifyError::Invalid));
                }
            }
        }
    }

    #[test]
    fn a_token_claiming_the_other_algorithm_for_a_known_kid_is_refused() {
        let ed = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
        let ec = SigningKeyPair::generate(KeyAlgorithm::Es256).unwrap();
        let ec_jwk = ec.public_jwk().clone();
        let ring = KeyRing::new(ed, [ec_jwk.clone()], &validation()).unwrap();
        // Signed with the Ed25519 key but naming the P-256 key: the P-256 key only
        // accepts ES256, so the EdDSA header is refused before any signature check.
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(ec_jwk.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims(60), &ring.current().encoding).unwrap();
        assert_eq!(ring.verify::<Claims>(&token), Err(VerifyError::Invalid));
        // Claiming ES256 for that kid while carrying an Ed25519 signature fails too.
        let parts: Vec<&str> = token.split('.').collect();
        let es_header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": ec_jwk.kid()});
        let token = forged(&es_header, &claims(60), parts[2]);
        assert_eq!(ring.verify::<Claims>(&token), Err(VerifyError::Invalid));
    }

    #[test]
    fn an_unknown_kid_is_reported_distinctly_and_a_missing_one_is_refused() {
        let ring = ring(KeyAlgorithm::EdDsa);
        let stranger = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
        let token = stranger.sign(&claims(60)).unwrap();
        assert_eq!(
            ring.verify::<Claims>(&token),
            Err(VerifyError::UnknownKid(stranger.kid().to_owned()))
        );
        assert!(!ring.contains(stranger.kid()));

        let no_kid = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims(60),
            &ring.current().encoding,
        )
        .unwrap();
        assert_eq!(ring.verify::<Claims>(&no_kid), Err(VerifyError::MissingKid));

        // A kid that cannot be a thumbprint, or an HMAC token, never asks for a reload.
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("../../etc/passwd".into());
        let odd = jsonwebtoken::encode(&header, &claims(60), &ring.current().encoding).unwrap();
        assert_eq!(ring.verify::<Claims>(&odd), Err(VerifyError::Invalid));
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(stranger.kid().to_owned());
        let hmac =
            jsonwebtoken::encode(&header, &claims(60), &EncodingKey::from_secret(b"k")).unwrap();
        assert_eq!(ring.verify::<Claims>(&hmac), Err(VerifyError::Invalid));
        assert_eq!(
            ring.verify::<Claims>("not.a.jwt"),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn tokens_of_the_previous_key_verify_after_a_rotation_until_it_is_dropped() {
        let old = SigningKeyPair::generate(KeyAlgorithm::Es256).unwrap();
        let old_jwk = old.public_jwk().clone();
        let before = KeyRing::new(old, [], &validation()).unwrap();
        let old_token = before.sign(&claims(60)).unwrap();

        let new = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
        let new_der = new.expose_pkcs8_der().to_vec();
        let after = KeyRing::new(new, [old_jwk.clone()], &validation()).unwrap();
        assert!(after.verify::<Claims>(&old_token).is_ok());
        let new_token = after.sign(&claims(60)).unwrap();
        let new_kid = after.current().kid().to_owned();
        assert_eq!(
            jsonwebtoken::decode_header(&new_token).unwrap().kid,
            Some(new_kid.clone())
        );
        let kids: Vec<String> = after.jwks().keys.iter().map(|k| k.kid.clone()).collect();
        assert_eq!(kids, vec![new_kid, old_jwk.kid().to_owned()]);

        let new = SigningKeyPair::from_pkcs8_der(KeyAlgorithm::EdDsa, &new_der).unwrap();
        let dropped = KeyRing::new(new, [], &validation()).unwrap();
        assert_eq!(
            dropped.verify::<Claims>(&old_token),
            Err(VerifyError::UnknownKid(old_jwk.kid().to_owned()))
        );
        assert!(dropped.verify::<Claims>(&new_token).is_ok());
    }

    #[test]
    fn pkcs8_der_round_trips_to_the_same_key() {
        for alg in KeyAlgorithm::ALL {
            let original = SigningKeyPair::generate(alg).unwrap();
            let reloaded =
                SigningKeyPair::from_pkcs8_der(alg, original.expose_pkcs8_der()).unwrap();
            assert_eq!(reloaded.public_jwk(), original.public_jwk());
            assert_eq!(reloaded.kid(), original.kid());
            // A token signed by the reloaded key verifies against the original's JWK.
            let ring = KeyRing::new(original, [], &validation()).unwrap();
            let token = reloaded.sign(&claims(60)).unwrap();
            assert!(ring.verify::<Claims>(&token).is_ok(), "{alg}");
        }
        let ed = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
        let ec = SigningKeyPair::generate(KeyAlgorithm::Es256).unwrap();
        assert!(
            SigningKeyPair::from_pkcs8_der(KeyAlgorithm::Es256, ed.expose_pkcs8_der()).is_err()
        );
        assert!(
            SigningKeyPair::from_pkcs8_der(KeyAlgorithm::EdDsa, ec.expose_pkcs8_der()).is_err()
        );
        assert!(SigningKeyPair::from_pkcs8_der(KeyAlgorithm::EdDsa, b"not a key").is_err());
        // Two generated keys are different keys.
        let other = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
        assert_ne!(other.kid(), ed.kid());
    }

    #[test]
    fn a_stored_jwk_parses_back_and_a_tampered_one_is_refused() {
        for alg in KeyAlgorithm::ALL {
            let key = SigningKeyPair::generate(alg).unwrap();
            let json = key.public_jwk().to_json();
            assert_eq!(&PublicJwk::parse(&json).unwrap(), key.public_jwk());

            let other = SigningKeyPair::generate(alg).unwrap();
            let mut swapped: Value = serde_json::from_str(&json).unwrap();
            swapped["kid"] = other.kid().into();
            assert!(PublicJwk::parse(&swapped.to_string()).is_err(), "{alg} kid");

            let mut wrong_use: Value = serde_json::from_str(&json).unwrap();
            wrong_use["use"] = "enc".into();
            assert!(
                PublicJwk::parse(&wrong_use.to_string()).is_err(),
                "{alg} use"
            );

            let mut short: Value = serde_json::from_str(&json).unwrap();
            short["x"] = "AAAA".into();
            assert!(PublicJwk::parse(&short.to_string()).is_err(), "{alg} x");
        }
        let ed = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
        let mut as_ec: Value = serde_json::from_str(&ed.public_jwk().to_json()).unwrap();
        as_ec["alg"] = "ES256".into();
        assert!(PublicJwk::parse(&as_ec.to_string()).is_err());
    }

    #[test]
    fn expired_tokens_are_reported_as_expired_and_still_inspectable() {
        let ring = ring(KeyAlgorithm::EdDsa);
        let token = ring.sign(&claims(-60)).unwrap();
        assert_eq!(ring.verify::<Claims>(&token), Err(VerifyError::Expired));
        assert_eq!(
            ring.verify_ignoring_expiry::<Claims>(&token).unwrap().sub,
            "42"
        );
        // Within the leeway it still verifies.
        let token = ring.sign(&claims(-2)).unwrap();
        assert!(ring.verify::<Claims>(&token).is_ok());
    }

    #[test]
    fn a_previous_key_expires_one_ttl_plus_leeway_after_its_rotation() {
        let rotated = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let expiry = previous_key_expiry(rotated, Duration::from_secs(1800));
        assert_eq!((expiry - rotated).num_seconds(), 1800 + 5);
        assert_eq!(
            previous_key_expiry(rotated, Duration::MAX),
            DateTime::<Utc>::MAX_UTC
        );
    }

    #[test]
    fn the_reload_gate_opens_at_most_once_a_second() {
        let gate = ReloadGate::new();
        assert!(gate.try_acquire());
        assert!(!gate.try_acquire());
        assert!(!gate.try_acquire());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(gate.try_acquire());
    }

    #[test]
    fn grace_secrets_are_fresh_256_bit_values() {
        let a = generate_grace_secret();
        let b = generate_grace_secret();
        assert_eq!(a.expose_secret().len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(a.expose_secret()).unwrap().len(), 32);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn names_parse_back_and_hmac_algorithms_are_not_asymmetric() {
        for alg in KeyAlgorithm::ALL {
            assert_eq!(alg.as_str().parse::<KeyAlgorithm>().unwrap(), alg);
            assert_eq!(KeyAlgorithm::try_from(alg.jwt()).unwrap(), alg);
        }
        assert!(matches!(
            KeyAlgorithm::try_from(Algorithm::HS256),
            Err(KeyError::NotAsymmetric(Algorithm::HS256))
        ));
        assert!("RS256".parse::<KeyAlgorithm>().is_err());
        for state in [KeyState::Current, KeyState::Previous, KeyState::Retired] {
            assert_eq!(state.as_str().parse::<KeyState>().unwrap(), state);
        }
        assert!("active".parse::<KeyState>().is_err());
    }

    #[test]
    fn debug_output_shows_the_kid_but_no_key_material() {
        let key = SigningKeyPair::generate(KeyAlgorithm::EdDsa).unwrap();
        let kid = key.kid().to_owned();
        assert_eq!(
            format!("{key:?}"),
            format!("SigningKeyPair {{ alg: EdDsa, kid: {kid:?}, .. }}")
        );
        let ring = KeyRing::new(key, [], &validation()).unwrap();
        assert_eq!(
            format!("{ring:?}"),
            format!(
                "KeyRing {{ current: SigningKeyPair {{ alg: EdDsa, kid: {kid:?}, .. }}, verifies: [{kid:?}] }}"
            )
        );
    }
}
