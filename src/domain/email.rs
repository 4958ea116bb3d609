//! Email addresses as users give them, and the lower-cased form that identifies them.

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
