//! Tokens: signed JWT access tokens ([`jwt`]) and opaque refresh tokens ([`refresh`]).

pub mod jwt;
pub mod refresh;
pub mod signing;

pub use jwt::{AccessClaims, JwtKeys};
pub use refresh::RefreshToken;
