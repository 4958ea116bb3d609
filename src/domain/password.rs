//! Plaintext passwords on their way to bcrypt: bounded, and never shown by `Debug`.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A plaintext password: at least 8 characters, at most 72 bytes (bcrypt's limit,
/// never silently truncated), no NUL byte. Its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_BYTES: usize = 72;

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.contains('\0') {
            return Err("must not contain a NUL byte".into());
        }
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(format!("must be at least {} characters", Self::MIN_CHARS));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(format!(
                "must be at most {} bytes (bcrypt's limit)",
                Self::MAX_BYTES
            ));
        }
        Ok(Password(SecretString::from(raw)))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_between_8_characters_and_72_bytes_parse() {
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(72)).is_ok());
        // 24 three-byte characters are 72 bytes.
        assert!(Password::parse(&"€".repeat(24)).is_ok());
    }

    #[test]
    fn passwords_too_short_over_72_bytes_or_with_nul_are_rejected() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse(&"x".repeat(73)).is_err());
        assert!(Password::parse(&"€".repeat(25)).is_err());
        assert!(Password::parse("12345678\0").is_err());
    }

    #[test]
    fn password_debug_never_shows_the_secret() {
        let p = Password::parse("hunter2hunter2").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
