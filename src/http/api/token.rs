//! `POST /api/v1/auth/token`: the OAuth2 token endpoint. The password grant (no
//! `grant_type`, or `password`) logs in; the refresh grant (`refresh_token`, RFC 6749
//! §6) rotates a refresh token exactly as `/refresh` does, on `/refresh`'s rate limit;
//! the MFA grant (`urn:authctl:grant-type:mfa`, SPEC §14) is a login's second step,
//! on the login's rate limit.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::oauth;
use super::reply::{json, respond};
use crate::error::Error;
use crate::http::docs::responses::{
    BadCredentials, BadRequest, LengthRequired, MfaRequired, PayloadTooLarge, TooManyRequests,
    Unavailable, UnsupportedMediaType, ValidationFailed,
};
use crate::http::filters::{self, Body, Field, Fields, Form, post, take};
use crate::http::problem::{OAuthError, with_oauth_error};
use crate::http::rate_limit::Endpoint;
use crate::http::state::AppState;
use crate::service::mfa::MFA_GRANT;
use crate::service::{RequestContext, TokenPair};

/// `POST /api/v1/auth/token`: the OAuth2 password form.
#[derive(Deserialize, ToSchema)]
pub struct LoginForm {
    /// The username or the email address, matched case-insensitively.
    #[schema(example = "alice")]
    pub username: String,
    /// The password.
    #[schema(format = Password, example = "correct horse battery")]
    pub password: String,
}

// Neither field has a content rule: a value registration would refuse is simply the
// generic 401, like every other failed login.
impl Body for LoginForm {
    const FIELDS: &'static [Field] = &[
        Field::of::<String>("username"),
        Field::of::<String>("password"),
    ];
}

/// A token request: the fields of both grants, each read by its own grant.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct TokenRequest {
    /// `password` (the default when absent) or `refresh_token`.
    #[schema(nullable = false, example = "password")]
    grant_type: Option<GrantType>,
    /// Password grant: the username or the email address.
    #[schema(nullable = false, example = "alice")]
    username: Option<String>,
    /// Password grant: the password.
    #[schema(nullable = false, format = Password)]
    password: Option<String>,
    /// Refresh grant: the refresh token to rotate.
    #[schema(nullable = false)]
    refresh_token: Option<String>,
    /// MFA grant: the `mfa_token` of the 403 `mfa_required` answer.
    #[schema(nullable = false)]
    mfa_token: Option<String>,
    /// MFA grant: a TOTP code (6 digits) or a recovery code. Password grant, for an
    /// account with TOTP on: the same, to log in in one step.
    #[schema(nullable = false, example = "123456")]
    code: Option<String>,
}

/// The grants this endpoint supports.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum GrantType {
    Password,
    RefreshToken,
    #[schema(rename = "urn:authctl:grant-type:mfa")]
    Mfa,
}

/// The refresh grant's fields besides `grant_type` (RFC 6749 §6).
#[derive(Deserialize, ToSchema)]
pub struct RefreshGrant {
    /// A refresh token from an earlier answer of this endpoint or of `/refresh`.
    pub refresh_token: String,
}

impl Body for RefreshGrant {
    /// Any string: an unknown refresh token is a 401 (`invalid_grant`), not a 422.
    const FIELDS: &'static [Field] = &[Field::of::<String>("refresh_token")];
}

/// The MFA grant's fields besides `grant_type` (SPEC §14).
#[derive(Deserialize, ToSchema)]
pub struct MfaGrant {
    /// The `mfa_token` of the password grant's 403 `mfa_required` answer.
    pub mfa_token: String,
    /// A TOTP code or a recovery code.
    #[schema(example = "123456")]
    pub code: String,
}

impl Body for MfaGrant {
    /// Any strings: a wrong code or token is a 401 (`invalid_grant`), not a 422.
    const FIELDS: &'static [Field] = &[
        Field::of::<String>("mfa_token"),
        Field::of::<String>("code"),
    ];
}

/// What a token request asks for, by its `grant_type`.
enum Grant {
    Password,
    RefreshToken,
    Mfa,
    /// Any other value: 400 `unsupported_grant_type`.
    Unsupported,
}

impl Grant {
    fn of(form: &Form) -> Grant {
        match form.get("grant_type") {
            None | Some("password") => Grant::Password,
            Some("refresh_token") => Grant::RefreshToken,
            Some(MFA_GRANT) => Grant::Mfa,
            Some(_) => Grant::Unsupported,
        }
    }

    /// The quota a request of this grant takes: a refresh is a refresh wherever it
    /// comes, so it cannot dodge `/refresh`'s limit here (nor spend the login's).
    fn quota(&self) -> Endpoint {
        match self {
            Grant::RefreshToken => Endpoint::Refresh,
            Grant::Password | Grant::Mfa | Grant::Unsupported => Endpoint::Login,
        }
    }
}

