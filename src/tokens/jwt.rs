//! Access tokens: JWTs with `sub`, `iat`, `exp`, `jti`, `iss`, `amr` and `sid` (the refresh
//! family), signed with HMAC (HS*) or an asymmetric key (EdDSA/ES256, see
//! [`super::signing`]). Validation pins each key's own algorithm, requires every
//! claim, checks the issuer and allows at most [`LEEWAY_SECS`] of clock skew.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use std::collections::HashMap;

use super::keys::SecretKey;
use super::signing::{Jwks, KeyAlgorithm, KeyError, SigningKeyPair};
use crate::domain::{FamilyId, UserId};
use crate::error::{Error, Result};

pub use super::LEEWAY_SECS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub sid: String,
    /// RFC 8176 authentication methods of the session's login: `["pwd"]`, or
    /// `["pwd", "otp"]` after a second factor. Absent from tokens issued before it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The user's roles when the token was issued, sorted, possibly empty (SPEC §15).
    /// Absent from tokens issued before roles existed.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The client a token of the OpenID Connect provider was issued to (SPEC §18),
    /// and the scope granted to it. Absent from the REST API's own tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl AccessClaims {
    pub fn user_id(&self) -> Result<UserId> {
        self.sub
            .parse::<i64>()
            .map(UserId)
            .map_err(|_| Error::InvalidToken("malformed subject"))
    }

    pub fn family_id(&self) -> Result<FamilyId> {
        Uuid::parse_str(&self.sid)
            .map(FamilyId)
            .map_err(|_| Error::InvalidToken("malformed session id"))
    }

    pub fn issued_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.iat, 0)
    }

    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.exp, 0)
    }
}

/// Why a JWT was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtFailure {
    Expired,
    Invalid,
    /// Signed with a `kid` this set does not hold (yet): the caller may reload the keys
    /// from the database and try once more (see [`super::signing::ReloadGate`]).
    UnknownKid(String),
}

/// A key as the `signing_keys` table keeps it, borrowed for [`JwtKeys::from_stored`].
pub struct StoredKey<'a> {
    pub kid: &'a str,
    pub alg: Algorithm,
    /// PKCS#8 DER (EdDSA/ES256) or the raw HMAC secret.
    pub private_key: &'a [u8],
    /// Whether this key signs (the rest only verify).
    pub current: bool,
}

/// The key that signs new tokens.
enum Signer {
    /// An HMAC key; `kid` is `None` only for a key given by `SECRET_KEY`.
    Hmac {
        kid: Option<String>,
        alg: Algorithm,
        encoding: EncodingKey,
    },
    Pair(Box<SigningKeyPair>),
}

struct Verifier {
    /// The stored key's `kid` (`None` only for a `SECRET_KEY` key): what the token's
    /// key is checked by in `/me`'s query, also for a kid-less token of the legacy key.
    kid: Option<String>,
    decoding: DecodingKey,
    validation: Validation,
}

/// The keys this process signs and verifies access tokens with: either the one HMAC
/// key from `SECRET_KEY` (tokens without `kid`, as before issue 13), or the set loaded
/// from the `signing_keys` table (the current key signs, and its tokens carry `kid`;
/// previous keys verify). Immutable: a reload builds a new one.
pub struct JwtKeys {
    signer: Option<Signer>,
    /// Tokens whose signature already verified, by the SHA-256 of the token: an
    /// Ed25519 or P-256 check costs as much as the rest of `/me`, and a client sends
    /// the same access token again and again. Only the signature, issuer and claims are
    /// remembered: expiry is checked again on every use, and revocation, disabled users
    /// and retired keys are read from the database by the caller every time. Bounded
    /// (cleared when full) and dropped with this set on every key reload.
    verified: std::sync::RwLock<VerifiedTokens>,
    /// By `kid`; the entry under `None` verifies tokens without a `kid`.
    verifiers: HashMap<Option<String>, Verifier>,
    jwks: Jwks,
    issuer: String,
    ttl: Duration,
}

