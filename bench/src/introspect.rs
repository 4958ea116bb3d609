//! `introspect` (issue 23): RFC 7662 introspection of access tokens by an API key with
//! the `introspect` scope, measured against `/me` in alternating rounds (it is the same
//! lookup: target ≥ 0.5 × `/me`), and requests with an unknown API key at rest, one
//! every 5 ms on one connection (a failed key check costs a digest lookup: target
//! median < 1 ms).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::json;

use crate::client::{Target, bearer, introspect_request, token_field};
use crate::load::{MakeRequest, run_alternating, run_paced};
use crate::plan::{Backend, Plan, Scenario};
use crate::report::{Extra, emit, ms, rate, round2, row};
use crate::stats::Window;

pub async fn introspect(
    plan: &Plan,
    backend: Backend,
    target: &Target,
    database_url: &str,
    work: &Path,
    bearers: &Arc<Vec<HeaderValue>>,
) -> Result<Extra, String> {
    let key = bearer(&create_key(plan, database_url, work).await?)?;
    // The setup sessions' access tokens, as the bearers carry them.
    let tokens: Arc<Vec<String>> = Arc::new(
        bearers
            .iter()
            .filter_map(|b| b.to_str().ok()?.strip_prefix("Bearer ").map(str::to_owned))
            .collect(),
    );
    if tokens.is_empty() {
        return Err("introspect: no access token to introspect".into());
    }
    let (t, k, tk) = (target.clone(), key, tokens.clone());
    let introspect_make: MakeRequest =
        Arc::new(move |c, _| introspect_request(&t, &k, &tk[c % tk.len()]));
    eprintln!("introspect: 64 connections, /me and introspection in alternating rounds …");
    let mut results = run_alternating(
        plan,
        64,
        vec![
            (target.clone(), crate::run::me_on(target, bearers)),
            (target.clone(), introspect_make),
        ],
    )
    .await
    .into_iter();
    let (me, introspected) = match (results.next(), results.next()) {
        (Some(me), Some(i)) => (me, i),
        _ => return Err("introspect: a load returned no result".into()),
    };

    eprintln!("introspect: an unknown API key, one request every 5 ms …");
    // The shape of a real key (`ak_` + 43 base64url characters), never issued.
    let unknown = bearer(&format!(
        "ak_{}{}",
        uuid::Uuid::new_v4().simple(),
        "A".repeat(11)
    ))?;
    let (t, tk) = (target.clone(), tokens);
    let window = Window::after(plan.warmup, plan.measure);
    let unknown_key = run_paced(
        target,
        window,
        1,
        StatusCode::UNAUTHORIZED,
        Some(Duration::from_millis(5)),
        Arc::new(move |_, _| introspect_request(&t, &unknown, &tk[0])),
    )
    .await;

    let ratio = introspected.rate() / me.rate();
    emit(
        backend,
        Scenario::Introspect,
        &introspected,
        json!({
            "connections": 64,
            "me_rps": round2(me.rate()),
            "me_p99_ms": round2(me.quantile_ms(0.99)),
            "ratio_to_me": round2(ratio),
            "server_cpu_us_per_req_me": round2(me.server_cpu_us),
        }),
    );
    emit(
        backend,
        Scenario::Introspect,
        &unknown_key,
        json!({"connections": 1, "interval_ms": 5, "api_key": "unknown"}),
    );
    let mut extra = Extra::default();
    extra.rows.push(row(
        "introspect",
        "64 conns, alternating with /me",
        &format!(
            "{} = {ratio:.2} × /me ({}, p99 {})",
            rate(introspected.rate(), "req/s"),
            rate(me.rate(), "req/s"),
            ms(me.quantile_ms(0.99))
        ),
        &introspected,
    ));
    extra.rows.push(row(
        "introspect, unknown key",
        "1 conn, one per 5 ms",
        &format!("{} 401s", unknown_key.ok),
        &unknown_key,
    ));
    extra.target(
        "introspect rps ≥ 0.5 × /me rps",
        format!(
            "{ratio:.2} × ({:.0} / {:.0})",
            introspected.rate(),
            me.rate()
        ),
        ratio >= 0.5,
    );
    let p50 = unknown_key.quantile_ms(0.5);
    extra.target("unknown API key p50 at rest < 1 ms", ms(p50), p50 < 1.0);
    extra.failures += me.errors + introspected.errors + unknown_key.errors;
    Ok(extra)
}

/// `authctl apikey create --scope introspect`: the key, printed once.
async fn create_key(plan: &Plan, database_url: &str, work: &Path) -> Result<String, String> {
    let args = [
        "apikey",
        "create",
        "--name",
        "bench-introspect",
        "--scope",
        "introspect",
    ];
    let created = crate::server::cli_json(plan, database_url, work, &args).await?;
    token_field(&created, "key")
}
