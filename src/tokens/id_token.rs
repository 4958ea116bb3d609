//! ID-token keys (SPEC §18): RS256 (the default, required by OIDC Discovery), EdDSA and
//! ES256, one current key per algorithm, kept in `id_token_keys` as PKCS#8 DER.
//!
//! - **RS256** keys are 2048-bit (or larger, when imported) RSA keys. They are
//!   generated with the `rsa` crate and *signed with ring*: the `rsa` crate's
//!   private-key operations have an open timing advisory (RUSTSEC-2023-0071, the Marvin
//!   attack), generation is the one thing it does here. ring refuses keys under 2048
//!   bits.
//! - **EdDSA / ES256** reuse [`SigningKeyPair`] (SPEC §9's keys).
//! - `kid` is the RFC 7638 thumbprint of the public JWK, as for access-token keys.
//!
//! [`IdKeySet`] is immutable; the service swaps in a new one on reload.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::signing::{KeyAlgorithm, KeyError, SigningKeyPair};

/// The algorithms an ID token may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum IdAlg {
    #[serde(rename = "RS256")]
    Rs256,
    #[serde(rename = "EdDSA")]
    EdDsa,
    #[serde(rename = "ES256")]
    Es256,
}

impl IdAlg {
    pub const ALL: [IdAlg; 3] = [IdAlg::Rs256, IdAlg::EdDsa, IdAlg::Es256];

    pub fn as_str(self) -> &'static str {
        match self {
            IdAlg::Rs256 => "RS256",
            IdAlg::EdDsa => "EdDSA",
            IdAlg::Es256 => "ES256",
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            IdAlg::Rs256 => Algorithm::RS256,
            IdAlg::EdDsa => Algorithm::EdDSA,
            IdAlg::Es256 => Algorithm::ES256,
        }
    }

    fn pair(self) -> Option<KeyAlgorithm> {
        match self {
            IdAlg::Rs256 => None,
            IdAlg::EdDsa => Some(KeyAlgorithm::EdDsa),
            IdAlg::Es256 => Some(KeyAlgorithm::Es256),
        }
    }

    /// The hash of `at_hash` (OIDC Core §3.1.3.6): the one of the JWS algorithm;
    /// Ed25519 signs with SHA-512.
    pub fn at_hash(self, access_token: &str) -> String {
        let digest: Vec<u8> = match self {
            IdAlg::Rs256 | IdAlg::Es256 => sha2::Sha256::digest(access_token.as_bytes()).to_vec(),
            IdAlg::EdDsa => sha2::Sha512::digest(access_token.as_bytes()).to_vec(),
        };
        URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
    }
}

impl fmt::Display for IdAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdAlg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        IdAlg::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                format!("unknown ID-token algorithm {s:?} (expected RS256, EdDSA or ES256)")
            })
    }
}

/// RSA keys made here: 2048 bits, e = 65537.
const RSA_BITS: usize = 2048;

/// A fresh private key of `alg`, as PKCS#8 DER.
pub fn generate(alg: IdAlg) -> Result<Vec<u8>, KeyError> {
    match alg.pair() {
        Some(pair) => Ok(SigningKeyPair::generate(pair)?.expose_pkcs8_der().to_vec()),
        None => {
            use rsa::pkcs8::EncodePrivateKey as _;
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, RSA_BITS)
                .map_err(|e| rsa_error(e.to_string()))?;
            let der = key.to_pkcs8_der().map_err(|e| rsa_error(e.to_string()))?;
            Ok(der.as_bytes().to_vec())
        }
    }
}

fn rsa_error(reason: String) -> KeyError {
    KeyError::InvalidJwk(format!("RSA key: {reason}"))
}

enum Signer {
    Rsa(Box<ring::signature::RsaKeyPair>),
    Pair(Box<SigningKeyPair>),
}

/// One ID-token key: what signs, what verifies, what the JWKS shows.
pub struct IdKey {
    alg: IdAlg,
    kid: String,
    signer: Signer,
    jwk: Value,
    decoding: DecodingKey,
}

impl fmt::Debug for IdKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl IdKey {
    /// Loads a stored key; the public JWK and `kid` are derived from the private key.
    pub fn from_pkcs8_der(alg: IdAlg, der: &[u8]) -> Result<Self, KeyError> {
        if let Some(pair_alg) = alg.pair() {
            let pair = SigningKeyPair::from_pkcs8_der(pair_alg, der)?;
            let jwk = serde_json::to_value(pair.public_jwk())
                .map_err(|e| KeyError::InvalidJwk(e.to_string()))?;
            let decoding = pair.public_jwk().decoding_key()?;
            return Ok(IdKey {
                alg,
                kid: pair.kid().to_owned(),
                signer: Signer::Pair(Box::new(pair)),
                jwk,
                decoding,
            });
        }
        let pair = ring::signature::RsaKeyPair::from_pkcs8(der)
            .map_err(|e| rsa_error(format!("ring refused it: {e}")))?;
        let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public().into();
        let (n, e) = (
            URL_SAFE_NO_PAD.encode(&public.n),
            URL_SAFE_NO_PAD.encode(&public.e),
        );
        let thumb_src: Jwk = serde_json::from_value(json!({"kty": "RSA", "n": n, "e": e}))
            .map_err(|e| rsa_error(e.to_string()))?;
        let kid = thumb_src
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| rsa_error(e.to_string()))?;
        let decoding =
            DecodingKey::from_rsa_components(&n, &e).map_err(|e| rsa_error(e.to_string()))?;
        let jwk = json!({"kty": "RSA", "n": n, "e": e, "kid": kid, "alg": "RS256", "use": "sig"});
        Ok(IdKey {
            alg,
            kid,
            signer: Signer::Rsa(Box::new(pair)),
            jwk,
            decoding,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> IdAlg {
        self.alg
    }

    /// Signs `claims` as a JWT with `alg`, `typ` and `kid` in the header.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        match &self.signer {
            Signer::Pair(pair) => pair.sign(claims),
            Signer::Rsa(pair) => {
                let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
                let part = |bytes: serde_json::Result<Vec<u8>>| {
                    bytes
                        .map(|b| URL_SAFE_NO_PAD.encode(b))
                        .map_err(|e| rsa_error(e.to_string()))
                };
                let input = format!(
                    "{}.{}",
                    part(serde_json::to_vec(&header))?,
                    part(serde_json::to_vec(claims))?
                );
                let mut signature = vec![0u8; pair.public().modulus_len()];
                pair.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    input.as_bytes(),
                    &mut signature,
                )
                .map_err(|_| rsa_error("signing failed".into()))?;
                Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
            }
        }
    }
}

