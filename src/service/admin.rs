//! Roles, API keys and the admin API's rules (SPEC §15).
//!
//! - Roles: a user's role names, given at creation (`auth.default_roles` at
//!   self-registration), changed by `user role add|remove` and the admin API. Tokens
//!   issued from then on carry them; `/me` and introspection read them at once.
//! - API keys, for services: `ak_` + 43 characters of base64url (256 random bits);
//!   only the SHA-256 digest is stored, and a presented key is found by that digest
//!   (one indexed read, no cache: a revocation counts on every replica at the next
//!   request). A key that is not even of the right shape is refused before any
//!   lookup. `last_used_at` moves at most once a minute per key (a conditional
//!   UPDATE, skipped altogether while the stored time is recent).
//! - The admin API's user operations go through the same calls as the CLI
//!   (`set_password`, `set_active`, `delete_user`, …), so the race-free credential
//!   rule (§10) holds there too; the request's API key id is in every audit event.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{Audit, AuditKind, AuthService, RequestContext};
use crate::domain::{Email, Password, Role, Scope, UserId, UserRef, Username};
use crate::error::{Error, Result};
use crate::store::User;
use crate::store::admin::{AdminUserRow, ApiKeyRow, NewApiKey, UserPageQuery, UserUpdate};
use crate::tokens::refresh::RefreshToken;

/// The prefix of every API key.
pub const API_KEY_PREFIX: &str = "ak_";
/// A presented key's `last_used_at` is written at most this often.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// The admin user list's page size bounds and default.
pub const PAGE_MAX: u32 = 200;
pub const PAGE_DEFAULT: u32 = 50;

/// An API key as `apikey list` and the audit log show it: never the key.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyInfo {
    pub id: i64,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRow> for ApiKeyInfo {
    fn from(r: ApiKeyRow) -> Self {
        ApiKeyInfo {
            id: r.id,
            scopes: Scope::parse_list(&r.scopes),
            name: r.name,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// A new key: printed once, then only its digest exists.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub info: ApiKeyInfo,
    pub key: String,
}

/// The admin API's user object.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminUser {
    #[schema(example = 1)]
    pub id: i64,
    #[schema(example = "alice@example.com")]
    pub email: String,
    #[schema(example = "alice")]
    pub username: String,
    pub is_active: bool,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    /// The user's roles, sorted.
    #[schema(example = json!(["admin"]))]
    pub roles: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// Until when logins are refused (null: not locked).
    pub locked_until: Option<DateTime<Utc>>,
}

impl AdminUser {
    fn from_row(row: AdminUserRow, now: DateTime<Utc>) -> Self {
        let u = row.user;
        AdminUser {
            id: u.id.0,
            email: u.email,
            username: u.username,
            is_active: u.is_active,
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            roles: u.roles,
            created_at: u.created_at,
            // A lock that has run out is no lock.
            locked_until: row.locked_until.filter(|t| *t > now),
        }
    }
}

/// One page of the admin user list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UserPage {
    pub users: Vec<AdminUser>,
    /// Pass as `cursor` for the next page; null on the last one.
    pub next_cursor: Option<String>,
}

/// What the admin user list asks for, as sent (checked here: a bad value is a 422).
#[derive(Debug, Clone, Default)]
pub struct UserListQuery {
    pub q: Option<String>,
    pub role: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// A new user through the admin API.
#[derive(Debug, Clone)]
pub struct NewAdminUser {
    pub email: Email,
    pub username: Username,
    pub password: Option<Password>,
    pub roles: Vec<Role>,
    pub is_active: bool,
    pub email_verified: bool,
}

/// A change through the admin API; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    pub email: Option<Email>,
    pub username: Option<Username>,
    pub password: Option<Password>,
    pub is_active: Option<bool>,
    pub roles: Option<Vec<Role>>,
    pub email_verified: Option<bool>,
}

fn digest_of(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether `raw` has the shape of a key authctl issues (no lookup for anything else).
fn key_shape(raw: &str) -> bool {
    raw.strip_prefix(API_KEY_PREFIX)
        .is_some_and(|rest| RefreshToken::parse(rest).is_some())
}

fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("u{id}"))
}

fn decode_cursor(cursor: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    text.strip_prefix('u')?
        .parse::<i64>()
        .ok()
        .filter(|id| *id >= 0)
}

