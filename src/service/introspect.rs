//! Token introspection (RFC 7662, SPEC §15): whether a token is live *now* — the
//! same checks `/me` and `/refresh` make (session, user, signing key), plus the
//! user's current roles. Anything not live is `{"active": false}` and nothing more:
//! why is the log's business, never the caller's.

use chrono::Utc;
use serde::Serialize;

use super::AuthService;
use crate::error::{Error, Result};
use crate::tokens::RefreshToken;
use crate::tokens::jwt;

/// An introspection answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Introspection {
    /// A live access token.
    Access {
        active: bool,
        /// `access_token`.
        token_type: &'static str,
        sub: String,
        username: String,
        /// The user's roles now (a change shows here at once).
        roles: Vec<String>,
        exp: i64,
        iat: i64,
        iss: String,
        jti: String,
        sid: String,
        amr: Vec<String>,
        /// A token issued to a client of the OpenID Connect provider (SPEC §18): the
        /// client (`client_id`, also `aud`) and the granted `scope`.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        client_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        aud: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(nullable = false)]
        scope: Option<String>,
    },
    /// A live refresh token.
    Refresh {
        active: bool,
        /// `refresh_token`.
        token_type: &'static str,
        sub: String,
        username: String,
        exp: i64,
        sid: String,
    },
    /// Anything else: exactly `{"active": false}`.
    Inactive { active: bool },
}

impl Introspection {
    pub fn inactive() -> Self {
        Introspection::Inactive { active: false }
    }
}

impl AuthService {
    /// What a token is, if it is live. Only a failure to answer (the database) is
    /// an error; a refused token is [`Introspection::inactive`].
    pub async fn introspect(&self, token: &str) -> Result<Introspection> {
        let token = token.trim();
        let answer = if jwt::looks_like_jwt(token) {
            self.introspect_access(token).await
        } else {
            self.introspect_refresh(token).await
        };
        match answer {
            Ok(live) => Ok(live),
            Err(Error::InvalidToken(reason)) => {
                tracing::debug!(reason, "introspection: token not active");
                Ok(Introspection::inactive())
            }
            Err(e) => Err(e),
        }
    }

    async fn introspect_access(&self, token: &str) -> Result<Introspection> {
        let (user, claims) = self.authenticate_claims(token).await?;
        let roles = user.roles;
        Ok(Introspection::Access {
            active: true,
            token_type: "access_token",
            sub: claims.sub,
            username: user.username,
            roles,
            exp: claims.exp,
            iat: claims.iat,
            iss: claims.iss,
            jti: claims.jti,
            sid: claims.sid,
            amr: claims.amr,
            client_id: claims.aud.clone(),
            aud: claims.aud,
            scope: claims.scope,
        })
    }

    async fn introspect_refresh(&self, token: &str) -> Result<Introspection> {
        let refresh = RefreshToken::parse(token).ok_or(Error::InvalidToken("not a token"))?;
        let rec = self
            .store()
            .find_refresh(&refresh.digest())
            .await?
            .ok_or(Error::InvalidToken("unknown refresh token"))?;
        let now = Utc::now();
        let live = rec.rotated_at.is_none()
            && rec.revoked_at.is_none()
            && rec.family_revoked_at.is_none()
            && rec.user_active
            && rec.expires_at > now
            && now < self.session_end(rec.family_created_at);
        if !live {
            return Err(Error::InvalidToken("refresh token not live"));
        }
        Ok(Introspection::Refresh {
            active: true,
            token_type: "refresh_token",
            sub: rec.user_id.0.to_string(),
            username: rec.username,
            exp: rec.expires_at.timestamp(),
            sid: rec.family_id.to_string(),
        })
    }
}
