//! Usernames: the characters and length allowed, and the case-folded form that
//! identifies them. A username is never all digits, so that an all-digit USER on the
//! command line is always a user id (SPEC §7) and can never name another account.

use std::fmt;

/// A username: 3–32 characters of `[A-Za-z0-9_.-]`, not all digits, compared
/// case-insensitively.
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
        if raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err("must not be all digits (an all-digit name reads as a user id)".into());
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
            "001",
            "12345",
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
}
