//! `login-mfa` (issue 22): logins of accounts with TOTP on, in SPEC §14's two steps —
//! the password grant answers 403 `mfa_required` with an `mfa_token`, the MFA grant
//! takes it with a code — against the bcrypt limit (the second step costs no hash).
//!
//! The server accepts each TOTP step once per account (a step at or before the last
//! accepted one is refused), so one account logs in about twice per 30 s step. The
//! scenario therefore enrols enough accounts for the run (imported with the
//! benchmark's bcrypt hash, then enrolled and confirmed through the API: two verifies
//! each), lends each login an account whose next step is open, and makes the codes
//! here, as an authenticator app would (totp-rs, as the tests do).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde_json::{Value, json};

use crate::client::{
    Sender, Target, bearer, call, connect, login_request, mfa_request, post_json_as, send,
    token_field,
};
use crate::plan::{Backend, Plan, Scenario};
use crate::report::{Extra, emit, login_target, ms, rate, round2, row};
use crate::stats::{HashLimit, Stats, Window};

const STEP_SECONDS: u64 = 30;
const CONNECTIONS: usize = 8;
/// Enough for a 13 s window at 10 logins/s; in smoke mode (bcrypt cost 4) the
/// accounts run out and connections stop early (timings are not judged there).
const MAX_ACCOUNTS: usize = 400;

