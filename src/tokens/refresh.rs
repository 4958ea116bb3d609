//! Opaque refresh tokens: 256 random bits as unpadded base64url (43 characters). Only
//! their SHA-256 digest is stored. A rotation's successor is derived from its parent
//! with HMAC-SHA256 under the server key, so a retried rotation (grace mode) can hand
//! out the same successor without storing it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::keys::SecretKey;

pub const TOKEN_LEN: usize = 43;

/// A refresh token in plaintext, as handed to a client once. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

/// The stored form of a refresh token.
pub type TokenDigest = [u8; 32];

impl RefreshToken {
    /// A fresh token from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::fill(&mut bytes);
        RefreshToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts only the exact shape authctl issues; anything else cannot be a token.
    pub fn parse(raw: &str) -> Option<Self> {
        if raw.len() != TOKEN_LEN {
            return None;
        }
        match URL_SAFE_NO_PAD.decode(raw) {
            Ok(bytes) if bytes.len() == 32 => Some(RefreshToken(raw.to_owned())),
            _ => None,
        }
    }

    pub fn digest(&self) -> TokenDigest {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The deterministic successor of this token under `key`.
    pub fn successor(&self, key: &SecretKey) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(b"authctl refresh successor v1\0");
        mac.update(self.0.as_bytes());
        RefreshToken(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_43_base64url_characters_and_unique() {
        let a = RefreshToken::generate();
        let b = RefreshToken::generate();
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
        assert_eq!(RefreshToken::parse(a.expose()), Some(a));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        for bad in ["", "short", &"a".repeat(44), &"!".repeat(43)] {
            assert!(RefreshToken::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn successors_are_deterministic_per_key_and_valid_tokens() {
        let k1 = SecretKey::parse("0123456789abcdef0123456789abcdef-one").unwrap();
        let k2 = SecretKey::parse("0123456789abcdef0123456789abcdef-two").unwrap();
        let t = RefreshToken::generate();
        assert_eq!(t.successor(&k1), t.successor(&k1));
        assert_ne!(t.successor(&k1), t.successor(&k2));
        assert_ne!(t.successor(&k1), t);
        assert!(RefreshToken::parse(t.successor(&k1).expose()).is_some());
    }

    #[test]
    fn the_digest_is_sha256_of_the_token_text() {
        let t = RefreshToken::parse("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(
            t.digest(),
            <[u8; 32]>::from(Sha256::digest(t.expose().as_bytes()))
        );
    }
}
