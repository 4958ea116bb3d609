//! The token endpoint (SPEC §18): client authentication, the authorization code
//! exchange (single use, PKCE, the redirect URI and client of the code), a client's
//! refresh (rotation as SPEC §5, for its own sessions only), and the tokens a client
//! gets: an access token with `aud` and `scope`, an ID token signed with the client's
//! algorithm, and a refresh token with `offline_access`. No password hash is computed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{ClientAuth, OAuthError, TokenResponse, pkce_shaped, sha256};
use crate::domain::{FamilyId, UserId, UserRef};
use crate::error::{Error, Result};
use crate::service::oidc::Client;
use crate::service::{Audit, AuditKind, AuthService, RequestContext};
use crate::store::RefreshRecord;
use crate::store::oidc::{CodeClaim, CodeRow, NewOidcFamily};
use crate::tokens::RefreshToken;

impl AuthService {
    // ----- the token endpoint ----------------------------------------------------

    async fn authenticate_client(
        &self,
        auth: &ClientAuth,
    ) -> std::result::Result<Client, OAuthError> {
        let (id, basic) = match auth {
            ClientAuth::Secret { id, basic, .. } => (id, *basic),
            ClientAuth::None { id } => (id, false),
        };
        let refused = OAuthError::InvalidClient { basic };
        let client = self.client(id).await?.ok_or(refused)?;
        let ok = match auth {
            ClientAuth::Secret { secret, .. } => client.secret_matches(secret),
            ClientAuth::None { .. } => client.is_public(),
        };
        if ok {
            Ok(client)
        } else {
            tracing::info!(client_id = %client.id, "client authentication failed");
            Err(OAuthError::InvalidClient { basic })
        }
    }

