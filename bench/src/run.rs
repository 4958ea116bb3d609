//! One backend, scenario by scenario: its database, the server's start-up runs,
//! setup users, each scenario in turn, memory, a graceful stop, and the JSON lines.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::json;

use authctl_testkit::pg::Cluster;

use crate::client::{
    Target, call, connect, get, login_request, recover_request, register_request, send, token_field,
};
use crate::load::{
    Expect, MakeRequest, collect, refresh_chains, run_alternating, run_load, run_paced, start_load,
};
use crate::plan::{Backend, Plan, Scenario};
use crate::report::{Extra, Report, emit, metrics_cost_pct, round2};
use crate::scale;
use crate::server::{Server, memory_kib, sample_peak_rss};
use crate::stats::{CpuSnap, Flood, HashLimit, Stats, Window};

/// Logins at once in the `login-flood` scenario (issue 11: "200 concurrent logins").
const FLOOD_CONNECTIONS: usize = 200;
/// The flood's longest measuring window (see the scenario).
const FLOOD_MEASURE_MAX: Duration = Duration::from_secs(8);

/// Four connections probing `/health/liveness` every 10 ms through `window`.
pub fn liveness_probes(target: &Target, window: Window) -> tokio::task::JoinSet<Stats> {
    let t = target.clone();
    start_load(
        target,
        4,
        window,
        StatusCode::OK,
        Some(Duration::from_millis(10)),
        Arc::new(move |_, _| get(&t, "/health/liveness", None)),
    )
}

