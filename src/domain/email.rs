//! Email addresses as users give them, and the form that identifies them.
//!
//! Look-alike accounts (SPEC §4): an address is kept in Unicode Normalization Form C,
//! so `é` typed as one code point or as `e` + a combining accent is one address, and
//! an address with a format character (general category Cf: zero-width space and
//! joiners, the BOM, bidirectional controls, the soft hyphen, …) is refused, since
//! it renders like the address without it. Both rules live here and only here: an
//! [`Email`] is NFC by construction, and [`login_key`] and [`stored_forms`] apply the
//! same normalization to a typed login and to rows stored before the rule.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// A user's email address: syntactically valid, at most 254 characters, in NFC and
/// free of format characters. Compared case-insensitively through
/// [`Email::normalized`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub const MAX_LEN: usize = 254;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw: String = raw.trim().nfc().collect();
        if raw.is_empty() {
            return Err("must not be empty".into());
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if raw.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        if let Some(c) = raw.chars().find(|&c| is_format(c)) {
            return Err(format!(
                "must not contain invisible formatting characters (found U+{:04X})",
                u32::from(c)
            ));
        }
        let options = email_address::Options::default().without_display_text();
        match email_address::EmailAddress::parse_with_options(&raw, options) {
            Ok(_) if raw.contains('@') && !raw.starts_with('"') => Ok(Email(raw)),
            Ok(_) => Err("is not a valid email address".into()),
            Err(e) => Err(format!("is not a valid email address ({e})")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form stored in the unique index: lower-cased, in NFC.
    pub fn normalized(&self) -> String {
        fold(&self.0)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `c` is a Unicode format character (general category Cf).
pub fn is_format(c: char) -> bool {
    c.general_category() == GeneralCategory::Format
}

/// What a login (username or email, as typed) is looked up by: trimmed, lower-cased
/// and in NFC, as [`Email::normalized`] stores addresses (usernames are ASCII, which
/// NFC leaves alone).
pub fn login_key(login: &str) -> String {
    fold(&login.trim().nfc().collect::<String>())
}

/// A stored address in today's forms, for rows written before the NFC rule: the
/// address itself in NFC and its lower-cased key. Unlike [`Email::parse`] it refuses
/// nothing: an old row is normalized, never rejected.
pub fn stored_forms(email: &str) -> (String, String) {
    let email: String = email.nfc().collect();
    let key = fold(&email);
    (email, key)
}

/// Lower-cases an NFC string; lower-casing can leave a string that is no longer NFC,
/// so it is recomposed.
fn fold(nfc: &str) -> String {
    nfc.to_lowercase().nfc().collect()
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
    fn composed_and_decomposed_forms_are_one_address() {
        let composed = Email::parse("jos\u{e9}@example.com").unwrap();
        let decomposed = Email::parse("jose\u{301}@example.com").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(decomposed.as_str(), "jos\u{e9}@example.com");
        assert_eq!(
            Email::parse("JOSE\u{301}@example.com")
                .unwrap()
                .normalized(),
            composed.normalized()
        );
        assert_eq!(
            login_key(" JOSE\u{301}@Example.com "),
            composed.normalized()
        );
        assert_eq!(
            stored_forms("Jose\u{301}@example.com"),
            (
                "Jos\u{e9}@example.com".into(),
                "jos\u{e9}@example.com".into()
            )
        );
    }

    #[test]
    fn format_characters_are_refused_wherever_they_are() {
        for c in [
            '\u{200b}', '\u{200c}', '\u{200d}', '\u{feff}', '\u{00ad}', '\u{200e}', '\u{200f}',
            '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}', '\u{2066}', '\u{2067}',
            '\u{2068}', '\u{2069}', '\u{2060}', '\u{061c}',
        ] {
            for raw in [
                format!("al{c}ice@example.com"),
                format!("alice@exa{c}mple.com"),
                format!("{c}alice@example.com"),
                format!("alice@example.com{c}"),
            ] {
                let err = Email::parse(&raw).expect_err(&format!("{raw:?}"));
                assert!(err.contains("formatting"), "{raw:?}: {err}");
            }
        }
        // Letters and marks from other scripts are not format characters.
        assert!(Email::parse("jos\u{e9}@example.com").is_ok());
        assert!(Email::parse("\u{448}\u{435}\u{43b}@example.com").is_ok());
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
