//! `GET /oauth/authorize`, the login form and its TOTP step, and logout (SPEC §18).
//!
//! CSRF: a page with a form sets a random CSRF cookie (HttpOnly, SameSite=Strict)
//! and carries the HMAC of its value (keyed with the database's secret, so every
//! replica checks it) in a hidden field; a POST without both matching is refused
//! before anything else is read.

use std::net::IpAddr;
use std::sync::Arc;

use cookie::SameSite;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use super::{
    csrf_cookie, enabled, error_page, page, pages, read_cookie, redirect, session_cookie,
    set_cookie, with_cookie,
};
use crate::error::Error;
use crate::http::filters::{self, Fields, Form, get, post, take};
use crate::http::rate_limit::Endpoint;
use crate::http::state::AppState;
use crate::service::oidc::{Authorization, Authorize, PageLogin, redirect::origin_source};
use crate::service::{AuthService, RequestContext};
use crate::tokens::RefreshToken;

pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let authorize = warp::path!("oauth" / "authorize").and(get(enabled(state)
        .and(filters::context(state.clone()))
        .and(raw_query())
        .and(warp::header::optional::<String>("cookie"))
        .then(authorize)));
    let login = {
        let st = state.clone();
        warp::path!("oauth" / "login").and(post(
            filters::client(state.clone())
                .and(filters::context(state.clone()))
                .and(warp::header::optional::<String>("cookie"))
                .and(filters::form_fields())
                .then(move |ip, ctx, cookie, form| {
                    submit(st.clone(), ip, ctx, cookie, form, Step::Password)
                }),
        ))
    };
    let login_mfa = {
        let st = state.clone();
        warp::path!("oauth" / "login" / "mfa").and(post(
            filters::client(state.clone())
                .and(filters::context(state.clone()))
                .and(warp::header::optional::<String>("cookie"))
                .and(filters::form_fields())
                .then(move |ip, ctx, cookie, form| {
                    submit(st.clone(), ip, ctx, cookie, form, Step::Code)
                }),
        ))
    };
    let logout_get = warp::get().and(
        enabled(state)
            .and(filters::context(state.clone()))
            .and(raw_query())
            .and(warp::header::optional::<String>("cookie"))
            .then(logout),
    );
    let logout_post = warp::post().and(
        enabled(state)
            .and(filters::context(state.clone()))
            .and(warp::header::optional::<String>("cookie"))
            .and(filters::form_fields())
            .then(logout_confirmed),
    );
    let logout = warp::path!("oauth" / "logout").and(
        logout_get
            .or(logout_post)
            .unify()
            .or(filters::method_not_allowed(&["GET", "POST"]))
            .unify(),
    );
    authorize
        .or(login)
        .unify()
        .or(login_mfa)
        .unify()
        .or(logout)
        .unify()
        .boxed()
}

/// The query string as it came (empty when there is none).
fn raw_query() -> impl Filter<Extract = (String,), Error = std::convert::Infallible> + Clone {
    warp::query::raw().or(warp::any().map(String::new)).unify()
}

/// The CSRF cookie to use: the browser's, or a new one to set.
fn csrf_for(service: &AuthService, cookie_header: Option<&str>) -> (String, Option<String>) {
    let name = csrf_cookie(service.cookie_secure());
    match read_cookie(cookie_header, name) {
        Some(v) if v.len() >= 32 && v.len() <= 64 => (v, None),
        _ => {
            let fresh = RefreshToken::generate().expose().to_owned();
            (fresh.clone(), Some(fresh))
        }
    }
}

/// A page with a form: the CSRF cookie set if the browser had none.
fn form_page(
    service: &AuthService,
    cookie_header: Option<&str>,
    status: StatusCode,
    render: impl FnOnce(&str) -> maud::Markup,
    form_to: Option<&str>,
) -> Response {
    let (cookie, fresh) = csrf_for(service, cookie_header);
    let resp = page(status, render(&service.csrf_token(&cookie)), form_to);
    match fresh {
        Some(v) => with_cookie(
            resp,
            set_cookie(
                csrf_cookie(service.cookie_secure()),
                &v,
                SameSite::Strict,
                None,
                service.cookie_secure(),
            ),
        ),
        None => resp,
    }
}