pub async fn run_backend(plan: &Plan, backend: Backend) -> Result<Report, String> {
    eprintln!("== {} ==", backend.name());
    let work = tempfile::Builder::new()
        .prefix("authctl-bench-")
        .tempdir()
        .map_err(|e| format!("work dir: {e}"))?;
    let cluster;
    let database_url = match backend {
        Backend::Sqlite => format!("sqlite://{}", work.path().join("bench.db").display()),
        Backend::Postgres => {
            // Durable (fsync on), unlike the tests' cluster: the figures are the product's.
            let settings: Vec<(String, String)> = [("max_connections".into(), "100".into())]
                .into_iter()
                .chain(plan.pg_settings.iter().cloned())
                .collect();
            cluster = tokio::task::spawn_blocking(move || {
                let settings: Vec<(&str, &str)> = settings
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                Cluster::start_with(&settings)
            })
            .await
            .map_err(|e| e.to_string())??;
            cluster.url("postgres")
        }
    };

    // First start migrates the empty database; later starts find it migrated.
    let mut server = Server::spawn(plan, &database_url, work.path(), 0)?;
    server.wait_started(Instant::now(), Duration::from_secs(60))?;
    server.stop()?;
    let seeded = if plan.seed_users > 0 {
        eprintln!(
            "seeding {} users x 3 sessions in bulk SQL …",
            plan.seed_users
        );
        let cost = plan.cost;
        let hash = tokio::task::spawn_blocking(move || bcrypt::hash(crate::PASSWORD, cost))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("bcrypt: {e}"))?;
        let seeded = scale::seed(backend, &database_url, plan.seed_users, &hash).await?;
        eprintln!(
            "seeded {} users, {} sessions in {:.1} s",
            seeded.users,
            seeded.families,
            seeded.took.as_secs_f64()
        );
        Some(seeded)
    } else {
        None
    };
    let mut startup = Vec::new();
    let mut n = 0;
    let mut server = loop {
        n += 1;
        let t = Instant::now();
        let mut s = Server::spawn(plan, &database_url, work.path(), n)?;
        startup.push(s.wait_started(t, Duration::from_secs(30))?);
        if n == plan.startup_runs {
            break s;
        }
        s.stop()?;
    };
    eprintln!(
        "start-to-ready: {}",
        startup
            .iter()
            .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_idle_kib, _) = memory_kib(server.pid());

    let target = Target {
        addr: server.addr(),
        host: HeaderValue::from_str(&server.addr().to_string()).map_err(|e| e.to_string())?,
        server_pid: server.pid(),
    };
    let prefix = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);

    // Setup: one user to log in as, and a few sessions for /me.
    let user = format!("{prefix}_user");
    call(
        &target,
        register_request(&target, &user),
        StatusCode::CREATED,
    )
    .await?;
    let mut bearers = Vec::new();
    for _ in 0..4 {
        let pair = call(&target, login_request(&target, &user), StatusCode::OK).await?;
        let access = token_field(&pair, "access_token")?;
        bearers
            .push(HeaderValue::from_str(&format!("Bearer {access}")).map_err(|e| e.to_string())?);
    }
    let bearers = Arc::new(bearers);

    // liveness (the server's own ceiling) and me (JWT check + one query per request),
    // measured in alternating rounds: their ratio is a target.
    let me_make = me_on(&target, &bearers);
    let t = target.clone();
    let liveness_make: MakeRequest = Arc::new(move |_, _| get(&t, "/health/liveness", None));
    let paired: Vec<(Scenario, (Target, MakeRequest))> = [
        (Scenario::Liveness, (target.clone(), liveness_make)),
        (Scenario::Me, (target.clone(), me_make)),
    ]
    .into_iter()
    .filter(|(name, _)| plan.runs(*name))
    .collect();
    let (mut liveness, mut me) = (Stats::default(), Stats::default());
    if !paired.is_empty() {
        let names: Vec<Scenario> = paired.iter().map(|(name, _)| *name).collect();
        eprintln!(
            "{}: 64 connections, alternating rounds …",
            names
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(" + ")
        );
        let results =
            run_alternating(plan, 64, paired.into_iter().map(|(_, load)| load).collect()).await;
        for (name, stats) in names.into_iter().zip(results) {
            emit(backend, name, &stats, json!({"connections": 64}));
            match name {
                Scenario::Liveness => liveness = stats,
                _ => me = stats,
            }
        }
    }

    // me-metrics: what observing every request costs /me.
    let (mut me_metrics_off, mut me_metrics_on) = (Stats::default(), Stats::default());
    if plan.runs(Scenario::MeMetrics) {
        (me_metrics_off, me_metrics_on) =
            me_with_and_without_metrics(plan, &database_url, work.path(), &bearers).await?;
        let cost = metrics_cost_pct(&me_metrics_off, &me_metrics_on);
        emit(
            backend,
            Scenario::MeMetrics,
            &me_metrics_on,
            json!({
                "connections": 64,
                "off_rps": round2(me_metrics_off.rate()),
                "off_p99_ms": round2(me_metrics_off.quantile_ms(0.99)),
                "off_errors": me_metrics_off.errors,
                "off_server_cpu_us_per_req": round2(me_metrics_off.server_cpu_us),
                "cost_pct": round2(cost),
            }),
        );
    }

    // login, with the bcrypt ceiling measured just before, in this process.
    let (t, u) = (target.clone(), user.clone());
    let login_make: MakeRequest = Arc::new(move |_, _| login_request(&t, &u));
    let mut login = Stats::default();
    let mut bcrypt = HashLimit::default();
    if plan.runs(Scenario::Login) || plan.runs(Scenario::LoginMfa) {
        eprintln!("bcrypt limit at cost {} …", plan.cost);
        let (cost, cores) = (plan.cost, plan.cores);
        bcrypt = measure_limit(&target, move || HashLimit::bcrypt(cost, cores, 3)).await?;
    }
    if plan.runs(Scenario::Login) {
        login = login_against(
            plan,
            backend,
            Scenario::Login,
            &target,
            &login_make,
            &bcrypt,
        )
        .await;
    }
    // liveness-under-login: paced probes (liveness, and /me) while 8 connections log in.
    let (mut under_login_liveness, mut under_login_me, mut under_login_logins) =
        (Stats::default(), Stats::default(), Stats::default());
    if plan.runs(Scenario::LivenessUnderLogin) {
        eprintln!("liveness-under-login …");
        let window = Window::after(plan.warmup, plan.measure);
        let before = CpuSnap::take(target.server_pid);
        let logins = start_load(&target, 8, window, StatusCode::OK, None, login_make.clone());
        let probes = liveness_probes(&target, window);
        let (t, b) = (target.clone(), bearers.clone());
        let me_probes = start_load(
            &target,
            2,
            window,
            StatusCode::OK,
            Some(Duration::from_millis(10)),
            Arc::new(move |c, _| get(&t, "/api/v1/auth/me", Some(&b[c % b.len()]))),
        );
        under_login_liveness = collect(probes, window).await;
        under_login_me = collect(me_probes, window).await;
        under_login_logins = collect(logins, window).await;
        under_login_liveness.others_cpu_pct =
            before.others_pct_until(&CpuSnap::take(target.server_pid));
        emit(
            backend,
            Scenario::LivenessUnderLogin,
            &under_login_liveness,
            json!({
                "probe_connections": 4,
                "probe_interval_ms": 10,
                "me_p99_ms": round2(under_login_me.quantile_ms(0.99)),
                "me_errors": under_login_me.errors,
                "logins_per_s": round2(under_login_logins.rate()),
                "login_errors": under_login_logins.errors,
            }),
        );
    }

    // login-flood: 200 connections log in back to back at once while paced probes
    // check liveness. The hashing slots (one per core) finish a few logins a second;
    // the others wait at most hash_queue_timeout (the server's default, 5 s) and are
    // refused with 503 + Retry-After, instead of queueing without bound.
    let mut flood = Flood::default();
    if plan.runs(Scenario::LoginFlood) {
        flood = login_flood(plan, backend, Scenario::LoginFlood, &target, &login_make).await;
    }

    let mut more = Extra::default();
    if plan.runs(Scenario::LoginMfa) {
        more.absorb(
            crate::mfa::login_mfa(plan, backend, &target, &database_url, work.path(), &bcrypt)
                .await?,
        );
    }
    if plan.runs(Scenario::Introspect) {
        more.absorb(
            crate::introspect::introspect(
                plan,
                backend,
                &target,
                &database_url,
                work.path(),
                &bearers,
            )
            .await?,
        );
    }

    if plan.runs(Scenario::OidcCode) {
        more.absorb(
            crate::oidc::oidc_code(plan, backend, &database_url, work.path(), &user).await?,
        );
    }

    // register: every request a new user (one bcrypt hash each).
    let mut register = Stats::default();
    if plan.runs(Scenario::Register) {
        eprintln!("register: 8 connections …");
        let (t, p) = (target.clone(), prefix.clone());
        register = run_load(
            &target,
            plan,
            8,
            StatusCode::CREATED,
            Arc::new(move |c, seq| register_request(&t, &format!("{p}_{c}_{seq}"))),
        )
        .await;
        emit(
            backend,
            Scenario::Register,
            &register,
            json!({"connections": 8}),
        );
    }

    // recover: the known address (throttled after its first message: the same one
    // transaction either way) and unknown ones, one after the other.
    let (mut recover_known, mut recover_unknown) = (Stats::default(), Stats::default());
    if plan.runs(Scenario::Recover) {
        eprintln!("recover: 8 connections, a known address, then unknown ones …");
        let (t, known) = (target.clone(), format!("{user}@bench.example"));
        recover_known = run_load(
            &target,
            plan,
            8,
            StatusCode::ACCEPTED,
            Arc::new(move |_, _| recover_request(&t, &known)),
        )
        .await;
        let (t, p) = (target.clone(), prefix.clone());
        recover_unknown = run_load(
            &target,
            plan,
            8,
            StatusCode::ACCEPTED,
            Arc::new(move |c, seq| {
                recover_request(&t, &format!("nobody_{p}_{c}_{seq}@bench.example"))
            }),
        )
        .await;
        for (address, stats) in [("known", &recover_known), ("unknown", &recover_unknown)] {
            emit(
                backend,
                Scenario::Recover,
                stats,
                json!({"connections": 8, "address": address}),
            );
        }
        more.absorb(recover_at_rest(plan, backend, &target, &user, &prefix).await);
    }

    // refresh: concurrent rotation chains.
    let (mut refresh, mut refresh_wall, mut broken_chains, mut unfinished_chains) =
        (Stats::default(), Duration::ZERO, 0, 0);
    if plan.runs(Scenario::Refresh) {
        eprintln!(
            "refresh: {} chains x {} rotations …",
            plan.chains, plan.rotations
        );
        (refresh, refresh_wall, broken_chains, unfinished_chains) =
            refresh_chains(&target, plan, &user).await?;
        emit(
            backend,
            Scenario::Refresh,
            &refresh,
            json!({
                "chains": plan.chains,
                "rotations_per_chain": plan.rotations,
                "broken_chains": broken_chains,
                "unfinished_chains": unfinished_chains,
                "rotations_per_s": round2(refresh.ok as f64 / refresh_wall.as_secs_f64()),
            }),
        );
    }

    if plan.runs(Scenario::PruneUnderMe) {
        eprintln!("prune-under-me: `token prune` while 8 connections call /me …");
        let (stats, row) =
            scale::prune_under_me(plan, backend, &target, &database_url, work.path(), bearers)
                .await?;
        more.failures += stats.errors;
        more.rows.push(row);
    }

    let (rss_end_kib, rss_peak_kib) = memory_kib(server.pid());
    let clean_exit = server.stop()?;
    let server_log_errors = server.log_errors();

    if plan.runs(Scenario::LoginLimited) {
        let (stats, rows) =
            scale::limited_logins(plan, backend, &database_url, work.path(), &user).await?;
        more.failures += stats.iter().map(|s| s.errors).sum::<u64>();
        more.rows.extend(rows);
    }
    if plan.runs(Scenario::LoginArgon2id) || plan.runs(Scenario::LoginFloodArgon2id) {
        more.absorb(
            crate::algorithms::argon2id(plan, backend, &database_url, work.path(), &prefix).await?,
        );
    }
    if plan.runs(Scenario::Copy) {
        more.absorb(crate::transfer::copy(plan, backend, &database_url, work.path()).await?);
    }
    if plan.runs(Scenario::Import) {
        more.absorb(
            crate::transfer::import(plan, backend, &database_url, work.path(), &prefix).await?,
        );
    }
    let report = Report {
        backend,
        liveness,
        me,
        me_metrics_off,
        me_metrics_on,
        login,
        bcrypt,
        under_login_liveness,
        under_login_me,
        under_login_logins,
        flood,
        register,
        recover_known,
        recover_unknown,
        refresh,
        refresh_wall,
        chains: plan.chains,
        broken_chains,
        unfinished_chains,
        rss_idle_kib,
        rss_end_kib,
        rss_peak_kib,
        startup,
        clean_exit,
        server_log_errors,
        seeded,
        more,
    };
    let startup_ms: Vec<f64> = report
        .startup
        .iter()
        .map(|d| round2(d.as_secs_f64() * 1000.0))
        .collect();
    println!(
        "{}",
        json!({
            "bench": "authctl",
            "backend": backend.name(),
            "scenario": "memory",
            "rss_idle_mib": round2(rss_idle_kib as f64 / 1024.0),
            "rss_end_mib": round2(rss_end_kib as f64 / 1024.0),
            "rss_peak_mib": round2(rss_peak_kib as f64 / 1024.0),
            "start_to_ready_ms": round2(report.startup_median().as_secs_f64() * 1000.0),
            "start_to_ready_runs_ms": startup_ms,
            "clean_exit": clean_exit,
            "server_log_errors": server_log_errors,
        })
    );
    for (name, measured, pass) in report.targets(plan) {
        println!(
            "{}",
            json!({"bench": "authctl", "backend": backend.name(), "scenario": "target", "target": name, "measured": measured, "pass": pass})
        );
    }
    drop(work);
    Ok(report)
}

