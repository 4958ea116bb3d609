//! RFC 9457 problem responses: the one place where an [`Error`] becomes HTTP. At the
//! OAuth2 endpoints (`/token`, `/refresh`, `/revoke`) a problem also carries RFC 6749
//! §5.2's `error` member ([`OAuthError`], added by [`with_oauth_error`]), so that OAuth2
//! client libraries raise an error instead of taking a problem body for a token.

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
    /// At `/token`, `/refresh` and `/revoke` only: the RFC 6749 §5.2 error code
    /// (`invalid_request`, `invalid_grant`, `unsupported_grant_type`; and
    /// `temporarily_unavailable` on 429/503, `server_error` on 500).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false, example = "invalid_grant")]
    pub error: Option<&'static str>,
    /// With `error: "mfa_required"` only (403 at `/token`): the opaque, single-use
    /// token of the second login step (valid 5 minutes), for the
    /// `urn:authctl:grant-type:mfa` grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, nullable = false)]
    pub mfa_token: Option<&'a str>,
}

/// RFC 6749 §5.2's error codes, as the `error` member of a problem at the OAuth2
/// endpoints. Statuses stay as SPEC §4 says; the code only tells an OAuth2 client
/// which error it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthError {
    /// A malformed or missing field, a wrong content type or length (400, 405, 411,
    /// 413, 415, 422).
    InvalidRequest,
    /// Bad credentials, or a refresh token that is unknown, expired or revoked (401).
    InvalidGrant,
    /// A `grant_type` other than `password` and `refresh_token` (400).
    UnsupportedGrantType,
    /// The OpenID Connect token endpoint: client authentication failed (401).
    InvalidClient,
    /// Rate limited (429) or the database is away (503): the authorization
    /// endpoint's code (RFC 6749 §4.1.2.1), which clients know, for a retry later.
    TemporarilyUnavailable,
    /// An internal error (500), likewise.
    ServerError,
    /// The right password, but the account's email is not verified yet (403; SPEC §13).
    EmailNotVerified,
    /// The right password of an account with TOTP on, without a second factor (403,
    /// SPEC §14): the problem also carries `mfa_token`.
    MfaRequired,
}

impl OAuthError {
    pub fn as_str(self) -> &'static str {
        match self {
            OAuthError::InvalidRequest => "invalid_request",
            OAuthError::InvalidGrant => "invalid_grant",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidClient => "invalid_client",
            OAuthError::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthError::ServerError => "server_error",
            OAuthError::EmailNotVerified => "email_not_verified",
            OAuthError::MfaRequired => "mfa_required",
        }
    }

    /// The code for a problem of `status` at an OAuth2 endpoint. Only the token
    /// endpoint answers [`OAuthError::UnsupportedGrantType`], and says so itself.
    pub fn for_status(status: StatusCode) -> OAuthError {
        match status {
            StatusCode::UNAUTHORIZED => OAuthError::InvalidGrant,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                OAuthError::TemporarilyUnavailable
            }
            s if s.is_server_error() => OAuthError::ServerError,
            _ => OAuthError::InvalidRequest,
        }
    }
}

/// What a problem response was rendered from, kept on the response (an extension,
/// never sent) so that [`with_oauth_error`] can render it again with `error`.
#[derive(Debug, Clone)]
struct Rendered {
    detail: String,
    errors: Option<Vec<FieldError>>,
    /// The problem's own code, which wins over the one its status implies.
    code: Option<OAuthError>,
    mfa_token: Option<String>,
}

/// A problem response with the given status and detail.
pub fn problem(status: StatusCode, detail: &str, errors: Option<&[FieldError]>) -> Response {
    let mut resp = render(status, detail, errors, None, None);
    resp.extensions_mut().insert(Rendered {
        detail: detail.to_owned(),
        errors: errors.map(<[FieldError]>::to_vec),
        code: None,
        mfa_token: None,
    });
    resp
}

/// The 403 of SPEC §14: `error: "mfa_required"` and the second step's `mfa_token`.
fn mfa_required(status: StatusCode, detail: &str, mfa_token: &str) -> Response {
    let code = Some(OAuthError::MfaRequired);
    let mut resp = render(status, detail, None, code, Some(mfa_token));
    resp.extensions_mut().insert(Rendered {
        detail: detail.to_owned(),
        errors: None,
        code,
        mfa_token: Some(mfa_token.to_owned()),
    });
    resp
}

fn render(
    status: StatusCode,
    detail: &str,
    errors: Option<&[FieldError]>,
    error: Option<OAuthError>,
    mfa_token: Option<&str>,
) -> Response {
    let body = Problem {
        kind: "about:blank",
        title: status.canonical_reason().unwrap_or("Error"),
        status: status.as_u16(),
        detail,
        errors,
        error: error.map(OAuthError::as_str),
        mfa_token,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec());
    let mut resp = Response::new(json.into());
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp
}

/// A response of an OAuth2 endpoint: a problem gets the `error` member — `code`, or
/// the one its status implies ([`OAuthError::for_status`]); headers, status and
/// extensions (a 5xx's cause) stay. Anything else passes unchanged.
pub fn with_oauth_error(resp: Response, code: Option<OAuthError>) -> Response {
    let status = resp.status();
    let Some(rendered) = resp.extensions().get::<Rendered>().cloned() else {
        return resp;
    };
    let code = code
        .or(rendered.code)
        .unwrap_or_else(|| OAuthError::for_status(status));
    let (mut parts, _) = resp.into_parts();
    // Rendered once: an endpoint's own code is not overwritten by the route's wrapper.
    parts.extensions.remove::<Rendered>();
    let body = render(
        status,
        &rendered.detail,
        rendered.errors.as_deref(),
        Some(code),
        rendered.mfa_token.as_deref(),
    );
    parts
        .headers
        .insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    Response::from_parts(parts, body.into_body())
}

/// Why a request failed on the server's side: logged on the request's own log line
/// (with its request id, see `middleware`), never sent to the client.
#[derive(Debug, Clone)]
pub struct ServerFault(pub String);

/// Why a presented token was refused (reuse detected, session revoked, user disabled,
/// key retired, …): logged on the request's own log line as `reason`, never sent to the
/// client, whose 401 says only [`REFUSED_TOKEN_DETAIL`] (SPEC §4, ASVS 16.5.1).
#[derive(Debug, Clone, Copy)]
pub struct RefusalReason(pub &'static str);

/// The one detail of every refused token's 401, whatever the reason: telling a client
/// why would tell a thief which of its tokens still work, or that it was noticed.
pub const REFUSED_TOKEN_DETAIL: &str = "The token is invalid or expired.";

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
        Error::InvalidToken(reason) => {
            let mut resp = problem(status, REFUSED_TOKEN_DETAIL, None);
            resp.extensions_mut().insert(RefusalReason(reason));
            resp
        }
        Error::EmailNotVerified => with_oauth_error(
            problem(status, &capitalize(&err.to_string()), None),
            Some(OAuthError::EmailNotVerified),
        ),
        Error::MfaRequired { mfa_token } => mfa_required(
            status,
            "A second factor is required: send a TOTP or recovery code with this mfa_token.",
            &mfa_token.0,
        ),
        other => problem(status, &capitalize(&other.to_string()), None),
    };
    let headers = resp.headers_mut();
    match err {
        Error::InvalidToken(_) => {
            // No `error_description`: the reason is the log line's, not the client's.
            headers.insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        Error::MissingToken | Error::InvalidCredentials | Error::InvalidSecondFactor => {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Error::InsufficientScope(scope) => {
            let value = format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"");
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(WWW_AUTHENTICATE, value);
            }
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
