//! Users: registration and operator-created accounts (with their roles), finding and
//! listing them (each with its current roles), and the credential changes (disable,
//! password, delete) that follow the race-free rule in [`super`].

use chrono::Utc;

use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::domain::{Email, Password, Role, UserId, UserRef, Username};
use crate::error::{Error, Result};
use crate::store::{self, NewUser, PasswordChange, User};

impl AuthService {
    // ----- users ---------------------------------------------------------------

    /// Registers a user: self-registered users are active at once. The fields are
    /// parsed, so valid, before they get here (a client's 422 names every bad one).
    pub async fn register(
        &self,
        ctx: &RequestContext,
        email: Email,
        username: Username,
        password: &Password,
    ) -> Result<User> {
        let roles = self.settings.default_roles.clone();
        let user = self
            .create_user(email.clone(), username, Some(password), true, &roles)
            .await?;
        self.audit(ctx, Audit::new(AuditKind::UserRegistered).user(&user))
            .await;
        self.metrics.registration();
        if self.email_enabled() {
            // The account exists either way: a failure to queue is logged, not answered.
            if let Err(e) = self
                .request_email(ctx, store::email::Purpose::Verify, &email)
                .await
            {
                tracing::warn!(user_id = user.id.0, error = %e, "could not queue the verification message");
            }
        }
        Ok(user)
    }

    /// An operator adds a user (`authctl user add`, the admin API): with the
    /// `roles` given (never `auth.default_roles`, which is for self-registration).
    /// Without a password the account gets the hash of a random one nobody knows:
    /// it can only be entered after a reset (SPEC §13).
    pub async fn add_user(
        &self,
        ctx: &RequestContext,
        email: Email,
        username: Username,
        password: Option<&Password>,
        active: bool,
        roles: &[Role],
    ) -> Result<User> {
        let user = self
            .create_user(email, username, password, active, roles)
            .await?;
        let event = Audit::new(AuditKind::UserCreated)
            .user(&user)
            .detail("active", active)
            .detail("roles", user.roles.clone());
        self.audit(ctx, event).await;
        Ok(user)
    }

    async fn create_user(
        &self,
        email: Email,
        username: Username,
        password: Option<&Password>,
        active: bool,
        roles: &[Role],
    ) -> Result<User> {
        let password_hash = match password {
            Some(p) => {
                self.check_password("password", p, username.as_str(), email.as_str())?;
                self.hasher.hash(p).await?
            }
            None => {
                let unknown = crate::tokens::refresh::RefreshToken::generate();
                let unknown = Password::parse(unknown.expose())
                    .map_err(|m| Error::Internal(anyhow::anyhow!("a random password: {m}")))?;
                self.hasher.hash(&unknown).await?
            }
        };
        let user = self
            .store
            .create_user(NewUser {
                email_norm: email.normalized(),
                email: email.as_str().to_owned(),
                username_norm: username.normalized(),
                username: username.as_str().to_owned(),
                password_hash,
                is_active: active,
                now: Utc::now(),
            })
            .await?;
        let mut user = user;
        if !roles.is_empty() {
            let names: Vec<String> = roles.iter().map(|r| r.as_str().to_owned()).collect();
            self.store.roles_add(user.id, &names).await?;
            user.roles = self.store.roles_of(user.id).await?;
        }
        tracing::info!(user_id = user.id.0, username = %user.username, "user created");
        Ok(user)
    }

    /// The user a USER reference names, never another account (see `user_ref.rs`).
    /// With the user's current roles.
    pub async fn find_user(&self, user: &UserRef) -> Result<User> {
        let mut found = self.resolve_user_ref(user).await?;
        found.roles = self.store.roles_of(found.id).await?;
        Ok(found)
    }

    /// The first `limit` users by id, each with its roles; only those holding `role`
    /// when one is given.
    pub async fn list_users(&self, limit: u32, role: Option<&Role>) -> Result<Vec<User>> {
        let mut users = match role {
            None => self.store.list_users(i64::from(limit)).await?,
            Some(role) => {
                let page = crate::store::admin::UserPageQuery {
                    after: 0,
                    pattern: None,
                    role: Some(role.as_str().to_owned()),
                    limit: i64::from(limit),
                };
                let rows = self.store.admin_users_page(&page).await?;
                rows.into_iter().map(|r| r.user).collect()
            }
        };
        self.fill_roles(&mut users).await?;
        Ok(users)
    }

    /// Sets each user's `roles` from the store, in one query.
    pub(crate) async fn fill_roles(&self, users: &mut [User]) -> Result<()> {
        let ids: Vec<UserId> = users.iter().map(|u| u.id).collect();
        let pairs = self.store.roles_of_many(&ids).await?;
        for user in users.iter_mut() {
            user.roles = pairs
                .iter()
                .filter(|(id, _)| *id == user.id)
                .map(|(_, r)| r.clone())
                .collect();
        }
        Ok(())
    }

    /// Enables or disables a user; disabling revokes all of the user's sessions.
    pub async fn set_active(
        &self,
        ctx: &RequestContext,
        user: &UserRef,
        active: bool,
    ) -> Result<(User, u64)> {
        let found = self.find_user(user).await?;
        let now = Utc::now();
        self.store.set_active(found.id, active, now).await?;
        let revoked = if active {
            0
        } else {
            self.store
                .revoke_user_families(found.id, "user disabled", now)
                .await?
        };
        tracing::info!(
            user_id = found.id.0,
            active,
            revoked_sessions = revoked,
            "user state changed"
        );
        let kind = if active {
            AuditKind::UserEnabled
        } else {
            AuditKind::UserDisabled
        };
        let event = Audit::new(kind)
            .user(&found)
            .detail("revoked_sessions", revoked);
        self.audit(ctx, event).await;
        Ok((self.find_user(&UserRef::Id(found.id)).await?, revoked))
    }

    /// Sets a new password and revokes all of the user's sessions.
    pub async fn set_password(
        &self,
        ctx: &RequestContext,
        user: &UserRef,
        password: &Password,
    ) -> Result<(User, u64)> {
        let found = self.find_user(user).await?;
        self.check_password("password", password, &found.username, &found.email)?;
        let hash = self.hasher.hash(password).await?;
        let change = PasswordChange {
            user: found.id,
            hash: &hash,
            keep: None,
            reason: "password changed",
            now: Utc::now(),
        };
        let revoked = self
            .store
            .set_password_hash(&change)
            .await?
            .ok_or_else(|| Error::NotFound(user.to_string()))?;
        tracing::info!(
            user_id = found.id.0,
            revoked_sessions = revoked,
            "password changed"
        );
        let event = Audit::new(AuditKind::PasswordChanged)
            .user(&found)
            .detail("by", "operator")
            .detail("revoked_sessions", revoked);
        self.audit(ctx, event).await;
        Ok((found, revoked))
    }

    /// Deletes a user with all sessions and tokens.
    pub async fn delete_user(&self, ctx: &RequestContext, user: &UserRef) -> Result<User> {
        let found = self.find_user(user).await?;
        if !self.store.delete_user(found.id).await? {
            return Err(Error::NotFound(user.to_string()));
        }
        tracing::info!(user_id = found.id.0, "user deleted");
        self.audit(ctx, Audit::new(AuditKind::UserDeleted).user(&found))
            .await;
        Ok(found)
    }
}