/// `/me` on `target`, spread over the setup sessions.
pub fn me_on(target: &Target, bearers: &Arc<Vec<HeaderValue>>) -> MakeRequest {
    let (t, b) = (target.clone(), bearers.clone());
    Arc::new(move |c, _| get(&t, "/api/v1/auth/me", Some(&b[c % b.len()])))
}

/// `/me` on two fresh servers over the same database, one with `AUTHCTL_METRICS_BIND`
/// and one without, in alternating rounds (so a host that slows down for a while slows
/// both alike). Both start fresh so that neither is warmer. Returns (off, on); a
/// `/metrics` that did not count every `/me` the load saw answered is an error.
async fn me_with_and_without_metrics(
    plan: &Plan,
    database_url: &str,
    work: &Path,
    bearers: &Arc<Vec<HeaderValue>>,
) -> Result<(Stats, Stats), String> {
    let metrics_addr = std::net::SocketAddr::from(([127, 0, 0, 1], authctl_testkit::free_port()?));
    let mut off = Server::spawn(plan, database_url, work, 100)?;
    off.wait_started(Instant::now(), Duration::from_secs(30))?;
    let mut on = Server::spawn_with(
        plan,
        database_url,
        work,
        101,
        &[("AUTHCTL_METRICS_BIND", metrics_addr.to_string())],
    )?;
    on.wait_started(Instant::now(), Duration::from_secs(30))?;
    let target_of = |s: &Server| -> Result<Target, String> {
        Ok(Target {
            addr: s.addr(),
            host: HeaderValue::from_str(&s.addr().to_string()).map_err(|e| e.to_string())?,
            server_pid: s.pid(),
        })
    };
    let (off_target, on_target) = (target_of(&off)?, target_of(&on)?);
    eprintln!("me-metrics: 64 connections, metrics off and on in alternating rounds …");
    let mut results = run_alternating(
        plan,
        64,
        vec![
            (off_target.clone(), me_on(&off_target, bearers)),
            (on_target.clone(), me_on(&on_target, bearers)),
        ],
    )
    .await
    .into_iter();
    let (off_stats, on_stats) = match (results.next(), results.next()) {
        (Some(off), Some(on)) => (off, on),
        _ => return Err("me-metrics: a load returned no result".into()),
    };

    // The server with metrics counted every /me it answered (warm-up included).
    let counted = scrape_me_count(metrics_addr, on.pid()).await?;
    if counted < on_stats.answered as f64 {
        return Err(format!(
            "me-metrics: /metrics counted {counted} /me 200s, the load saw {} answered",
            on_stats.answered
        ));
    }
    let (off_clean, on_clean) = (off.stop()?, on.stop()?);
    if !(off_clean && on_clean) {
        return Err("me-metrics: a server did not exit cleanly".into());
    }
    Ok((off_stats, on_stats))
}

