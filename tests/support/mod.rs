//! Test support: a server of our own on 127.0.0.1:0 against a fresh database per
//! test, on SQLite (a temp file) or PostgreSQL (the throwaway cluster of
//! `authctl_testkit::pg`, or the server `AUTHCTL_TEST_POSTGRES_URL` names).
//!
//! When PostgreSQL cannot be had, tests say SKIPPED loudly; under `CI=true` that is a
//! failure instead.
#![allow(dead_code)]

pub mod browser;
pub mod cli;
pub mod pg;
pub mod served;
pub mod smtp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use authctl::config::{DatabaseUrl, SecretKey, Settings};
use authctl::server::{self, Running, ServeOptions};

pub const PASSWORD: &str = "correct horse battery";

#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    Postgres(String),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: &Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("authctl.db").display());
                TestDb {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres(server_url) => TestDb {
                url: pg::fresh_database(server_url).await,
                _dir: None,
            },
        }
    }
}

/// Settings for tests: a fixed strong key, the cheapest bcrypt cost, no rate limits.
pub fn test_settings(database_url: &str) -> Settings {
    let mut s = Settings {
        database_url: DatabaseUrl::parse(database_url).expect("database url"),
        bind: "127.0.0.1:0".parse().expect("bind"),
        ..Settings::default()
    };
    s.auth.bcrypt_cost = 4;
    s.auth.secret_key =
        Some(SecretKey::parse("test-key-0123456789abcdefghijklmnopqrstuv").expect("key"));
    s.rate_limit.enabled = false;
    s
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub client: reqwest::Client,
    pub db: TestDb,
    pub settings: Settings,
    running: Option<Running>,
}

/// Starts a server on a fresh database and waits until it is ready.
pub async fn spawn_app(backend: &Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let db = TestDb::new(backend).await;
    spawn_app_on(db, tweak).await
}

pub async fn spawn_app_on(db: TestDb, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    authctl::install_crypto_provider();
    let mut settings = test_settings(&db.url);
    tweak(&mut settings);
    let running = server::spawn(settings.clone(), ServeOptions::default())
        .await
        .expect("server starts");
    let addr = running.addr;
    let app = TestApp {
        addr,
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        db,
        settings,
        running: Some(running),
    };
    app.wait_ready().await;
    app
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Ok(r) = self.client.get(self.url("/health/startup")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server did not finish starting");
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.expect("clean shutdown");
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub async fn register(&self, email: &str, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/register"))
            .json(&serde_json::json!({"email": email, "username": username, "password": password}))
            .send()
            .await
            .expect("register request")
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/token"))
            .form(&[("username", username), ("password", password)])
            .send()
            .await
            .expect("login request")
    }

    /// Registers `name` and logs in; returns (access, refresh).
    pub async fn user_with_tokens(&self, name: &str) -> (String, String) {
        let r = self
            .register(&format!("{name}@example.com"), name, PASSWORD)
            .await;
        assert_eq!(
            r.status(),
            201,
            "register {name}: {}",
            r.text().await.unwrap_or_default()
        );
        let r = self.login(name, PASSWORD).await;
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.expect("token json");
        (
            body["access_token"].as_str().expect("access").to_owned(),
            body["refresh_token"].as_str().expect("refresh").to_owned(),
        )
    }

    pub async fn me(&self, access: &str) -> reqwest::Response {
        self.client
            .get(self.url("/api/v1/auth/me"))
            .bearer_auth(access)
            .send()
            .await
            .expect("me request")
    }

    pub async fn refresh(&self, refresh: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/refresh"))
            .json(&serde_json::json!({ "refresh_token": refresh }))
            .send()
            .await
            .expect("refresh request")
    }

    pub async fn revoke(&self, refresh: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/revoke"))
            .json(&serde_json::json!({ "refresh_token": refresh }))
            .send()
            .await
            .expect("revoke request")
    }
}

/// Asserts a problem+json body with the given status; returns the body.
pub async fn assert_problem(resp: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(resp.status().as_u16(), status, "status");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(ct, "application/problem+json", "content type");
    let body: serde_json::Value = resp.json().await.expect("problem json");
    assert_eq!(body["status"], status, "status in body: {body}");
    assert!(
        body["title"].is_string() && body["type"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    body
}

/// The PostgreSQL backend, or `None` (after saying SKIPPED) where it cannot be had
/// outside CI.
pub async fn postgres() -> Option<Backend> {
    match pg::shared_server().await {
        Ok(url) => Some(Backend::Postgres(url)),
        Err(why) => {
            skip_or_fail(&format!("PostgreSQL unavailable: {why}"));
            None
        }
    }
}

/// Says SKIPPED on stderr, or panics under CI=true (one rule for tests and bench).
pub use authctl_testkit::skip_or_fail;

/// Path of the built binary.
pub fn authctl_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_authctl"))
}

/// Generates one test per backend for each listed async fn taking a `Backend`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = $crate::support::postgres().await {
                        super::$name(backend).await;
                    }
                }
            )*
        }
    };
}
