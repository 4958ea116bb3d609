//! RFC 9457 problem responses: the one place where an [`Error`] becomes HTTP.

use serde::Serialize;
use warp::http::StatusCode;
use warp::http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use warp::reply::Response;

use crate::error::{Error, FieldError};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// The body of every error response (RFC 9457), sent as `application/problem+json`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "about:blank",
    "title": "Unprocessable Entity",
    "status": 422,
    "detail": "One or more fields are invalid.",
    "errors": [{"field": "email", "message": "must not be empty"}]
}))]
pub struct Problem<'a> {
    /// A URI reference naming the problem type; `about:blank` (the status says it all).
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "about:blank")]
    pub kind: &'static str,
    /// The HTTP status's reason phrase.
    #[schema(value_type = String, example = "Unprocessable Entity")]
    pub title: &'a str,
    /// The HTTP status code of this response.
    #[schema(minimum = 400, maximum = 599, example = 422)]
    pub status: u16,
    /// A human-readable explanation of this occurrence.
    #[schema(value_type = String, example = "One or more fields are invalid.")]
    pub detail: &'a str,
    /// On 422 only: each invalid field with what is wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<FieldError>>, nullable = false)]
    pub errors: Option<&'a [FieldError]>,
}

/// A problem response with the given status and detail.
pub fn problem(status: StatusCode, detail: &str, errors: Option<&[FieldError]>) -> Response {
    let body = Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
        errors,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(json.into());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

/// Why a request failed on the server's side: logged on the request's own log line
/// (with its request id, see `middleware`), never sent to the client.
#[derive(Debug, Clone)]
pub struct ServerFault(pub String);

/// Attaches the cause of a 5xx to its response, for the request's log line.
pub fn with_fault(mut resp: Response, cause: String) -> Response {
    resp.extensions_mut().insert(ServerFault(cause));
    resp
}

/// Renders an error. Internal errors carry their cause chain to the request's log line
/// and are answered with an opaque body.
pub fn from_error(err: &Error) -> Response {
    let status = err.status();
    let mut resp = match err {
        Error::Validation(errors) => {
            problem(status, "One or more fields are invalid.", Some(errors))
        }
        Error::Internal(cause) => with_fault(
            problem(status, "An internal error occurred.", None),
            format!("internal error: {cause:#}"),
        ),
        Error::Config(msg) => with_fault(
            problem(status, "An internal error occurred.", None),
            format!("configuration error while serving: {msg}"),
        ),
        Error::Unavailable(cause) => with_fault(
            problem(
                status,
                "The database is unavailable; try again shortly.",
                None,
            ),
            format!("database unavailable: {cause}"),
        ),
        Error::InvalidCredentials => problem(status, "Incorrect username or password.", None),
        other => problem(status, &capitalize(&other.to_string()), None),
    };
    let headers = resp.headers_mut();
    match err {
        Error::InvalidToken(reason) => {
            let value = format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(WWW_AUTHENTICATE, v);
            }
        }
        Error::MissingToken | Error::InvalidCredentials => {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Error::RateLimited { retry_after } | Error::Busy { retry_after } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            headers.insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        _ => {}
    }
    resp
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect::<String>() + ".",
        None => String::new(),
    }
}
