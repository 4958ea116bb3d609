//! The mail transport (SPEC §13): a message leaves through lettre — SMTP (plain, STARTTLS
//! or implicit TLS, rustls on ring) or, for development, a folder of `.eml` files —
//! behind the small [`Mailer`] trait, so the outbox's sender does not care which.
//!
//! Nothing here runs inside a request: the background sender (`server::mailer`) and
//! `authctl email test` are its only callers.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::email::{EmailSettings, Tls, Transport};

/// How long one SMTP conversation may take before it counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One message as it is sent.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
    /// `<…@…>`, kept with the outbox row, so every retry carries the same one.
    pub message_id: String,
}

/// Where messages go. `Err` carries what the server said (or why nothing answered),
/// for the outbox's `last_error` and `email test`; it never holds the message body.
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: &Mail) -> Result<(), String>;
}

/// The mailer `email.url` names; `None` when email is off.
pub fn mailer(settings: &EmailSettings) -> Result<Option<Arc<dyn Mailer>>, String> {
    let (Some(url), Some(from)) = (&settings.url, &settings.from) else {
        return Ok(None);
    };
    let from: Mailbox = from
        .parse()
        .map_err(|e| format!("email.from is not a mailbox: {e}"))?;
    let mailer: Arc<dyn Mailer> = match &url.transport {
        Transport::File(dir) => Arc::new(FileMailer {
            from,
            dir: dir.clone(),
        }),
        Transport::Smtp { host, port, tls } => {
            let builder = match tls {
                Tls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
                Tls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)
                    .map_err(|e| format!("email.url: {e}"))?,
                Tls::Implicit => AsyncSmtpTransport::<Tokio1Executor>::relay(host)
                    .map_err(|e| format!("email.url: {e}"))?,
            };
            let mut builder = builder.port(*port).timeout(Some(SMTP_TIMEOUT));
            if let Some(user) = &url.user {
                use secrecy::ExposeSecret;
                let password = url
                    .password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default();
                builder = builder.credentials(Credentials::new(user.clone(), password));
            }
            Arc::new(SmtpMailer {
                from,
                transport: builder.build(),
            })
        }
    };
    Ok(Some(mailer))
}

/// The `From` address's domain, for Message-IDs (`localhost` if it has none).
pub fn message_id(from: Option<&str>) -> String {
    let domain = from
        .and_then(|f| f.parse::<Mailbox>().ok())
        .map(|m| m.email.domain().to_owned())
        .unwrap_or_else(|| "localhost".into());
    format!("<{}@{domain}>", uuid::Uuid::new_v4().simple())
}

/// A text/plain UTF-8 message with `From`, `To`, `Subject`, `Date` and `Message-ID`.
/// The body goes as it is (7bit, or 8bit when it is not ASCII), never base64 or
/// quoted-printable, so the token in it stays one whole word even in a long link:
/// lettre would pick quoted-printable for a line of 76 characters or more and break
/// the link with a soft line break, so the body is handed over pre-encoded, checked
/// here against RFC 5322's own limits (CRLF line ends, lines under 998 bytes, no NUL).
fn build(from: &Mailbox, mail: &Mail) -> Result<Message, String> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| format!("the recipient is not a mailbox: {e}"))?;
    let encoding = if mail.body.is_ascii() {
        ContentTransferEncoding::SevenBit
    } else {
        ContentTransferEncoding::EightBit
    };
    if mail.body.contains('\0') || mail.body.lines().any(|l| l.len() >= 998) {
        return Err("the message body has a NUL or a line of 998 bytes or more".into());
    }
    let crlf = mail
        .body
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    let part = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(Body::dangerous_pre_encoded(crlf.into_bytes(), encoding));
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .date_now()
        .message_id(Some(mail.message_id.clone()))
        .singlepart(part)
        .map_err(|e| format!("building the message: {e}"))
}

struct SmtpMailer {
    from: Mailbox,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), String> {
        let message = build(&self.from, mail)?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

struct FileMailer {
    from: Mailbox,
    dir: std::path::PathBuf,
}

#[async_trait]
impl Mailer for FileMailer {
    async fn send(&self, mail: &Mail) -> Result<(), String> {
        let message = build(&self.from, mail)?;
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        AsyncFileTransport::<Tokio1Executor>::new(&self.dir)
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("writing to {}: {e}", self.dir.display()))
    }
}
