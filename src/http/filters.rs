//! The reusable filters every endpoint is built from, in the matrix-authentication-
//! service style: the service once started ([`with_service`]), a rate-limit token
//! ([`limited`]), a typed body ([`json`], [`form`]) within [`MAX_BODY_BYTES`], the
//! presented access token ([`bearer`]), and one method per path with a 405 for the
//! others ([`post`], [`get`], [`method_not_allowed`]).
//!
//! The refusals raised here are [`ApiReject`] and [`HttpReject`]; `rejection` turns
//! them (and warp's own) into problem responses. Field errors of a body are collected
//! here and nowhere else ([`Body`]).

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use serde::de::value::MapDeserializer;
use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, de};
use warp::filters::BoxedFilter;
use warp::http::Method;
use warp::http::header::{CONTENT_LENGTH, HeaderMap, HeaderValue, TRANSFER_ENCODING};
use warp::reply::Response;
use warp::{Filter, Rejection, reject::Reject};

use super::middleware::RequestId;
use super::rate_limit::Endpoint;
use super::state::AppState;
use crate::domain::{Email, Password, Username};
use crate::error::{Error, FieldError};
use crate::service::{AuthService, RequestContext};

/// Request bodies larger than this are refused with 413.
pub const MAX_BODY_BYTES: u64 = 16 * 1024;

/// A service error raised inside a filter (rate limit, not ready, bad body).
#[derive(Debug)]
pub struct ApiReject(pub Error);
impl Reject for ApiReject {}

/// HTTP-level refusals that have no place in the domain error.
#[derive(Debug)]
pub enum HttpReject {
    MethodNotAllowed(&'static [&'static str]),
    UnsupportedMediaType(&'static str),
}
impl Reject for HttpReject {}

fn api_reject(err: Error) -> Rejection {
    warp::reject::custom(ApiReject(err))
}

// ----- the service, limits, methods ------------------------------------------------

/// The service, once startup has finished; 503 before.
pub fn with_service(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Arc<AuthService>,), Error = Rejection> + Clone {
    warp::any().and_then(move || {
        let service = state.service().cloned();
        async move { service.ok_or_else(|| api_reject(Error::NotReady("the server is starting"))) }
    })
}

/// Takes one request from the client's quota for `endpoint`, before anything else.
/// The client is keyed from the peer and every `X-Forwarded-For` line (SPEC §6): a
/// proxy that appends its own line must win over the line its client sent. A line
/// that is not UTF-8 is read lossily, so it counts as garbage rather than vanishing.
pub fn limited(
    state: Arc<AppState>,
    endpoint: Endpoint,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    client(state.clone())
        .and_then(move |client: IpAddr| {
            let state = state.clone();
            async move { take(&state, endpoint, client).await.map_err(api_reject) }
        })
        .untuple_one()
}

/// The client's rate-limit key (its address, an IPv6 one cut to its network), for an
/// endpoint that learns from its body which quota a request takes ([`take`]).
pub fn client(
    state: Arc<AppState>,
) -> impl Filter<Extract = (IpAddr,), Error = std::convert::Infallible> + Clone {
    client_addr(state.clone()).map(move |addr: IpAddr| state.limits.key_of(addr))
}

/// The client's full address: the peer, or `X-Forwarded-For` from a trusted proxy.
pub fn client_addr(
    state: Arc<AppState>,
) -> impl Filter<Extract = (IpAddr,), Error = std::convert::Infallible> + Clone {
    // Every X-Forwarded-For line counts (SPEC §6); a line that is not UTF-8 is garbage.
    super::listener::remote()
        .and(warp::header::headers_cloned())
        .map(move |peer: Option<SocketAddr>, headers: HeaderMap| {
            let lines: Vec<_> = headers
                .get_all("x-forwarded-for")
                .iter()
                .map(|line| String::from_utf8_lossy(line.as_bytes()))
                .collect();
            state
                .limits
                .client_addr(peer.map(|p| p.ip()), lines.iter().map(AsRef::as_ref))
        })
}

/// Takes one request from `client`'s quota for `endpoint`: 429 when it is spent.
pub async fn take(state: &AppState, endpoint: Endpoint, client: IpAddr) -> Result<(), Error> {
    state.limits.check(endpoint, client).await
}

/// The longest `User-Agent` kept with a session.
const MAX_USER_AGENT_CHARS: usize = 256;

