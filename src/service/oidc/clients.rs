//! Registered clients (SPEC §18): `client add|list|remove|rotate-secret`, and the
//! client authentication of the token endpoint. A secret is 256 random bits shown
//! once; only its SHA-256 digest is stored (a fast digest suffices for a random
//! secret, and the token endpoint costs no password hash), compared in constant time.

use chrono::Utc;
use serde::Serialize;
use sha2::Digest as _;

use super::redirect;
use crate::error::{Error, Result};
use crate::service::{Audit, AuditKind, AuthService, RequestContext};
use crate::store::oidc::ClientRow;
use crate::tokens::RefreshToken;
use crate::tokens::id_token::IdAlg;

/// A client as the CLI shows it (never its secret, but once at creation).
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    pub client_id: String,
    /// Only in the answer of `client add` / `client rotate-secret`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub name: String,
    pub public: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub id_token_alg: IdAlg,
    pub created_at: chrono::DateTime<Utc>,
}

/// A loaded client, with what the flow checks.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: String,
    secret_digest: Option<Vec<u8>>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub id_token_alg: IdAlg,
    pub created_at: chrono::DateTime<Utc>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.secret_digest.is_none()
    }

    /// Whether `secret` is this client's, in constant time.
    pub fn secret_matches(&self, secret: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        match &self.secret_digest {
            Some(digest) => bool::from(sha2::Sha256::digest(secret.as_bytes())[..].ct_eq(digest)),
            None => false,
        }
    }

    fn info(self, secret: Option<String>) -> ClientInfo {
        ClientInfo {
            public: self.is_public(),
            client_id: self.id,
            client_secret: secret,
            name: self.name,
            redirect_uris: self.redirect_uris,
            post_logout_redirect_uris: self.post_logout_redirect_uris,
            id_token_alg: self.id_token_alg,
            created_at: self.created_at,
        }
    }
}

impl TryFrom<ClientRow> for Client {
    type Error = Error;

    fn try_from(row: ClientRow) -> Result<Self> {
        let list = |json: &str, what: &str| -> Result<Vec<String>> {
            serde_json::from_str(json).map_err(|e| {
                Error::Internal(anyhow::anyhow!(
                    "client {}: stored {what} is not a JSON list: {e}",
                    row.client_id
                ))
            })
        };
        Ok(Client {
            redirect_uris: list(&row.redirect_uris, "redirect_uris")?,
            post_logout_redirect_uris: list(
                &row.post_logout_redirect_uris,
                "post_logout_redirect_uris",
            )?,
            id_token_alg: row
                .id_token_alg
                .parse()
                .map_err(|e: String| Error::Internal(anyhow::anyhow!(e)))?,
            id: row.client_id,
            name: row.name,
            secret_digest: row.secret_digest,
            created_at: row.created_at,
        })
    }
}

/// What `client add` is asked for.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub public: bool,
    pub id_token_alg: IdAlg,
}

fn validation(field: &str, reason: String) -> Error {
    Error::validation(field, reason)
}

impl AuthService {
    /// `client add`: a new client; the answer holds its secret, once.
    pub async fn client_add(&self, new: NewClient) -> Result<ClientInfo> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(validation("name", "1 to 100 printable characters".into()));
        }
        if new.redirect_uris.is_empty() {
            return Err(validation(
                "redirect_uri",
                "at least one is required".into(),
            ));
        }
        for uri in &new.redirect_uris {
            redirect::check_registered(uri).map_err(|e| validation("redirect_uri", e))?;
        }
        for uri in &new.post_logout_redirect_uris {
            redirect::check_registered(uri)
                .map_err(|e| validation("post_logout_redirect_uri", e))?;
        }
        let secret = (!new.public).then(|| RefreshToken::generate().expose().to_owned());
        let id = RefreshToken::generate().expose()[..24].to_owned();
        let row = ClientRow {
            client_id: id.clone(),
            name: name.to_owned(),
            secret_digest: secret
                .as_ref()
                .map(|s| sha2::Sha256::digest(s.as_bytes()).to_vec()),
            redirect_uris: serde_json::to_string(&new.redirect_uris).unwrap_or_default(),
            post_logout_redirect_uris: serde_json::to_string(&new.post_logout_redirect_uris)
                .unwrap_or_default(),
            id_token_alg: new.id_token_alg.as_str().to_owned(),
            // Microseconds, as PostgreSQL keeps it: `add` and `list` show one time.
            created_at: chrono::DurationRound::duration_trunc(
                Utc::now(),
                chrono::TimeDelta::microseconds(1),
            )
            .unwrap_or_else(|_| Utc::now()),
        };
        // Its key exists before any token needs it.
        self.ensure_id_key(new.id_token_alg).await?;
        self.store.client_insert(&row).await?;
        tracing::info!(client_id = %id, name, "client created");
        let event = Audit::new(AuditKind::ClientCreated)
            .detail("client_id", id.as_str())
            .detail("name", name);
        self.audit(&RequestContext::none(), event).await;
        Ok(Client::try_from(row)?.info(secret))
    }

    pub async fn client_list(&self) -> Result<Vec<ClientInfo>> {
        let rows = self.store.client_list().await?;
        rows.into_iter()
            .map(|row| Ok(Client::try_from(row)?.info(None)))
            .collect()
    }

    /// `client remove`: the client and every session issued to it end now.
    pub async fn client_remove(&self, id: &str) -> Result<()> {
        if !self.store.client_remove(id, Utc::now()).await? {
            return Err(Error::NotFound(format!("client {id}")));
        }
        tracing::info!(client_id = %id, "client removed");
        let event = Audit::new(AuditKind::ClientRemoved).detail("client_id", id);
        self.audit(&RequestContext::none(), event).await;
        Ok(())
    }

    /// `client rotate-secret`: a new secret; the old one fails from now on.
    pub async fn client_rotate_secret(&self, id: &str) -> Result<ClientInfo> {
        let client = self
            .client(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("client {id}")))?;
        if client.is_public() {
            return Err(validation(
                "client_id",
                "a public client has no secret to rotate".into(),
            ));
        }
        let secret = RefreshToken::generate().expose().to_owned();
        let digest: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
        if !self.store.client_set_secret(id, &digest).await? {
            return Err(Error::NotFound(format!("client {id}")));
        }
        tracing::info!(client_id = %id, "client secret rotated");
        Ok(client.info(Some(secret)))
    }

    pub(crate) async fn client(&self, id: &str) -> Result<Option<Client>> {
        if id.is_empty() || id.len() > 128 {
            return Ok(None);
        }
        self.store
            .client_get(id)
            .await?
            .map(Client::try_from)
            .transpose()
    }
}
