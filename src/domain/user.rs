//! How an operator names a user on the command line.

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