/// Where the request came from, for the audit log and the sessions list: the client's
/// full address (trusted proxies resolved, SPEC §10: not the rate-limit key, which is
/// an IPv6 client's whole /64), the request id the response will carry, and the user
/// agent.
pub fn context(
    state: Arc<AppState>,
) -> impl Filter<Extract = (RequestContext,), Error = Rejection> + Clone {
    client_addr(state)
        .and(warp::ext::optional::<RequestId>())
        .and(warp::header::optional::<String>("user-agent"))
        .map(
            |ip: IpAddr, id: Option<RequestId>, agent: Option<String>| RequestContext {
                ip: Some(ip),
                request_id: id.map(|id| id.0),
                // Bounded: it is stored with every session.
                user_agent: agent.map(|a| a.chars().take(MAX_USER_AGENT_CHARS).collect()),
                api_key: None,
            },
        )
}

/// `route` for `POST`; any other method is a 405 with `Allow: POST`.
pub fn post<F>(route: F) -> BoxedFilter<(Response,)>
where
    F: Filter<Extract = (Response,)> + Clone + Send + Sync + 'static,
    F::Error: Into<Rejection>,
{
    warp::post()
        .and(route.boxed())
        .or(method_not_allowed(&["POST"]))
        .unify()
        .boxed()
}

/// `route` for `GET`; any other method is a 405 with `Allow: GET`.
pub fn get<F>(route: F) -> BoxedFilter<(Response,)>
where
    F: Filter<Extract = (Response,)> + Clone + Send + Sync + 'static,
    F::Error: Into<Rejection>,
{
    warp::get()
        .and(route.boxed())
        .or(method_not_allowed(&["GET"]))
        .unify()
        .boxed()
}

/// Answers 405 with `Allow` for any method not in `allow`; passes (404) otherwise,
/// so the real route's own rejection (415, 413, …) wins.
pub fn method_not_allowed(allow: &'static [&'static str]) -> BoxedFilter<(Response,)> {
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

// ----- the access token ------------------------------------------------------------

/// An access token as a client presented it: not yet verified. Its `Debug` hides it.
pub struct BearerToken(String);

impl BearerToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([REDACTED])")
    }
}

/// The token of `Authorization: Bearer <token>` (scheme in any case), or `None` when
/// the header is missing, names another scheme, carries an empty token or is not
/// even text (non-ASCII bytes). The endpoint answers `None` with its own 401
/// ([`Error::MissingToken`], `WWW-Authenticate: Bearer`), never a 400, so that 401
/// gets the endpoint's headers like every other answer of it. A Bearer token with
/// bytes no token has is passed on as it is (lossily decoded) and refused as invalid.
pub fn bearer() -> impl Filter<Extract = (Option<BearerToken>,), Error = Infallible> + Clone {
    // The raw value: `header::optional::<String>` would refuse non-ASCII with a 400.
    warp::header::value("authorization")
        .map(|v: HeaderValue| bearer_token(v.as_bytes()))
        .or(warp::any().map(|| None))
        .unify()
}

fn bearer_token(header: &[u8]) -> Option<BearerToken> {
    let header = header.trim_ascii();
    let space = header.iter().position(|b| *b == b' ')?;
    let (scheme, token) = header.split_at(space);
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer") && !token.is_empty())
        .then(|| BearerToken(String::from_utf8_lossy(token).into_owned()))
}

/// An API key as a service presented it (`Authorization: Bearer ak_…`): not yet
/// checked. Its `Debug` hides it.
pub struct ApiKey(String);

impl ApiKey {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([REDACTED])")
    }
}

/// The credential of the admin API and introspection: the Bearer value, taken as an
/// API key. This and [`bearer`] are the one place that decides which credential a
/// route takes: a user's access token here is no key (401), and a key at a user
/// endpoint is no access token (401).
pub fn api_key() -> impl Filter<Extract = (Option<ApiKey>,), Error = Infallible> + Clone {
    bearer().map(|token: Option<BearerToken>| token.map(|t| ApiKey(t.0)))
}

/// The query string's pairs (none without one); 400 when it is not a valid query.
pub fn query_pairs() -> impl Filter<Extract = (Vec<(String, String)>,), Error = Rejection> + Clone {
    warp::filters::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .and_then(|raw: String| async move {
            serde_urlencoded::from_str::<Vec<(String, String)>>(&raw).map_err(|e| {
                api_reject(Error::MalformedBody(format!(
                    "not a valid query string: {e}"
                )))
            })
        })
}

