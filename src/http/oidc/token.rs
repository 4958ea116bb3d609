//! `POST /oauth/token` (the provider's token endpoint: authorization codes and a
//! client's refresh tokens) and `GET|POST /oauth/userinfo` (SPEC §18). Errors here
//! are RFC 6749 §5.2's JSON (`error`, `error_description`) with its statuses: 400,
//! and 401 for `invalid_client` (with `WWW-Authenticate: Basic` after Basic).

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::http::header::{CACHE_CONTROL, HeaderValue, PRAGMA, WWW_AUTHENTICATE};
use warp::reply::Response;

use super::enabled;
use crate::http::api::reply::{json, respond};
use crate::http::filters::{self, BearerToken, Fields, Form, post, take};
use crate::http::problem::{OAuthError as Code, from_error, problem, with_oauth_error};
use crate::http::rate_limit::Endpoint;
use crate::http::state::AppState;
use crate::service::AuthService;
use crate::service::RequestContext;
use crate::service::oidc::{ClientAuth, OAuthError};

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let st = state.clone();
    let token = warp::path!("oauth" / "token").and(post(
        enabled(state)
            .and(filters::client(state.clone()))
            .and(filters::context(state.clone()))
            .and(warp::header::optional::<String>("authorization"))
            .and(filters::form_fields())
            .then(move |service, ip, ctx, authz, form| {
                token(st.clone(), service, ip, ctx, authz, form)
            }),
    ));
    let userinfo = warp::path!("oauth" / "userinfo").and(
        warp::get()
            .or(warp::post())
            .unify()
            .and(enabled(state))
            .and(filters::bearer())
            .then(userinfo)
            .or(filters::method_not_allowed(&["GET", "POST"]))
            .unify(),
    );
    token.or(userinfo).unify().boxed()
}

/// A §5.2 error answer: a problem (as every error of the API) with the `error` member.
fn oauth_error(status: StatusCode, code: Code, description: &str) -> Response {
    with_oauth_error(problem(status, description, None), Some(code))
}

fn no_store(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

fn refusal(e: OAuthError) -> Response {
    match e {
        OAuthError::InvalidRequest(d) => {
            oauth_error(StatusCode::BAD_REQUEST, Code::InvalidRequest, &d)
        }
        OAuthError::InvalidGrant(d) => oauth_error(StatusCode::BAD_REQUEST, Code::InvalidGrant, d),
        OAuthError::UnsupportedGrantType => oauth_error(
            StatusCode::BAD_REQUEST,
            Code::UnsupportedGrantType,
            "grant_type must be authorization_code or refresh_token",
        ),
        OAuthError::InvalidClient { basic } => {
            let mut resp = oauth_error(
                StatusCode::UNAUTHORIZED,
                Code::InvalidClient,
                "client authentication failed",
            );
            if basic {
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"authctl\""),
                );
            }
            resp
        }
        // The problem of the service's error (its status, Retry-After, logged cause),
        // with the code its status implies (`temporarily_unavailable`, `server_error`).
        OAuthError::Service(e) => with_oauth_error(from_error(&e), None),
    }
}

/// RFC 6749 §2.3.1: Basic credentials are form-urlencoded, then base64.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let encoded = header
        .strip_prefix("Basic ")
        .or_else(|| header.strip_prefix("basic "))?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// How the client authenticated: Basic, the form's secret, or only its id.
fn client_auth(authorization: Option<&str>, form: &Form) -> Result<ClientAuth, OAuthError> {
    let in_form = (form.get("client_id"), form.get("client_secret"));
    match authorization {
        Some(header) => {
            let Some((id, secret)) = basic_credentials(header) else {
                return Err(OAuthError::InvalidClient { basic: true });
            };
            if in_form.1.is_some() || in_form.0.is_some_and(|form_id| form_id != id) {
                return Err(OAuthError::InvalidRequest(
                    "use one client authentication method".into(),
                ));
            }
            Ok(ClientAuth::Secret {
                id,
                secret,
                basic: true,
            })
        }
        None => match in_form {
            (Some(id), Some(secret)) => Ok(ClientAuth::Secret {
                id: id.to_owned(),
                secret: secret.to_owned(),
                basic: false,
            }),
            (Some(id), None) => Ok(ClientAuth::None { id: id.to_owned() }),
            (None, _) => Err(OAuthError::InvalidClient { basic: false }),
        },
    }
}

fn required<'a>(form: &'a Form, name: &str) -> Result<&'a str, OAuthError> {
    form.get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| OAuthError::InvalidRequest(format!("{name} is required")))
}