/// The rate limit is taken once the grant is known (it picks the quota), before the
/// service or any password hash is touched.
pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let state = state.clone();
    warp::path!("api" / "v1" / "auth" / "token")
        .and(oauth::endpoint(post(
            filters::client(state.clone())
                .and(filters::context(state.clone()))
                .and(filters::form_fields())
                .then(move |client, ctx, form| login(state.clone(), client, ctx, form)),
        )))
        .boxed()
}

async fn token(
    state: Arc<AppState>,
    client: IpAddr,
    ctx: RequestContext,
    form: Fields<Form>,
) -> Response {
    let grant = form.as_ref().map_or(Grant::Password, Grant::of);
    let result = async {
        take(&state, grant.quota(), client).await?;
        let service = state
            .service()
            .ok_or(Error::NotReady("the server is starting"))?;
        let form = form?;
        let pair = match grant {
            Grant::Password => {
                let login = form.body::<LoginForm>()?;
                // Optional, so not one of the form's `FIELDS`: any string.
                let code = form.get("code");
                service
                    .login_with_code(&ctx, &login.username, &login.password, code)
                    .await?
            }
            Grant::Mfa => {
                let grant = form.body::<MfaGrant>()?;
                service
                    .login_mfa(&ctx, &grant.mfa_token, &grant.code)
                    .await?
            }
            Grant::RefreshToken => {
                let grant = form.body::<RefreshGrant>()?;
                service.refresh(&ctx, &grant.refresh_token).await?
            }
            Grant::Unsupported => {
                let problem = respond(Err(Error::MalformedBody(
                    "grant_type must be password, refresh_token or urn:authctl:grant-type:mfa"
                        .into(),
                )));
                return Ok(with_oauth_error(
                    problem,
                    Some(OAuthError::UnsupportedGrantType),
                ));
            }
        };
        Ok(json(StatusCode::OK, &pair))
    };
    respond(result.await)
}

/// Answers a token request: the password grant or the refresh grant.
#[utoipa::path(
    post,
    path = "/api/v1/auth/token",
    tag = "auth",
    operation_id = "login",
    summary = "Log in, or rotate a refresh token (OAuth2 token endpoint)",
    description = "The OAuth2 token endpoint (RFC 6749). **Password grant** (no `grant_type`, \
        or `password`): exchanges a username or email (matched case-insensitively) and a \
        password for an access token and a refresh token; every failure — unknown user, \
        wrong password, inactive user — is the same 401. Rate limited per client IP \
        (default 10 per minute). **Refresh grant** (`grant_type=refresh_token`, RFC 6749 \
        §6): rotates `refresh_token` exactly as `/api/v1/auth/refresh` does, on its rate \
        limit (default 20 per minute). **Two-factor login** (SPEC §14): for an account with \
        TOTP on, the right password without `code` is a 403 with `error: \"mfa_required\"` \
        and an `mfa_token` (single use, 5 minutes), and no tokens; then \
        `grant_type=urn:authctl:grant-type:mfa` with `mfa_token` and `code` (a TOTP or \
        recovery code) gives the token pair, whose access token has `amr: [\"pwd\", \"otp\"]`. \
        A wrong code is a 401 `invalid_grant` and counts towards the account's lockout; \
        five wrong codes spend the `mfa_token`. The password grant may carry `code` itself \
        (one step; a wrong code is then the generic 401). Any other `grant_type` is a 400 \
        with `error: \"unsupported_grant_type\"`. Other OAuth2 fields (`scope`, `client_id`, \
        `client_secret`) are ignored; a field given twice is a 422 naming it. Error \
        bodies carry RFC 6749 §5.2's `error` member (`invalid_grant` on 401, \
        `invalid_request` on a malformed or missing field).",
    request_body(
        content = TokenRequest,
        content_type = "application/x-www-form-urlencoded",
        description = "Form-encoded, at most 16 KiB: `username` and `password` (password \
            grant; `code` too for one-step two-factor login), `grant_type=refresh_token` and \
            `refresh_token`, or `grant_type=urn:authctl:grant-type:mfa`, `mfa_token` and \
            `code`.",
    ),
    responses(
        (status = 200, description = "Logged in: a new session (token family).", body = TokenPair,
            headers(("Cache-Control" = String, description = "`no-store`: never cache tokens.")),
            links(
                ("refresh" = (operation_id = "refresh",
                    request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                    description = "Rotate the new refresh token.")),
                ("revoke" = (operation_id = "revoke",
                    request_body = json!({"refresh_token": "$response.body#/refresh_token"}),
                    description = "Log out of this session.")),
            ),
        ),
        (status = 400, response = BadRequest),
        (status = 401, response = BadCredentials),
        (status = 403, response = MfaRequired),
        (status = 411, response = LengthRequired),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = ValidationFailed),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    ),
)]
pub async fn login(
    state: Arc<AppState>,
    client: IpAddr,
    ctx: RequestContext,
    form: Fields<Form>,
) -> Response {
    token(state, client, ctx, form).await
}