/// A JSON object body of any field types (the admin API's, with booleans and
/// arrays): 415 without `Content-Type: application/json`, 400 when it is not JSON,
/// 422 when it is not an object. The endpoint checks the fields.
pub fn json_object()
-> impl Filter<Extract = (serde_json::Map<String, serde_json::Value>,), Error = Rejection> + Clone {
    content_type("application/json")
        .and(limited_body())
        .and_then(|body: Bytes| async move {
            let value: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| api_reject(Error::MalformedBody(format!("not valid JSON: {e}"))))?;
            match value {
                serde_json::Value::Object(object) => Ok(object),
                _ => Err(api_reject(Error::validation(
                    "body",
                    "must be a JSON object",
                ))),
            }
        })
}

// ----- bodies ----------------------------------------------------------------------

/// A request body: the endpoint's serde target (and, by its `ToSchema`, its OpenAPI
/// schema), whose fields are all strings — JSON strings, or form values.
///
/// A derived `Deserialize` stops at the first bad field; `FIELDS` lets a 422 name
/// every one at once: a missing or mistyped field together with every other field's
/// invalid content, in this order.
pub trait Body: DeserializeOwned + Send + 'static {
    /// Every field of the type with its content rule.
    const FIELDS: &'static [Field];
}

/// A body field: its name and its content rule.
pub struct Field {
    pub name: &'static str,
    check: fn(&str) -> Result<(), String>,
}

impl Field {
    /// A field that holds a `T`, by `T`'s own parser.
    pub const fn of<T: FieldValue>(name: &'static str) -> Field {
        Field {
            name,
            check: check::<T>,
        }
    }
}

fn check<T: FieldValue>(raw: &str) -> Result<(), String> {
    T::parse(raw).map(drop)
}

/// What a body field may hold: a type with a parser from the raw string. The domain's
/// types are parsed by their own `parse`, so a body holds only valid values.
pub trait FieldValue: Sized {
    fn parse(raw: &str) -> Result<Self, String>;
}

/// Any string: e.g. an unknown refresh token is a 401, not a 422.
impl FieldValue for String {
    fn parse(raw: &str) -> Result<Self, String> {
        Ok(raw.to_owned())
    }
}

impl FieldValue for Email {
    fn parse(raw: &str) -> Result<Self, String> {
        Email::parse(raw)
    }
}

impl FieldValue for Username {
    fn parse(raw: &str) -> Result<Self, String> {
        Username::parse(raw)
    }
}

impl FieldValue for Password {
    fn parse(raw: &str) -> Result<Self, String> {
        Password::parse(raw)
    }
}

/// `#[serde(deserialize_with = "parsed")]`: a body field of a [`FieldValue`] type.
pub fn parsed<'de, D: Deserializer<'de>, T: FieldValue>(d: D) -> Result<T, D::Error> {
    let raw = String::deserialize(d)?;
    T::parse(&raw).map_err(de::Error::custom)
}

/// A body field as the client sent it.
enum Sent<'a> {
    Text(&'a str),
    NotText,
    Missing,
}

/// A body as a filter hands it to its endpoint: the `T`, or the 422 for its fields,
/// which the endpoint answers itself, with its own headers (`no-store`).
///
/// Which 422s go to the endpoint is kept exactly as it was before the filters were
/// generic: invalid content of a JSON body whose fields are all strings, and every
/// field error of a form (its values are always strings). A JSON field that is
/// missing or not a string is refused by the filter, like a malformed body.
pub type Fields<T> = Result<T, Error>;

/// Why the fields a client sent are not a `T`.
struct Invalid {
    /// A 422 naming every field at fault.
    error: Error,
    /// Whether every field was sent, as a string (so only its content is at fault).
    all_text: bool,
}

/// Builds a `T` from the fields a client sent. On failure, a 422 naming every field
/// that is missing, mistyped or invalid: the one place field errors are collected.
fn from_fields<'a, T: Body>(sent: impl Fn(&str) -> Sent<'a>) -> Result<T, Invalid> {
    let texts = T::FIELDS.iter().filter_map(|f| match sent(f.name) {
        Sent::Text(s) => Some((f.name, s)),
        Sent::NotText | Sent::Missing => None,
    });
    let failure = match T::deserialize(MapDeserializer::<_, de::value::Error>::new(texts)) {
        Ok(body) => return Ok(body),
        Err(e) => e,
    };
    let mut all_text = true;
    let mut errors: Vec<FieldError> = T::FIELDS
        .iter()
        .filter_map(|f| {
            let message = match sent(f.name) {
                Sent::Text(s) => (f.check)(s).err()?,
                Sent::NotText => "must be a string".to_owned(),
                Sent::Missing => "field required".to_owned(),
            };
            all_text &= matches!(sent(f.name), Sent::Text(_));
            Some(FieldError::new(f.name, message))
        })
        .collect();
    if errors.is_empty() {
        // Only when `FIELDS` and the type disagree: still the client's 422, with
        // serde's own words.
        errors.push(FieldError::new("body", failure.to_string()));
    }
    Err(Invalid {
        error: Error::Validation(errors),
        all_text,
    })
}