/// The provider's token endpoint.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oidc",
    operation_id = "oidc_token",
    summary = "OpenID Connect token endpoint",
    description = "`grant_type=authorization_code` with `code`, `redirect_uri`, `code_verifier` \
        (PKCE) and client authentication (`client_secret_basic`, `client_secret_post`, or \
        `client_id` alone for a public client), or `grant_type=refresh_token` with \
        `refresh_token` and the same client authentication. Answers `access_token`, \
        `token_type`, `expires_in`, `id_token`, `scope`, and `refresh_token` when \
        `offline_access` was granted. A code is single use for 60 s; a second use revokes \
        what the first issued. Errors are RFC 6749 §5.2 JSON. 404 unless `oidc.enabled`.",
    request_body(content = Object, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The tokens.", body = Object),
        (status = 400, response = crate::http::docs::responses::BadRequest),
        (status = 401, response = crate::http::docs::responses::Unauthorized),
        (status = 404, response = crate::http::docs::responses::NotFound),
        (status = 411, response = crate::http::docs::responses::LengthRequired),
        (status = 413, response = crate::http::docs::responses::PayloadTooLarge),
        (status = 415, response = crate::http::docs::responses::UnsupportedMediaType),
        (status = 422, response = crate::http::docs::responses::ValidationFailed),
        (status = 429, response = crate::http::docs::responses::TooManyRequests),
        (status = 503, response = crate::http::docs::responses::Unavailable),
    ),
)]
pub async fn token(
    state: Arc<AppState>,
    service: Arc<AuthService>,
    ip: IpAddr,
    ctx: RequestContext,
    authorization: Option<String>,
    form: Fields<Form>,
) -> Response {
    let result = async {
        // A malformed form is the API's 400 (or 422 for a repeated field), as at
        // `/api/v1/auth/token`, with `error: invalid_request`.
        let form = form.map_err(OAuthError::Service)?;
        match form.get("grant_type") {
            Some("authorization_code") => {
                let auth = client_auth(authorization.as_deref(), &form)?;
                service
                    .exchange_code(
                        &ctx,
                        &auth,
                        required(&form, "code")?,
                        required(&form, "redirect_uri")?,
                        required(&form, "code_verifier")?,
                    )
                    .await
            }
            Some("refresh_token") => {
                // A refresh is a refresh wherever it comes (SPEC §9's quota).
                take(&state, Endpoint::Refresh, ip).await?;
                let auth = client_auth(authorization.as_deref(), &form)?;
                service
                    .client_refresh(&ctx, &auth, required(&form, "refresh_token")?)
                    .await
            }
            Some(_) => Err(OAuthError::UnsupportedGrantType),
            None => Err(OAuthError::InvalidRequest("grant_type is required".into())),
        }
    }
    .await;
    no_store(match result {
        Ok(tokens) => json(StatusCode::OK, &tokens),
        Err(e) => refusal(e),
    })
}

/// The claims of the token's user its scopes grant.
#[utoipa::path(
    get,
    path = "/oauth/userinfo",
    tag = "oidc",
    operation_id = "oidc_userinfo",
    summary = "OpenID Connect userinfo",
    description = "`sub` and the claims of the access token's granted scopes: `email` and \
        `email_verified` (scope `email`), `preferred_username` (`profile`), `roles` \
        (`roles`). Only for access tokens the provider issued with `openid`; POST works \
        the same. 404 unless `oidc.enabled`.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The claims.", body = Object),
        (status = 401, response = crate::http::docs::responses::Unauthorized),
        (status = 404, response = crate::http::docs::responses::NotFound),
        (status = 503, response = crate::http::docs::responses::Unavailable),
    ),
)]
pub async fn userinfo(service: Arc<AuthService>, bearer: Option<BearerToken>) -> Response {
    userinfo_answer(service, bearer).await
}

/// The same as `GET`, for clients that POST (OIDC Core §5.3.1).
#[utoipa::path(
    post,
    path = "/oauth/userinfo",
    tag = "oidc",
    operation_id = "oidc_userinfo_post",
    summary = "OpenID Connect userinfo (POST)",
    description = "As `GET /oauth/userinfo`.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The claims.", body = Object),
        (status = 401, response = crate::http::docs::responses::Unauthorized),
        (status = 404, response = crate::http::docs::responses::NotFound),
        (status = 503, response = crate::http::docs::responses::Unavailable),
    ),
)]
#[allow(dead_code)] // Documentation only: the route answers both methods with `userinfo`.
pub async fn userinfo_post(service: Arc<AuthService>, bearer: Option<BearerToken>) -> Response {
    userinfo_answer(service, bearer).await
}

async fn userinfo_answer(service: Arc<AuthService>, bearer: Option<BearerToken>) -> Response {
    respond(
        async {
            let token = bearer.ok_or(crate::error::Error::MissingToken)?;
            let claims = service.userinfo(token.as_str()).await?;
            Ok(json(StatusCode::OK, &claims))
        }
        .await,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        let h = format!("Basic {}", STANDARD.encode("my%20id:s%3Acret+x"));
        assert_eq!(
            basic_credentials(&h),
            Some(("my id".to_owned(), "s:cret x".to_owned()))
        );
        assert_eq!(basic_credentials("Bearer x"), None);
        assert_eq!(basic_credentials("Basic !!!"), None);
    }
}
