//! The shipped image, `authctl:latest`, started with Testcontainers and driven through
//! its published port: the API flow on the image's SQLite default and against
//! PostgreSQL in a second container, the non-root user and the image's HEALTHCHECK,
//! `docker stop` (SIGTERM to PID 1) with a request in flight, and a restart on the same
//! volume.
//!
//! Build the image first: `make image` (docker/build-image.sh). Override the images
//! with AUTHCTL_TEST_IMAGE (default authctl:latest) and AUTHCTL_TEST_POSTGRES_IMAGE
//! (default authctl-postgres:15, docker/postgres-image.sh). Without Docker or an image
//! these tests say SKIPPED on stderr; under CI=true they fail instead.
//!
//! Ports are published on 127.0.0.1 only, each test is bounded in time, and every
//! container, network and volume a test creates is removed when it ends.

mod support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testcontainers::bollard::Docker;
use testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers::bollard::query_parameters::{
    InspectContainerOptions, RemoveVolumeOptionsBuilder, TopOptionsBuilder,
};
use testcontainers::core::logs::LogFrame;
use testcontainers::core::{CmdWaitFor, ExecCommand, IntoContainerPort, Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ContainerRequest, GenericImage, ImageExt};

use support::skip_or_fail;

const PASSWORD: &str = "correct horse battery";
/// The uid:gid the Dockerfile runs the service as.
const APP_USER: &str = "10001:10001";
/// Upper bound for any one test, containers included.
const TEST_LIMIT: Duration = Duration::from_secs(240);
const STARTUP_LIMIT: Duration = Duration::from_secs(90);

fn authctl_image() -> String {
    std::env::var("AUTHCTL_TEST_IMAGE").unwrap_or_else(|_| "authctl:latest".into())
}

fn postgres_image() -> String {
    std::env::var("AUTHCTL_TEST_POSTGRES_IMAGE").unwrap_or_else(|_| "authctl-postgres:15".into())
}

fn split_image(image: &str) -> (String, String) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.into(), tag.into()),
        _ => (image.into(), "latest".into()),
    }
}

/// A short random suffix for names of containers, networks, volumes and users.
fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// The Docker daemon, when it answers and has every image; else SKIPPED (or, under
/// CI=true, a failure) and `None`. Never pulls: there may be no registry.
async fn docker_with(images: &[String]) -> Option<Docker> {
    let docker = match Docker::connect_with_local_defaults() {
        Ok(d) => d,
        Err(e) => {
            skip_or_fail(&format!("Docker is unavailable: {e}"));
            return None;
        }
    };
    match tokio::time::timeout(Duration::from_secs(10), docker.ping()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            skip_or_fail(&format!("Docker does not answer: {e}"));
            return None;
        }
        Err(_) => {
            skip_or_fail("Docker does not answer within 10 s");
            return None;
        }
    }
    for image in images {
        if let Err(e) = docker.inspect_image(image).await {
            skip_or_fail(&format!(
                "image {image} is missing ({e}); build it with `make image` \
                 (authctl) or docker/postgres-image.sh (PostgreSQL)"
            ));
            return None;
        }
    }
    Some(docker)
}

/// Runs a test body with a time limit.
async fn bounded<F: Future<Output = ()>>(what: &str, body: F) {
    if tokio::time::timeout(TEST_LIMIT, body).await.is_err() {
        panic!("{what}: did not finish within {TEST_LIMIT:?}");
    }
}

/// Publishes container port 8000 on 127.0.0.1 only, on a free host port (instead of
/// Testcontainers' default of every exposed port on all interfaces).
fn loopback_port_8000(hc: &mut HostConfig) {
    hc.publish_all_ports = Some(false);
    hc.port_bindings = Some(
        [(
            "8000/tcp".to_string(),
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            }]),
        )]
        .into_iter()
        .collect(),
    );
}

fn no_published_ports(hc: &mut HostConfig) {
    hc.publish_all_ports = Some(false);
    hc.port_bindings = Some(Default::default());
}

/// Collects a container's output, printed only when the test fails.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn consumer(&self) -> impl Fn(&LogFrame) + Send + Sync + 'static {
        let buf = self.0.clone();
        move |frame: &LogFrame| {
            if let Ok(mut b) = buf.lock() {
                b.extend_from_slice(frame.bytes());
            }
        }
    }

    fn text(&self) -> String {
        self.0
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// One authctl container and an HTTP client for its published port.
struct Authctl {
    base: String,
    client: reqwest::Client,
    logs: Logs,
    container: ContainerAsync<GenericImage>,
}

impl Drop for Authctl {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- output of authctl container {} ----\n{}----",
                self.container.id(),
                self.logs.text()
            );
        }
    }
}