/// `authctl_http_requests_total` for `/me` answered 200, from `/metrics` at `addr`.
async fn scrape_me_count(addr: std::net::SocketAddr, server_pid: u32) -> Result<f64, String> {
    let target = Target {
        addr,
        host: HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?,
        server_pid,
    };
    let mut sender = connect(&target).await?;
    let (status, body) = send(&mut sender, get(&target, "/metrics", None)).await?;
    if status != StatusCode::OK {
        return Err(format!("GET /metrics answered {status}"));
    }
    let series =
        r#"authctl_http_requests_total{route="/api/v1/auth/me",method="GET",status="200"} "#;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .ok_or_else(|| "GET /metrics has no /me 200 series".to_string())
}

/// A hashing ceiling measured in this process, with others' CPU share meanwhile.
pub async fn measure_limit(
    target: &Target,
    measure: impl FnOnce() -> HashLimit + Send + 'static,
) -> Result<HashLimit, String> {
    let before = CpuSnap::take(target.server_pid);
    let mut limit = tokio::task::spawn_blocking(measure)
        .await
        .map_err(|e| e.to_string())?;
    limit.others_cpu_pct = before.others_pct_until(&CpuSnap::take(target.server_pid));
    Ok(limit)
}

/// Logins on 8 connections, against `limit` (the configured algorithm's, measured just
/// before); emits the JSON line.
pub async fn login_against(
    plan: &Plan,
    backend: Backend,
    scenario: Scenario,
    target: &Target,
    make: &MakeRequest,
    limit: &HashLimit,
) -> Stats {
    eprintln!("{}: 8 connections …", scenario.name());
    let login = run_load(target, plan, 8, StatusCode::OK, make.clone()).await;
    let alg = limit.algorithm;
    let mut extra = json!({"connections": 8, "cores": plan.cores, "password_hash": alg});
    if alg == "bcrypt" {
        extra["bcrypt_cost"] = json!(plan.cost);
    }
    for (key, value) in [
        ("limit_per_s", limit.per_second()),
        ("verify_ms", limit.single_ms),
        ("verify_all_cores_ms", limit.parallel_ms),
        ("other_cpu_pct", limit.others_cpu_pct),
    ] {
        extra[format!("{alg}_{key}")] = json!(round2(value));
    }
    emit(backend, scenario, &login, extra);
    login
}

