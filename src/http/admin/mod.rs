//! The admin API (SPEC §15), for services holding an API key (`Authorization: Bearer
//! ak_…`), one file per resource like `api/`:
//!
//! - [`users`]: `/api/v1/admin/users` (list, create) and `/api/v1/admin/users/{id}`
//!   (read, change, delete), `…/{id}/unlock`, `…/{id}/reset-link`;
//! - [`sessions`]: `/api/v1/admin/users/{id}/sessions` (list, revoke all);
//! - [`audit`](mod@audit): `/api/v1/admin/audit`.
//!
//! Every handler checks the key and its scope first ([`authorize`]), so a caller
//! without one learns nothing else; the key's id goes into the request's audit
//! context. Not rate limited per IP (services call it from a few addresses).

pub mod audit;
pub mod sessions;
pub mod users;

use std::sync::Arc;

use serde_json::{Map, Value};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::filters::{self, ApiKey, api_key, with_service};
use super::state::AppState;
use crate::domain::{Role, Scope};
use crate::error::{Error, FieldError, Result};
use crate::service::{AuthService, RequestContext};

/// The security scheme name of the admin API and introspection in the document.
pub const API_KEY_SCHEME: &str = "api_key";

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    users::routes(state)
        .or(sessions::routes(state))
        .unify()
        .or(audit::route(state))
        .unify()
        .boxed()
}

/// What every admin handler starts from: the service, the request's context and the
/// presented key (unchecked).
pub fn admin(
    state: &Arc<AppState>,
) -> impl Filter<Extract = (Arc<AuthService>, RequestContext, Option<ApiKey>), Error = warp::Rejection>
+ Clone
+ use<> {
    with_service(state.clone())
        .and(filters::context(state.clone()))
        .and(api_key())
}

/// Checks the key for `scope` (401 / 403) and puts its id in the context, so every
/// audit event the request causes names it.
pub async fn authorize(
    service: &AuthService,
    key: Option<&ApiKey>,
    scope: Scope,
    mut ctx: RequestContext,
) -> Result<RequestContext> {
    let info = service
        .check_api_key(key.map(ApiKey::as_str), scope)
        .await?;
    ctx.api_key = Some(info.id);
    Ok(ctx)
}

/// The `{id}` of a path: a user id, or no such user (404) — checked after the key,
/// so a caller without one learns nothing about ids.
pub fn user_id(raw: &str) -> Result<crate::domain::UserId> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .map(crate::domain::UserId)
        .ok_or_else(|| Error::NotFound(format!("user with id {raw}")))
}

/// Reads a JSON object's fields, collecting every field's error for one 422.
pub struct Fields<'a> {
    object: &'a Map<String, Value>,
    pub errors: Vec<FieldError>,
}

impl<'a> Fields<'a> {
    pub fn new(object: &'a Map<String, Value>) -> Self {
        Fields {
            object,
            errors: Vec::new(),
        }
    }

    fn fail(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(name, message));
    }

    /// An optional field parsed from a string; `null` counts as absent.
    pub fn parsed<T>(&mut self, name: &str, parse: fn(&str) -> Result<T, String>) -> Option<T> {
        match self.object.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match parse(s) {
                Ok(v) => Some(v),
                Err(m) => {
                    self.fail(name, m);
                    None
                }
            },
            Some(_) => {
                self.fail(name, "must be a string");
                None
            }
        }
    }

    /// A required field parsed from a string.
    pub fn required<T>(&mut self, name: &str, parse: fn(&str) -> Result<T, String>) -> Option<T> {
        if matches!(self.object.get(name), None | Some(Value::Null)) {
            self.fail(name, "field required");
            return None;
        }
        self.parsed(name, parse)
    }

    pub fn boolean(&mut self, name: &str) -> Option<bool> {
        match self.object.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => {
                self.fail(name, "must be true or false");
                None
            }
        }
    }

    /// An optional array of role names, sorted, without repeats.
    pub fn roles(&mut self, name: &str) -> Option<Vec<Role>> {
        match self.object.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => {
                let names: Option<Vec<&str>> = items.iter().map(Value::as_str).collect();
                let Some(names) = names else {
                    self.fail(name, "must be an array of strings");
                    return None;
                };
                match Role::parse_all(&names) {
                    Ok(roles) => Some(roles),
                    Err(m) => {
                        self.fail(name, m);
                        None
                    }
                }
            }
            Some(_) => {
                self.fail(name, "must be an array of role names");
                None
            }
        }
    }

    /// The 422 for every field at fault, if any.
    pub fn finish(self) -> Result<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Validation(self.errors))
        }
    }
}

/// The value of `name` in a query (the last one given).
pub fn query_value(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}
