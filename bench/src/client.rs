//! The load generator's HTTP/1.1 client: one hyper connection per [`Sender`], kept
//! alive, and the few requests the scenarios send.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

use crate::PASSWORD;

/// The server being measured.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub host: HeaderValue,
    /// For CPU readings (`stats::CpuSnap`).
    pub server_pid: u32,
}

pub type Sender = SendRequest<Full<Bytes>>;

pub async fn connect(target: &Target) -> Result<Sender, String> {
    let stream = TcpStream::connect(target.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

pub async fn send(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    send_noting_retry(sender, req)
        .await
        .map(|(status, body, _)| (status, body))
}

/// Like [`send`], and whether the answer carried `Retry-After` (a 503 from the
/// hashing queue must).
pub async fn send_noting_retry(
    sender: &mut Sender,
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes, bool), String> {
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let retry_after = resp.headers().contains_key(RETRY_AFTER);
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body, retry_after))
}

pub fn get(target: &Target, path: &str, bearer: Option<&HeaderValue>) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(HOST, target.host.clone());
    if let Some(v) = bearer {
        b = b.header(AUTHORIZATION, v.clone());
    }
    // Our own constant paths and already-valid header values: it cannot fail.
    b.body(Full::new(Bytes::new())).expect("a valid request")
}

fn post(
    target: &Target,
    path: &str,
    content_type: &'static str,
    body: String,
) -> Request<Full<Bytes>> {
    post_as(target, path, content_type, body, None)
}

/// A POST, with `Authorization` when `bearer` is given.
fn post_as(
    target: &Target,
    path: &str,
    content_type: &'static str,
    body: String,
    bearer: Option<&HeaderValue>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, target.host.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(v) = bearer {
        b = b.header(AUTHORIZATION, v.clone());
    }
    b.body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

/// A form POST, with `Authorization` (e.g. a client's Basic credentials) if given.
pub fn post_form(
    target: &Target,
    path: &str,
    body: String,
    authorization: Option<&HeaderValue>,
) -> Request<Full<Bytes>> {
    post_as(
        target,
        path,
        "application/x-www-form-urlencoded",
        body,
        authorization,
    )
}

/// A JSON POST as a signed-in user (the MFA enrolment endpoints).
pub fn post_json_as(
    target: &Target,
    path: &str,
    bearer: &HeaderValue,
    body: &Value,
) -> Request<Full<Bytes>> {
    post_as(
        target,
        path,
        "application/json",
        body.to_string(),
        Some(bearer),
    )
}

/// The second step of a login with TOTP on (SPEC §14): the MFA grant.
pub fn mfa_request(target: &Target, mfa_token: &str, code: &str) -> Request<Full<Bytes>> {
    post(
        target,
        "/api/v1/auth/token",
        "application/x-www-form-urlencoded",
        format!("grant_type=urn%3Aauthctl%3Agrant-type%3Amfa&mfa_token={mfa_token}&code={code}"),
    )
}

/// RFC 7662 introspection of `token`, authenticated by the API key in `key`.
pub fn introspect_request(target: &Target, key: &HeaderValue, token: &str) -> Request<Full<Bytes>> {
    post_as(
        target,
        "/api/v1/auth/introspect",
        "application/x-www-form-urlencoded",
        format!("token={token}"),
        Some(key),
    )
}

/// `Bearer {token}` as a header value.
pub fn bearer(token: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| e.to_string())
}

pub fn login_request(target: &Target, username: &str) -> Request<Full<Bytes>> {
    post(
        target,
        "/api/v1/auth/token",
        "application/x-www-form-urlencoded",
        format!("username={username}&password={PASSWORD}"),
    )
}

pub fn register_request(target: &Target, username: &str) -> Request<Full<Bytes>> {
    post(
        target,
        "/api/v1/auth/register",
        "application/json",
        json!({"email": format!("{username}@bench.example"), "username": username, "password": PASSWORD})
            .to_string(),
    )
}

pub fn recover_request(target: &Target, email: &str) -> Request<Full<Bytes>> {
    email_request(target, "/api/v1/auth/recover", email)
}

/// `/recover` or `/verify/request` (SPEC §13): the same answer, one insert each.
pub fn email_request(target: &Target, path: &str, email: &str) -> Request<Full<Bytes>> {
    post(
        target,
        path,
        "application/json",
        json!({ "email": email }).to_string(),
    )
}

pub fn refresh_request(target: &Target, token: &str) -> Request<Full<Bytes>> {
    post(
        target,
        "/api/v1/auth/refresh",
        "application/json",
        json!({ "refresh_token": token }).to_string(),
    )
}

/// One request on a fresh connection, expecting `expect`; the JSON body.
pub async fn call(
    target: &Target,
    req: Request<Full<Bytes>>,
    expect: StatusCode,
) -> Result<Value, String> {
    let mut sender = connect(target).await?;
    let (status, body) = send(&mut sender, req).await?;
    if status != expect {
        return Err(format!(
            "expected {expect}, got {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

pub fn token_field(v: &Value, name: &str) -> Result<String, String> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no {name} in {v}"))
}