/// A `LIKE` pattern for a prefix: `\`, `%` and `_` escaped with `\`.
fn prefix_pattern(q: &str) -> String {
    let mut p = String::with_capacity(q.len() + 1);
    for c in q.chars() {
        if matches!(c, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

fn role_names(roles: &[Role]) -> Vec<String> {
    roles.iter().map(|r| r.as_str().to_owned()).collect()
}

impl AuthService {
    // ----- roles -----------------------------------------------------------------

    /// `user role add`: gives the user `roles` (those held already stay).
    pub async fn add_roles(
        &self,
        ctx: &RequestContext,
        user: &UserRef,
        roles: &[Role],
    ) -> Result<User> {
        let found = self.find_user(user).await?;
        self.store().roles_add(found.id, &role_names(roles)).await?;
        self.roles_changed(ctx, found.id).await
    }

    /// `user role remove`: takes `roles` away (those not held are ignored).
    pub async fn remove_roles(
        &self,
        ctx: &RequestContext,
        user: &UserRef,
        roles: &[Role],
    ) -> Result<User> {
        let found = self.find_user(user).await?;
        self.store()
            .roles_remove(found.id, &role_names(roles))
            .await?;
        self.roles_changed(ctx, found.id).await
    }

    async fn roles_changed(&self, ctx: &RequestContext, user: UserId) -> Result<User> {
        let user = self.find_user(&UserRef::Id(user)).await?;
        tracing::info!(user_id = user.id.0, roles = ?user.roles, "roles changed");
        let event = Audit::new(AuditKind::UserUpdated)
            .user(&user)
            .detail("roles", user.roles.clone());
        self.audit(ctx, event).await;
        Ok(user)
    }

    // ----- API keys --------------------------------------------------------------

    /// `apikey create`: a new key with `scopes`, valid for `ttl` if given. The key is
    /// in the answer only; the store keeps its digest.
    pub async fn create_api_key(
        &self,
        name: &str,
        scopes: &[Scope],
        ttl: Option<Duration>,
    ) -> Result<CreatedApiKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Error::validation(
                "--name",
                "must be 1 to 100 characters, no control characters",
            ));
        }
        if scopes.is_empty() {
            return Err(Error::validation("--scope", "give at least one scope"));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        let key = format!("{API_KEY_PREFIX}{}", RefreshToken::generate().expose());
        let now = Utc::now();
        let expires_at = match ttl {
            Some(ttl) => Some(
                chrono::Duration::from_std(ttl)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| Error::validation("--expires", "is too long"))?,
            ),
            None => None,
        };
        let digest = digest_of(&key);
        let row = self
            .store()
            .apikey_insert(&NewApiKey {
                name,
                digest: &digest,
                scopes: Scope::join(&scopes),
                now,
                expires_at,
            })
            .await?;
        tracing::info!(api_key = row.id, name, "API key created");
        let info = ApiKeyInfo::from(row);
        let event = Audit::new(AuditKind::ApikeyCreated)
            .detail("api_key", info.id)
            .detail("name", info.name.clone())
            .detail("scopes", Scope::join(&info.scopes));
        self.audit(&RequestContext::none(), event).await;
        Ok(CreatedApiKey { info, key })
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        Ok(self
            .store()
            .apikey_list()
            .await?
            .into_iter()
            .map(ApiKeyInfo::from)
            .collect())
    }

    /// `apikey revoke`: refused from the next request on, on every replica.
    pub async fn revoke_api_key(&self, id: i64) -> Result<ApiKeyInfo> {
        let row = self
            .store()
            .apikey_revoke(id, Utc::now())
            .await?
            .ok_or_else(|| Error::NotFound(format!("API key {id}")))?;
        tracing::info!(api_key = id, "API key revoked");
        let event = Audit::new(AuditKind::ApikeyRevoked)
            .detail("api_key", id)
            .detail("name", row.name.clone());
        self.audit(&RequestContext::none(), event).await;
        Ok(ApiKeyInfo::from(row))
    }

    /// The key a request presented, if it is live and holds `scope`: unknown,
    /// revoked or expired → 401; without the scope → 403 `insufficient_scope`.
    pub async fn check_api_key(&self, raw: Option<&str>, scope: Scope) -> Result<ApiKeyInfo> {
        let raw = raw.ok_or(Error::MissingToken)?;
        if !key_shape(raw) {
            return Err(Error::InvalidToken("not an API key"));
        }
        let row = self
            .key_lookups
            .find(self.store().as_ref(), digest_of(raw))
            .await?
            .ok_or(Error::InvalidToken("unknown API key"))?;
        let now = Utc::now();
        if row.revoked_at.is_some() {
            return Err(Error::InvalidToken("API key revoked"));
        }
        if row.expires_at.is_some_and(|t| t <= now) {
            return Err(Error::InvalidToken("API key expired"));
        }
        let since = now - chrono::Duration::from_std(LAST_USED_EVERY).unwrap_or_default();
        if row.last_used_at.is_none_or(|t| t < since) {
            // Recorded, not required: a failure here never refuses the request.
            if let Err(e) = self.store().apikey_touch(row.id, now, since).await {
                tracing::warn!(api_key = row.id, error = %e, "could not record an API key's use");
            }
        }
        let info = ApiKeyInfo::from(row);
        if !info.scopes.contains(&scope) {
            return Err(Error::InsufficientScope(scope.as_str()));
        }
        Ok(info)
    }

    // ----- the admin API's users -------------------------------------------------

    async fn admin_view(&self, id: UserId) -> Result<AdminUser> {
        let mut row = self
            .store()
            .admin_user(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user with id {id}")))?;
        row.user.roles = self.store().roles_of(id).await?;
        Ok(AdminUser::from_row(row, Utc::now()))
    }

    /// `GET /api/v1/admin/users`: a page in id order after the cursor.
    pub async fn admin_users(&self, query: &UserListQuery) -> Result<UserPage> {
        let mut errors = Vec::new();
        let limit = match query.limit.as_deref() {
            None => PAGE_DEFAULT,
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=PAGE_MAX).contains(&n) => n,
                _ => {
                    errors.push(crate::error::FieldError::new(
                        "limit",
                        format!("must be a number from 1 to {PAGE_MAX}"),
                    ));
                    0
                }
            },
        };
        let after = match query.cursor.as_deref() {
            None | Some("") => 0,
            Some(raw) => decode_cursor(raw).unwrap_or_else(|| {
                errors.push(crate::error::FieldError::new(
                    "cursor",
                    "is not a cursor this API gave",
                ));
                0
            }),
        };
        let role = match query.role.as_deref() {
            None | Some("") => None,
            Some(raw) => match Role::parse(raw) {
                Ok(r) => Some(r.as_str().to_owned()),
                Err(m) => {
                    errors.push(crate::error::FieldError::new("role", m));
                    None
                }
            },
        };
        if !errors.is_empty() {
            return Err(Error::Validation(errors));
        }
        let pattern = query
            .q
            .as_deref()
            .map(crate::domain::email::login_key)
            .filter(|q| !q.is_empty())
            .map(|q| prefix_pattern(&q));
        let mut rows = self
            .store()
            .admin_users_page(&UserPageQuery {
                after,
                pattern,
                role,
                // One more than asked: whether another page follows.
                limit: i64::from(limit) + 1,
            })
            .await?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let mut users: Vec<User> = rows.iter().map(|r| r.user.clone()).collect();
        self.fill_roles(&mut users).await?;
        let now = Utc::now();
        let next_cursor = if more {
            rows.last().map(|r| encode_cursor(r.user.id.0))
        } else {
            None
        };
        let users = rows
            .into_iter()
            .zip(users)
            .map(|(mut row, user)| {
                row.user = user;
                AdminUser::from_row(row, now)
            })
            .collect();
        Ok(UserPage { users, next_cursor })
    }

    pub async fn admin_get_user(&self, id: UserId) -> Result<AdminUser> {
        self.admin_view(id).await
    }

    /// `POST /api/v1/admin/users`: defaults active, unverified, no roles.
    pub async fn admin_create_user(
        &self,
        ctx: &RequestContext,
        new: NewAdminUser,
    ) -> Result<AdminUser> {
        let user = self
            .add_user(
                ctx,
                new.email,
                new.username,
                new.password.as_ref(),
                new.is_active,
                &new.roles,
            )
            .await?;
        if new.email_verified {
            self.store().set_email_verified(user.id, true).await?;
        }
        self.admin_view(user.id).await
    }

    /// `PATCH /api/v1/admin/users/{id}`. A new email is unverified unless
    /// `email_verified` is given; a password change or a disable revokes every
    /// session (the CLI's own calls, race-free).
    pub async fn admin_update_user(
        &self,
        ctx: &RequestContext,
        id: UserId,
        patch: UserPatch,
    ) -> Result<AdminUser> {
        let target = UserRef::Id(id);
        let current = self.find_user(&target).await?;
        let new_email = patch.email.filter(|e| e.as_str() != current.email);
        // Another address (not just its case) must prove itself again.
        let other_address = new_email
            .as_ref()
            .is_some_and(|e| e.normalized() != crate::domain::email::login_key(&current.email));
        let identity_changed =
            new_email.is_some() || patch.username.is_some() || patch.email_verified.is_some();
        if identity_changed {
            let email_verified = match patch.email_verified {
                Some(v) => Some(v),
                None if other_address => Some(false),
                None => None,
            };
            let change = UserUpdate {
                user: id,
                email: new_email
                    .as_ref()
                    .map(|e| (e.as_str().to_owned(), e.normalized())),
                username: patch
                    .username
                    .as_ref()
                    .map(|u| (u.as_str().to_owned(), u.normalized())),
                email_verified,
                now: Utc::now(),
            };
            if !self.store().user_update(&change).await? {
                return Err(Error::NotFound(format!("user with id {id}")));
            }
            let mut event = Audit::new(AuditKind::UserUpdated).user(&current);
            if let Some(e) = &new_email {
                event = event.detail("email", e.as_str());
            }
            if let Some(u) = &patch.username {
                event = event.detail("username", u.as_str());
            }
            if let Some(v) = email_verified {
                event = event.detail("email_verified", v);
            }
            self.audit(ctx, event).await;
        }
        if let Some(roles) = &patch.roles {
            self.store().roles_set(id, &role_names(roles)).await?;
            self.roles_changed(ctx, id).await?;
        }
        if let Some(password) = &patch.password {
            self.set_password(ctx, &target, password).await?;
        }
        if let Some(active) = patch.is_active {
            self.set_active(ctx, &target, active).await?;
        }
        self.admin_view(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
        assert_eq!(decode_cursor("nope"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("u-1")), None);
    }

    #[test]
    fn a_prefix_pattern_escapes_like_wildcards() {
        assert_eq!(prefix_pattern("a_b%c\\"), "a\\_b\\%c\\\\%");
    }

    #[test]
    fn only_the_issued_shape_is_a_key() {
        let key = format!("{API_KEY_PREFIX}{}", RefreshToken::generate().expose());
        assert_eq!(key.len(), 46);
        assert!(key_shape(&key));
        assert!(!key_shape(&key[3..]));
        assert!(!key_shape("ak_short"));
    }
}

