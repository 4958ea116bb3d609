//! `oidc-code` (issue 26): the OpenID Connect token endpoint exchanging authorization
//! codes, against `/refresh` rotations on the same server, with as many connections and
//! as many operations (target: ≥ 0.5 × `/refresh`; an exchange costs no password
//! hash). A server with the provider on is started on the run's database; one login
//! through the login page gives the browser session that mints every code beforehand
//! (`prompt=none`, one `GET /oauth/authorize` each), so the measured requests are the
//! exchanges alone.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use hyper::header::{COOKIE, HeaderValue, LOCATION, SET_COOKIE};
use hyper::{Request, StatusCode};
use serde_json::json;
use sha2::Digest;

use crate::client::{Sender, Target, connect, get, post_form, token_field};
use crate::load::refresh_chains;
use crate::plan::{Backend, Plan, Scenario};
use crate::report::{Extra, emit, rate, round2, row};
use crate::server::Server;
use crate::stats::{CpuSnap, Stats};

const REDIRECT_URI: &str = "http://127.0.0.1/cb";
/// One PKCE verifier for every code (43 unreserved characters).
const VERIFIER: &str = "bench-verifier-0123456789abcdefghijklmnopqrstuvwxyz";

type Body = http_body_util::Full<bytes::Bytes>;

/// One request, with the answer's headers.
async fn exchange(
    sender: &mut Sender,
    req: Request<Body>,
) -> Result<(StatusCode, hyper::HeaderMap, bytes::Bytes), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((parts.status, parts.headers, body))
}

fn with_cookie(mut req: Request<Body>, cookie: &str) -> Result<Request<Body>, String> {
    req.headers_mut().insert(
        COOKIE,
        HeaderValue::from_str(cookie).map_err(|e| e.to_string())?,
    );
    Ok(req)
}

/// The `name=value` of the first `Set-Cookie` naming `name`.
fn cookie(headers: &hyper::HeaderMap, name: &str) -> Result<String, String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.starts_with(&format!("{name}=")))
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name} cookie"))
}

/// The value of the hidden input `name` in a page.
fn hidden(html: &str, name: &str) -> Result<String, String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .ok_or_else(|| format!("no {name} field"))?
        + marker.len();
    let end = html[start..]
        .find('"')
        .ok_or_else(|| format!("unterminated {name} field"))?;
    // maud escapes `&` (the query's separators) and `"`; nothing else occurs here.
    Ok(html[start..start + end]
        .replace("&amp;", "&")
        .replace("&quot;", "\""))
}

fn query(client_id: &str, extra: &str) -> String {
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT_URI)
        .append_pair("scope", "openid profile email")
        .append_pair("state", "bench")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .finish()
        + extra
}

/// Logs in through the login page: the browser session cookie.
async fn browser_session(target: &Target, client_id: &str, user: &str) -> Result<String, String> {
    let mut sender = connect(target).await?;
    let path = format!("/oauth/authorize?{}", query(client_id, ""));
    let (status, headers, body) = exchange(&mut sender, get(target, &path, None)).await?;
    if status != StatusCode::OK {
        return Err(format!("the login page: {status}"));
    }
    let csrf_cookie = cookie(&headers, "authctl_csrf")?;
    let html = String::from_utf8_lossy(&body);
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("csrf", &hidden(&html, "csrf")?)
        .append_pair("request", &hidden(&html, "request")?)
        .append_pair("username", user)
        .append_pair("password", crate::PASSWORD)
        .finish();
    let req = with_cookie(post_form(target, "/oauth/login", form, None), &csrf_cookie)?;
    let (status, headers, body) = exchange(&mut sender, req).await?;
    if status != StatusCode::SEE_OTHER {
        return Err(format!(
            "the login form: {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    cookie(&headers, "authctl_session")
}

/// `n` codes from the browser session, over 8 connections.
async fn mint_codes(
    target: &Target,
    client_id: &str,
    session: &str,
    n: usize,
) -> Result<Vec<String>, String> {
    let path = Arc::new(format!(
        "/oauth/authorize?{}",
        query(client_id, "&prompt=none")
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (t, p, s, next) = (
            target.clone(),
            path.clone(),
            session.to_owned(),
            next.clone(),
        );
        set.spawn(async move {
            let mut sender = connect(&t).await?;
            let mut codes = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let req = with_cookie(get(&t, &p, None), &s)?;
                let (status, headers, _) = exchange(&mut sender, req).await?;
                let location = headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("authorize: {status} without Location"))?;
                let url = url::Url::parse(location).map_err(|e| e.to_string())?;
                let code = url
                    .query_pairs()
                    .find(|(k, _)| k == "code")
                    .map(|(_, v)| v.into_owned())
                    .ok_or_else(|| format!("authorize: no code in {location}"))?;
                codes.push(code);
            }
            Ok::<_, String>(codes)
        });
    }
    let mut codes = Vec::with_capacity(n);
    while let Some(r) = set.join_next().await {
        codes.extend(r.map_err(|e| e.to_string())??);
    }
    Ok(codes)
}

/// Every code exchanged once, over `connections` connections.
async fn exchange_all(
    target: &Target,
    codes: Vec<String>,
    connections: usize,
    basic: &HeaderValue,
) -> Stats {
    let codes = Arc::new(codes);
    let next = Arc::new(AtomicUsize::new(0));
    let before = CpuSnap::take(target.server_pid);
    let began = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (t, codes, next, basic) = (target.clone(), codes.clone(), next.clone(), basic.clone());
        set.spawn(async move {
            let mut stats = Stats::default();
            let mut sender = match connect(&t).await {
                Ok(s) => s,
                Err(e) => {
                    stats.errors += 1;
                    stats.first_error = Some(e);
                    return stats;
                }
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(code) = codes.get(i) else {
                    return stats;
                };
                let form = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "authorization_code")
                    .append_pair("code", code)
                    .append_pair("redirect_uri", REDIRECT_URI)
                    .append_pair("code_verifier", VERIFIER)
                    .finish();
                let t0 = Instant::now();
                let req = post_form(&t, "/oauth/token", form, Some(&basic));
                match exchange(&mut sender, req).await {
                    Ok((StatusCode::OK, _, _)) => {
                        stats.ok += 1;
                        let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                        stats.latencies_us.push(us);
                    }
                    Ok((status, _, body)) => {
                        stats.errors += 1;
                        stats.first_error =
                            Some(format!("{status}: {}", String::from_utf8_lossy(&body)));
                    }
                    Err(e) => {
                        stats.errors += 1;
                        stats.first_error = Some(e);
                        return stats;
                    }
                }
            }
        });
    }
    let mut total = Stats::default();
    while let Some(r) = set.join_next().await {
        if let Ok(s) = r {
            total.merge(s);
        }
    }
    total.window = began.elapsed();
    total.latencies_us.sort_unstable();
    total.answered = total.ok + total.errors;
    let after = CpuSnap::take(target.server_pid);
    total.others_cpu_pct = before.others_pct_until(&after);
    (total.server_cpu_us, total.db_cpu_us) = before.per_request_us(&after, total.ok);
    total
}

