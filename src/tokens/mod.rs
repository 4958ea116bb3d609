//! Tokens: signed JWT access tokens ([`jwt`]) and opaque refresh tokens ([`refresh`]).

pub mod jwt;
pub mod refresh;

pub use jwt::{AccessClaims, JwtKeys};
pub use refresh::RefreshToken;