/// A JSON object body as `T`; 400 on malformed JSON, 422 naming each missing,
/// mistyped or invalid field (see [`Fields`] for who sends it). Fields not in `T` are
/// ignored.
pub fn json<T: Body>() -> impl Filter<Extract = (Fields<T>,), Error = Rejection> + Clone {
    content_type("application/json")
        .and(limited_body())
        .and_then(|body: Bytes| async move { parse_json::<T>(&body).map_err(api_reject) })
}

fn parse_json<T: Body>(body: &[u8]) -> Result<Fields<T>, Error> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| Error::MalformedBody(format!("not valid JSON: {e}")))?;
    let Some(object) = value.as_object() else {
        return Err(Error::validation("body", "must be a JSON object"));
    };
    let fields = from_fields(|name| match object.get(name) {
        Some(serde_json::Value::String(s)) => Sent::Text(s),
        Some(_) => Sent::NotText,
        None => Sent::Missing,
    });
    match fields {
        Ok(body) => Ok(Ok(body)),
        Err(Invalid {
            error,
            all_text: true,
        }) => Ok(Err(error)),
        Err(Invalid { error, .. }) => Err(error),
    }
}

/// An `application/x-www-form-urlencoded` body as `T`: 400 when it is not a form, 422
/// naming each missing, invalid or repeated field (the endpoint's, see [`Fields`]);
/// fields not in `T` (OAuth2's `grant_type`, `scope`, …) are ignored.
pub fn form<T: Body>() -> impl Filter<Extract = (Fields<T>,), Error = Rejection> + Clone {
    form_fields().map(|form: Fields<Form>| form.and_then(|f| f.body::<T>()))
}

/// An `application/x-www-form-urlencoded` body as its fields, for an endpoint that
/// reads one field to know which body it has (the token endpoint's `grant_type`): 400
/// when it is not a form; a field given twice is the endpoint's 422 naming it.
pub fn form_fields() -> impl Filter<Extract = (Fields<Form>,), Error = Rejection> + Clone {
    content_type("application/x-www-form-urlencoded")
        .and(limited_body())
        .and_then(|body: Bytes| async move { parse_form(&body).map_err(api_reject) })
}

/// A form's fields, each given once: RFC 6749 §3.2 forbids repeating a parameter, and
/// taking one of two values silently would hide a client's bug (SPEC §8: 422).
#[derive(Debug)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The form as `T`: a 422 naming each missing or invalid field.
    pub fn body<T: Body>(&self) -> Fields<T> {
        from_fields(|name| self.get(name).map_or(Sent::Missing, Sent::Text))
            .map_err(|invalid| invalid.error)
    }
}

fn parse_form(body: &[u8]) -> Result<Fields<Form>, Error> {
    let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map_err(|e| Error::MalformedBody(format!("not a valid form: {e}")))?;
    let mut repeated: Vec<FieldError> = Vec::new();
    for (i, (name, _)) in pairs.iter().enumerate() {
        let again = pairs[..i].iter().any(|(k, _)| k == name);
        if again && !repeated.iter().any(|e| &e.field == name) {
            repeated.push(FieldError::new(name, "must be given once"));
        }
    }
    if repeated.is_empty() {
        Ok(Ok(Form(pairs)))
    } else {
        Ok(Err(Error::Validation(repeated)))
    }
}

/// A `Content-Type`'s media type, lowercased, without its parameters (charset, …).
fn media_type_of(content_type: Option<&str>) -> Option<String> {
    content_type
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// Passes when the request's `Content-Type` is `media_type` (parameters allowed) —
/// or, with `is = false`, when it is not; else a 404, the weakest refusal, so that an
/// endpoint taking two kinds of bodies answers with the refusal of the one it got.
pub fn content_type_is(
    media_type: &'static str,
    is: bool,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and_then(move |ct: Option<String>| async move {
            if (media_type_of(ct.as_deref()).as_deref() == Some(media_type)) == is {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            }
        })
        .untuple_one()
}

/// Requires `Content-Type` to be `expected` (parameters such as charset allowed).
fn content_type(expected: &'static str) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        .and_then(move |ct: Option<String>| async move {
            if media_type_of(ct.as_deref()).as_deref() == Some(expected) {
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
pub fn limited_body() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
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

#[cfg(test)]
mod tests;