struct Account {
    username: String,
    totp: totp_rs::Totp,
    last_step: u64,
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The earliest step after `last` that the server accepts at `now` (previous, current
/// or next) and still will a few seconds later: the previous step only in the first
/// 25 s of the current one.
fn usable_step(last: u64, now: u64) -> Option<u64> {
    let current = now / STEP_SECONDS;
    let earliest = if now % STEP_SECONDS < STEP_SECONDS - 5 {
        current.saturating_sub(1)
    } else {
        current
    };
    let step = (last + 1).max(earliest);
    (step <= current + 1).then_some(step)
}

/// The enrolled accounts; a login borrows one whose next step is open.
struct Pool(Mutex<Vec<Account>>);

impl Pool {
    fn take(&self) -> Option<Account> {
        let mut accounts = self.0.lock().ok()?;
        let now = now_seconds();
        let i = accounts
            .iter()
            .position(|a| usable_step(a.last_step, now).is_some())?;
        Some(accounts.swap_remove(i))
    }

    fn give_back(&self, account: Account) {
        if let Ok(mut accounts) = self.0.lock() {
            accounts.push(account);
        }
    }
}

/// How many accounts a run needs: two logins per account and step, at the limit,
/// through warm-up and window, with a margin.
fn accounts_needed(plan: &Plan, limit: &HashLimit) -> usize {
    let seconds = (plan.warmup + plan.measure).as_secs_f64() + 1.0;
    let logins = limit.per_second() * seconds;
    ((logins / 2.0 * 1.3) as usize + CONNECTIONS).clamp(CONNECTIONS * 2, MAX_ACCOUNTS)
}

pub async fn login_mfa(
    plan: &Plan,
    backend: Backend,
    target: &Target,
    database_url: &str,
    work: &Path,
    limit: &HashLimit,
) -> Result<Extra, String> {
    let n = accounts_needed(plan, limit);
    eprintln!("login-mfa: importing and enrolling {n} accounts …");
    let prefix = format!("mfa{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let usernames = crate::transfer::import_accounts(plan, database_url, work, &prefix, n)
        .await?
        .into_iter();
    let usernames = Arc::new(Mutex::new(usernames));
    let mut enrolling = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (t, names) = (target.clone(), usernames.clone());
        enrolling.spawn(async move {
            let mut done = Vec::new();
            loop {
                let next = names.lock().ok().and_then(|mut it| it.next());
                let Some(name) = next else {
                    return Ok::<_, String>(done);
                };
                done.push(enrol(&t, name).await?);
            }
        });
    }
    let mut accounts = Vec::new();
    while let Some(r) = enrolling.join_next().await {
        accounts.extend(r.map_err(|e| e.to_string())??);
    }
    let pool = Arc::new(Pool(Mutex::new(accounts)));

    eprintln!("login-mfa: {CONNECTIONS} connections, password then code …");
    let window = Window::after(plan.warmup, plan.measure);
    let before = crate::stats::CpuSnap::take(target.server_pid);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (t, pool) = (target.clone(), pool.clone());
        set.spawn(async move { connection(&t, &pool, window).await });
    }
    let (mut logins, mut second, mut starved) = (Stats::default(), Stats::default(), 0);
    while let Some(r) = set.join_next().await {
        let (l, s, out_of_accounts) = r.map_err(|e| e.to_string())?;
        logins.merge(l);
        second.merge(s);
        starved += usize::from(out_of_accounts);
    }
    let mut logins = logins.finish(window.len());
    let second = second.finish(window.len());
    logins.others_cpu_pct =
        before.others_pct_until(&crate::stats::CpuSnap::take(target.server_pid));
    emit(
        backend,
        Scenario::LoginMfa,
        &logins,
        json!({
            "connections": CONNECTIONS,
            "accounts": n,
            "code_step_p50_ms": round2(second.quantile_ms(0.5)),
            "code_step_p99_ms": round2(second.quantile_ms(0.99)),
            "bcrypt_limit_per_s": round2(limit.per_second()),
            "connections_out_of_accounts": starved,
        }),
    );
    let mut extra = Extra::default();
    extra.rows.push(row(
        "login-mfa",
        &format!("{CONNECTIONS} conns, {n} TOTP accounts"),
        &format!(
            "{} (password step, then code step: p50 {} / p99 {}); bcrypt limit {:.2}/s{}",
            rate(logins.rate(), "logins/s"),
            ms(second.quantile_ms(0.5)),
            ms(second.quantile_ms(0.99)),
            limit.per_second(),
            if starved > 0 {
                format!("; {starved} connection(s) ran out of open TOTP steps")
            } else {
                String::new()
            }
        ),
        &logins,
    ));
    let (name, measured, pass) = login_target("MFA login", &logins, limit);
    extra.target(name, measured, pass);
    extra.failures += logins.errors;
    Ok(extra)
}

/// Logs `username` in, enrols TOTP with its password and confirms it with the code
/// of the earliest open step (so that the later ones stay for logins).
async fn enrol(target: &Target, username: String) -> Result<Account, String> {
    let pair = call(target, login_request(target, &username), StatusCode::OK).await?;
    let access = bearer(&token_field(&pair, "access_token")?)?;
    let enrolled = call(
        target,
        post_json_as(
            target,
            "/api/v1/auth/mfa/totp",
            &access,
            &json!({"current_password": crate::PASSWORD}),
        ),
        StatusCode::OK,
    )
    .await?;
    let secret = totp_rs::Secret::try_from_base32(token_field(&enrolled, "secret")?)
        .map_err(|e| format!("the enrolment's secret is not base32: {e}"))?;
    // The server's settings (SPEC §14): SHA-1, 6 digits, 30 s.
    let totp = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(STEP_SECONDS)
        .with_secret(secret.as_bytes().to_vec())
        .build()
        .map_err(|e| format!("the enrolment's secret: {e}"))?;
    let step = usable_step(0, now_seconds()).ok_or("no TOTP step open")?;
    call(
        target,
        post_json_as(
            target,
            "/api/v1/auth/mfa/totp/confirm",
            &access,
            &json!({"code": totp.generate(step * STEP_SECONDS).to_string()}),
        ),
        StatusCode::OK,
    )
    .await?;
    Ok(Account {
        username,
        totp,
        last_step: step,
    })
}

/// One connection logging in back to back until the window closes (or no account has
/// an open step): (full logins, code steps alone, whether it ran out of accounts).
async fn connection(target: &Target, pool: &Pool, window: Window) -> (Stats, Stats, bool) {
    let (mut logins, mut second) = (Stats::default(), Stats::default());
    let mut sender: Option<Sender> = None;
    while Instant::now() < window.end {
        let Some(mut account) = pool.take() else {
            return (logins, second, true);
        };
        let t0 = Instant::now();
        let result = two_steps(target, &mut sender, &mut account).await;
        pool.give_back(account);
        let t1 = Instant::now();
        logins.answered += 1;
        match result {
            Ok(code_us) if t1 >= window.start && t1 <= window.end => {
                logins.ok += 1;
                logins.latencies_us.push(micros(t1 - t0));
                second.ok += 1;
                second.latencies_us.push(code_us);
            }
            Ok(_) => {}
            Err(e) => {
                logins.errors += 1;
                logins.first_error.get_or_insert(e);
                sender = None;
            }
        }
    }
    (logins, second, false)
}

fn micros(d: std::time::Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

/// The password step (403 + `mfa_token`), then the code step (200); the code step's
/// latency in µs.
async fn two_steps(
    target: &Target,
    sender: &mut Option<Sender>,
    account: &mut Account,
) -> Result<u32, String> {
    let s = match sender {
        Some(s) => s,
        None => sender.insert(connect(target).await?),
    };
    let (status, body) = send(s, login_request(target, &account.username)).await?;
    if status != StatusCode::FORBIDDEN {
        return Err(format!(
            "password step: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    let problem: Value =
        serde_json::from_slice(&body).map_err(|e| format!("password step: not JSON: {e}"))?;
    let mfa_token = token_field(&problem, "mfa_token")?;
    let step = usable_step(account.last_step, now_seconds()).ok_or("no TOTP step open")?;
    account.last_step = step;
    let code = account.totp.generate(step * STEP_SECONDS).to_string();
    let t = Instant::now();
    let (status, body) = send(s, mfa_request(target, &mfa_token, &code)).await?;
    let us = micros(t.elapsed());
    if status != StatusCode::OK {
        return Err(format!(
            "code step: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_is_used_once_and_the_previous_one_only_early_in_a_step() {
        let t = 1000 * STEP_SECONDS; // the start of step 1000
        assert_eq!(usable_step(0, t), Some(999));
        assert_eq!(usable_step(999, t), Some(1000));
        assert_eq!(usable_step(1000, t), Some(1001));
        assert_eq!(usable_step(1001, t), None);
        // In the last 5 s of a step, the previous one is about to close.
        assert_eq!(usable_step(0, t + 26), Some(1000));
        // A new step opens one more.
        assert_eq!(usable_step(1001, t + STEP_SECONDS), Some(1002));
    }
}
