//! Domain types that can only be built through `parse`: once you hold an [`Email`],
//! a [`Username`] or a [`Password`], it is valid. Ids are typed ([`UserId`],
//! [`FamilyId`]) from the database row to the JSON output.

pub mod email;
mod ids;
pub mod password;
pub mod role;
mod user;
mod username;

pub use email::Email;
pub use ids::{FamilyId, UserId};
pub use password::Password;
pub use role::{Role, Scope};
pub use user::UserRef;
pub use username::Username;
