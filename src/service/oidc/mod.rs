//! The OpenID Connect provider (SPEC §18): the authorization code flow with PKCE, the
//! login page's browser session, the token endpoint, ID tokens, userinfo and
//! RP-initiated logout. The flow is in this file and [`token`] (the token endpoint: code
//! exchange, refresh, ID tokens); [`clients`] registers clients and authenticates them, [`keys`] holds the ID-token keys, [`redirect`] matches
//! redirect URIs. The HTTP side (`http/oidc/`) parses and renders, nothing more.
//!
//! Sessions: the login page starts a §10 session of kind `browser` whose first
//! refresh token is the session cookie (never rotated: `/refresh` refuses it); each
//! code exchange starts a session of kind `oidc` for the client, child of that browser
//! session (`sid`). Both are ordinary families: listed, revoked by logout, password
//! changes, disable, `token revoke-family`, and checked on every use.
//!
//! Codes: 256 random bits, stored as a digest, single use, 60 s; the redirect URI,
//! client and PKCE verifier are checked at the exchange. A second presentation
//! revokes the session the first one created ([`crate::store::oidc`] says how this
//! holds when both race).

pub mod clients;
pub mod keys;
pub mod redirect;
mod token;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::Digest as _;

use crate::domain::{FamilyId, UserId};
use crate::error::{Error, Result};
use crate::service::{Audit, AuditKind, AuthService, RequestContext, SessionKind, Started};
use crate::store::oidc::NewCode;
use crate::tokens::RefreshToken;

pub use clients::{Client, ClientInfo, NewClient};
pub use keys::IdKeys;

/// How long a code may wait for its exchange.
pub const CODE_TTL: chrono::Duration = chrono::Duration::seconds(60);

/// The scopes a client may ask for; others are ignored (RFC 6749 §3.3).
pub const SCOPES: [&str; 5] = ["openid", "profile", "email", "roles", "offline_access"];

/// The claims an ID token or userinfo may carry (discovery's `claims_supported`).
pub const CLAIMS: [&str; 15] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "amr",
    "sid",
    "at_hash",
    "email",
    "email_verified",
    "preferred_username",
    "roles",
    "scope",
];

/// `prompt` (OIDC Core §3.1.2.1), the values this provider acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Default,
    Login,
    None,
}

/// A checked authorization request: its client and redirect URI are registered, and
/// every parameter is valid.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub client: Client,
    pub redirect_uri: String,
    /// The granted scopes, in [`SCOPES`] order, space-separated.
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: String,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    /// The request's query string as it came: the login form carries it along and
    /// it is checked again when the form comes back.
    pub query: String,
}

/// How an authorization request ends.
#[derive(Debug)]
pub enum Authorize {
    /// The client or redirect URI cannot be trusted: an error page, never a redirect.
    ErrorPage(String),
    /// To the client: with a code, or with an error (RFC 6749 §4.1.2.1, RFC 9207).
    Redirect(String),
    /// The person must log in first.
    Login(Box<Authorization>),
}

/// The login page's session, from its cookie.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub user: UserId,
    pub family: FamilyId,
    pub auth_time: DateTime<Utc>,
    pub amr: String,
}

/// What the login form's submission leads to.
#[derive(Debug)]
pub enum PageLogin {
    /// Logged in: set `cookie` (a refresh token of the browser session, alive for
    /// `cookie_max_age` seconds) and go to `redirect`.
    Done {
        cookie: String,
        cookie_max_age: i64,
        redirect: String,
    },
    /// The password was right; the account has TOTP: ask for the code.
    NeedsCode { mfa_token: String },
    /// Show the form again with this message.
    Failed(&'static str),
}

/// The one message every failed password login shows (SPEC §10: nothing says why).
pub const LOGIN_FAILED: &str = "Invalid username or password.";
/// The TOTP page's failure message.
pub const CODE_FAILED: &str = "Invalid code.";

/// A token endpoint refusal (RFC 6749 §5.2).
#[derive(Debug)]
pub enum OAuthError {
    InvalidRequest(String),
    /// `basic`: the client tried HTTP Basic, so the 401 carries `WWW-Authenticate`.
    InvalidClient {
        basic: bool,
    },
    InvalidGrant(&'static str),
    UnsupportedGrantType,
    /// Not the client's fault (503, 500).
    Service(Error),
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        OAuthError::Service(e)
    }
}

/// How a client authenticated at the token endpoint.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `client_secret_basic` (`basic`) or `client_secret_post`.
    Secret {
        id: String,
        secret: String,
        basic: bool,
    },
    /// `none`: a public client names itself.
    None { id: String },
}

