//! `POST /oauth/token` (the provider's token endpoint: authorization codes and a
//! client's refresh tokens) and `GET|POST /oauth/userinfo` (SPEC §18). Errors here
//! are RFC 6749 §5.2's JSON (`error`, `error_description`) with its statuses: 400,
//! and 401 for `invalid_client` (with `WWW-Authenticate: Basic` after Basic).

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::http::header::{CACHE_CONTROL, HeaderValue, PRAGMA, WWW_AUTHENTICATE};
use warp::reply::Response;

use super::enabled;
use crate::http::api::reply::{json, respond};
use crate::http::filters::{self, BearerToken, Fields, Form, post, take};
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

/// A §5.2 error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    json(
        status,
        &json!({"error": error, "error_description": description}),
    )
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
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &d)
        }
        OAuthError::InvalidGrant(d) => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d),
        OAuthError::UnsupportedGrantType => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code or refresh_token",
        ),
        OAuthError::InvalidClient { basic } => {
            let mut resp = oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
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
        OAuthError::Service(e) => {
            // The problem response's status, headers and logged cause, with §5.2's body.
            let problem = crate::http::problem::from_error(&e);
            let code = if problem.status().is_server_error()
                || problem.status() == StatusCode::TOO_MANY_REQUESTS
            {
                "temporarily_unavailable"
            } else {
                "invalid_request"
            };
            let (parts, _) = problem.into_parts();
            let mut resp = oauth_error(parts.status, code, "try again later");
            for (name, value) in &parts.headers {
                if name == warp::http::header::RETRY_AFTER {
                    resp.headers_mut().insert(name, value.clone());
                }
            }
            *resp.extensions_mut() = parts.extensions;
            resp
        }
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
        (status = 400, description = "`invalid_request`, `invalid_grant` or `unsupported_grant_type`.", body = Object),
        (status = 401, description = "`invalid_client`.", body = Object),
        (status = 404, description = "The provider is off."),
        (status = 413, response = crate::http::docs::responses::PayloadTooLarge),
        (status = 415, response = crate::http::docs::responses::UnsupportedMediaType),
        (status = 429, description = "Too many refreshes from this client address.", body = Object),
        (status = 503, description = "`temporarily_unavailable`.", body = Object),
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
        let form =
            form.map_err(|_| OAuthError::InvalidRequest("a form body is required".into()))?;
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
        (status = 404, description = "The provider is off."),
        (status = 503, response = crate::http::docs::responses::Unavailable),
    ),
)]
pub async fn userinfo(service: Arc<AuthService>, bearer: Option<BearerToken>) -> Response {
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
