//! Domain types that can only be built through `parse`: once you hold an [`Email`],
//! a [`Username`] or a [`Password`], it is valid.

use std::fmt;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A user's email address: syntactically valid, at most 254 characters.
/// Compared case-insensitively through [`Email::normalized`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if raw.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        let options = email_address::Options::default().without_display_text();
        match email_address::EmailAddress::parse_with_options(raw, options) {
            Ok(_) if raw.contains('@') && !raw.starts_with('"') => Ok(Email(raw.to_owned())),
            Ok(_) => Err("is not a valid email address".into()),
            Err(e) => Err(format!("is not a valid email address ({e})")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form stored in the unique index: lower-cased.
    pub fn normalized(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A username: 3–32 characters of `[A-Za-z0-9_.-]`, compared case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub const MIN_LEN: usize = 3;
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let len = raw.chars().count();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&len) {
            return Err(format!(
                "must be {} to {} characters long",
                Self::MIN_LEN,
                Self::MAX_LEN
            ));
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err("may only contain letters, digits, '_', '.' and '-'".into());
        }
        Ok(Username(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn normalized(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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

/// A user's numeric id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A refresh-token family (one login session): the `sid` claim of its access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FamilyId(pub Uuid);

impl FamilyId {
    pub fn new() -> Self {
        FamilyId(Uuid::new_v4())
    }
}

impl Default for FamilyId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for FamilyId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(FamilyId)
            .map_err(|_| format!("'{s}' is not a family id (a UUID)"))
    }
}

/// How an operator names a user on the command line: a numeric id, an email or a
/// username.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserRef {
    Id(UserId),
    Email(String),
    Username(String),
}

impl FromStr for UserRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err("a user (id, email or username) is required".into());
        }
        if let Ok(id) = s.parse::<i64>() {
            return Ok(UserRef::Id(UserId(id)));
        }
        if s.contains('@') {
            return Ok(UserRef::Email(s.to_lowercase()));
        }
        Ok(UserRef::Username(s.to_ascii_lowercase()))
    }
}

impl fmt::Display for UserRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRef::Id(id) => write!(f, "user {id}"),
            UserRef::Email(e) => write!(f, "user {e}"),
            UserRef::Username(u) => write!(f, "user {u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_of_3_to_32_allowed_characters_parse() {
        for ok in ["abc", "a.b-c_d", "A23456789012345678901234567890AB"] {
            assert!(Username::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn usernames_too_short_too_long_or_with_other_characters_are_rejected() {
        for bad in [
            "ab",
            "",
            "a234567890123456789012345678901234",
            "a b",
            "ab@c",
            "äbc",
            "abc\0",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usernames_compare_case_insensitively() {
        assert_eq!(
            Username::parse("Alice").unwrap().normalized(),
            Username::parse("aLICE").unwrap().normalized()
        );
    }

    #[test]
    fn valid_emails_parse_and_normalize_to_lower_case() {
        let e = Email::parse("Alice.Smith+tag@Example.COM").unwrap();
        assert_eq!(e.as_str(), "Alice.Smith+tag@Example.COM");
        assert_eq!(e.normalized(), "alice.smith+tag@example.com");
    }

    #[test]
    fn invalid_emails_are_rejected() {
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a b@example.com",
            "Name <a@b.com>",
            long.as_str(),
            "a\0@b.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_email_of_exactly_254_characters_is_accepted() {
        let local = "a".repeat(64);
        let domain_label = "b".repeat(60);
        let mut email = format!("{local}@{domain_label}.{domain_label}.{domain_label}.");
        let missing = 254 - email.len() - 3;
        email.push_str(&"c".repeat(missing));
        email.push_str(".io");
        assert_eq!(email.len(), 254);
        assert!(
            Email::parse(&email).is_ok(),
            "{}",
            Email::parse(&email).unwrap_err()
        );
    }

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

    #[test]
    fn user_refs_are_ids_emails_or_usernames() {
        assert_eq!("42".parse::<UserRef>().unwrap(), UserRef::Id(UserId(42)));
        assert_eq!(
            "A@B.c".parse::<UserRef>().unwrap(),
            UserRef::Email("a@b.c".into())
        );
        assert_eq!(
            "Bob".parse::<UserRef>().unwrap(),
            UserRef::Username("bob".into())
        );
        assert!("".parse::<UserRef>().is_err());
    }
}
