//! `login-argon2id` and `login-flood-argon2id` (issue 24): a server with
//! `auth.password_hash = argon2id` (SPEC §16's default parameters) over the same
//! database, a user registered there (so its hash is Argon2id), logins against the
//! Argon2id limit timed in this process just before, and the 200-login flood with its
//! §16 memory bound: RSS < 64 MB + cores × `argon2_memory_kib`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::client::{call, login_request, register_request};
use crate::load::MakeRequest;
use crate::plan::{Backend, Plan, Scenario};
use crate::report::{Extra, flood_row, flood_targets, login_target, ms, rate, row};
use crate::run::{login_against, login_flood, measure_limit};
use crate::server::Server;
use crate::stats::{Argon2Params, HashLimit};

/// The server's `hash_queue_timeout` (its default): a refusal is prompt if it comes
/// within this and a second of slack.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn argon2id(
    plan: &Plan,
    backend: Backend,
    database_url: &str,
    work: &Path,
    prefix: &str,
) -> Result<Extra, String> {
    let params = Argon2Params::default();
    let env = [
        ("AUTHCTL_PASSWORD_HASH", "argon2id".to_owned()),
        ("AUTHCTL_ARGON2_MEMORY_KIB", params.memory_kib.to_string()),
        ("AUTHCTL_ARGON2_ITERATIONS", params.iterations.to_string()),
        ("AUTHCTL_ARGON2_PARALLELISM", params.parallelism.to_string()),
    ];
    let mut server = Server::spawn_with(plan, database_url, work, 200, &env)?;
    server.wait_started(Instant::now(), Duration::from_secs(30))?;
    let target = server.target()?;
    let user = format!("{prefix}_argon2id");
    call(
        &target,
        register_request(&target, &user),
        StatusCode::CREATED,
    )
    .await?;
    let (t, u) = (target.clone(), user);
    let make: MakeRequest = Arc::new(move |_, _| login_request(&t, &u));
    let mut extra = Extra::default();

    if plan.runs(Scenario::LoginArgon2id) {
        eprintln!(
            "argon2id limit (m={} KiB, t={}, p={}) …",
            params.memory_kib, params.iterations, params.parallelism
        );
        let cores = plan.cores;
        let limit = measure_limit(&target, move || HashLimit::argon2id(params, cores, 3)).await?;
        let login = login_against(
            plan,
            backend,
            Scenario::LoginArgon2id,
            &target,
            &make,
            &limit,
        )
        .await;
        extra.rows.push(row(
            "login-argon2id",
            "8 conns",
            &format!(
                "{} (argon2id limit {:.2}/s: {} cores ÷ {:.1} ms; {:.1} ms/verify with all cores busy)",
                rate(login.rate(), "logins/s"),
                limit.per_second(),
                limit.cores,
                limit.single_ms,
                limit.parallel_ms
            ),
            &login,
        ));
        let (name, measured, pass) = login_target("login", &login, &limit);
        extra.target(name, measured, pass);
        extra.failures += login.errors;
    }

    if plan.runs(Scenario::LoginFloodArgon2id) {
        let flood = login_flood(plan, backend, Scenario::LoginFloodArgon2id, &target, &make).await;
        extra.rows.push(flood_row("login-flood-argon2id", &flood));
        let bound_kib = 64 * 1024 + plan.cores as u64 * u64::from(params.memory_kib);
        extra.targets.extend(flood_targets(
            &flood,
            " (argon2id)",
            &format!(
                "64 MB + {} × {} KiB = {:.0} MB",
                plan.cores,
                params.memory_kib,
                bound_kib as f64 / 1024.0
            ),
            bound_kib,
        ));
        let slowest = flood.logins.busy_quantile_ms(1.0);
        let bound_ms = (QUEUE_TIMEOUT + Duration::from_secs(1)).as_secs_f64() * 1000.0;
        extra.target(
            format!(
                "argon2id flood: 503s prompt (≤ {} queue timeout + 1 s)",
                ms(QUEUE_TIMEOUT.as_secs_f64() * 1000.0)
            ),
            if flood.logins.busy == 0 {
                format!("no 503 ({} logins ok within the timeout)", flood.logins.ok)
            } else {
                format!(
                    "{} refused, slowest after {}",
                    flood.logins.busy,
                    ms(slowest)
                )
            },
            flood.logins.busy == 0 || slowest <= bound_ms,
        );
        extra.failures += flood.logins.errors + flood.probes.errors;
    }
    if !server.stop()? {
        extra.failures += 1;
    }
    Ok(extra)
}
