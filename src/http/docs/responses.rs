//! The documented error responses the operations share, every one a problem+json body
//! ([`Problem`]). Endpoints name them in their `#[utoipa::path]`; this file imports
//! nothing from the endpoints, so documentation and endpoints depend one way.

use utoipa::ToResponse;

use crate::http::problem::Problem;

/// The body is not valid JSON (or not a valid form).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct BadRequest(pub Problem<'static>);

/// Incorrect username or password: one answer for an unknown user, a wrong password
/// and an inactive user.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer`"))
)]
pub struct BadCredentials(pub Problem<'static>);

/// No valid Bearer access token: missing, malformed, expired, its session revoked, or
/// its user disabled or deleted. A refused token gets one answer whatever the reason
/// (detail "The token is invalid or expired."); the reason is logged, never sent.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers((
        "WWW-Authenticate" = String,
        description = "`Bearer` when no token was sent; `Bearer error=\"invalid_token\"` \
                       when the token was refused (RFC 6750)."
    ))
)]
pub struct Unauthorized(pub Problem<'static>);

/// The refresh token is unknown, expired, revoked or already rotated (reusing a rotated
/// token revokes its whole session). One answer whatever the reason (detail "The
/// token is invalid or expired."); the reason is logged, never sent.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers((
        "WWW-Authenticate" = String,
        description = "`Bearer error=\"invalid_token\"`"
    ))
)]
pub struct InvalidRefreshToken(pub Problem<'static>);

/// The email or the username is already registered (compared case-insensitively).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Conflict(pub Problem<'static>);

/// The body was sent without a `Content-Length` (e.g. chunked).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct LengthRequired(pub Problem<'static>);

/// The body exceeds 16 KiB (16 384 bytes are accepted).
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct PayloadTooLarge(pub Problem<'static>);

/// `Content-Type` is missing or not the one this operation takes.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct UnsupportedMediaType(pub Problem<'static>);

/// Well-formed, but a field is missing, mistyped or invalid; `errors` names each.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct ValidationFailed(pub Problem<'static>);

/// Rate limited (per client IP and endpoint); retry after `Retry-After` seconds.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Whole seconds to wait, at least 1."))
)]
pub struct TooManyRequests(pub Problem<'static>);

/// Not ready: still starting, shutting down, or the database is unavailable. Retry
/// shortly.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct Unavailable(pub Problem<'static>);

/// The right password of an account with TOTP on, without a second factor (SPEC §14):
/// `error` is `mfa_required` and `mfa_token` (single use, valid 5 minutes) goes with a
/// code to `grant_type=urn:authctl:grant-type:mfa`. No tokens are issued.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    example = json!({
        "type": "about:blank",
        "title": "Forbidden",
        "status": 403,
        "detail": "A second factor is required: send a TOTP or recovery code with this mfa_token.",
        "error": "mfa_required",
        "mfa_token": "Zk3q9yH2bqVn7ZkQyR0sT1uV2wX3yZ4a5B6c7D8e9F0"
    })
)]
pub struct MfaRequired(pub Problem<'static>);

/// The API key is live but lacks the scope the operation needs (RFC 6750 §3.1).
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers((
        "WWW-Authenticate" = String,
        description = "`Bearer error=\"insufficient_scope\", scope=\"…\"` naming the scope needed."
    ))
)]
pub struct Forbidden(pub Problem<'static>);

/// No such user.
#[derive(ToResponse)]
#[response(content_type = "application/problem+json")]
pub struct NotFound(pub Problem<'static>);