/// 200 connections log in back to back at once while paced probes check liveness.
/// The hashing slots (one per core) finish a few logins a second; the others wait at
/// most hash_queue_timeout (the server's default, 5 s) and are refused with 503 +
/// Retry-After, instead of queueing without bound. Emits the JSON line.
pub async fn login_flood(
    plan: &Plan,
    backend: Backend,
    scenario: Scenario,
    target: &Target,
    make: &MakeRequest,
) -> Flood {
    let mut flood = Flood {
        connections: FLOOD_CONNECTIONS,
        ..Flood::default()
    };
    eprintln!("{}: {FLOOD_CONNECTIONS} connections …", scenario.name());
    // A refusal arrives hash_queue_timeout after its request: a shorter window
    // keeps warm-up + window + the last refusals under 15 s.
    let window = Window::after(plan.warmup, plan.measure.min(FLOOD_MEASURE_MAX));
    let before = CpuSnap::take(target.server_pid);
    let (stop_rss, rss_stopped) = tokio::sync::oneshot::channel();
    let rss = tokio::spawn(sample_peak_rss(target.server_pid, rss_stopped));
    let logins = start_load(
        target,
        FLOOD_CONNECTIONS,
        window,
        Expect {
            status: StatusCode::OK,
            busy: true,
        },
        None,
        make.clone(),
    );
    let probes = liveness_probes(target, window);
    flood.probes = collect(probes, window).await;
    flood.logins = collect(logins, window).await;
    let _ = stop_rss.send(());
    flood.rss_max_kib = rss.await.unwrap_or_default();
    flood.probes.others_cpu_pct = before.others_pct_until(&CpuSnap::take(target.server_pid));
    emit(
        backend,
        scenario,
        &flood.probes,
        json!({
            "login_connections": FLOOD_CONNECTIONS,
            "probe_connections": 4,
            "probe_interval_ms": 10,
            "logins_ok": flood.logins.ok,
            "logins_refused_503": flood.logins.busy,
            "refusal_p50_ms": round2(flood.logins.busy_quantile_ms(0.5)),
            "refusal_max_ms": round2(flood.logins.busy_quantile_ms(1.0)),
            "login_errors": flood.logins.errors,
            "rss_max_mib": round2(flood.rss_max_kib as f64 / 1024.0),
        }),
    );
    flood
}

