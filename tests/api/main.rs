//! The HTTP API, driven over real sockets against a server on 127.0.0.1:0, on SQLite
//! and on PostgreSQL alike: one test binary, a file per endpoint (plus what every
//! response shares), and the `Store` contract story run on both backends.

#[path = "../support/mod.rs"]
mod support;

mod cors;
mod edge;
mod health;
mod me;
mod oauth2;
mod rate_limit;
mod refresh;
mod register;
mod revoke;
mod store_contract;
mod token;

/// What the endpoint files share.
mod prelude {
    pub use std::time::Duration;

    pub use authctl::domain::{FamilyId, UserRef};
    pub use authctl::tokens::JwtKeys;
    pub use chrono::Utc;

    pub use crate::support::{Backend, PASSWORD, TestApp, assert_problem, skip_or_fail, spawn_app};
    pub(crate) use crate::{json, service_for};
}

use authctl::service::AuthService;
use support::TestApp;

async fn json(resp: reqwest::Response) -> serde_json::Value {
    resp.json().await.expect("json body")
}

async fn service_for(app: &TestApp) -> AuthService {
    let store = authctl::store::connect(&app.settings).expect("store");
    AuthService::new(store, &app.settings.auth)
        .await
        .expect("service")
}