fn login_page(
    service: &AuthService,
    cookie_header: Option<&str>,
    auth: &Authorization,
    username: &str,
    error: Option<&str>,
) -> Response {
    let to = origin_source(&auth.redirect_uri);
    form_page(
        service,
        cookie_header,
        StatusCode::OK,
        |csrf| pages::login(&auth.client.name, &auth.query, csrf, username, error),
        to.as_deref(),
    )
}

async fn authorize(
    service: Arc<AuthService>,
    ctx: RequestContext,
    query: String,
    cookie: Option<String>,
) -> Response {
    let session = read_cookie(cookie.as_deref(), session_cookie(service.cookie_secure()));
    match service.authorize(&ctx, &query, session.as_deref()).await {
        Ok(Authorize::ErrorPage(message)) => {
            page(StatusCode::BAD_REQUEST, pages::error(&message), None)
        }
        Ok(Authorize::Redirect(to)) => redirect(StatusCode::FOUND, &to),
        Ok(Authorize::Login(auth)) => login_page(&service, cookie.as_deref(), &auth, "", None),
        Err(e) => error_page(&e),
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Password,
    Code,
}

/// `POST /oauth/login` and `POST /oauth/login/mfa`: the login's rate limit first,
/// then CSRF, then the authorization request again, then the credentials.
async fn submit(
    state: Arc<AppState>,
    client: IpAddr,
    ctx: RequestContext,
    cookie: Option<String>,
    form: Fields<Form>,
    step: Step,
) -> Response {
    if let Err(e) = take(&state, Endpoint::Login, client).await {
        return error_page(&e);
    }
    let Some(service) = state.service().cloned() else {
        return error_page(&Error::NotReady("the server is starting"));
    };
    if !service.oidc_enabled() {
        return page(
            StatusCode::NOT_FOUND,
            pages::error("Sign-in is not enabled here."),
            None,
        );
    }
    let Ok(form) = form else {
        return page(
            StatusCode::BAD_REQUEST,
            pages::error("The form was not sent as a form."),
            None,
        );
    };
    let secure = service.cookie_secure();
    let csrf_ok = read_cookie(cookie.as_deref(), csrf_cookie(secure))
        .is_some_and(|c| service.csrf_ok(&c, form.get("csrf").unwrap_or_default()));
    if !csrf_ok {
        return page(
            StatusCode::FORBIDDEN,
            pages::error(
                "This form has expired or did not come from this site. Go back to the application and sign in again.",
            ),
            None,
        );
    }
    let auth = match service
        .check_authorization(form.get("request").unwrap_or_default())
        .await
    {
        Ok(Ok(auth)) => auth,
        Ok(Err(Authorize::Redirect(to))) => return redirect(StatusCode::SEE_OTHER, &to),
        Ok(Err(Authorize::ErrorPage(m))) => {
            return page(StatusCode::BAD_REQUEST, pages::error(&m), None);
        }
        Ok(Err(Authorize::Login(_))) => {
            return page(
                StatusCode::BAD_REQUEST,
                pages::error("Invalid request."),
                None,
            );
        }
        Err(e) => return error_page(&e),
    };
    let username = form.get("username").unwrap_or_default();
    let outcome = match step {
        Step::Password => {
            service
                .page_login(
                    &ctx,
                    &auth,
                    username,
                    form.get("password").unwrap_or_default(),
                )
                .await
        }
        Step::Code => {
            service
                .page_login_code(
                    &ctx,
                    &auth,
                    form.get("mfa_token").unwrap_or_default(),
                    form.get("code").unwrap_or_default(),
                )
                .await
        }
    };
    let to = origin_source(&auth.redirect_uri);
    match outcome {
        Ok(PageLogin::Done {
            cookie: session,
            cookie_max_age,
            redirect: location,
        }) => with_cookie(
            redirect(StatusCode::SEE_OTHER, &location),
            set_cookie(
                session_cookie(secure),
                &session,
                SameSite::Lax,
                Some(cookie_max_age),
                secure,
            ),
        ),
        Ok(PageLogin::NeedsCode { mfa_token }) => form_page(
            &service,
            cookie.as_deref(),
            StatusCode::OK,
            |csrf| pages::code(&auth.client.name, &auth.query, csrf, &mfa_token, None),
            to.as_deref(),
        ),
        Ok(PageLogin::Failed(message)) => match step {
            Step::Password => {
                login_page(&service, cookie.as_deref(), &auth, username, Some(message))
            }
            Step::Code => {
                let mfa_token = form.get("mfa_token").unwrap_or_default();
                form_page(
                    &service,
                    cookie.as_deref(),
                    StatusCode::OK,
                    |csrf| {
                        pages::code(
                            &auth.client.name,
                            &auth.query,
                            csrf,
                            mfa_token,
                            Some(message),
                        )
                    },
                    to.as_deref(),
                )
            }
        },
        Err(e) => error_page(&e),
    }
}

/// `GET /oauth/logout` (RP-Initiated Logout 1.0).
async fn logout(
    service: Arc<AuthService>,
    ctx: RequestContext,
    query: String,
    cookie: Option<String>,
) -> Response {
    let params: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let get = |k: &str| {
        params
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_str())
    };
    let Some((sid, client_id)) = get("id_token_hint").and_then(|h| service.logout_hint(h)) else {
        return form_page(
            &service,
            cookie.as_deref(),
            StatusCode::OK,
            pages::logout_confirm,
            None,
        );
    };
    let target = match get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => match service.client(&client_id).await {
            Ok(Some(c)) if c.post_logout_redirect_uris.iter().any(|r| r == uri) => Some(uri),
            Ok(_) => {
                return page(
                    StatusCode::BAD_REQUEST,
                    pages::error(
                        "The post_logout_redirect_uri is not one registered for this application.",
                    ),
                    None,
                );
            }
            Err(e) => return error_page(&e),
        },
    };
    if let Err(e) = service.end_browser_session(&ctx, sid).await {
        return error_page(&e);
    }
    let clear = set_cookie(
        session_cookie(service.cookie_secure()),
        "",
        SameSite::Lax,
        Some(0),
        service.cookie_secure(),
    );
    let resp = match target {
        Some(uri) => {
            let mut url = match url::Url::parse(uri) {
                Ok(u) => u,
                Err(_) => return page(StatusCode::BAD_REQUEST, pages::error("Invalid URI."), None),
            };
            if let Some(state) = get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            redirect(StatusCode::FOUND, url.as_str())
        }
        None => page(StatusCode::OK, pages::signed_out(), None),
    };
    with_cookie(resp, clear)
}

/// `POST /oauth/logout`: the confirmation page's form ends the cookie's session.
async fn logout_confirmed(
    service: Arc<AuthService>,
    ctx: RequestContext,
    cookie: Option<String>,
    form: Fields<Form>,
) -> Response {
    let secure = service.cookie_secure();
    let csrf_ok = form.as_ref().is_ok_and(|form| {
        read_cookie(cookie.as_deref(), csrf_cookie(secure))
            .is_some_and(|c| service.csrf_ok(&c, form.get("csrf").unwrap_or_default()))
    });
    if !csrf_ok {
        return page(
            StatusCode::FORBIDDEN,
            pages::error("This form has expired or did not come from this site."),
            None,
        );
    }
    if let Some(raw) = read_cookie(cookie.as_deref(), session_cookie(secure)) {
        match service.browser_session(&raw).await {
            Ok(Some(session)) => {
                if let Err(e) = service.end_browser_session(&ctx, session.family).await {
                    return error_page(&e);
                }
            }
            Ok(None) => {}
            Err(e) => return error_page(&e),
        }
    }
    with_cookie(
        page(StatusCode::OK, pages::signed_out(), None),
        set_cookie(session_cookie(secure), "", SameSite::Lax, Some(0), secure),
    )
}