/// What to start the image with; `wait` is how Testcontainers decides it started.
struct Options<'a> {
    env: Vec<(&'a str, String)>,
    network: Option<String>,
    volume: Option<String>,
    wait: WaitFor,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options {
            env: Vec::new(),
            network: None,
            volume: None,
            wait: WaitFor::Nothing,
        }
    }
}

fn authctl_request(opts: &Options<'_>, logs: &Logs) -> ContainerRequest<GenericImage> {
    let (name, tag) = split_image(&authctl_image());
    let mut req = GenericImage::new(name, tag)
        .with_exposed_port(8000.tcp())
        .with_wait_for(opts.wait.clone())
        .with_startup_timeout(STARTUP_LIMIT)
        .with_log_consumer(logs.consumer())
        .with_host_config_modifier(loopback_port_8000);
    for (k, v) in &opts.env {
        req = req.with_env_var(*k, v.clone());
    }
    if let Some(net) = &opts.network {
        req = req.with_network(net.clone());
    }
    if let Some(vol) = &opts.volume {
        req = req.with_mount(Mount::volume_mount(vol.clone(), "/data"));
    }
    req
}

/// Starts the image (its own CMD, `serve`) and waits until /health/readiness is 200
/// through the published port.
async fn start_authctl(opts: Options<'_>) -> Authctl {
    authctl::install_crypto_provider();
    let logs = Logs::default();
    let container = authctl_request(&opts, &logs)
        .start()
        .await
        .expect("start the authctl container");
    let port = container
        .get_host_port_ipv4(8000.tcp())
        .await
        .expect("published port of 8000/tcp");
    let app = Authctl {
        base: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client"),
        logs,
        container,
    };
    app.wait_ready().await;
    app
}

impl Authctl {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + STARTUP_LIMIT;
        loop {
            if let Ok(r) = self.client.get(self.url("/health/readiness")).send().await
                && r.status() == 200
            {
                return;
            }
            if matches!(self.container.is_running().await, Ok(false)) {
                panic!("the authctl container exited during startup");
            }
            assert!(
                Instant::now() < deadline,
                "authctl did not become ready within {STARTUP_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn register(&self, username: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/register"))
            .json(&json!({
                "email": format!("{username}@example.com"),
                "username": username,
                "password": PASSWORD,
            }))
            .send()
            .await
            .expect("register request")
    }

    async fn login(&self, username: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/token"))
            .form(&[("username", username), ("password", PASSWORD)])
            .send()
            .await
            .expect("login request")
    }

    /// Logs in and returns (access, refresh), checking the token response.
    async fn tokens(&self, username: &str) -> (String, String) {
        let r = self.login(username).await;
        assert_eq!(r.status(), 200, "login {username}");
        assert_eq!(header(&r, "cache-control"), "no-store");
        let body: Value = r.json().await.expect("token json");
        assert_eq!(body["token_type"], "bearer", "{body}");
        assert!(body["expires_in"].as_u64().unwrap_or(0) > 0, "{body}");
        (
            body["access_token"]
                .as_str()
                .expect("access_token")
                .to_owned(),
            body["refresh_token"]
                .as_str()
                .expect("refresh_token")
                .to_owned(),
        )
    }

    async fn me(&self, access: &str) -> reqwest::Response {
        self.client
            .get(self.url("/api/v1/auth/me"))
            .bearer_auth(access)
            .send()
            .await
            .expect("me request")
    }

    async fn refresh(&self, refresh: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/refresh"))
            .json(&json!({ "refresh_token": refresh }))
            .send()
            .await
            .expect("refresh request")
    }

    async fn revoke(&self, refresh: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/revoke"))
            .json(&json!({ "refresh_token": refresh }))
            .send()
            .await
            .expect("revoke request")
    }
}

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn assert_401(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 401, "{what}");
    assert!(
        header(&r, "www-authenticate").starts_with("Bearer"),
        "{what}: WWW-Authenticate"
    );
    assert_eq!(
        header(&r, "content-type"),
        "application/problem+json",
        "{what}"
    );
}

