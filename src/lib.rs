//! authctl: a JWT authentication REST API and the operator toolkit around it.
//!
//! The layers, from the edges inward:
//!
//! - [`cli`]: the command line (`serve`, `migrate`, `user`, `token`, `health`, …);
//! - [`http`]: the warp REST API that `serve` runs (and, in `http/admin`, the admin API
//!   for services holding an API key);
//! - [`server`]: bind, start up, serve, shut down gracefully;
//! - [`service`]: `AuthService`, where every rule lives, once;
//! - [`domain`], [`tokens`], [`hashing`]: parsed types, JWTs and refresh tokens, bcrypt;
//! - [`store`]: the storage contract with its SQLite and PostgreSQL implementations;
//! - [`config`], [`error`], [`telemetry`]: settings, the one error enum, logging.

pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod hashing;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tokens;

pub use error::{Error, Result};

/// Installs the process-wide TLS crypto provider (ring). Call once at start.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