fn validation(algorithm: Algorithm, issuer: &str) -> Validation {
    // Pinned to the key's own algorithm: no `none`, no switching (alg confusion).
    let mut validation = Validation::new(algorithm);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.set_issuer(&[issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    validation
}

/// A verified token's claims and `kid`, by the SHA-256 of the token.
type VerifiedTokens = HashMap<[u8; 32], (AccessClaims, Option<String>)>;

/// At most this many verified tokens are remembered per key set (about 3 MB).
const VERIFIED_CACHE_MAX: usize = 10_000;

/// The `kid` under which the HMAC key that `settings.jwt_secret_key` held before issue
/// 13 is imported: tokens it signed carry no `kid`, so kid-less tokens verify with it.
pub const LEGACY_HMAC_KID: &str = "legacy-jwt-secret-key";

impl JwtKeys {
    /// The static set of a key given by `SECRET_KEY`: signs without `kid`.
    pub fn new(key: &SecretKey, algorithm: Algorithm, issuer: &str, ttl: Duration) -> Self {
        let mut verifiers = HashMap::new();
        verifiers.insert(
            None,
            Verifier {
                kid: None,
                decoding: DecodingKey::from_secret(key.expose()),
                validation: validation(algorithm, issuer),
            },
        );
        JwtKeys {
            verified: Default::default(),
            signer: Some(Signer::Hmac {
                kid: None,
                alg: algorithm,
                encoding: EncodingKey::from_secret(key.expose()),
            }),
            verifiers,
            jwks: Jwks { keys: Vec::new() },
            issuer: issuer.to_owned(),
            ttl,
        }
    }

    /// The set loaded from the database. Without a current key (a read-only command on
    /// a database no server has started on) it verifies but cannot sign.
    pub fn from_stored<'a>(
        keys: impl IntoIterator<Item = StoredKey<'a>>,
        issuer: &str,
        ttl: Duration,
    ) -> Result<Self> {
        let mut signer = None;
        let mut verifiers = HashMap::new();
        let mut public = Vec::new();
        for key in keys {
            let pinned = validation(key.alg, issuer);
            if let Ok(asymmetric) = KeyAlgorithm::try_from(key.alg) {
                let pair = SigningKeyPair::from_pkcs8_der(asymmetric, key.private_key)
                    .map_err(|e| key_error(e, key.kid))?;
                let decoding = pair
                    .public_jwk()
                    .decoding_key()
                    .map_err(|e| key_error(e, key.kid))?;
                public.push(pair.public_jwk().clone());
                // The kid is recomputed from the key, so a row cannot claim another's.
                verifiers.insert(
                    Some(pair.kid().to_owned()),
                    Verifier {
                        kid: Some(pair.kid().to_owned()),
                        decoding,
                        validation: pinned,
                    },
                );
                if key.current {
                    signer = Some(Signer::Pair(Box::new(pair)));
                }
            } else {
                let kid = key.kid.to_owned();
                if kid == LEGACY_HMAC_KID {
                    // Kid-less tokens are this key's: they verify with it, and count
                    // as its tokens (a retirement refuses them at once, SPEC §9).
                    verifiers.insert(
                        None,
                        Verifier {
                            kid: Some(kid.clone()),
                            decoding: DecodingKey::from_secret(key.private_key),
                            validation: pinned.clone(),
                        },
                    );
                }
                verifiers.insert(
                    Some(kid.clone()),
                    Verifier {
                        kid: Some(kid.clone()),
                        decoding: DecodingKey::from_secret(key.private_key),
                        validation: pinned,
                    },
                );
                if key.current {
                    signer = Some(Signer::Hmac {
                        kid: Some(kid),
                        alg: key.alg,
                        encoding: EncodingKey::from_secret(key.private_key),
                    });
                }
            }
        }
        // The current key first, then the others by kid: a stable document.
        let current_kid = match &signer {
            Some(Signer::Pair(pair)) => Some(pair.kid().to_owned()),
            _ => None,
        };
        public.sort_by_key(|jwk| {
            (
                Some(jwk.kid()) != current_kid.as_deref(),
                jwk.kid().to_owned(),
            )
        });
        Ok(JwtKeys {
            verified: Default::default(),
            signer,
            verifiers,
            jwks: Jwks { keys: public },
            issuer: issuer.to_owned(),
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The public keys of every asymmetric key that verifies (never an HMAC key).
    pub fn jwks(&self) -> &Jwks {
        &self.jwks
    }

    /// The `kid` new tokens carry (`None` for a `SECRET_KEY` key or no key).
    pub fn current_kid(&self) -> Option<&str> {
        match &self.signer {
            Some(Signer::Hmac { kid, .. }) => kid.as_deref(),
            Some(Signer::Pair(pair)) => Some(pair.kid()),
            None => None,
        }
    }

    /// Whether a token with this `kid` (or none) would find its key here.
    pub fn holds(&self, kid: Option<&str>) -> bool {
        self.verifiers.contains_key(&kid.map(str::to_owned))
    }

    /// Signs a new access token for `user` in session `family`, a password login's.
    pub fn issue(&self, user: UserId, family: FamilyId, now: DateTime<Utc>) -> Result<String> {
        self.issue_with_amr(user, family, &["pwd"], now)
    }

    /// Signs a new access token whose `amr` claim is `amr` (RFC 8176).
    pub fn issue_with_amr(
        &self,
        user: UserId,
        family: FamilyId,
        amr: &[&str],
        now: DateTime<Utc>,
    ) -> Result<String> {
        self.issue_with_roles(user, family, amr, &[], now)
    }

    /// Signs a new access token with its `amr` (RFC 8176) and `roles` (sorted here).
    pub fn issue_with_roles(
        &self,
        user: UserId,
        family: FamilyId,
        amr: &[&str],
        roles: &[String],
        now: DateTime<Utc>,
    ) -> Result<String> {
        self.issue_for(user, family, amr, roles, None, now)
    }

    /// Signs a new access token, for a client of the OpenID Connect provider when
    /// `client` is `(client_id, scope)`: it then carries `aud` and `scope`.
    pub fn issue_for(
        &self,
        user: UserId,
        family: FamilyId,
        amr: &[&str],
        roles: &[String],
        client: Option<(&str, &str)>,
        now: DateTime<Utc>,
    ) -> Result<String> {
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        let iat = now.timestamp();
        let claims = AccessClaims {
            sub: user.0.to_string(),
            iat,
            exp: iat.saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: Uuid::new_v4().to_string(),
            iss: self.issuer.clone(),
            sid: family.0.to_string(),
            amr: amr.iter().map(|m| (*m).to_owned()).collect(),
            roles,
            aud: client.map(|(id, _)| id.to_owned()),
            scope: client.map(|(_, scope)| scope.to_owned()),
        };
        let signed = match &self.signer {
            Some(Signer::Hmac { kid, alg, encoding }) => {
                let mut header = Header::new(*alg);
                header.kid = kid.clone();
                jsonwebtoken::encode(&header, &claims, encoding).map_err(anyhow::Error::new)
            }
            Some(Signer::Pair(pair)) => pair.sign(&claims).map_err(anyhow::Error::new),
            None => Err(anyhow::anyhow!(
                "no signing key in the database yet; start `authctl serve` or run `authctl migrate` once"
            )),
        };
        signed.map_err(|e| Error::Internal(e.context("signing an access token")))
    }

    /// Verifies signature, algorithm (the key's own), issuer and expiry. Returns the
    /// claims and the `kid` of the stored key that verified it: the token's own `kid`,
    /// or for a kid-less token [`LEGACY_HMAC_KID`] when the imported legacy key
    /// verified it (`None` only for a `SECRET_KEY` key, which has no row to retire).
    pub fn verify(&self, token: &str) -> Result<(AccessClaims, Option<String>), JwtFailure> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let cached = self
            .verified
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&digest)
            .cloned();
        if let Some((claims, kid)) = cached {
            let now = Utc::now().timestamp();
            if claims.exp.saturating_add(LEEWAY_SECS as i64) < now {
                return Err(JwtFailure::Expired);
            }
            return Ok((claims, kid));
        }
        let (verifier, kid) = self.verifier_for(token)?;
        match jsonwebtoken::decode::<AccessClaims>(token, &verifier.decoding, &verifier.validation)
        {
            Ok(data) => {
                let mut verified = self
                    .verified
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if verified.len() >= VERIFIED_CACHE_MAX {
                    verified.clear();
                }
                verified.insert(digest, (data.claims.clone(), kid.clone()));
                Ok((data.claims, kid))
            }
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(JwtFailure::Expired),
            Err(_) => Err(JwtFailure::Invalid),
        }
    }

    /// Decodes the claims of a token whose signature is valid but that may have expired
    /// (for `token inspect`, which shows expired tokens' claims).
    pub fn verify_ignoring_expiry(&self, token: &str) -> Result<AccessClaims, JwtFailure> {
        let (verifier, _) = self.verifier_for(token)?;
        let mut validation = verifier.validation.clone();
        validation.validate_exp = false;
        jsonwebtoken::decode::<AccessClaims>(token, &verifier.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|_| JwtFailure::Invalid)
    }

    fn verifier_for(&self, token: &str) -> Result<(&Verifier, Option<String>), JwtFailure> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| JwtFailure::Invalid)?;
        match self.verifiers.get(&header.kid) {
            Some(v) => Ok((v, v.kid.clone())),
            // Bounded, so a forged header cannot make every request reload the keys
            // with a different garbage kid beyond what the reload gate allows anyway.
            None => match header.kid {
                Some(kid) if kid.len() <= 64 => Err(JwtFailure::UnknownKid(kid)),
                _ => Err(JwtFailure::Invalid),
            },
        }
    }
}

fn key_error(e: KeyError, kid: &str) -> Error {
    Error::Internal(anyhow::Error::new(e).context(format!("loading signing key {kid}")))
}

/// Whether a string has the shape of a JWT (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests;
