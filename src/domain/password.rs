//! Plaintext passwords on their way to the hasher: bounded, and never shown by
//! `Debug`; and the policy a new password must meet (SPEC §16, NIST SP 800-63B-4).

use std::collections::HashSet;
use std::fmt;
use std::sync::LazyLock;

use secrecy::{ExposeSecret, SecretString};

/// A plaintext password: at least 8 characters, at most [`Password::MAX_BYTES`]
/// (Argon2id's limit), no NUL byte. Its `Debug` never shows the secret.
///
/// The configured algorithm's own limit (72 bytes for bcrypt) is the [`Policy`]'s
/// check, made where a password is set: longer is a 422, never silent truncation.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub const MIN_CHARS: usize = 8;
    /// The longest password any algorithm takes (Argon2id).
    pub const MAX_BYTES: usize = crate::hashing::format::ARGON2_MAX_BYTES;

    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.contains('\0') {
            return Err("must not contain a NUL byte".into());
        }
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(format!("must be at least {} characters", Self::MIN_CHARS));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(format!("must be at most {} bytes", Self::MAX_BYTES));
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

/// zxcvbn's 30,000 most common passwords (MIT; `assets/common-passwords.NOTICE`).
const COMMON_LIST: &str = include_str!("../../assets/common-passwords.txt");

/// The embedded list as a set, built once: O(1) lookups of lowercased passwords.
static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_LIST.lines().filter(|l| !l.is_empty()).collect());

/// What a new password must meet: a minimum length in code points, the algorithm's
/// maximum in bytes, not a common password (the embedded list or the operator's),
/// not the account's username, email or email local part. No composition rules.
#[derive(Debug, Clone)]
pub struct Policy {
    min_chars: usize,
    max_bytes: usize,
    /// `auth.password_blocklist_file`, lowercased.
    extra: std::sync::Arc<HashSet<String>>,
}

impl Policy {
    pub fn new(min_chars: usize, max_bytes: usize) -> Self {
        Policy {
            min_chars: min_chars.max(Password::MIN_CHARS),
            max_bytes: max_bytes.min(Password::MAX_BYTES),
            extra: std::sync::Arc::new(HashSet::new()),
        }
    }

    /// Adds the operator's list: one password a line; blank lines are ignored.
    pub fn with_blocklist(mut self, text: &str) -> Self {
        let extra = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
            .map(str::to_lowercase)
            .collect();
        self.extra = std::sync::Arc::new(extra);
        self
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Whether `password` may be set on the account of `username` and `email`; the
    /// reason otherwise (for the 422 or exit 2 naming `password`).
    pub fn check(&self, password: &Password, username: &str, email: &str) -> Result<(), String> {
        let raw = password.expose();
        if raw.chars().count() < self.min_chars {
            return Err(format!("must be at least {} characters", self.min_chars));
        }
        if raw.len() > self.max_bytes {
            return Err(format!(
                "must be at most {} bytes (the password hash's limit)",
                self.max_bytes
            ));
        }
        let lower = raw.to_lowercase();
        if COMMON.contains(lower.as_str()) || self.extra.contains(&lower) {
            return Err("is too common".into());
        }
        let username = username.to_lowercase();
        let email = email.to_lowercase();
        let local = email.rsplit_once('@').map_or(email.as_str(), |(l, _)| l);
        if !username.is_empty() && lower.contains(&username) {
            return Err("contains the username".into());
        }
        if !email.is_empty() && lower.contains(&email) {
            return Err("contains the email address".into());
        }
        if local.chars().count() >= 3 && lower.contains(local) {
            return Err("contains the email address's local part".into());
        }
        Ok(())
    }
}

/// How many entries the embedded list has (README states at least 10,000).
pub fn common_list_len() -> usize {
    COMMON.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_between_8_characters_and_256_bytes_parse() {
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"x".repeat(256)).is_ok());
        // 24 three-byte characters are 72 bytes.
        assert!(Password::parse(&"€".repeat(24)).is_ok());
    }

    #[test]
    fn passwords_too_short_over_256_bytes_or_with_nul_are_rejected() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse(&"x".repeat(257)).is_err());
        assert!(Password::parse("12345678\0").is_err());
    }

    #[test]
    fn password_debug_never_shows_the_secret() {
        let p = Password::parse("hunter2hunter2").unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    fn check(policy: &Policy, raw: &str) -> Result<(), String> {
        policy.check(
            &Password::parse(raw).unwrap(),
            "alice",
            "alice.w@example.com",
        )
    }

    #[test]
    fn the_policy_refuses_common_personal_and_out_of_bounds_passwords() {
        let bcrypt = Policy::new(8, 72);
        assert!(common_list_len() >= 10_000);
        assert_eq!(check(&bcrypt, "correct horse battery"), Ok(()));
        assert_eq!(check(&bcrypt, "PassWord1").unwrap_err(), "is too common");
        assert_eq!(check(&bcrypt, "iloveyou").unwrap_err(), "is too common");
        assert_eq!(
            check(&bcrypt, "xx-ALICE-xx").unwrap_err(),
            "contains the username"
        );
        assert!(check(&bcrypt, "alice.w@EXAMPLE.com").is_err());
        let p = Password::parse("my Alice.W secret").unwrap();
        let local = bcrypt.check(&p, "bob", "alice.w@example.com").unwrap_err();
        assert!(local.contains("local part"), "{local}");
        let long = "€".repeat(25);
        assert!(check(&bcrypt, &long).unwrap_err().contains("72 bytes"));
        assert_eq!(check(&Policy::new(8, 256), &long), Ok(()));
        // Code points, not bytes: 8 three-byte characters are long enough.
        assert_eq!(check(&bcrypt, &"€".repeat(8)), Ok(()));
        assert!(check(&Policy::new(12, 72), "elevenchars").is_err());
        let own = Policy::new(8, 72).with_blocklist("Company2024!\r\n\nanother one\n");
        assert_eq!(check(&own, "company2024!").unwrap_err(), "is too common");
        assert_eq!(check(&own, "correct horse battery"), Ok(()));
    }
}
