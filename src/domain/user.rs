//! How an operator names a user on the command line (SPEC §7, "USER"): a numeric id,
//! an email or a username.
//!
//! The rule that keeps a USER from ever naming another account: usernames may not be
//! all digits ([`Username`](super::Username) refuses them), so an all-digit USER is
//! always an id. It must be written as ids are shown (`7`, not `007`): a form with
//! leading zeros is refused rather than read as the id it would parse to, because in a
//! database made before the rule it may be an old all-digit username. Such legacy
//! accounts are reached by their email; the service also refuses an id that is
//! another account's legacy username (see `AuthService::find_user`).

use std::fmt;
use std::str::FromStr;

use super::UserId;

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
        if s.bytes().all(|b| b.is_ascii_digit()) {
            if s.len() > 1 && s.starts_with('0') {
                return Err(format!(
                    "'{s}' is not a user id (ids have no leading zeros) and usernames cannot be \
                     all digits; name an old all-digit username by the user's email"
                ));
            }
            return s
                .parse::<i64>()
                .map(|id| UserRef::Id(UserId(id)))
                .map_err(|_| format!("'{s}' is not a user id (too large)"));
        }
        if s.contains('@') {
            return Ok(UserRef::Email(super::email::login_key(s)));
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
    fn user_refs_are_ids_emails_or_usernames() {
        assert_eq!("42".parse::<UserRef>().unwrap(), UserRef::Id(UserId(42)));
        assert_eq!("0".parse::<UserRef>().unwrap(), UserRef::Id(UserId(0)));
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

    #[test]
    fn all_digit_refs_with_leading_zeros_or_out_of_range_are_refused() {
        for bad in ["001", "00", "0042", "99999999999999999999"] {
            assert!(bad.parse::<UserRef>().is_err(), "{bad}");
        }
        // Digits with something else are usernames, not ids.
        assert_eq!(
            "1a".parse::<UserRef>().unwrap(),
            UserRef::Username("1a".into())
        );
        assert_eq!(
            "-1".parse::<UserRef>().unwrap(),
            UserRef::Username("-1".into())
        );
    }
}
