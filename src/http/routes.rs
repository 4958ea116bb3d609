//! One filter per endpoint, in the matrix-authentication-service style: named,
//! reusable filters (`with_service`, `limited`, `json_fields`) and `.boxed()` at the
//! edge. A known path with the wrong method answers 405 with `Allow`.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::http::header::{CONTENT_LENGTH, HeaderMap, TRANSFER_ENCODING};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::AppState;
use super::handlers;
use super::rate_limit::Endpoint;
use super::rejection::{ApiReject, HttpReject};
use crate::domain::{Email, Password, Username};
use crate::error::{Error, FieldError};
use crate::service::AuthService;

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: u64 = 16 * 1024;

pub fn routes(state: Arc<AppState>) -> BoxedFilter<(Response,)> {
    let register = warp::path!("api" / "v1" / "auth" / "register")
        .and(
            warp::post()
                .and(limited(state.clone(), Endpoint::Register))
                .and(with_service(state.clone()))
                .and(json_fields(REGISTER_FIELDS))
                .then(handlers::register)
                .or(method_not_allowed(&["POST"]))
                .unify(),
        )
        .boxed();

    let token = warp::path!("api" / "v1" / "auth" / "token")
        .and(
            warp::post()
                .and(limited(state.clone(), Endpoint::Login))
                .and(with_service(state.clone()))
                .and(form_body())
                .then(handlers::login)
                .or(method_not_allowed(&["POST"]))
                .unify(),
        )
        .boxed();

    let me = warp::path!("api" / "v1" / "auth" / "me")
        .and(
            warp::get()
                .and(with_service(state.clone()))
                .and(warp::header::optional::<String>("authorization"))
                .then(handlers::me)
                .or(method_not_allowed(&["GET"]))
                .unify(),
        )
        .boxed();

    let refresh = warp::path!("api" / "v1" / "auth" / "refresh")
        .and(
            warp::post()
                .and(limited(state.clone(), Endpoint::Refresh))
                .and(with_service(state.clone()))
                .and(json_fields(REFRESH_TOKEN_FIELD))
                .then(handlers::refresh)
                .or(method_not_allowed(&["POST"]))
                .unify(),
        )
        .boxed();

    let revoke = warp::path!("api" / "v1" / "auth" / "revoke")
        .and(
            warp::post()
                .and(with_service(state.clone()))
                .and(json_fields(REFRESH_TOKEN_FIELD))
                .then(handlers::revoke)
                .or(method_not_allowed(&["POST"]))
                .unify(),
        )
        .boxed();

    let liveness = warp::path!("health" / "liveness")
        .and(
            warp::get()
                .map(handlers::liveness)
                .or(method_not_allowed(&["GET"]))
                .unify(),
        )
        .boxed();

    let st = state.clone();
    let readiness = warp::path!("health" / "readiness")
        .and(
            warp::get()
                .and(warp::any().map(move || st.clone()))
                .then(handlers::readiness)
                .or(method_not_allowed(&["GET"]))
                .unify(),
        )
        .boxed();

    let st = state.clone();
    let startup = warp::path!("health" / "startup")
        .and(
            warp::get()
                .and(warp::any().map(move || st.clone()))
                .map(handlers::startup)
                .or(method_not_allowed(&["GET"]))
                .unify(),
        )
        .boxed();

    register
        .or(token)
        .unify()
        .or(me)
        .unify()
        .or(refresh)
        .unify()
        .or(revoke)
        .unify()
        .or(liveness)
        .unify()
        .or(readiness)
        .unify()
        .or(startup)
        .unify()
        .or(super::docs::routes())
        .unify()
        .boxed()
}

/// Answers 405 with `Allow` for any method not in `allow`; passes (404) otherwise,
/// so the real route's own rejection (415, 413, …) wins.
pub(super) fn method_not_allowed(allow: &'static [&'static str]) -> BoxedFilter<(Response,)> {
    warp::method()
        .and_then(move |m: Method| async move {
            if allow.contains(&m.as_str()) {
                Err(warp::reject::not_found())
            } else {
                Err(warp::reject::custom(HttpReject::MethodNotAllowed(allow)))
            }
        })
        .boxed()
}

/// The service, once startup has finished; 503 before.
fn with_service(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AuthService>,), Error = Rejection> + Clone {
    warp::any().and_then(move || {
        let service = state.service().cloned();
        async move {
            service.ok_or_else(|| {
                warp::reject::custom(ApiReject(Error::NotReady("the server is starting")))
            })
        }
    })
}