/// Lookups of API keys by digest, coalesced: a service presents the same key on every
/// request, and one indexed read per request (a hop to the database and back) cost
/// introspection as much as the rest of it. At most [`KEY_LANES`] reads run at once;
/// a lookup that finds a read of its digest still *queued* (not yet sent) joins it,
/// so every lookup is answered by a read that began after it arrived: a revocation
/// committed before the request still counts (SPEC §15). A lone lookup waits for
/// nothing. A read that fails sends its lookups back to read alone.
#[derive(Default)]
pub struct KeyLookups {
    queued: std::sync::Mutex<std::collections::HashMap<[u8; 32], Vec<KeyAnswer>>>,
    lanes: KeyLanes,
}

type KeyAnswer = tokio::sync::oneshot::Sender<Option<Option<ApiKeyRow>>>;

/// Reads of keys in flight at once.
pub const KEY_LANES: usize = 2;

struct KeyLanes(tokio::sync::Semaphore);

impl Default for KeyLanes {
    fn default() -> Self {
        KeyLanes(tokio::sync::Semaphore::new(KEY_LANES))
    }
}

/// Sends the queued lookups of `digest` back to read alone, unless forgotten.
struct QueueGuard<'a> {
    lookups: &'a KeyLookups,
    digest: [u8; 32],
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        for w in self.lookups.take(&self.digest) {
            let _ = w.send(None);
        }
    }
}

