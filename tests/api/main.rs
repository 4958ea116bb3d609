//! The HTTP API, driven over real sockets against a server on 127.0.0.1:0, on SQLite
//! and on PostgreSQL alike: one test binary, a file per endpoint (plus what every
//! response shares), and the `Store` contract story run on both backends.

#[path = "../support/mod.rs"]
mod support;

mod client_ip;
mod cors;
mod credentials;
mod edge;
mod email;
mod forwarded;
mod health;
mod keys;
mod me;
mod metrics;
mod no_store;
mod oauth2;
mod prune;
mod rate_limit;
mod refresh;
mod refusals;
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

use std::time::Duration;

use authctl::service::AuthService;
use support::TestApp;

/// Runs `authctl ARGS` as a real process against `app`'s database (with its key, at
/// the cheapest bcrypt cost, in an empty environment), off the runtime's threads;
/// `stdin` is written to its standard input.
async fn cli_run(app: &TestApp, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut cmd = assert_cmd::Command::new(support::authctl_bin());
    cmd.current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &app.db.url)
        .env("SECRET_KEY", "test-key-0123456789abcdefghijklmnopqrstuv")
        .env("AUTHCTL_BCRYPT_COST", "4")
        .args(args)
        .timeout(Duration::from_secs(120));
    if let Some(input) = stdin {
        cmd.write_stdin(input.to_owned());
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run authctl"))
        .await
        .expect("cli task")
}

async fn json(resp: reqwest::Response) -> serde_json::Value {
    resp.json().await.expect("json body")
}

async fn service_for(app: &TestApp) -> std::sync::Arc<AuthService> {
    let store = authctl::store::connect(&app.settings).expect("store");
    std::sync::Arc::new(
        AuthService::new(store, &app.settings.auth)
            .await
            .expect("service"),
    )
}
