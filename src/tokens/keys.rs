//! HMAC secrets: [`SecretKey`], the key `SECRET_KEY` gives (and the form generated HMAC
//! keys and the grace secret take). Asymmetric keys are in [`super::signing`].

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// Known placeholder keys from tutorials and `.env.example` files; refused even when
/// long enough.
const PLACEHOLDER_KEYS: &[&str] = &[
    "your-secret-key-change-in-production",
    "your-secret-key-here-change-in-production",
    "change-this-secret-key-in-production",
    "changeme-changeme-changeme-changeme",
    "secret-key-for-development-only-change-me",
    "insecure-secret-key-change-in-production",
];

/// An HMAC signing key of at least 256 bits that is not a known placeholder.
#[derive(Clone)]
pub struct SecretKey(SecretString);

impl SecretKey {
    pub const MIN_BYTES: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, String> {
        if PLACEHOLDER_KEYS
            .iter()
            .any(|p| p.eq_ignore_ascii_case(raw.trim()))
        {
            return Err(
                "is a well-known placeholder; generate a real key, e.g. `openssl rand -base64 48`"
                    .into(),
            );
        }
        if raw.len() < Self::MIN_BYTES {
            return Err(format!(
                "is {} bytes; an HMAC key must be at least {} bytes (256 bits)",
                raw.len(),
                Self::MIN_BYTES
            ));
        }
        let first = raw.as_bytes()[0];
        if raw.bytes().all(|b| b == first) {
            return Err("is one repeated character; generate a real key".into());
        }
        Ok(SecretKey(SecretString::from(raw)))
    }

    /// A fresh random key: 48 random bytes as unpadded base64url (64 characters).
    pub fn generate() -> Self {
        use base64::Engine;
        let mut bytes = [0u8; 48];
        rand::fill(&mut bytes);
        SecretKey(SecretString::from(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        ))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret().as_bytes()
    }

    pub fn expose_str(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([REDACTED])")
    }
}