impl KeyLookups {
    fn take(&self, digest: &[u8; 32]) -> Vec<KeyAnswer> {
        self.queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(digest)
            .unwrap_or_default()
    }

    pub async fn find(
        &self,
        store: &dyn crate::store::Store,
        digest: [u8; 32],
    ) -> Result<Option<ApiKeyRow>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let leader = {
            let mut queued = self
                .queued
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match queued.get_mut(&digest) {
                Some(waiting) => {
                    waiting.push(tx);
                    false
                }
                None => {
                    queued.insert(digest, vec![tx]);
                    true
                }
            }
        };
        if leader {
            // A lane first: while the reads in flight finish, lookups of this digest
            // queue behind this one. Then the queue is taken, and read once. A leader
            // dropped while it waits (its client went away) hands the queue back.
            let guard = QueueGuard {
                lookups: self,
                digest,
            };
            let _lane = self.lanes.0.acquire().await;
            std::mem::forget(guard);
            let waiting = self.take(&digest);
            let read = store.apikey_find(&digest).await;
            let answer = read.as_ref().ok().cloned();
            for w in waiting {
                let _ = w.send(answer.clone());
            }
            read?;
        }
        match rx.await {
            Ok(Some(row)) => Ok(row),
            // The read failed or its leader went away: read alone.
            Ok(None) | Err(_) => store.apikey_find(&digest).await,
        }
    }
}
