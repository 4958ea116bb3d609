//! RFC 7009 revocation: logging out with whichever token a client kept. A refresh
//! token ends its session as [`AuthService::revoke`] always did; a live access token
//! this server signed ends its session too (RFC 7009 §2.1 lets a server revoke the
//! tokens related to the one presented), so a client that kept only its access token
//! can still log out, and that token fails at `/me` at once. An expired access token
//! is an unknown token (SPEC §9): only a live credential ends a session, so a token
//! that leaked after its `exp` (a log, a browser history) cannot log its user out.

use chrono::Utc;

use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::domain::FamilyId;
use crate::error::Result;
use crate::tokens::jwt::{self, JwtFailure};

impl AuthService {
    /// Revokes the session of a refresh or an access token. A token this server does
    /// not know — garbage, another key's JWT, an expired access token, a session
    /// already gone — is revoked already: nothing to do, and nothing said (RFC 7009
    /// §2.2).
    pub async fn revoke_token(&self, ctx: &RequestContext, token: &str) -> Result<()> {
        let token = token.trim();
        if !jwt::looks_like_jwt(token) {
            return self.revoke(ctx, token).await;
        }
        let Some(family) = self.live_family(token).await? else {
            return Ok(());
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

    /// The session of an access token that verifies now — signature, issuer and expiry
    /// with the same leeway as at `/me` — or `None`. A `kid` not loaded yet (a rotation
    /// made elsewhere) reloads the keys first, as `/me` does.
    async fn live_family(&self, token: &str) -> Result<Option<FamilyId>> {
        let mut verified = self.jwt().verify(token);
        if let Err(JwtFailure::UnknownKid(kid)) = &verified
            && self.reload_for_unknown_kid(kid).await?
        {
            verified = self.jwt().verify(token);
        }
        Ok(verified
            .ok()
            .and_then(|(claims, _)| claims.family_id().ok()))
    }
}