/// The token endpoint's answer.
pub type TokenResponse = serde_json::Map<String, Value>;

fn sha256(bytes: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(bytes).into()
}

/// Parses a query string, refusing a repeated parameter (RFC 6749 §3.1).
fn params(query: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if map.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("{k} is given more than once"));
        }
    }
    Ok(map)
}

/// `redirect_uri` with `pairs` added to its query.
fn redirect_with(uri: &str, pairs: &[(&str, Option<&str>)]) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in pairs {
                    if let Some(v) = v {
                        q.append_pair(k, v);
                    }
                }
            }
            url.to_string()
        }
        // Registered URIs parse (checked at `client add`).
        Err(_) => uri.to_owned(),
    }
}

/// A valid RFC 7636 verifier or S256 challenge: 43 to 128 unreserved characters.
fn pkce_shaped(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

impl AuthService {
    /// `auth.issuer`: with the provider on, its public base URL.
    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    /// Whether the pages' cookies are `Secure` and `__Host-` prefixed: an https issuer
    /// (a loopback http issuer is the one other kind allowed).
    pub fn cookie_secure(&self) -> bool {
        self.settings.issuer.starts_with("https://")
    }

    /// The JWKS: the access-token keys and, with the provider on, the ID-token keys.
    pub fn published_jwks(&self) -> Value {
        let mut keys: Vec<Value> = self
            .jwks()
            .keys
            .iter()
            .filter_map(|k| serde_json::to_value(k).ok())
            .collect();
        if self.oidc_enabled() {
            keys.extend(self.id_keys().jwks());
        }
        serde_json::json!({ "keys": keys })
    }

    /// Whether the provider is on (`oidc.enabled`).
    pub fn oidc_enabled(&self) -> bool {
        self.settings.oidc_enabled
    }

    // ----- the authorization request ----------------------------------------------

    /// Checks an authorization request (its raw query string). The outer error is the
    /// service's own trouble (503); the inner says how the request ends if invalid.
    pub async fn check_authorization(
        &self,
        query: &str,
    ) -> Result<std::result::Result<Authorization, Authorize>> {
        let Ok(p) = params(query) else {
            // A repeated client_id or redirect_uri cannot be trusted to redirect to.
            return Ok(Err(Authorize::ErrorPage(
                "The request repeats a parameter.".into(),
            )));
        };
        let get = |k: &str| p.get(k).map(String::as_str);
        let Some(client_id) = get("client_id") else {
            return Ok(Err(Authorize::ErrorPage(
                "The request names no client (client_id).".into(),
            )));
        };
        let Some(client) = self.client(client_id).await? else {
            return Ok(Err(Authorize::ErrorPage(
                "The application is not registered here (unknown client_id).".into(),
            )));
        };
        let Some(redirect_uri) = get("redirect_uri") else {
            return Ok(Err(Authorize::ErrorPage(
                "The request has no redirect_uri.".into(),
            )));
        };
        if !redirect::matches(&client.redirect_uris, redirect_uri) {
            return Ok(Err(Authorize::ErrorPage(
                "The redirect_uri is not one registered for this application.".into(),
            )));
        }
        let state = get("state").map(str::to_owned);
        let error = |code: &str, description: &str| {
            Authorize::Redirect(redirect_with(
                redirect_uri,
                &[
                    ("error", Some(code)),
                    ("error_description", Some(description)),
                    ("state", state.as_deref()),
                    ("iss", Some(self.issuer())),
                ],
            ))
        };
        if get("response_type") != Some("code") {
            return Ok(Err(error(
                "unsupported_response_type",
                "response_type must be code",
            )));
        }
        if get("request").is_some() || get("request_uri").is_some() {
            return Ok(Err(error(
                "request_not_supported",
                "request objects are not supported",
            )));
        }
        let asked: Vec<&str> = get("scope").unwrap_or("").split(' ').collect();
        if !asked.contains(&"openid") {
            return Ok(Err(error("invalid_scope", "scope must contain openid")));
        }
        let scope = SCOPES
            .iter()
            .copied()
            .filter(|s| asked.contains(s))
            .collect::<Vec<_>>()
            .join(" ");
        let Some(code_challenge) = get("code_challenge") else {
            return Ok(Err(error(
                "invalid_request",
                "code_challenge is required (PKCE, S256)",
            )));
        };
        if get("code_challenge_method") != Some("S256") {
            return Ok(Err(error(
                "invalid_request",
                "code_challenge_method must be S256",
            )));
        }
        if code_challenge.len() != 43 || !pkce_shaped(code_challenge) {
            return Ok(Err(error(
                "invalid_request",
                "code_challenge is not an S256 challenge",
            )));
        }
        let prompt = match get("prompt") {
            None | Some("") => Prompt::Default,
            Some("login") => Prompt::Login,
            Some("none") => Prompt::None,
            // No consent screen: registered clients are first-party (SPEC §18).
            Some("consent") => Prompt::Default,
            Some(v) if v.split(' ').any(|p| p == "none") => {
                return Ok(Err(error(
                    "invalid_request",
                    "prompt=none cannot be combined with other values",
                )));
            }
            Some(v) if v.split(' ').any(|p| p == "login") => Prompt::Login,
            Some(_) => {
                return Ok(Err(error("invalid_request", "unsupported prompt value")));
            }
        };
        let max_age = match get("max_age") {
            None => None,
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 0 => Some(n),
                _ => {
                    return Ok(Err(error(
                        "invalid_request",
                        "max_age must be a non-negative integer",
                    )));
                }
            },
        };
        let nonce = get("nonce").map(str::to_owned);
        if nonce.as_ref().is_some_and(|n| n.len() > 512)
            || state.as_ref().is_some_and(|s| s.len() > 1024)
        {
            return Ok(Err(error("invalid_request", "nonce or state is too long")));
        }
        Ok(Ok(Authorization {
            redirect_uri: redirect_uri.to_owned(),
            client,
            scope,
            state,
            nonce,
            code_challenge: code_challenge.to_owned(),
            prompt,
            max_age,
            query: query.to_owned(),
        }))
    }

    /// `GET /oauth/authorize`: the request and the browser's session cookie, if any.
    pub async fn authorize(
        &self,
        ctx: &RequestContext,
        query: &str,
        cookie: Option<&str>,
    ) -> Result<Authorize> {
        let auth = match self.check_authorization(query).await? {
            Ok(auth) => auth,
            Err(end) => return Ok(end),
        };
        let session = match cookie {
            Some(c) => self.browser_session(c).await?,
            None => None,
        };
        let fresh_enough = |s: &BrowserSession| {
            auth.max_age
                .is_none_or(|max| (Utc::now() - s.auth_time).num_seconds() <= max)
        };
        match session {
            Some(s) if auth.prompt != Prompt::Login && fresh_enough(&s) => {
                Ok(Authorize::Redirect(self.issue_code(ctx, &auth, &s).await?))
            }
            _ if auth.prompt == Prompt::None => Ok(Authorize::Redirect(self.error_redirect(
                &auth,
                "login_required",
                "the user must log in",
            ))),
            _ => Ok(Authorize::Login(Box::new(auth))),
        }
    }

    fn error_redirect(&self, auth: &Authorization, code: &str, description: &str) -> String {
        redirect_with(
            &auth.redirect_uri,
            &[
                ("error", Some(code)),
                ("error_description", Some(description)),
                ("state", auth.state.as_deref()),
                ("iss", Some(self.issuer())),
            ],
        )
    }

    /// The browser session a cookie holds, if it is alive: its token unspent and
    /// unexpired, its family unrevoked and within the session lifetime, its user
    /// active.
    pub async fn browser_session(&self, cookie: &str) -> Result<Option<BrowserSession>> {
        let Some(token) = RefreshToken::parse(cookie.trim()) else {
            return Ok(None);
        };
        let Some(rec) = self.store.find_refresh(&token.digest()).await? else {
            return Ok(None);
        };
        let now = Utc::now();
        let alive = rec.kind == "browser"
            && rec.user_active
            && rec.revoked_at.is_none()
            && rec.rotated_at.is_none()
            && rec.family_revoked_at.is_none()
            && rec.expires_at > now
            && now < self.session_end(rec.family_created_at);
        Ok(alive.then_some(BrowserSession {
            user: rec.user_id,
            family: rec.family_id,
            auth_time: rec.family_created_at,
            amr: rec.amr,
        }))
    }

    /// A code for `auth`, from `session`: the redirect that carries it. This is the
    /// person signing in to the client (audited `oidc_login`), after a password or by
    /// the session they already have.
    async fn issue_code(
        &self,
        ctx: &RequestContext,
        auth: &Authorization,
        session: &BrowserSession,
    ) -> Result<String> {
        let code = RefreshToken::generate();
        let now = Utc::now();
        self.store
            .code_insert(&NewCode {
                digest: &sha256(code.expose().as_bytes()),
                client_id: &auth.client.id,
                user: session.user,
                browser_family: session.family,
                redirect_uri: &auth.redirect_uri,
                scope: &auth.scope,
                nonce: auth.nonce.as_deref(),
                code_challenge: &auth.code_challenge,
                auth_time: session.auth_time,
                amr: &session.amr,
                expires_at: now + CODE_TTL,
            })
            .await?;
        tracing::info!(user_id = session.user.0, client_id = %auth.client.id, "OIDC login: authorization code issued");
        let event = Audit::new(AuditKind::OidcLogin)
            .user_ref(session.user, None)
            .family(session.family)
            .detail("client_id", auth.client.id.as_str())
            .detail("scope", auth.scope.as_str());
        self.audit(ctx, event).await;
        Ok(redirect_with(
            &auth.redirect_uri,
            &[
                ("code", Some(code.expose())),
                ("state", auth.state.as_deref()),
                ("iss", Some(self.issuer())),
            ],
        ))
    }

    // ----- the login page ----------------------------------------------------------

    /// The login form's password step for `auth` (checked again by the caller):
    /// the same login as `/token` — lockout, generic failures — starting a browser
    /// session instead of a token pair.
    pub async fn page_login(
        self: &Arc<Self>,
        ctx: &RequestContext,
        auth: &Authorization,
        username: &str,
        password: &str,
    ) -> Result<PageLogin> {
        match self
            .login_as(ctx, username, password, None, SessionKind::Browser)
            .await
        {
            Ok(started) => self.page_done(ctx, auth, started).await,
            Err(Error::MfaRequired { mfa_token }) => Ok(PageLogin::NeedsCode {
                mfa_token: mfa_token.0,
            }),
            Err(Error::InvalidCredentials) => Ok(PageLogin::Failed(LOGIN_FAILED)),
            Err(Error::EmailNotVerified) => Ok(PageLogin::Failed(
                "Verify your email address first: follow the link in the message we sent.",
            )),
            Err(e) => Err(e),
        }
    }

    /// The login form's TOTP step.
    pub async fn page_login_code(
        self: &Arc<Self>,
        ctx: &RequestContext,
        auth: &Authorization,
        mfa_token: &str,
        code: &str,
    ) -> Result<PageLogin> {
        match self
            .login_mfa_as(ctx, mfa_token, code, SessionKind::Browser)
            .await
        {
            Ok(started) => self.page_done(ctx, auth, started).await,
            Err(Error::InvalidSecondFactor | Error::InvalidCredentials) => {
                Ok(PageLogin::Failed(CODE_FAILED))
            }
            Err(e) => Err(e),
        }
    }

    async fn page_done(
        &self,
        ctx: &RequestContext,
        auth: &Authorization,
        s: Started,
    ) -> Result<PageLogin> {
        let session = BrowserSession {
            user: s.user.id,
            family: s.family,
            auth_time: s.now,
            amr: s.amr.clone(),
        };
        let redirect = self.issue_code(ctx, auth, &session).await?;
        let max_age = (self.refresh_expiry(s.now, s.now) - s.now).num_seconds();
        Ok(PageLogin::Done {
            cookie: s.refresh.expose().to_owned(),
            cookie_max_age: max_age,
            redirect,
        })
    }

    /// The login form's CSRF token for the browser's CSRF cookie value: an HMAC with
    /// the database's grace secret, so every replica accepts it.
    pub fn csrf_token(&self, cookie: &str) -> String {
        use hmac::{KeyInit, Mac};
        let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(self.grace.expose()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(b"authctl login csrf\0");
        mac.update(cookie.as_bytes());
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    /// Whether `token` is the CSRF token of `cookie`, in constant time.
    pub fn csrf_ok(&self, cookie: &str, token: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        cookie.len() >= 32 && bool::from(self.csrf_token(cookie).as_bytes().ct_eq(token.as_bytes()))
    }

    // ----- userinfo, logout --------------------------------------------------------

    /// `GET|POST /oauth/userinfo`: `sub` and the claims of the token's scopes. Only a
    /// token issued to a client with `openid` (SPEC §18) is accepted.
    pub async fn userinfo(&self, access_token: &str) -> Result<Value> {
        let (user, claims) = self.authenticate_claims(access_token).await?;
        let scope = claims
            .scope
            .filter(|s| s.split(' ').any(|x| x == "openid"))
            .ok_or(Error::InvalidToken(
                "not a token of the OpenID Connect provider",
            ))?;
        let mut out = serde_json::Map::new();
        out.insert("sub".into(), user.id.0.to_string().into());
        out.extend(token::scope_claims(&user, &user.roles, &scope));
        Ok(Value::Object(out))
    }

    /// The browser session an `id_token_hint` names (its `sid`), and the client it
    /// was issued to, if it is an ID token of ours.
    pub fn logout_hint(&self, hint: &str) -> Option<(FamilyId, String)> {
        let claims = self.id_keys().verify_hint(hint, self.issuer())?;
        let sid = claims.get("sid")?.as_str()?;
        let aud = match claims.get("aud")? {
            Value::String(s) => s.clone(),
            Value::Array(a) => a.first()?.as_str()?.to_owned(),
            _ => return None,
        };
        Some((FamilyId(uuid::Uuid::parse_str(sid).ok()?), aud))
    }

    /// Ends a browser session (RP-initiated logout, or the logout page's form), and
    /// with it the client sessions it started: signing out of authctl signs out of
    /// what authctl signed in to.
    pub async fn end_browser_session(&self, ctx: &RequestContext, family: FamilyId) -> Result<()> {
        let Some(found) = self.store.find_family(family).await? else {
            return Ok(());
        };
        let now = Utc::now();
        let children = self.store.revoke_children(family, "logout", now).await?;
        let ended = self.store.revoke_family(family, "logout", now).await?;
        if ended && found.revoked_at.is_none() {
            tracing::info!(user_id = found.user_id.0, family_id = %family, children, "browser session ended (logout)");
            let event = Audit::new(AuditKind::SessionRevoked)
                .user_ref(found.user_id, Some(&found.username))
                .family(family)
                .detail("reason", "logout")
                .detail("client_sessions", children);
            self.audit(ctx, event).await;
        }
        Ok(())
    }

    /// Deletes codes that expired over a day ago (housekeeping).
    pub async fn prune_codes(&self) -> Result<u64> {
        self.store
            .codes_prune(Utc::now() - chrono::Duration::days(1))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_parameter_is_refused() {
        assert!(params("a=1&b=2").is_ok());
        assert!(params("a=1&a=2").is_err());
    }

    #[test]
    fn redirects_keep_the_registered_query_and_add_theirs() {
        assert_eq!(
            redirect_with(
                "https://app.example/cb?x=1",
                &[("code", Some("c d")), ("state", None)]
            ),
            "https://app.example/cb?x=1&code=c+d"
        );
    }

    #[test]
    fn pkce_verifiers_have_the_rfc_7636_shape() {
        assert!(pkce_shaped(&"a".repeat(43)));
        assert!(!pkce_shaped(&"a".repeat(42)));
        assert!(!pkce_shaped(&"a".repeat(129)));
        assert!(!pkce_shaped(&format!("{}+", "a".repeat(43))));
    }
}