/// Takes one request from the client's quota for `endpoint`, before anything else.
fn limited(
    state: Arc<AppState>,
    endpoint: Endpoint,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    super::listener::remote()
        .and(warp::header::optional::<String>("x-forwarded-for"))
        .and_then(move |peer: Option<SocketAddr>, xff: Option<String>| {
            let state = state.clone();
            async move {
                let client = state.limits.client_ip(peer.map(|p| p.ip()), xff.as_deref());
                state
                    .limits
                    .check(endpoint, client)
                    .map_err(|e| warp::reject::custom(ApiReject(e)))
            }
        })
        .untuple_one()
}

/// Requires `Content-Type` to be `expected` (parameters such as charset allowed).
fn content_type(expected: &'static str) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and_then(move |ct: Option<String>| async move {
            let essence = ct
                .as_deref()
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase());
            if essence.as_deref() == Some(expected) {
                Ok(())
            } else {
                Err(warp::reject::custom(HttpReject::UnsupportedMediaType(
                    expected,
                )))
            }
        })
        .untuple_one()
}

/// The body, at most [`MAX_BODY_BYTES`] (413 beyond). A request with neither
/// `Content-Length` nor `Transfer-Encoding` has an empty body (RFC 9112 §6.3), so it is
/// read as empty; only a body of unknown length (chunked) is refused with 411.
fn limited_body() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    let no_body = warp::header::headers_cloned().and_then(|headers: HeaderMap| async move {
        if headers.contains_key(CONTENT_LENGTH) || headers.contains_key(TRANSFER_ENCODING) {
            Err(warp::reject::not_found())
        } else {
            Ok(Bytes::new())
        }
    });
    no_body
        .or(warp::body::content_length_limit(MAX_BODY_BYTES).and(warp::body::bytes()))
        .unify()
}

/// A field of a JSON body: its name, and its content rule (the domain's parser), which
/// the 422 for another field's missing or mistyped value reports alongside, so a client
/// learns every problem at once. When every field is a string, the service applies the
/// same rules.
pub(crate) type Field = (&'static str, fn(&str) -> Result<(), String>);

const REGISTER_FIELDS: &[Field] = &[
    ("email", |s| Email::parse(s).map(drop)),
    ("username", |s| Username::parse(s).map(drop)),
    ("password", |s| Password::parse(s).map(drop)),
];

/// Any string: an unknown refresh token is a 401, not a 422.
const REFRESH_TOKEN_FIELD: &[Field] = &[("refresh_token", |_| Ok(()))];

/// A JSON object body with every named field present as a string; 400 on malformed
/// JSON, 422 naming each missing, mistyped or (then) invalid field.
fn json_fields(
    fields: &'static [Field],
) -> impl Filter<Extract = (Vec<String>,), Error = Rejection> + Clone {
    content_type("application/json")
        .and(limited_body())
        .and_then(move |body: Bytes| async move {
            extract_fields(&body, fields).map_err(|e| warp::reject::custom(ApiReject(e)))
        })
}

pub(crate) fn extract_fields(body: &[u8], fields: &[Field]) -> Result<Vec<String>, Error> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::MalformedBody(format!("not valid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Error::validation("body", "must be a JSON object"));
    };
    let found: Vec<Result<&str, &str>> = fields
        .iter()
        .map(|(name, _)| match object.get(*name) {
            Some(serde_json::Value::String(s)) => Ok(s.as_str()),
            Some(_) => Err("must be a string"),
            None => Err("field required"),
        })
        .collect();
    if found.iter().all(Result::is_ok) {
        return Ok(found.into_iter().flatten().map(str::to_owned).collect());
    }
    let errors = fields
        .iter()
        .zip(found)
        .filter_map(|((name, rule), value)| match value {
            Ok(s) => rule(s).err().map(|m| FieldError::new(*name, m)),
            Err(m) => Some(FieldError::new(*name, m)),
        })
        .collect();
    Err(Error::Validation(errors))
}

/// An `application/x-www-form-urlencoded` body (the OAuth2 password form).
fn form_body() -> impl Filter<Extract = (Vec<(String, String)>,), Error = Rejection> + Clone {
    content_type("application/x-www-form-urlencoded")
        .and(limited_body())
        .and_then(|body: Bytes| async move {
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).map_err(|e| {
                warp::reject::custom(ApiReject(Error::MalformedBody(format!(
                    "not a valid form: {e}"
                ))))
            })
        })
}
