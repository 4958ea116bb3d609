//! Access tokens: HMAC-signed JWTs with `sub`, `iat`, `exp`, `jti`, `iss` and `sid`
//! (the refresh family). Validation pins the configured algorithm, requires every
//! claim, checks the issuer and allows at most [`LEEWAY_SECS`] of clock skew.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::SecretKey;
use crate::domain::{FamilyId, UserId};
use crate::error::{Error, Result};

pub const LEEWAY_SECS: u64 = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
    pub iss: String,
    pub sid: String,
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

/// Why a JWT was refused, for `token inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtFailure {
    Expired,
    Invalid,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
    issuer: String,
    ttl: Duration,
}

impl JwtKeys {
    pub fn new(key: &SecretKey, algorithm: Algorithm, issuer: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.set_issuer(&[issuer]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        JwtKeys {
            encoding: EncodingKey::from_secret(key.expose()),
            decoding: DecodingKey::from_secret(key.expose()),
            validation,
            algorithm,
            issuer: issuer.to_owned(),
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs a new access token for `user` in session `family`.
    pub fn issue(&self, user: UserId, family: FamilyId, now: DateTime<Utc>) -> Result<String> {
        let iat = now.timestamp();
        let claims = AccessClaims {
            sub: user.0.to_string(),
            iat,
            exp: iat.saturating_add(i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX)),
            jti: Uuid::new_v4().to_string(),
            iss: self.issuer.clone(),
            sid: family.0.to_string(),
        };
        jsonwebtoken::encode(&Header::new(self.algorithm), &claims, &self.encoding)
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("signing an access token")))
    }

    /// Verifies signature, algorithm, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<AccessClaims, JwtFailure> {
        match jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation) {
            Ok(data) => Ok(data.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(JwtFailure::Expired),
            Err(_) => Err(JwtFailure::Invalid),
        }
    }

    /// Decodes the claims of a token whose signature is valid but that may have expired
    /// (for `token inspect`, which shows expired tokens' claims).
    pub fn verify_ignoring_expiry(&self, token: &str) -> Result<AccessClaims, JwtFailure> {
        let mut validation = self.validation.clone();
        validation.validate_exp = false;
        jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &validation)
            .map(|d| d.claims)
            .map_err(|_| JwtFailure::Invalid)
    }
}

/// Whether a string has the shape of a JWT (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn keys() -> JwtKeys {
        let key = SecretKey::parse("0123456789abcdef0123456789abcdef-test").unwrap();
        JwtKeys::new(&key, Algorithm::HS256, "authctl", Duration::from_secs(60))
    }

    #[test]
    fn issued_tokens_verify_and_carry_every_claim() {
        let k = keys();
        let fam = FamilyId::new();
        let t = k.issue(UserId(7), fam, Utc::now()).unwrap();
        let c = k.verify(&t).unwrap();
        assert_eq!(c.user_id().unwrap(), UserId(7));
        assert_eq!(c.family_id().unwrap(), fam);
        assert_eq!(c.iss, "authctl");
        assert_eq!(c.exp - c.iat, 60);
        assert!(!c.jti.is_empty());
    }

    #[test]
    fn expired_tokens_are_refused_beyond_the_leeway() {
        let k = keys();
        let t = k
            .issue(
                UserId(1),
                FamilyId::new(),
                Utc::now() - chrono::Duration::seconds(70),
            )
            .unwrap();
        assert_eq!(k.verify(&t), Err(JwtFailure::Expired));
        assert!(k.verify_ignoring_expiry(&t).is_ok());
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused() {
        let k = keys();
        let t = k.issue(UserId(1), FamilyId::new(), Utc::now()).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none_header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
        assert!(k.verify(&format!("{none_header}.{}.", parts[1])).is_err());
        let other = JwtKeys::new(
            &SecretKey::parse("0123456789abcdef0123456789abcdef-test").unwrap(),
            Algorithm::HS512,
            "authctl",
            Duration::from_secs(60),
        );
        let t512 = other.issue(UserId(1), FamilyId::new(), Utc::now()).unwrap();
        assert_eq!(k.verify(&t512), Err(JwtFailure::Invalid));
    }

    #[test]
    fn tokens_from_another_issuer_or_key_are_refused() {
        let k = keys();
        let key = SecretKey::parse("0123456789abcdef0123456789abcdef-test").unwrap();
        let other_iss = JwtKeys::new(
            &key,
            Algorithm::HS256,
            "someone-else",
            Duration::from_secs(60),
        );
        let t = other_iss
            .issue(UserId(1), FamilyId::new(), Utc::now())
            .unwrap();
        assert_eq!(k.verify(&t), Err(JwtFailure::Invalid));
        let other_key = JwtKeys::new(
            &SecretKey::parse("ffffffffffffffffffffffffffffffff-other").unwrap(),
            Algorithm::HS256,
            "authctl",
            Duration::from_secs(60),
        );
        let t = other_key
            .issue(UserId(1), FamilyId::new(), Utc::now())
            .unwrap();
        assert_eq!(k.verify(&t), Err(JwtFailure::Invalid));
    }
}