/// The ID-token keys loaded now: the current one per algorithm signs, every loaded
/// one verifies (an `id_token_hint`) and is published.
#[derive(Debug, Default)]
pub struct IdKeySet {
    current: HashMap<IdAlg, usize>,
    keys: Vec<IdKey>,
}

impl IdKeySet {
    /// `keys`: (key, is current).
    pub fn new(keys: Vec<(IdKey, bool)>) -> Self {
        let mut set = IdKeySet::default();
        for (key, current) in keys {
            if current {
                set.current.insert(key.alg, set.keys.len());
            }
            set.keys.push(key);
        }
        set
    }

    pub fn current(&self, alg: IdAlg) -> Option<&IdKey> {
        self.current.get(&alg).and_then(|&i| self.keys.get(i))
    }

    /// The public JWKs, current keys first.
    pub fn jwks(&self) -> Vec<Value> {
        let mut keys: Vec<&IdKey> = self.keys.iter().collect();
        keys.sort_by_key(|k| {
            (
                self.current(k.alg).is_none_or(|c| c.kid != k.kid),
                k.kid.clone(),
            )
        });
        keys.into_iter().map(|k| k.jwk.clone()).collect()
    }

    /// The claims of an ID token signed by one of these keys and issued by `issuer`,
    /// expired or not (an `id_token_hint`, OIDC RP-Initiated Logout §2).
    pub fn verify_hint(&self, token: &str, issuer: &str) -> Option<Value> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid?;
        let key = self.keys.iter().find(|k| k.kid == kid)?;
        let mut validation = Validation::new(key.alg.jwt());
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
            .ok()
            .map(|d| d.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_algorithm_signs_what_its_own_jwk_verifies() {
        for alg in IdAlg::ALL {
            let der = generate(alg).expect("generate");
            let key = IdKey::from_pkcs8_der(alg, &der).expect("load");
            let again = IdKey::from_pkcs8_der(alg, &der).expect("load again");
            assert_eq!(key.kid(), again.kid(), "{alg}: the kid is the key's own");
            let set = IdKeySet::new(vec![(key, true)]);
            let token = set
                .current(alg)
                .expect("current")
                .sign(&json!({"iss": "https://id.example", "sub": "1", "aud": "c"}))
                .expect("sign");
            let claims = set
                .verify_hint(&token, "https://id.example")
                .expect("verifies");
            assert_eq!(claims["sub"], "1");
            assert!(set.verify_hint(&token, "https://other.example").is_none());
            let jwks = set.jwks();
            assert_eq!(jwks[0]["alg"], alg.as_str());
            assert_eq!(jwks[0]["use"], "sig");
            // A JWK-only verifier (what a client holds) accepts it.
            let jwk: Jwk = serde_json::from_value(jwks[0].clone()).expect("jwk");
            let decoding = DecodingKey::from_jwk(&jwk).expect("decoding key");
            let mut v = Validation::new(alg.jwt());
            v.validate_aud = false;
            v.set_required_spec_claims(&["sub"]);
            jsonwebtoken::decode::<Value>(&token, &decoding, &v).expect("jwk verifies");
        }
    }

    #[test]
    fn rs256_keys_are_at_least_2048_bits() {
        let der = generate(IdAlg::Rs256).expect("generate");
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("ring loads it");
        assert!(pair.public().modulus_len() * 8 >= 2048);
    }

    #[test]
    fn a_token_signed_by_another_key_is_no_hint() {
        let mine =
            IdKey::from_pkcs8_der(IdAlg::EdDsa, &generate(IdAlg::EdDsa).expect("g")).expect("load");
        let other =
            IdKey::from_pkcs8_der(IdAlg::EdDsa, &generate(IdAlg::EdDsa).expect("g")).expect("load");
        let token = other
            .sign(&json!({"iss": "i", "sub": "1", "aud": "c"}))
            .expect("sign");
        assert!(
            IdKeySet::new(vec![(mine, true)])
                .verify_hint(&token, "i")
                .is_none()
        );
    }

    #[test]
    fn at_hash_is_the_left_half_of_the_algorithms_hash() {
        // OIDC Core's example: the SHA-256 at_hash of this access token.
        assert_eq!(
            IdAlg::Rs256.at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(IdAlg::EdDsa.at_hash("x").len(), 43);
    }
}