    /// `grant_type=authorization_code`.
    pub async fn exchange_code(
        &self,
        ctx: &RequestContext,
        auth: &ClientAuth,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> std::result::Result<TokenResponse, OAuthError> {
        let client = self.authenticate_client(auth).await?;
        let digest = sha256(code.as_bytes());
        let family = FamilyId::new();
        let now = Utc::now();
        let challenge = URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()));
        // Checked inside the exchange's transaction: a code that fails is spent too.
        let check = |row: &CodeRow| -> Option<&'static str> {
            if row.client_id != client.id {
                Some("code issued to another client")
            } else if row.expires_at <= now {
                Some("code expired")
            } else if row.redirect_uri != redirect_uri {
                Some("redirect_uri differs from the authorization request's")
            } else if !pkce_shaped(verifier) || challenge != row.code_challenge {
                Some("code_verifier does not match")
            } else {
                None
            }
        };
        let refresh = RefreshToken::generate();
        let ip = ctx.ip.map(|ip| ip.to_string());
        let new = NewOidcFamily {
            family,
            digest: &refresh.digest(),
            now,
            expires_at: self.refresh_expiry(now, now),
            ip: ip.as_deref(),
            user_agent: ctx.user_agent.as_deref(),
        };
        let row = match self.store.code_exchange(&digest, &new, &check).await? {
            CodeClaim::Unknown => return Err(OAuthError::InvalidGrant("unknown code")),
            CodeClaim::Refused(reason) => return Err(OAuthError::InvalidGrant(reason)),
            CodeClaim::Reused {
                issued,
                user,
                client_id,
            } => {
                if let Some(issued) = issued {
                    self.store
                        .revoke_family(issued, "authorization code reuse", now)
                        .await?;
                }
                tracing::warn!(user_id = user.0, client_id = %client_id, "authorization code reused: what it issued is revoked");
                let mut event = Audit::new(AuditKind::OidcCodeReuse)
                    .user_ref(user, None)
                    .detail("client_id", client_id.as_str());
                if let Some(issued) = issued {
                    event = event.family(issued);
                }
                self.audit(ctx, event).await;
                return Err(OAuthError::InvalidGrant("code already used"));
            }
            CodeClaim::First(row) => row,
        };
        let user = self.find_user(&UserRef::Id(row.user_id)).await?;
        tracing::info!(user_id = user.id.0, client_id = %client.id, family_id = %family, "authorization code exchanged");
        let grant = Grant {
            user: user.id,
            family,
            parent: row.browser_family,
            scope: &row.scope,
            auth_time: row.auth_time,
            amr: &row.amr,
            nonce: row.nonce.as_deref(),
            now,
        };
        Ok(self.client_tokens(&client, &grant, refresh).await?)
    }

    /// `grant_type=refresh_token` for a client: rotation as SPEC §5 says, for this
    /// client's sessions only, with the user and client checked again.
    pub async fn client_refresh(
        &self,
        ctx: &RequestContext,
        auth: &ClientAuth,
        raw: &str,
    ) -> std::result::Result<TokenResponse, OAuthError> {
        let client = self.authenticate_client(auth).await?;
        let is_clients = |rec: &RefreshRecord| {
            rec.kind == "oidc" && rec.client_id.as_deref() == Some(client.id.as_str())
        };
        let rotated = match self.rotate(ctx, raw, is_clients).await {
            Ok(r) => r,
            Err(Error::InvalidToken(reason)) => return Err(OAuthError::InvalidGrant(reason)),
            Err(e) => return Err(e.into()),
        };
        let rec = &rotated.rec;
        let scope = rec.scope.clone().unwrap_or_else(|| "openid".into());
        let grant = Grant {
            user: rec.user_id,
            family: rec.family_id,
            parent: rec.parent.unwrap_or(rec.family_id),
            scope: &scope,
            auth_time: rec.auth_time.unwrap_or(rec.family_created_at),
            amr: &rec.amr,
            nonce: None,
            now: rotated.now,
        };
        Ok(self.client_tokens(&client, &grant, rotated.refresh).await?)
    }

    /// The access token, ID token and (with `offline_access`) refresh token of a
    /// client's session.
    async fn client_tokens(
        &self,
        client: &Client,
        g: &Grant<'_>,
        refresh: RefreshToken,
    ) -> Result<TokenResponse> {
        let user = self.find_user(&UserRef::Id(g.user)).await?;
        let roles = self.store.roles_of(g.user).await?;
        let amr: Vec<&str> = g.amr.split_whitespace().collect();
        let jwt = self.jwt();
        let access = jwt.issue_for(
            g.user,
            g.family,
            &amr,
            &roles,
            Some((&client.id, g.scope)),
            g.now,
        )?;
        let ttl = jwt.ttl().as_secs();
        let alg = client.id_token_alg;
        self.ensure_id_key(alg).await?;
        let keys = self.id_keys();
        let key = keys
            .current(alg)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("no current {alg} ID-token key")))?;
        let iat = g.now.timestamp();
        let mut claims = json!({
            "iss": self.issuer(),
            "sub": g.user.0.to_string(),
            "aud": client.id,
            "exp": iat.saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX)),
            "iat": iat,
            "auth_time": g.auth_time.timestamp(),
            "amr": amr,
            "sid": g.parent.0.to_string(),
            "at_hash": alg.at_hash(&access),
        });
        if let (Some(nonce), Some(map)) = (g.nonce, claims.as_object_mut()) {
            map.insert("nonce".into(), nonce.into());
        }
        if let Some(map) = claims.as_object_mut() {
            map.extend(scope_claims(&user, &roles, g.scope));
        }
        let id_token = key
            .sign(&claims)
            .map_err(|e| Error::Internal(anyhow::Error::new(e).context("signing an ID token")))?;
        let mut out = TokenResponse::new();
        out.insert("access_token".into(), access.into());
        out.insert("token_type".into(), "Bearer".into());
        out.insert("expires_in".into(), ttl.into());
        out.insert("id_token".into(), id_token.into());
        out.insert("scope".into(), g.scope.into());
        if g.scope.split(' ').any(|s| s == "offline_access") {
            out.insert("refresh_token".into(), refresh.expose().into());
        }
        Ok(out)
    }
}

/// What a client's tokens are about.
struct Grant<'a> {
    user: UserId,
    family: FamilyId,
    /// The browser session (`sid`).
    parent: FamilyId,
    scope: &'a str,
    auth_time: DateTime<Utc>,
    amr: &'a str,
    nonce: Option<&'a str>,
    now: DateTime<Utc>,
}

/// The claims `scope` grants about `user` (OIDC Core §5.4).
pub(super) fn scope_claims(
    user: &crate::store::User,
    roles: &[String],
    scope: &str,
) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for s in scope.split(' ') {
        match s {
            "email" => {
                out.insert("email".into(), user.email.clone().into());
                out.insert("email_verified".into(), user.email_verified.into());
            }
            "profile" => {
                out.insert("preferred_username".into(), user.username.clone().into());
            }
            "roles" => {
                let mut roles = roles.to_vec();
                roles.sort();
                out.insert("roles".into(), roles.into());
            }
            _ => {}
        }
    }
    out
}
