//! Roles and API-key scopes (SPEC §15): a [`Role`] is a name a user holds and access
//! tokens carry; a [`Scope`] is what an API key may do at the admin API. Both are
//! built only through `parse`.

use std::fmt;

/// A role name: `[a-z][a-z0-9_.:-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Role(String);

impl Role {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut chars = raw.chars();
        let Some(first) = chars.next() else {
            return Err("must not be empty".into());
        };
        if !first.is_ascii_lowercase() {
            return Err("must start with a lowercase letter a-z".into());
        }
        if raw.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters long", Self::MAX_LEN));
        }
        if !chars.all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | ':' | '-')
        }) {
            return Err("may only contain a-z, 0-9, '_', '.', ':' and '-'".into());
        }
        Ok(Role(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a list, sorted and without repeats; the first bad name is the error.
    pub fn parse_all<S: AsRef<str>>(raw: &[S]) -> Result<Vec<Role>, String> {
        let mut roles = raw
            .iter()
            .map(|r| Role::parse(r.as_ref()).map_err(|m| format!("role '{}' {m}", r.as_ref())))
            .collect::<Result<Vec<_>, _>>()?;
        roles.sort();
        roles.dedup();
        Ok(roles)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::parse(s)
    }
}

/// What an API key may do; none implies another.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, clap::ValueEnum,
)]
pub enum Scope {
    #[serde(rename = "users:read")]
    #[value(name = "users:read")]
    UsersRead,
    #[serde(rename = "users:write")]
    #[value(name = "users:write")]
    UsersWrite,
    #[serde(rename = "sessions:write")]
    #[value(name = "sessions:write")]
    SessionsWrite,
    #[serde(rename = "audit:read")]
    #[value(name = "audit:read")]
    AuditRead,
    #[serde(rename = "introspect")]
    #[value(name = "introspect")]
    Introspect,
}

impl Scope {
    pub const ALL: [Scope; 5] = [
        Scope::UsersRead,
        Scope::UsersWrite,
        Scope::SessionsWrite,
        Scope::AuditRead,
        Scope::Introspect,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::UsersRead => "users:read",
            Scope::UsersWrite => "users:write",
            Scope::SessionsWrite => "sessions:write",
            Scope::AuditRead => "audit:read",
            Scope::Introspect => "introspect",
        }
    }

    pub fn parse(raw: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == raw)
    }

    /// A stored, space-separated list; names this build does not know are dropped.
    pub fn parse_list(stored: &str) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = stored.split_whitespace().filter_map(Scope::parse).collect();
        scopes.sort();
        scopes.dedup();
        scopes
    }

    /// The stored form of a list: space-separated.
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_follow_the_name_rule() {
        for ok in ["a", "admin", "billing:read", "team.eu-1_x", &"a".repeat(64)] {
            assert!(Role::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Admin", "1x", "_x", "a b", "é", &"a".repeat(65), "a/b"] {
            assert!(Role::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_role_list_is_sorted_without_repeats() {
        let roles = Role::parse_all(&["b", "a", "b"]).unwrap();
        assert_eq!(
            roles,
            vec![Role::parse("a").unwrap(), Role::parse("b").unwrap()]
        );
    }

    #[test]
    fn scopes_round_trip_and_imply_nothing() {
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(Scope::parse("users:*"), None);
        assert_eq!(
            Scope::parse_list("users:write bogus users:read"),
            vec![Scope::UsersRead, Scope::UsersWrite]
        );
    }
}
