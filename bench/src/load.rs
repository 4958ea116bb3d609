//! Load: connections sending requests back to back (or paced) through a measuring
//! window, the alternating rounds of `liveness` and `me`, and the refresh chains.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde_json::Value;

use crate::client::{
    Sender, Target, call, connect, get, login_request, refresh_request, send, send_noting_retry,
    token_field,
};
use crate::plan::Plan;
use crate::stats::{CpuSnap, Stats, Window};

/// Builds the request a connection sends next, from (connection number, sequence).
pub type MakeRequest = Arc<dyn Fn(usize, u64) -> Request<Full<Bytes>> + Send + Sync>;

/// The answers a load counts as served: `status`, and with `busy`, also a 503 with
/// `Retry-After` (a prompt refusal from the hashing queue), counted apart in
/// [`Stats::busy`]. Anything else is an error.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub status: StatusCode,
    pub busy: bool,
}

impl From<StatusCode> for Expect {
    fn from(status: StatusCode) -> Self {
        Expect {
            status,
            busy: false,
        }
    }
}

/// `conns` connections, each sending `make(conn, seq)` back to back (or one every
/// `pace`) until the window closes. Returns once every connection is idle.
pub fn start_load(
    target: &Target,
    conns: usize,
    window: Window,
    expect: impl Into<Expect>,
    pace: Option<Duration>,
    make: MakeRequest,
) -> tokio::task::JoinSet<Stats> {
    let expect = expect.into();
    let mut set = tokio::task::JoinSet::new();
    for conn in 0..conns {
        let target = target.clone();
        let make = make.clone();
        set.spawn(async move {
            let mut stats = Stats::default();
            let mut sender: Option<Sender> = None;
            let mut seq = 0u64;
            // Spread paced connections over the period.
            if let Some(p) = pace {
                tokio::time::sleep(p * conn as u32 / conns as u32).await;
            }
            while Instant::now() < window.end {
                let s = match sender.as_mut() {
                    Some(s) => s,
                    None => match connect(&target).await {
                        Ok(s) => sender.insert(s),
                        Err(e) => {
                            stats.errors += 1;
                            stats.first_error.get_or_insert(e);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let req = make(conn, seq);
                seq += 1;
                let t0 = Instant::now();
                let result = send_noting_retry(s, req).await;
                let t1 = Instant::now();
                let counted = t1 >= window.start && t1 <= window.end;
                let us = (t1 - t0).as_micros().min(u128::from(u32::MAX)) as u32;
                stats.answered += u64::from(result.is_ok());
                match result {
                    Ok((status, _, _)) if status == expect.status => {
                        if counted {
                            stats.ok += 1;
                            stats.latencies_us.push(us);
                        }
                    }
                    Ok((StatusCode::SERVICE_UNAVAILABLE, _, true)) if expect.busy => {
                        if counted {
                            stats.busy += 1;
                            stats.busy_latencies_us.push(us);
                        }
                    }
                    Ok((status, body, _)) => {
                        stats.errors += 1;
                        stats.first_error.get_or_insert_with(|| {
                            format!("{status}: {}", String::from_utf8_lossy(&body))
                        });
                    }
                    Err(e) => {
                        stats.errors += 1;
                        stats.first_error.get_or_insert(e);
                        sender = None;
                    }
                }
                if let Some(p) = pace {
                    tokio::time::sleep_until((t0 + p).into()).await;
                }
            }
            stats
        });
    }
    set
}

pub async fn collect(mut set: tokio::task::JoinSet<Stats>, window: Window) -> Stats {
    let mut total = Stats::default();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(s) => total.merge(s),
            Err(e) => {
                total.errors += 1;
                total
                    .first_error
                    .get_or_insert(format!("load task failed: {e}"));
            }
        }
    }
    total.finish(window.len())
}

pub async fn run_load(
    target: &Target,
    plan: &Plan,
    conns: usize,
    expect: StatusCode,
    make: MakeRequest,
) -> Stats {
    run_load_in(
        target,
        Window::after(plan.warmup, plan.measure),
        conns,
        expect,
        make,
    )
    .await
}

/// Rounds in which `liveness` and `me` alternate (one in smoke mode).
pub const PAIRED_ROUNDS: u32 = 4;

/// Runs the given loads in alternating rounds (a, b, a, b, …), each round on fresh
/// connections with half the usual warm-up and its share of the measuring time, and
/// adds the rounds up per load. A host that slows down for a while (another tenant,
/// CPU steal) then slows every load alike, so the ratio of their rates — what the `me`
/// target compares — stays fair; measured back to back, it drifted by ±10 %.
///
/// Each load names its own server, so two servers configured differently (metrics on
/// and off) compare the same way.
pub async fn run_alternating(
    plan: &Plan,
    conns: usize,
    loads: Vec<(Target, MakeRequest)>,
) -> Vec<Stats> {
    let rounds = if plan.smoke { 1 } else { PAIRED_ROUNDS };
    let mut totals: Vec<Stats> = loads.iter().map(|_| Stats::default()).collect();
    for _ in 0..rounds {
        for ((target, make), total) in loads.iter().zip(totals.iter_mut()) {
            let window = Window::after(plan.warmup / 2, plan.measure / rounds);
            let round = run_load_in(target, window, conns, StatusCode::OK, make.clone()).await;
            total.add_round(round);
        }
    }
    totals
}

pub async fn run_load_in(
    target: &Target,
    window: Window,
    conns: usize,
    expect: StatusCode,
    make: MakeRequest,
) -> Stats {
    run_paced(target, window, conns, expect, None, make).await
}

/// [`start_load`] through `window`, collected, with the CPU readings around it.
pub async fn run_paced(
    target: &Target,
    window: Window,
    conns: usize,
    expect: StatusCode,
    pace: Option<Duration>,
    make: MakeRequest,
) -> Stats {
    let before = CpuSnap::take(target.server_pid);
    let mut stats = collect(
        start_load(target, conns, window, expect, pace, make),
        window,
    )
    .await;
    let after = CpuSnap::take(target.server_pid);
    stats.others_cpu_pct = before.others_pct_until(&after);
    (stats.server_cpu_us, stats.db_cpu_us) = before.per_request_us(&after, stats.answered);
    stats
}

/// `plan.chains` sessions, each rotated `plan.rotations` times in sequence on its own
/// connection; a chain breaks at its first failed rotation, or if its last access
/// token is refused at `/me`. Returns the stats, the wall time, broken and unfinished
/// chains (stopped by the 15 s bound, not broken).
pub async fn refresh_chains(
    target: &Target,
    plan: &Plan,
    user: &str,
) -> Result<(Stats, Duration, usize, usize), String> {
    let mut starts = Vec::new();
    let mut logins = tokio::task::JoinSet::new();
    for _ in 0..plan.chains {
        let (t, u) = (target.clone(), user.to_owned());
        logins.spawn(async move {
            let pair = call(&t, login_request(&t, &u), StatusCode::OK).await?;
            token_field(&pair, "refresh_token")
        });
    }
    while let Some(r) = logins.join_next().await {
        starts.push(r.map_err(|e| e.to_string())??);
    }
    let before = CpuSnap::take(target.server_pid);
    let began = Instant::now();
    let deadline = began + Duration::from_secs(14);
    let mut set = tokio::task::JoinSet::new();
    for start in starts {
        let t = target.clone();
        let rotations = plan.rotations;
        set.spawn(async move {
            let mut stats = Stats::default();
            let mut token = start;
            let mut access = None;
            let mut broken = false;
            let mut done = 0;
            let mut sender = match connect(&t).await {
                Ok(s) => s,
                Err(e) => {
                    stats.errors += 1;
                    stats.first_error = Some(e);
                    return (stats, true, false);
                }
            };
            while done < rotations && Instant::now() < deadline {
                let t0 = Instant::now();
                let result = send(&mut sender, refresh_request(&t, &token)).await;
                let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                let pair = match result {
                    Ok((StatusCode::OK, body)) => serde_json::from_slice::<Value>(&body).ok(),
                    Ok((status, body)) => {
                        stats.first_error =
                            Some(format!("{status}: {}", String::from_utf8_lossy(&body)));
                        None
                    }
                    Err(e) => {
                        stats.first_error = Some(e);
                        None
                    }
                };
                match pair.as_ref().and_then(|p| {
                    Some((
                        token_field(p, "refresh_token").ok()?,
                        token_field(p, "access_token").ok()?,
                    ))
                }) {
                    Some((next, acc)) => {
                        token = next;
                        access = Some(acc);
                        stats.ok += 1;
                        stats.latencies_us.push(us);
                        done += 1;
                    }
                    None => {
                        stats.errors += 1;
                        broken = true;
                        break;
                    }
                }
            }
            if let (false, Some(acc)) = (broken, access) {
                // The server's access token, used as a header: a broken chain if it is not one.
                let checked = match HeaderValue::from_str(&format!("Bearer {acc}")) {
                    Ok(bearer) => send(&mut sender, get(&t, "/api/v1/auth/me", Some(&bearer)))
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(format!("the access token is not a header value: {e}")),
                };
                match checked {
                    Ok((StatusCode::OK, _)) => {}
                    other => {
                        broken = true;
                        stats.errors += 1;
                        stats.first_error = Some(format!("/me after the chain: {other:?}"));
                    }
                }
            }
            (stats, broken, !broken && done < rotations)
        });
    }
    let mut total = Stats::default();
    let (mut broken, mut unfinished) = (0, 0);
    while let Some(r) = set.join_next().await {
        let (s, b, u) = r.map_err(|e| e.to_string())?;
        total.merge(s);
        broken += usize::from(b);
        unfinished += usize::from(u);
    }
    let wall = began.elapsed();
    let mut total = total.finish(wall);
    let after = CpuSnap::take(target.server_pid);
    total.others_cpu_pct = before.others_pct_until(&after);
    (total.server_cpu_us, total.db_cpu_us) = before.per_request_us(&after, total.ok);
    Ok((total, wall, broken, unfinished))
}
