//! Several replicas are one service (SPEC §12, §6 "Shared limits"): three `authctl
//! serve` processes — the real binary — on one database of the testkit's throwaway
//! PostgreSQL cluster, driven over HTTP and through the CLI.
//!
//! Each replica logs JSON lines to a file of its own, so the tests can count who said
//! what ("migrations applied", "housekeeping ran on this replica").

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use authctl_testkit::process::ServerProcess;
use serde_json::Value;

const PASSWORD: &str = "correct horse battery";

/// N `authctl serve` processes on one database.
struct Replicas {
    dir: tempfile::TempDir,
    servers: Vec<ServerProcess>,
    client: reqwest::Client,
}

/// The database for one test on the shared cluster, or `None` after SKIPPED.
async fn fresh_postgres() -> Option<String> {
    let support::Backend::Postgres(server) = support::postgres().await? else {
        return None;
    };
    Some(support::pg::fresh_database(&server).await)
}

impl Replicas {
    /// Starts `n` replicas at once (no waiting between them) with `env` on top of the
    /// common settings, then waits until every one is ready. No SECRET_KEY: the first
    /// replica generates the key and the others must read it from the database.
    fn start(url: &str, n: usize, env: &[(&str, &str)]) -> Replicas {
        authctl::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let since = Instant::now();
        let mut servers = Vec::new();
        for i in 0..n {
            let addr: SocketAddr = format!(
                "127.0.0.1:{}",
                authctl_testkit::free_port().expect("free port")
            )
            .parse()
            .expect("addr");
            let log = std::fs::File::create(dir.path().join(format!("replica-{i}.log")))
                .expect("log file");
            let mut cmd = Command::new(support::authctl_bin());
            cmd.arg("serve")
                .current_dir(dir.path())
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("DATABASE_URL", url)
                .env("AUTHCTL_BIND", addr.to_string())
                .env("AUTHCTL_BCRYPT_COST", "4")
                .env("AUTHCTL_LOG_FORMAT", "json")
                .env("AUTHCTL_RATE_LIMIT_ENABLED", "false")
                .env("DB_POOL_MAX_CONN", "4")
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log));
            servers.push(ServerProcess::spawn(cmd, addr).expect("spawn authctl serve"));
        }
        for (i, server) in servers.iter_mut().enumerate() {
            server
                .wait_ready(since, Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("replica {i}: {e}"));
        }
        Replicas {
            dir,
            servers,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    fn base(&self, i: usize) -> String {
        format!("http://{}", self.servers[i].addr)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("replica-{i}.log"))
    }

    /// Replica `i`'s log lines whose message is `message`.
    fn logged(&self, i: usize, message: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|line| line["message"] == message)
            .collect()
    }

    /// How many replicas logged `message` at least once, and how many times in all.
    fn count_logged(&self, message: &str) -> (usize, usize) {
        let per: Vec<usize> = (0..self.servers.len())
            .map(|i| self.logged(i, message).len())
            .collect();
        (
            per.iter().filter(|n| **n > 0).count(),
            per.iter().sum::<usize>(),
        )
    }

    async fn register(&self, i: usize, name: &str) {
        let r = self
            .client
            .post(format!("{}/api/v1/auth/register", self.base(i)))
            .json(&serde_json::json!({
                "email": format!("{name}@example.com"),
                "username": name,
                "password": PASSWORD,
            }))
            .send()
            .await
            .expect("register request");
        assert_eq!(r.status(), 201, "register {name} on replica {i}");
    }

    async fn login(&self, i: usize, name: &str, password: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/auth/token", self.base(i)))
            .form(&[("username", name), ("password", password)])
            .send()
            .await
            .expect("login request")
    }

    /// Logs in on replica `i`: (access, refresh).
    async fn tokens(&self, i: usize, name: &str) -> (String, String) {
        let r = self.login(i, name, PASSWORD).await;
        assert_eq!(r.status(), 200, "login {name} on replica {i}");
        let body: Value = r.json().await.expect("token json");
        (
            body["access_token"].as_str().expect("access").to_owned(),
            body["refresh_token"].as_str().expect("refresh").to_owned(),
        )
    }

    async fn me(&self, i: usize, access: &str) -> u16 {
        self.client
            .get(format!("{}/api/v1/auth/me", self.base(i)))
            .bearer_auth(access)
            .send()
            .await
            .expect("me request")
            .status()
            .as_u16()
    }

    async fn refresh(&self, i: usize, refresh: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/api/v1/auth/refresh", self.base(i)))
            .json(&serde_json::json!({ "refresh_token": refresh }))
            .send()
            .await
            .expect("refresh request")
    }

    /// `/me` with `access` on every replica.
    async fn me_everywhere(&self, access: &str) -> Vec<u16> {
        let mut out = Vec::new();
        for i in 0..self.servers.len() {
            out.push(self.me(i, access).await);
        }
        out
    }

    fn stop_all(&mut self) {
        for (i, server) in self.servers.iter_mut().enumerate() {
            let status = server
                .stop(Duration::from_secs(20))
                .unwrap_or_else(|e| panic!("replica {i}: {e}"));
            if let Some(status) = status {
                assert!(status.success(), "replica {i} exited with {status}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_started_together_migrate_once_become_ready_and_elect_one_housekeeper() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let mut replicas = Replicas::start(&url, 3, &[]);

    let (who, lines) = replicas.count_logged("migrations applied");
    assert_eq!(
        (who, lines),
        (1, 1),
        "exactly one replica applies the migrations and says so"
    );
    let (ready, _) = replicas.count_logged("ready");
    assert_eq!(ready, 3, "every replica becomes ready");
    // The schema is whole, seen from the CLI.
    let out = Command::new(support::authctl_bin())
        .args(["migrate", "--status", "--output", "json"])
        .env_clear()
        .env("DATABASE_URL", &url)
        .current_dir(replicas.dir.path())
        .output()
        .expect("migrate --status");
    let status: Value = serde_json::from_slice(&out.stdout).expect("status json");
    let pending: Vec<&Value> = status
        .as_array()
        .expect("a list of migrations")
        .iter()
        .filter(|m| m["applied"] != true)
        .collect();
    assert!(pending.is_empty(), "pending after start-up: {pending:?}");

    // Housekeeping's first run is due at start-up; one replica holds the lock and runs
    // it, the others stay out. Give the first runs a moment to be logged.
    let deadline = Instant::now() + Duration::from_secs(10);
    while replicas.count_logged("housekeeping ran on this replica").1 == 0
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (who, runs) = replicas.count_logged("housekeeping ran on this replica");
    assert_eq!(
        (who, runs),
        (1, 1),
        "one replica ran this period's housekeeping, once"
    );
    let run = (0..3)
        .flat_map(|i| replicas.logged(i, "housekeeping ran on this replica"))
        .next()
        .expect("the run's line");
    for field in ["replica", "tokens", "families", "rate_limits"] {
        assert!(!run[field].is_null(), "the run's line says {field}: {run}");
    }
    replicas.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_one_replica_works_on_all_and_logout_and_disable_count_everywhere_at_once() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let mut replicas = Replicas::start(&url, 3, &[]);
    replicas.register(0, "alice").await;
    replicas.register(1, "bob").await;

    // Issued by each replica, accepted by every replica (one key, from the database).
    let mut sessions = Vec::new();
    for i in 0..3 {
        let (access, refresh) = replicas.tokens(i, "alice").await;
        assert_eq!(replicas.me_everywhere(&access).await, [200, 200, 200]);
        sessions.push((access, refresh));
    }

    // Logout through replica 1 of the session replica 0 issued: refused everywhere at
    // once, while the other sessions are untouched.
    let (access, refresh) = &sessions[0];
    let r = replicas
        .client
        .post(format!("{}/api/v1/auth/revoke", replicas.base(1)))
        .json(&serde_json::json!({ "refresh_token": refresh }))
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 204);
    assert_eq!(replicas.me_everywhere(access).await, [401, 401, 401]);
    assert_eq!(replicas.refresh(2, refresh).await.status(), 401);
    assert_eq!(
        replicas.me_everywhere(&sessions[1].0).await,
        [200, 200, 200]
    );

    // `user disable` from the CLI, no server involved: every replica refuses at once.
    let (bob_access, _) = replicas.tokens(2, "bob").await;
    let out = Command::new(support::authctl_bin())
        .args(["user", "disable", "alice"])
        .env_clear()
        .env("DATABASE_URL", &url)
        .current_dir(replicas.dir.path())
        .output()
        .expect("user disable");
    assert!(
        out.status.success(),
        "user disable: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (access, refresh) in &sessions[1..] {
        assert_eq!(replicas.me_everywhere(access).await, [401, 401, 401]);
        for i in 0..3 {
            assert_eq!(replicas.refresh(i, refresh).await.status(), 401);
        }
    }
    for i in 0..3 {
        assert_eq!(replicas.login(i, "alice", PASSWORD).await.status(), 401);
    }
    // Bob is another account: untouched.
    assert_eq!(replicas.me_everywhere(&bob_access).await, [200, 200, 200]);
    replicas.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_race_spread_over_three_replicas_has_one_winner_and_revokes_the_family() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let replicas = Replicas::start(&url, 3, &[]);
    replicas.register(0, "carol").await;
    let (access, refresh) = replicas.tokens(0, "carol").await;

    let replicas = Arc::new(replicas);
    let start = Arc::new(tokio::sync::Barrier::new(21));
    let mut racers = Vec::new();
    for n in 0..21 {
        let (replicas, start, refresh) = (replicas.clone(), start.clone(), refresh.clone());
        racers.push(tokio::spawn(async move {
            start.wait().await;
            let r = replicas.refresh(n % 3, &refresh).await;
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (n % 3, status, body)
        }));
    }
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.expect("racer"));
    }
    let winners: Vec<_> = results.iter().filter(|(_, s, _)| *s == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one winner: {results:?}");
    assert!(
        results.iter().all(|(_, s, _)| *s == 200 || *s == 401),
        "the losers are refused, nothing fails: {results:?}"
    );
    let replicas_answering: std::collections::BTreeSet<usize> =
        results.iter().map(|(i, _, _)| *i).collect();
    assert_eq!(
        replicas_answering.len(),
        3,
        "the race was spread over all three"
    );

    // The losers presented a spent token: reuse, so the whole family ends revoked,
    // the winner's new tokens included, on every replica.
    let (_, _, body) = winners[0];
    let new_access = body["access_token"].as_str().expect("new access");
    let new_refresh = body["refresh_token"].as_str().expect("new refresh");
    assert_eq!(replicas.me_everywhere(&access).await, [401, 401, 401]);
    assert_eq!(replicas.me_everywhere(new_access).await, [401, 401, 401]);
    assert_eq!(replicas.refresh(1, new_refresh).await.status(), 401);

    let mut replicas = Arc::into_inner(replicas).expect("racers are done");
    replicas.stop_all();
}

/// `attempts` logins with a wrong password, round-robin over the replicas: how many
/// were let through to the password check (401) and how many were limited (429).
async fn spread_logins(replicas: &Replicas, attempts: usize) -> (usize, usize) {
    let (mut through, mut limited) = (0, 0);
    for n in 0..attempts {
        let r = replicas
            .login(n % replicas.servers.len(), "nobody", "wrong password")
            .await;
        match r.status().as_u16() {
            401 => through += 1,
            429 => {
                let retry_after: u64 = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .expect("Retry-After in whole seconds");
                assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
                limited += 1;
            }
            other => panic!("login attempt {n}: unexpected {other}"),
        }
    }
    (through, limited)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_database_store_the_login_limit_holds_across_replicas() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let limited = [
        ("AUTHCTL_RATE_LIMIT_ENABLED", "true"),
        ("AUTHCTL_RATE_LIMIT_LOGIN_PER_MINUTE", "10"),
    ];
    let mut shared = Replicas::start(
        &url,
        3,
        &[
            limited[0],
            limited[1],
            ("AUTHCTL_RATE_LIMIT_STORE", "database"),
        ],
    );
    let (through, refused) = spread_logins(&shared, 30).await;
    assert_eq!(
        (through, refused),
        (10, 20),
        "10 per minute in all, not 10 per replica"
    );
    // The other endpoints keep their own quota.
    shared.register(2, "dave").await;
    shared.stop_all();

    // The contrast, on the same database: the default memory store is per process.
    let mut per_process = Replicas::start(&url, 3, &limited);
    let (through, refused) = spread_logins(&per_process, 33).await;
    assert_eq!((through, refused), (30, 3), "memory: 10 per replica");
    per_process.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_replica_under_load_loses_no_token_and_fails_no_request_to_the_survivors() {
    let Some(url) = fresh_postgres().await else {
        return;
    };
    let replicas = Replicas::start(&url, 3, &[]);
    replicas.register(0, "erin").await;
    // Sessions issued by each replica, the victim's included.
    let mut before = Vec::new();
    for i in 0..3 {
        before.push(replicas.tokens(i, "erin").await);
    }
    let victim_pid = replicas.servers[0].pid();
    let replicas = Arc::new(replicas);

    // Bounded load: 6 workers for 3 s, each sending `/me` and now and then a login to
    // the replicas in turn; replica 0 is SIGKILLed after 1 s.
    let killed = Arc::new(AtomicBool::new(false));
    let sent_to_survivors = Arc::new(AtomicUsize::new(0));
    let access = before[1].0.clone();
    let until = Instant::now() + Duration::from_secs(3);
    let mut workers = Vec::new();
    for w in 0..6usize {
        let (replicas, killed, sent, access) = (
            replicas.clone(),
            killed.clone(),
            sent_to_survivors.clone(),
            access.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut issued = Vec::new();
            let mut n = w;
            while Instant::now() < until {
                let i = n % 3;
                n += 1;
                let to_victim = i == 0;
                if to_victim && killed.load(Ordering::SeqCst) {
                    continue;
                }
                // A request in flight to the victim when it dies may fail: only the
                // survivors' answers are judged.
                let outcome = if n % 10 == 0 {
                    match replicas
                        .client
                        .post(format!("{}/api/v1/auth/token", replicas.base(i)))
                        .form(&[("username", "erin"), ("password", PASSWORD)])
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => match r.json::<Value>().await {
                            Ok(body) => {
                                issued.push((i, body));
                                Ok(())
                            }
                            Err(e) => Err(format!("login on {i}: body: {e}")),
                        },
                        Ok(r) => Err(format!("login on {i}: {}", r.status())),
                        Err(e) => Err(format!("login on {i}: {e}")),
                    }
                } else {
                    match replicas
                        .client
                        .get(format!("{}/api/v1/auth/me", replicas.base(i)))
                        .bearer_auth(&access)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 => Ok(()),
                        Ok(r) => Err(format!("/me on {i}: {}", r.status())),
                        Err(e) => Err(format!("/me on {i}: {e}")),
                    }
                };
                if !to_victim {
                    sent.fetch_add(1, Ordering::SeqCst);
                    if let Err(e) = outcome {
                        failures.push(e);
                    }
                }
            }
            (failures, issued)
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = Command::new("kill")
        .args(["-KILL", &victim_pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    killed.store(true, Ordering::SeqCst);

    let mut failures = Vec::new();
    let mut issued_during = Vec::new();
    for worker in workers {
        let (f, issued) = worker.await.expect("worker");
        failures.extend(f);
        issued_during.extend(issued);
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests to the survivors failed: {:?}",
        failures.len(),
        sent_to_survivors.load(Ordering::SeqCst),
        &failures[..failures.len().min(5)]
    );
    let sent = sent_to_survivors.load(Ordering::SeqCst);
    assert!(sent > 50, "a real load: {sent}");
    println!(
        "SIGKILL under load: {sent} requests to the survivors, 0 failed; {} tokens issued \
         during the load, all accepted by the survivors",
        issued_during.len()
    );

    // Every session issued before the kill, the victim's too, still works on the
    // survivors: access tokens verify and refresh tokens rotate.
    for (n, (access, refresh)) in before.iter().enumerate() {
        for i in 1..3 {
            assert_eq!(replicas.me(i, access).await, 200, "session {n} on {i}");
        }
        let r = replicas.refresh(1 + n % 2, refresh).await;
        assert_eq!(r.status(), 200, "session {n} refreshes on a survivor");
    }
    // So does every access token issued during the load, by whichever replica.
    assert!(
        issued_during.iter().any(|(i, _)| *i == 0),
        "the victim issued some"
    );
    for (n, (i, body)) in issued_during.iter().enumerate() {
        let access = body["access_token"].as_str().expect("access");
        assert_eq!(replicas.me(1 + n % 2, access).await, 200, "issued by {i}");
    }
    let mut replicas = Arc::into_inner(replicas).expect("workers are done");
    // The victim is gone; the survivors still stop cleanly.
    assert!(
        authctl_testkit::process::probe_status(replicas.servers[0].addr, "/health/liveness")
            .is_none()
    );
    replicas.servers.remove(0);
    replicas.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_runs_on_one_replica_per_period_and_another_takes_over_when_it_dies() {
    use authctl::server::housekeeping::{self, Timing};
    use std::sync::Mutex;

    let Some(url) = fresh_postgres().await else {
        return;
    };
    // Three replicas' housekeepers in this process, each with its own store (its own
    // pool and lock session), on a fast clock: a run every 300 ms, take-over tries
    // every 100 ms.
    let settings = support::test_settings(&url);
    let timing = Timing {
        run_every: Duration::from_millis(300),
        take_over_every: Duration::from_millis(100),
    };
    let runs: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
    let mut tasks = Vec::new();
    for replica in 0..3 {
        let store = authctl::store::connect(&settings).expect("store");
        store.migrate().await.expect("migrate");
        let service = Arc::new(
            authctl::service::AuthService::new(store, &settings.auth)
                .await
                .expect("service"),
        );
        let runs = runs.clone();
        tasks.push(tokio::spawn(housekeeping::run_with(
            service,
            timing,
            move |_| runs.lock().expect("runs").push((replica, Instant::now())),
        )));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let first: Vec<(usize, Instant)> = runs.lock().expect("runs").clone();
    let leaders: std::collections::BTreeSet<usize> = first.iter().map(|(r, _)| *r).collect();
    assert_eq!(leaders.len(), 1, "one housekeeper: {first:?}");
    // About five runs; three replicas each running would make 10 to 15. (At least two:
    // a loaded CI machine may delay a tick, never skip the lock's rule.)
    assert!(
        (2..=6).contains(&first.len()),
        "one run per 300 ms period in 1.5 s, not three: {}",
        first.len()
    );
    // Times are taken as each run ends, so two gaps differ by the difference of two
    // runs' lengths (tens of ms on a loaded machine); two replicas running in one
    // period would be a gap of a few ms.
    for pair in first.windows(2) {
        assert!(
            pair[1].1 - pair[0].1 >= Duration::from_millis(200),
            "{first:?}"
        );
    }

    // The housekeeper dies (its task, lock session included, is dropped): another
    // replica takes over within a take-over period and runs at once.
    let leader = *leaders.iter().next().expect("a leader");
    tasks[leader].abort();
    let died = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after: Vec<(usize, Instant)> = runs
        .lock()
        .expect("runs")
        .iter()
        .filter(|(_, at)| *at > died)
        .copied()
        .collect();
    let successors: std::collections::BTreeSet<usize> = after.iter().map(|(r, _)| *r).collect();
    assert_eq!(successors.len(), 1, "one successor: {after:?}");
    assert!(!successors.contains(&leader), "{after:?}");
    // A take-over try every 100 ms; the bound leaves room for a loaded machine.
    assert!(
        after[0].1 - died < Duration::from_millis(1000),
        "taken over at once: {:?}",
        after[0].1 - died
    );
    for task in tasks {
        task.abort();
    }
}
