//! The email settings (SPEC §13): where messages go (`email.url`), who sends them
//! (`email.from`), the application's link templates and the tokens' lifetimes.
//!
//! `email.url` is `smtp://[user:pass@]host:port` (no TLS: a local relay),
//! `smtp+starttls://[user:pass@]host[:587]`, `smtps://[user:pass@]host[:465]` or
//! `file:///DIR` (each message written to DIR as an `.eml` file, for development).
//! Its password is a secret: `Debug` and [`EmailUrl::redacted`] never show it.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

/// How a message leaves: an SMTP relay, or a folder of `.eml` files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Smtp { host: String, port: u16, tls: Tls },
    File(PathBuf),
}

/// The TLS an SMTP relay is spoken to with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// `smtp://`: plain text, for a relay on the same host or network.
    None,
    /// `smtp+starttls://`: upgraded after the greeting (port 587).
    StartTls,
    /// `smtps://`: TLS from the first byte (port 465).
    Implicit,
}

/// A parsed `email.url`.
#[derive(Clone)]
pub struct EmailUrl {
    pub transport: Transport,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    redacted: String,
}

impl std::fmt::Debug for EmailUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl EmailUrl {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let redacted = crate::store::url::redact(raw);
        let url = url::Url::parse(raw).map_err(|e| format!("is not a URL ({e}): {redacted}"))?;
        let decode = |s: &str| {
            percent_decode(s).ok_or_else(|| format!("has a userinfo that is not UTF-8: {redacted}"))
        };
        let user = match url.username() {
            "" => None,
            u => Some(decode(u)?),
        };
        let password = url
            .password()
            .map(|p| decode(p).map(SecretString::from))
            .transpose()?;
        let host = || {
            url.host_str()
                .filter(|h| !h.is_empty())
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .ok_or_else(|| format!("names no host: {redacted}"))
        };
        let transport = match url.scheme() {
            "smtp" => Transport::Smtp {
                host: host()?,
                port: url.port().unwrap_or(25),
                tls: Tls::None,
            },
            "smtp+starttls" => Transport::Smtp {
                host: host()?,
                port: url.port().unwrap_or(587),
                tls: Tls::StartTls,
            },
            "smtps" => Transport::Smtp {
                host: host()?,
                port: url.port().unwrap_or(465),
                tls: Tls::Implicit,
            },
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| format!("must be file:///ABSOLUTE/DIR: {redacted}"))?;
                if user.is_some() || password.is_some() {
                    return Err(format!(
                        "a file:// URL takes no user or password: {redacted}"
                    ));
                }
                Transport::File(path)
            }
            other => {
                return Err(format!(
                    "must be smtp://, smtp+starttls://, smtps:// or file:///DIR, got {other}://"
                ));
            }
        };
        Ok(EmailUrl {
            transport,
            user,
            password,
            redacted,
        })
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }
}

fn percent_decode(s: &str) -> Option<String> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// A link to one of the application's pages, `{token}` standing for the token
/// (`https://app.example.com/reset#token={token}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTemplate(String);

impl LinkTemplate {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        if raw.len() > 900 {
            return Err("must be at most 900 characters (a message line holds 998)".into());
        }
        if raw.matches("{token}").count() != 1 {
            return Err("must contain {token} exactly once".into());
        }
        let sample = raw.replace("{token}", "TOKEN");
        let url = url::Url::parse(&sample).map_err(|e| format!("is not a URL ({e})"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("must be an http:// or https:// link".into());
        }
        Ok(LinkTemplate(raw.to_owned()))
    }

    /// The link for `token` (base64url: safe anywhere in a URL as it is).
    pub fn link(&self, token: &str) -> String {
        self.0.replace("{token}", token)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `email.*` (SPEC §13).
#[derive(Debug, Clone)]
pub struct EmailSettings {
    /// `None`: email is off (`/verify/request` and `/recover` answer 501).
    pub url: Option<EmailUrl>,
    /// The `From` of every message: `authctl <no-reply@example.com>` or an address.
    pub from: Option<String>,
    pub verify_url: Option<LinkTemplate>,
    pub reset_url: Option<LinkTemplate>,
    pub verify_ttl: Duration,
    pub reset_ttl: Duration,
}

impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            url: None,
            from: None,
            verify_url: None,
            reset_url: None,
            verify_ttl: Duration::from_secs(24 * 3600),
            reset_ttl: Duration::from_secs(30 * 60),
        }
    }
}

/// `email.from`: a mailbox as lettre reads it (`Name <a@b.c>` or `a@b.c`).
pub fn parse_from(raw: &str) -> Result<Option<String>, String> {
    let raw = raw.trim();
    raw.parse::<lettre::message::Mailbox>()
        .map(|_| Some(raw.to_owned()))
        .map_err(|e| format!("is not a mailbox ({e}): use 'Name <address>' or an address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn every_scheme_parses_with_its_default_port_and_the_password_stays_secret() {
        let u = EmailUrl::parse("smtp+starttls://mailer:p%40ss@relay.example.com").unwrap();
        assert_eq!(
            u.transport,
            Transport::Smtp {
                host: "relay.example.com".into(),
                port: 587,
                tls: Tls::StartTls
            }
        );
        assert_eq!(u.user.as_deref(), Some("mailer"));
        assert_eq!(u.password.as_ref().unwrap().expose_secret(), "p@ss");
        assert!(!format!("{u:?}").contains("p%40ss"));
        assert!(!u.redacted().contains("p%40ss"));
        let u = EmailUrl::parse("smtps://relay.example.com").unwrap();
        assert!(matches!(
            u.transport,
            Transport::Smtp {
                port: 465,
                tls: Tls::Implicit,
                ..
            }
        ));
        let u = EmailUrl::parse("smtp://127.0.0.1:2525").unwrap();
        assert!(matches!(
            u.transport,
            Transport::Smtp {
                port: 2525,
                tls: Tls::None,
                ..
            }
        ));
        let u = EmailUrl::parse("file:///var/mail/authctl").unwrap();
        assert_eq!(u.transport, Transport::File("/var/mail/authctl".into()));
        assert!(EmailUrl::parse("http://x").is_err());
        assert!(EmailUrl::parse("smtp://").is_err());
    }

    #[test]
    fn a_link_template_needs_one_token_placeholder_and_an_http_url() {
        let t = LinkTemplate::parse("https://app.example.com/reset#token={token}").unwrap();
        assert_eq!(t.link("abc"), "https://app.example.com/reset#token=abc");
        assert!(LinkTemplate::parse("https://app.example.com/reset").is_err());
        assert!(LinkTemplate::parse("javascript:{token}").is_err());
    }
}
