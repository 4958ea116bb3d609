//! Resolving a USER reference (SPEC §7) to exactly the account it names.
//!
//! An all-digit USER is an id (usernames may not be all digits). A database made
//! before that rule may still hold all-digit usernames; for those the id reading
//! could pick another account than the operator meant, so when the id names one
//! account and a *different* account has that digit string as its username, the
//! reference is refused as ambiguous (exit 2), naming both by email. A legacy
//! all-digit account is always reachable by its email.

use super::AuthService;
use crate::domain::UserRef;
use crate::error::{Error, Result};
use crate::store::User;

impl AuthService {
    pub(super) async fn resolve_user_ref(&self, user: &UserRef) -> Result<User> {
        let found = self.store.find_user(user).await?;
        if let UserRef::Id(id) = user {
            let legacy = self
                .store
                .find_user(&UserRef::Username(id.to_string()))
                .await?;
            match (&found, legacy) {
                (Some(by_id), Some(named)) if by_id.id != named.id => {
                    return Err(Error::validation(
                        "USER",
                        format!(
                            "{id} is the id of {} and the (old, all-digit) username of {}; \
                             name the user by email instead",
                            by_id.email, named.email
                        ),
                    ));
                }
                (None, Some(named)) => {
                    return Err(Error::NotFound(format!(
                        "user with id {id} (an all-digit USER is an id; the user named \
                         '{}' is reached by email: {})",
                        named.username, named.email
                    )));
                }
                _ => {}
            }
        }
        found.ok_or_else(|| Error::NotFound(user.to_string()))
    }
}