pub async fn oidc_code(
    plan: &Plan,
    backend: Backend,
    database_url: &str,
    work: &Path,
    user: &str,
) -> Result<Extra, String> {
    let env = [("AUTHCTL_OIDC_ENABLED", "true".to_owned())];
    let mut server = Server::spawn_with(plan, database_url, work, 70, &env)?;
    server.wait_started(Instant::now(), std::time::Duration::from_secs(30))?;
    let target = server.target()?;
    let args = [
        "client",
        "add",
        "--name",
        "bench",
        "--redirect-uri",
        REDIRECT_URI,
    ];
    let client = crate::server::cli_json(plan, database_url, work, &args).await?;
    let (id, secret) = (
        token_field(&client, "client_id")?,
        token_field(&client, "client_secret")?,
    );
    let basic = HeaderValue::from_str(&format!(
        "Basic {}",
        STANDARD.encode(format!("{id}:{secret}"))
    ))
    .map_err(|e| e.to_string())?;
    let session = browser_session(&target, &id, user).await?;
    let n = plan.chains * plan.rotations;
    eprintln!(
        "oidc-code: minting {n} codes, then exchanging them on {} connections …",
        plan.chains
    );
    let codes = mint_codes(&target, &id, &session, n).await?;
    let codes_stats = exchange_all(&target, codes, plan.chains, &basic).await;
    eprintln!(
        "oidc-code: /refresh, {} chains x {} rotations on the same server …",
        plan.chains, plan.rotations
    );
    let (refresh, refresh_wall, broken, _) = refresh_chains(&target, plan, user).await?;
    let refresh_rate = refresh.ok as f64 / refresh_wall.as_secs_f64().max(1e-9);
    let ratio = codes_stats.rate() / refresh_rate.max(1e-9);
    server.stop()?;
    emit(
        backend,
        Scenario::OidcCode,
        &codes_stats,
        json!({
            "connections": plan.chains,
            "codes": n,
            "refresh_rotations_per_s": round2(refresh_rate),
            "ratio_to_refresh": round2(ratio),
        }),
    );
    let mut extra = Extra::default();
    extra.rows.push(row(
        "oidc-code",
        &format!("{} conns, {n} codes", plan.chains),
        &format!(
            "{} = {ratio:.2} × /refresh ({})",
            rate(codes_stats.rate(), "exchanges/s"),
            rate(refresh_rate, "rotations/s")
        ),
        &codes_stats,
    ));
    extra.target(
        "token endpoint, authorization codes ≥ 0.5 × /refresh",
        format!(
            "{ratio:.2} × ({:.0} / {refresh_rate:.0})",
            codes_stats.rate()
        ),
        ratio >= 0.5,
    );
    extra.failures += codes_stats.errors + refresh.errors + broken as u64;
    Ok(extra)
}
