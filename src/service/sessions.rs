//! A user's own sessions (SPEC §10): listing them, ending one, logging out with a
//! scope. A session is a token family; its id is the access token's `sid`. What a
//! session shows (client IP, user agent, last use) is written at login and at each
//! refresh — `/me` stays a read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::domain::{FamilyId, UserRef};
use crate::error::{Error, Result};
use crate::store::User;
use crate::tokens::jwt::JwtFailure;

/// A live session as the API and `user sessions` show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// The session (token family) id: the access token's `sid`.
    #[schema(value_type = String, format = Uuid)]
    pub id: FamilyId,
    pub created_at: DateTime<Utc>,
    /// The last login or refresh of this session.
    pub last_used_at: Option<DateTime<Utc>>,
    /// When its refresh token expires, unless refreshed.
    pub expires_at: DateTime<Utc>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Whether it is the session of the token that asked.
    pub current: bool,
}

/// Which sessions `POST /logout` ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogoutScope {
    /// The token's own session.
    #[default]
    Local,
    /// Every session but the token's own.
    Others,
    /// Every session of the user.
    Global,
}

impl AuthService {
    /// The user and session behind an access token, if the session is alive and the
    /// user active.
    pub async fn authenticate_session(&self, access_token: &str) -> Result<(User, FamilyId)> {
        let (user, claims) = self.authenticate_claims(access_token).await?;
        Ok((user, claims.family_id()?))
    }

    /// [`AuthService::authenticate_session`] with the token's verified claims (for
    /// introspection, which reports them).
    pub(crate) async fn authenticate_claims(
        &self,
        access_token: &str,
    ) -> Result<(User, crate::tokens::jwt::AccessClaims)> {
        let mut verified = self.jwt().verify(access_token);
        if let Err(JwtFailure::UnknownKid(kid)) = &verified {
            // Perhaps a rotation made elsewhere that the poll has not brought yet.
            if self.reload_for_unknown_kid(kid).await? {
                verified = self.jwt().verify(access_token);
            }
        }
        let (claims, kid) = verified.map_err(|f| match f {
            JwtFailure::Expired => Error::InvalidToken("access token expired"),
            JwtFailure::Invalid | JwtFailure::UnknownKid(_) => {
                Error::InvalidToken("access token invalid")
            }
        })?;
        let family = claims.family_id()?;
        let session = self
            .store
            .session_user(claims.user_id()?, family, kid.as_deref())
            .await?
            .ok_or(Error::InvalidToken("session not found"))?;
        if session.key_retired {
            // If this process still signs with that key, pick up its successor now
            // rather than at the next poll.
            if self.jwt().current_kid() == kid.as_deref() {
                self.reload_if_allowed().await?;
            }
            return Err(Error::InvalidToken("signing key retired"));
        }
        if session.family_revoked_at.is_some() {
            return Err(Error::InvalidToken("session revoked"));
        }
        if !session.user.is_active {
            return Err(Error::InvalidToken("user disabled"));
        }
        let mut user = session.user;
        user.roles = session
            .roles
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        Ok((user, claims))
    }

    /// Records who used a session and when (login, refresh). A failure is logged,
    /// never the request's: the session itself is fine.
    pub(crate) async fn touch_session(
        &self,
        ctx: &RequestContext,
        family: FamilyId,
        now: DateTime<Utc>,
    ) {
        let ip = ctx.ip.map(|ip| ip.to_string());
        if let Err(e) = self
            .store
            .session_touch(family, ctx.user_agent.as_deref(), ip.as_deref(), now)
            .await
        {
            tracing::warn!(family_id = %family, error = %e, "could not record the session's last use");
        }
    }

    async fn sessions_view(
        &self,
        user: &User,
        current: Option<FamilyId>,
    ) -> Result<Vec<SessionView>> {
        let rows = self.store.sessions_of(user.id, Utc::now()).await?;
        Ok(rows
            .into_iter()
            .map(|r| SessionView {
                current: Some(r.id) == current,
                id: r.id,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
                expires_at: r.expires_at,
                user_agent: r.user_agent,
                ip: r.ip,
            })
            .collect())
    }

    /// The caller's live sessions, newest first.
    pub async fn my_sessions(&self, access_token: &str) -> Result<Vec<SessionView>> {
        let (user, family) = self.authenticate_session(access_token).await?;
        self.sessions_view(&user, Some(family)).await
    }

    /// A user's live sessions (`authctl user sessions`).
    pub async fn user_sessions(&self, user: &UserRef) -> Result<(User, Vec<SessionView>)> {
        let found = self.find_user(user).await?;
        let sessions = self.sessions_view(&found, None).await?;
        Ok((found, sessions))
    }

    /// Ends one of the caller's sessions; another user's, an unknown or an ended one
    /// is not found (nothing tells them apart).
    pub async fn end_session(
        &self,
        ctx: &RequestContext,
        access_token: &str,
        id: FamilyId,
    ) -> Result<()> {
        let (user, current) = self.authenticate_session(access_token).await?;
        if !self
            .store
            .session_revoke(user.id, id, "ended by its user", Utc::now())
            .await?
        {
            return Err(Error::NotFound(format!("session {id}")));
        }
        let event = Audit::new(AuditKind::SessionRevoked)
            .user(&user)
            .family(id)
            .detail("reason", "ended_by_user")
            .detail("current", id == current);
        self.audit(ctx, event).await;
        Ok(())
    }

    /// Logs out: the token's own session, every other one, or all.
    pub async fn logout(
        &self,
        ctx: &RequestContext,
        access_token: &str,
        scope: LogoutScope,
    ) -> Result<()> {
        let (user, current) = self.authenticate_session(access_token).await?;
        let now = Utc::now();
        let (revoked, scope_name) = match scope {
            LogoutScope::Local => (
                u64::from(
                    self.store
                        .session_revoke(user.id, current, "logout", now)
                        .await?,
                ),
                "local",
            ),
            LogoutScope::Others => (
                self.store
                    .sessions_revoke_others(user.id, current, "logout (others)", now)
                    .await?,
                "others",
            ),
            LogoutScope::Global => (
                self.store
                    .revoke_user_families(user.id, "logout (global)", now)
                    .await?,
                "global",
            ),
        };
        let mut event = Audit::new(AuditKind::SessionRevoked)
            .user(&user)
            .detail("reason", "logout")
            .detail("scope", scope_name)
            .detail("sessions", revoked);
        if scope == LogoutScope::Local {
            event = event.family(current);
        }
        self.audit(ctx, event).await;
        Ok(())
    }
}
