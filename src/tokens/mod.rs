//! Tokens: signed JWT access tokens ([`jwt`]) and opaque refresh tokens ([`refresh`]).

pub mod id_token;
pub mod jwt;
pub mod keys;
pub mod refresh;
pub mod signing;

pub use jwt::{AccessClaims, JwtKeys};
pub use keys::SecretKey;
pub use refresh::RefreshToken;

pub const LEEWAY_SECS: u64 = 5;
