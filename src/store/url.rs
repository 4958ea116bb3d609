//! The database URL: which backend to open, and a password that never reaches a log
//! or any output.
//!
//! Redaction parses the URL with the `url` crate (WHATWG rules: the userinfo ends at
//! the *last* `@` before the host, the password starts after the first `:` in it), so
//! a password containing `@` or `:` is found whole; every query pair whose name
//! contains `password` (`password`, `sslpassword`) is redacted too. A URL that cannot
//! be parsed is shown as its scheme only: when in doubt, show less.

use std::fmt;

/// The database used when none is configured: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://authctl.db";

/// What a redacted secret is replaced with.
const MASK: &str = "***";

/// A database URL; its password never appears in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let lower = raw.to_ascii_lowercase();
        if lower.starts_with("sqlite:")
            || lower.starts_with("postgres://")
            || lower.starts_with("postgresql://")
        {
            Ok(DatabaseUrl(raw.to_owned()))
        } else {
            Err("must start with sqlite:, postgres:// or postgresql://".into())
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_postgres(&self) -> bool {
        self.0.to_ascii_lowercase().starts_with("postgres")
    }

    /// The URL with every password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

/// `raw` with the userinfo password and every `*password*` query value masked.
pub(crate) fn redact(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        let scheme = raw.split_once(':').map_or("", |(s, _)| s);
        let scheme = if scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            scheme
        } else {
            ""
        };
        return format!("{scheme}://{MASK} (unparsable URL, redacted)");
    };
    let mut changed = false;
    if url.password().is_some() {
        // Fails only for URLs that cannot have a userinfo, which then has no password.
        changed |= url.set_password(Some(MASK)).is_ok();
    }
    let is_secret = |name: &str| name.to_ascii_lowercase().contains("password");
    if url.query_pairs().any(|(name, _)| is_secret(&name)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(name, value)| {
                let value = if is_secret(&name) {
                    MASK.to_owned()
                } else {
                    value.into_owned()
                };
                (name.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed {
        url.to_string()
    } else {
        // Nothing secret: show it exactly as configured.
        raw.to_owned()
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Default for DatabaseUrl {
    fn default() -> Self {
        DatabaseUrl(DEFAULT_DATABASE_URL.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn redacted(raw: &str) -> String {
        DatabaseUrl::parse(raw).unwrap().redacted()
    }

    #[test]
    fn database_url_passwords_are_redacted() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db:5432/app").unwrap();
        assert_eq!(url.redacted(), "postgres://app:***@db:5432/app");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(!format!("{url}").contains("s3cret"));
    }

    #[test]
    fn a_password_with_at_signs_and_colons_is_redacted_whole() {
        // Unencoded '@' in the password: the userinfo ends at the last '@'.
        let r = redacted("postgres://app:p@ss:w@rd@db.internal:5432/app");
        assert_eq!(r, "postgres://app:***@db.internal:5432/app");
        let r = redacted("postgresql://app:p%40ss%3Aword@db/app?sslmode=require");
        assert_eq!(r, "postgresql://app:***@db/app?sslmode=require");
    }

    #[test]
    fn password_query_parameters_are_redacted() {
        let r =
            redacted("postgres://app@db/app?sslmode=disable&password=hunter2&application_name=x");
        assert!(!r.contains("hunter2"), "{r}");
        assert!(
            r.contains("password=***") && r.contains("sslmode=disable"),
            "{r}"
        );
        let r = redacted("postgres://db/app?PassWord=hunter2&sslpassword=keypass");
        assert!(!r.contains("hunter2") && !r.contains("keypass"), "{r}");
        let r = redacted("postgres://db/app?pass%77ord=hunter2");
        assert!(!r.contains("hunter2"), "{r}");
    }

    #[test]
    fn urls_without_secrets_are_shown_as_configured() {
        for raw in [
            "sqlite://authctl.db",
            "sqlite::memory:",
            "sqlite:///var/lib/authctl/db.sqlite?mode=rwc",
            "postgres://app@db:5432/app?sslmode=require",
        ] {
            assert_eq!(redacted(raw), raw);
        }
    }

    #[test]
    fn an_unparsable_url_shows_its_scheme_only() {
        let r = redacted("postgres://app:hunter2@[::1/app");
        assert!(!r.contains("hunter2"), "{r}");
        assert!(r.starts_with("postgres://"), "{r}");
    }

    proptest! {
        /// Whatever the password (any printable ASCII, `@`, `:`, `/`, `?` included,
        /// encoded or not), neither it nor its encoding survives redaction.
        #[test]
        fn no_password_survives_redaction(secret in "[!-~]{4,24}", encode in any::<bool>()) {
            let secret = format!("PW{secret}");
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            let in_userinfo = if encode { encoded.clone() } else { secret.clone() };
            for raw in [
                format!("postgres://app:{in_userinfo}@db.internal:5432/app"),
                format!("postgres://app@db/app?sslmode=disable&password={encoded}"),
            ] {
                let r = redacted(&raw);
                prop_assert!(!r.contains(&secret), "{raw} -> {r}");
                prop_assert!(!r.contains(&encoded), "{raw} -> {r}");
            }
        }

        /// Arbitrary text never panics the redaction.
        #[test]
        fn redaction_never_panics(raw in "\\PC{0,80}") {
            let _ = redact(&raw);
        }
    }
}
