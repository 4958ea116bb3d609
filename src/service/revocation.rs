//! RFC 7009 revocation: logging out with whichever token a client kept. A refresh
//! token ends its session as [`AuthService::revoke`] always did; an access token this
//! server signed ends its session too (RFC 7009 §2.1 lets a server revoke the tokens
//! related to the one presented), so a client that kept only its access token can
//! still log out, and that token fails at `/me` at once.

use chrono::Utc;

use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::error::{Error, Result};
use crate::tokens::jwt;

impl AuthService {
    /// Revokes the session of a refresh or an access token. A token this server does
    /// not know — garbage, another key's JWT, a session already gone — is revoked
    /// already: nothing to do, and nothing said (RFC 7009 §2.2).
    pub async fn revoke_token(&self, ctx: &RequestContext, token: &str) -> Result<()> {
        let token = token.trim();
        if !jwt::looks_like_jwt(token) {
            return self.revoke(ctx, token).await;
        }
        // Expired or not: holding the token proves the session was the client's.
        let family = match self.family_of(token).await {
            Ok(family) => family,
            Err(Error::InvalidToken(_) | Error::NotFound(_)) => return Ok(()),
            Err(other) => return Err(other),
        };
        if self
            .store()
            .revoke_family(family, "logout", Utc::now())
            .await?
        {
            tracing::info!(family_id = %family, "session revoked (logout with an access token)");
            let event = Audit::new(AuditKind::SessionRevoked)
                .family(family)
                .detail("reason", "logout");
            self.audit(ctx, event).await;
        }
        Ok(())
    }
}