/// The whole API flow through the container's published port, with the image's
/// default rate limits (register 5/min).
async fn api_flow(app: &Authctl) {
    // the three probes
    for probe in ["liveness", "readiness", "startup"] {
        let r = app
            .client
            .get(app.url(&format!("/health/{probe}")))
            .send()
            .await
            .expect("probe");
        assert_eq!(r.status(), 200, "/health/{probe}");
    }

    // rate limit: six registrations at once from one client, distinct usernames:
    // exactly five pass (a burst of 5), the sixth is 429 with Retry-After
    let tag = unique();
    let names: Vec<String> = (0..6).map(|i| format!("u{i}_{tag}")).collect();
    let results = {
        let mut tasks = Vec::new();
        for name in &names {
            let (client, url, name) = (
                app.client.clone(),
                app.url("/api/v1/auth/register"),
                name.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(url)
                    .json(&json!({
                        "email": format!("{name}@example.com"),
                        "username": name,
                        "password": PASSWORD,
                    }))
                    .send()
                    .await
                    .expect("register request");
                let retry_after = header(&r, "retry-after");
                let ct = header(&r, "content-type");
                let status = r.status().as_u16();
                let body: Value = r.json().await.expect("json body");
                (name, status, retry_after, ct, body)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("register task"));
        }
        out
    };
    let created: Vec<&String> = results
        .iter()
        .filter(|r| r.1 == 201)
        .map(|r| &r.0)
        .collect();
    let limited: Vec<_> = results.iter().filter(|r| r.1 == 429).collect();
    assert_eq!(
        (created.len(), limited.len()),
        (5, 1),
        "five 201 and one 429: {:?}",
        results.iter().map(|r| (r.1, &r.4)).collect::<Vec<_>>()
    );
    let (_, _, retry_after, ct, body) = limited[0];
    let secs: u64 = retry_after.parse().expect("Retry-After in whole seconds");
    assert!((1..=60).contains(&secs), "Retry-After {secs}");
    assert_eq!(ct, "application/problem+json");
    assert_eq!(body["status"], 429, "{body}");
    let user = created[0].clone();

    // login (form body), me
    let (access, refresh) = app.tokens(&user).await;
    let r = app.me(&access).await;
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.expect("me json");
    assert_eq!(me["username"], user.as_str(), "{me}");
    assert_eq!(me["is_active"], true, "{me}");

    // refresh rotates: a new pair, the new access token works
    let r = app.refresh(&refresh).await;
    assert_eq!(r.status(), 200, "refresh");
    assert_eq!(header(&r, "cache-control"), "no-store");
    let pair: Value = r.json().await.expect("refresh json");
    let access2 = pair["access_token"].as_str().expect("access").to_owned();
    let refresh2 = pair["refresh_token"].as_str().expect("refresh").to_owned();
    assert_ne!(refresh2, refresh, "rotation issues a new refresh token");
    assert_eq!(app.me(&access2).await.status(), 200);

    // reuse of the rotated token: 401, and the family is revoked — its newest refresh
    // token and its access tokens are refused too
    assert_401(app.refresh(&refresh).await, "reused refresh token").await;
    assert_401(
        app.refresh(&refresh2).await,
        "newest token of a revoked family",
    )
    .await;
    assert_401(app.me(&access2).await, "access token of a revoked family").await;
    assert_401(
        app.me(&access).await,
        "first access token of a revoked family",
    )
    .await;

    // revoke (logout): 204, then the session's tokens are dead
    let (access3, refresh3) = app.tokens(&user).await;
    assert_eq!(app.me(&access3).await.status(), 200);
    assert_eq!(app.revoke(&refresh3).await.status(), 204);
    assert_401(app.me(&access3).await, "access token after revoke").await;
    assert_401(app.refresh(&refresh3).await, "refresh token after revoke").await;
    // unknown token: 204 as well (nothing leaks)
    assert_eq!(app.revoke("not-a-token").await.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_the_api_flow_on_its_sqlite_default() {
    let Some(_docker) = docker_with(&[authctl_image()]).await else {
        return;
    };
    bounded("sqlite flow", async {
        let app = start_authctl(Options::default()).await;
        api_flow(&app).await;
        // the image's default database: SQLite on the /data volume
        let db: Vec<u8> = app
            .container
            .copy_file_from("/data/authctl.db", Vec::new())
            .await
            .expect("copy /data/authctl.db out of the container");
        assert!(
            db.starts_with(b"SQLite format 3\0"),
            "/data/authctl.db is SQLite"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_serves_the_api_flow_against_postgresql_in_a_container() {
    let Some(_docker) = docker_with(&[authctl_image(), postgres_image()]).await else {
        return;
    };
    bounded("postgres flow", async {
        let id = unique();
        let network = format!("authctl-test-{id}");
        let pg_name = format!("authctl-test-pg-{id}");
        let pg_password = unique();
        let pg_logs = Logs::default();
        let (name, tag) = split_image(&postgres_image());
        // the image's own HEALTHCHECK (pg_isready over TCP) says when it is up
        let pg = GenericImage::new(name, tag)
            .with_wait_for(WaitFor::healthcheck())
            .with_startup_timeout(STARTUP_LIMIT)
            .with_network(network.clone())
            .with_container_name(pg_name.clone())
            .with_env_var("POSTGRES_USER", "authctl")
            .with_env_var("POSTGRES_PASSWORD", pg_password.clone())
            .with_env_var("POSTGRES_DB", "authctl")
            .with_log_consumer(pg_logs.consumer())
            .with_host_config_modifier(no_published_ports)
            .start()
            .await
            .unwrap_or_else(|e| {
                panic!("start PostgreSQL: {e}\n{}", pg_logs.text());
            });

        let app = start_authctl(Options {
            env: vec![(
                "DATABASE_URL",
                format!("postgres://authctl:{pg_password}@{pg_name}:5432/authctl"),
            )],
            network: Some(network),
            ..Options::default()
        })
        .await;
        api_flow(&app).await;
        // the users really are in PostgreSQL
        let mut psql = pg
            .exec(
                ExecCommand::new([
                    "psql",
                    "-U",
                    "authctl",
                    "-d",
                    "authctl",
                    "-tAc",
                    "SELECT count(*) FROM users",
                ])
                .with_cmd_ready_condition(CmdWaitFor::exit_code(0)),
            )
            .await
            .expect("psql in the PostgreSQL container");
        let out =
            String::from_utf8(psql.stdout_to_vec().await.expect("psql output")).expect("utf-8");
        assert_eq!(out.trim(), "5", "five registered users in PostgreSQL");
        drop(app);
        drop(pg);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_runs_as_non_root_without_a_shell_and_its_healthcheck_passes() {
    let Some(docker) = docker_with(&[authctl_image()]).await else {
        return;
    };
    bounded("non-root", async {
        // Testcontainers waits for the image's own HEALTHCHECK (`authctl health`)
        let app = start_authctl(Options {
            wait: WaitFor::healthcheck(),
            ..Options::default()
        })
        .await;
        let id = app.container.id().to_string();

        let inspect = docker
            .inspect_container(&id, None::<InspectContainerOptions>)
            .await
            .expect("inspect");
        let user = inspect.config.and_then(|c| c.user).unwrap_or_default();
        assert_eq!(user, APP_USER, "Config.User");

        // every process in the container, as the host's ps sees it
        let top = docker
            .top_processes(
                &id,
                Some(
                    TopOptionsBuilder::default()
                        .ps_args("-o uid,pid,comm")
                        .build(),
                ),
            )
            .await
            .expect("docker top");
        let titles = top.titles.unwrap_or_default();
        let uid_col = titles
            .iter()
            .position(|t| t == "UID")
            .unwrap_or_else(|| panic!("no UID column in {titles:?}"));
        let rows = top.processes.unwrap_or_default();
        assert!(!rows.is_empty(), "docker top lists the server");
        for row in &rows {
            assert_eq!(row[uid_col], "10001", "process {row:?} runs as uid 10001");
        }

        // the HEALTHCHECK command itself, run the way Docker runs it
        let ok = app
            .container
            .exec(
                ExecCommand::new(["/usr/local/bin/authctl", "health"])
                    .with_cmd_ready_condition(CmdWaitFor::exit()),
            )
            .await
            .expect("exec authctl health");
        assert_eq!(ok.exit_code().await.expect("exit code"), Some(0));

        // no shell in the image
        match app
            .container
            .exec(
                ExecCommand::new(["/bin/sh", "-c", "true"])
                    .with_cmd_ready_condition(CmdWaitFor::exit()),
            )
            .await
        {
            Err(_) => {}
            Ok(r) => assert_ne!(
                r.exit_code().await.ok().flatten(),
                Some(0),
                "/bin/sh must not exist in the image"
            ),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_stop_finishes_an_in_flight_login_and_exits_0_promptly() {
    let Some(_docker) = docker_with(&[authctl_image()]).await else {
        return;
    };
    bounded("docker stop", async {
        // a real, slow bcrypt cost, so the login is still hashing when SIGTERM arrives
        let app = start_authctl(Options {
            env: vec![("AUTHCTL_BCRYPT_COST", "14".into())],
            ..Options::default()
        })
        .await;
        let user = format!("stop_{}", unique());
        assert_eq!(app.register(&user).await.status(), 201);

        let t0 = Instant::now();
        let login = {
            let (client, url, user) = (
                app.client.clone(),
                app.url("/api/v1/auth/token"),
                user.clone(),
            );
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .form(&[("username", user.as_str()), ("password", PASSWORD)])
                    .send()
                    .await;
                let result = match r {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        Ok((status, body))
                    }
                    Err(e) => Err(e.to_string()),
                };
                (result, t0.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stop_sent = t0.elapsed();
        let started = Instant::now();
        app.container
            .stop_with_timeout(Some(10))
            .await
            .expect("docker stop");
        let stop_took = started.elapsed();

        let (result, login_done) = login.await.expect("login task");
        eprintln!(
            "SIGTERM sent at {stop_sent:?}; login answered at {login_done:?}; docker stop took {stop_took:?}"
        );
        let (status, body) = result.expect("the in-flight login got an answer");
        assert_eq!(status, 200, "the in-flight login completed: {body}");
        assert!(body["access_token"].is_string(), "{body}");
        assert!(
            login_done > stop_sent,
            "the login was still in flight when SIGTERM was sent \
             (done at {login_done:?}, stop at {stop_sent:?}); raise the bcrypt cost"
        );
        assert!(
            stop_took < Duration::from_secs(8),
            "docker stop took {stop_took:?}: SIGTERM was not handled (Docker kills at 10 s)"
        );
        assert_eq!(
            app.container.exit_code().await.expect("exit code"),
            Some(0),
            "exit code after docker stop (137 = killed)"
        );
    })
    .await;
}

/// Removes a named volume when dropped (after the containers using it are gone).
struct VolumeGuard {
    docker: Docker,
    name: String,
}

impl Drop for VolumeGuard {
    fn drop(&mut self) {
        let (docker, name) = (self.docker.clone(), self.name.clone());
        let remove = async move {
            let opts = RemoveVolumeOptionsBuilder::default().force(true).build();
            if let Err(e) = docker.remove_volume(&name, Some(opts)).await {
                eprintln!("could not remove test volume {name}: {e}");
            }
        };
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(move || handle.block_on(remove));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_restarted_on_the_same_volume_keeps_users_and_tokens() {
    let Some(docker) = docker_with(&[authctl_image()]).await else {
        return;
    };
    bounded("restart", async {
        // declared first, so it is dropped after the containers
        let volume = VolumeGuard {
            docker: docker.clone(),
            name: format!("authctl-test-data-{}", unique()),
        };
        let opts = || Options {
            volume: Some(volume.name.clone()),
            ..Options::default()
        };
        let user = format!("keep_{}", unique());

        // first container: no SECRET_KEY, so it generates one and stores it in the db
        let first = start_authctl(opts()).await;
        assert_eq!(first.register(&user).await.status(), 201);
        let (access, refresh) = first.tokens(&user).await;
        assert_eq!(first.me(&access).await.status(), 200);
        first
            .container
            .stop_with_timeout(Some(10))
            .await
            .expect("stop the first container");
        assert_eq!(
            first.container.exit_code().await.expect("exit code"),
            Some(0)
        );
        drop(first);

        // a new container on the same volume: same users, same key, same sessions
        let second = start_authctl(opts()).await;
        let r = second.me(&access).await;
        assert_eq!(r.status(), 200, "an access token from before the restart");
        let me: Value = r.json().await.expect("me json");
        assert_eq!(me["username"], user.as_str());
        let r = second.refresh(&refresh).await;
        assert_eq!(r.status(), 200, "a refresh token from before the restart");
        second.tokens(&user).await;
        drop(second);
    })
    .await;
}