/// `/recover` at rest (SPEC §13: p99 < 5 ms): one connection, one request every 5 ms,
/// for the known address (throttled after its first message) and for unknown ones.
async fn recover_at_rest(
    plan: &Plan,
    backend: Backend,
    target: &Target,
    user: &str,
    prefix: &str,
) -> Extra {
    eprintln!(
        "recover at rest: one request every 5 ms, /recover then /verify/request, known then unknown addresses …"
    );
    let mut extra = Extra::default();
    let cases = [
        ("recover", "/api/v1/auth/recover", "known"),
        ("recover", "/api/v1/auth/recover", "unknown"),
        ("verify/request", "/api/v1/auth/verify/request", "known"),
        ("verify/request", "/api/v1/auth/verify/request", "unknown"),
    ];
    for (name, path, address) in cases {
        let (t, u, p) = (target.clone(), user.to_owned(), prefix.to_owned());
        let make: MakeRequest = Arc::new(move |_, seq| {
            let email = match address {
                "known" => format!("{u}@bench.example"),
                _ => format!("rest_{p}_{}_{seq}@bench.example", name.len()),
            };
            crate::client::email_request(&t, path, &email)
        });
        let window = Window::after(plan.warmup, plan.measure);
        let pace = Some(Duration::from_millis(5));
        let stats = run_paced(target, window, 1, StatusCode::ACCEPTED, pace, make).await;
        emit(
            backend,
            Scenario::Recover,
            &stats,
            json!({"connections": 1, "interval_ms": 5, "address": address, "at_rest": true, "endpoint": name}),
        );
        extra.rows.push(crate::report::row(
            &format!("{name} at rest ({address})"),
            "1 conn, one per 5 ms",
            &format!("{} requests", stats.ok),
            &stats,
        ));
        let p99 = stats.quantile_ms(0.99);
        extra.target(
            format!("{name} ({address} address) p99 at rest < 5 ms"),
            crate::report::ms(p99),
            p99 < 5.0,
        );
        extra.failures += stats.errors;
    }
    extra
}
