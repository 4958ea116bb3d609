//! The OpenID Connect provider's HTTP side (SPEC §18), on when `oidc.enabled` (404
//! otherwise). The flow's rules are in `service::oidc`; here: parsing, cookies, CSRF
//! tokens, pages and their headers.
//!
//! - this file: the routes, discovery, the stylesheet, cookies and page responses;
//! - [`login`]: `GET /oauth/authorize`, the login form (`POST /oauth/login`, `POST
//!   /oauth/login/mfa`) and logout (`GET|POST /oauth/logout`);
//! - [`token`]: `POST /oauth/token` and `GET|POST /oauth/userinfo`;
//! - [`pages`]: the HTML.

pub mod login;
pub mod pages;
pub mod token;

use std::sync::Arc;

use cookie::{Cookie, SameSite};
use serde_json::json;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, LOCATION, PRAGMA,
    RETRY_AFTER, SET_COOKIE,
};
use warp::reply::{Reply, Response};

use crate::error::Error;
use crate::http::filters::{get, with_service};
use crate::http::state::AppState;
use crate::service::AuthService;

/// Every route of the provider.
pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!(".well-known" / "openid-configuration")
        .and(get(enabled(state).map(discovery)))
        .or(warp::path!("oauth" / "assets" / "page.css").and(get(enabled(state).map(stylesheet))))
        .unify()
        .or(login::routes(state))
        .unify()
        .or(token::routes(state))
        .unify()
        .boxed()
}

/// The service, if the provider is on; a 404 (as for any unknown path) if not.
pub(crate) fn enabled(
    state: &Arc<AppState>,
) -> impl Filter<Extract = (Arc<AuthService>,), Error = warp::Rejection> + Clone + use<> {
    with_service(state.clone()).and_then(|service: Arc<AuthService>| async move {
        if service.oidc_enabled() {
            Ok(service)
        } else {
            Err(warp::reject::not_found())
        }
    })
}

/// `issuer` + `path`, without a doubled slash.
pub(crate) fn endpoint(service: &AuthService, path: &str) -> String {
    format!("{}{path}", service.issuer().trim_end_matches('/'))
}

/// `GET /.well-known/openid-configuration` (OIDC Discovery 1.0).
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "oidc",
    operation_id = "openid_configuration",
    summary = "OpenID Connect discovery",
    description = "The provider's metadata (OIDC Discovery 1.0): its endpoints, the \
        authorization code flow with PKCE S256, the scopes, claims and ID-token algorithms \
        it supports. 404 unless `oidc.enabled`.",
    responses(
        (status = 200, description = "The provider metadata.", body = Object),
        (status = 404, response = crate::http::docs::responses::NotFound),
        (status = 503, response = crate::http::docs::responses::Unavailable),
    ),
)]
pub fn discovery(service: Arc<AuthService>) -> Response {
    let e = |path: &str| endpoint(&service, path);
    let doc = json!({
        "issuer": service.issuer(),
        "authorization_endpoint": e("/oauth/authorize"),
        "token_endpoint": e("/oauth/token"),
        "userinfo_endpoint": e("/oauth/userinfo"),
        "jwks_uri": e("/.well-known/jwks.json"),
        "end_session_endpoint": e("/oauth/logout"),
        "revocation_endpoint": e("/api/v1/auth/revoke"),
        "introspection_endpoint": e("/api/v1/auth/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "EdDSA", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": crate::service::oidc::SCOPES,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "claims_supported": crate::service::oidc::CLAIMS,
        "prompt_values_supported": ["none", "login"],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
    });
    let mut resp = warp::reply::json(&doc).into_response();
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}

fn stylesheet(_: Arc<AuthService>) -> Response {
    let mut resp = pages::STYLESHEET.into_response();
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    h.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    resp
}

// ----- cookies ---------------------------------------------------------------------

/// The browser session cookie's name: `__Host-` prefixed over https (SPEC §18).
pub(crate) fn session_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-authctl_session"
    } else {
        "authctl_session"
    }
}

/// The CSRF cookie's name.
pub(crate) fn csrf_cookie(secure: bool) -> &'static str {
    if secure {
        "__Host-authctl_csrf"
    } else {
        "authctl_csrf"
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub(crate) fn read_cookie(header: Option<&str>, name: &str) -> Option<String> {
    Cookie::split_parse(header?)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// A `Set-Cookie` value: HttpOnly, Path=/, Secure over https; `max_age` seconds
/// (`Some(0)` deletes it, `None` lasts the browser session).
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    same_site: SameSite,
    max_age: Option<i64>,
    secure: bool,
) -> Option<HeaderValue> {
    let mut c = Cookie::build((name.to_owned(), value.to_owned()))
        .http_only(true)
        .same_site(same_site)
        .path("/")
        .secure(secure);
    if let Some(secs) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    HeaderValue::from_str(&c.build().to_string()).ok()
}

// ----- responses -------------------------------------------------------------------

/// An HTML page with the provider's headers: a CSP without script, no caching.
/// `form_to`: the origin a form on this page may send the browser on to (the
/// redirect after a login), besides `'self'`.
pub(crate) fn page(status: StatusCode, markup: maud::Markup, form_to: Option<&str>) -> Response {
    let mut resp =
        warp::reply::with_status(warp::reply::html(markup.into_string()), status).into_response();
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'{}; \
         frame-ancestors 'none'; base-uri 'none'",
        form_to.map(|o| format!(" {o}")).unwrap_or_default()
    );
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(CONTENT_SECURITY_POLICY, v);
    }
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

/// A redirect (`302` after a GET, `303` after a form POST).
pub(crate) fn redirect(status: StatusCode, to: &str) -> Response {
    let mut resp = warp::reply::with_status(warp::reply(), status).into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Adds a `Set-Cookie` line.
pub(crate) fn with_cookie(mut resp: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        resp.headers_mut().append(SET_COOKIE, c);
    }
    resp
}

/// The service's error as a page: its status and `Retry-After`, and its cause kept
/// for the request's log line (as the problem response would).
pub(crate) fn error_page(err: &Error) -> Response {
    let problem = crate::http::problem::from_error(err);
    let message = match err {
        Error::RateLimited { .. } => "Too many attempts. Wait a minute and try again.",
        Error::Busy { .. } | Error::Unavailable(_) | Error::NotReady(_) => {
            "The service is busy. Try again in a moment."
        }
        _ => "Something went wrong. Try again.",
    };
    let (parts, _) = problem.into_parts();
    let mut resp = page(parts.status, pages::error(message), None);
    if let Some(v) = parts.headers.get(RETRY_AFTER) {
        resp.headers_mut().insert(RETRY_AFTER, v.clone());
    }
    *resp.extensions_mut() = parts.extensions;
    resp
}
