//! The API's own documentation, served from the binary so it works without internet:
//!
//! - `GET /openapi.json`: the OpenAPI document, generated from the code by utoipa (the
//!   `#[utoipa::path]` annotations on [`handlers`] and the schemas below);
//! - `GET /docs`: Swagger UI, vendored in `utoipa-swagger-ui` (online validator off);
//! - `GET /redoc`: ReDoc, the standalone bundle vendored under `assets/redoc`.
//!
//! The pages reference same-origin URLs only, and a `Content-Security-Policy` keeps the
//! browser from contacting any other host (ReDoc's bundle would fetch a logo from a CDN).
//! `authctl openapi` prints the same document ([`openapi_json`]).

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    HeaderBuilder, ObjectBuilder, OpenApi as OpenApiDoc, Ref, RefOr, Response as ResponseDoc, Type,
};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};
use warp::filters::BoxedFilter;
use warp::http::header::{
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue,
};
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::handlers::{self, Health, UserResponse};
use super::problem::{Problem, from_error};
use super::routes::method_not_allowed;
use crate::error::{Error, FieldError};
use crate::service::TokenPair;

/// Where the document is served; Swagger UI and ReDoc load it from here.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The security scheme name that protected operations refer to.
pub const BEARER_SCHEME: &str = "bearer";

// ----- request bodies (documentation only: the routes parse them field by field) -----

/// `POST /api/v1/auth/register`: the new user.
#[derive(ToSchema)]
pub struct RegisterRequest {
    /// A syntactically valid email address, at most 254 characters; unique,
    /// compared case-insensitively.
    #[schema(format = Email, max_length = 254, example = "alice@example.com")]
    pub email: String,
    /// 3–32 characters of `A-Z a-z 0-9 _ . -`; unique, compared case-insensitively.
    #[schema(
        min_length = 3,
        max_length = 32,
        pattern = r"^[A-Za-z0-9_.\-]{3,32}$",
        example = "alice"
    )]
    pub username: String,
    /// At least 8 characters and at most 72 bytes in UTF-8 (bcrypt's limit: longer is
    /// refused, never truncated); no NUL character.
    #[schema(
        format = Password,
        min_length = 8,
        max_length = 72,
        pattern = r"^[^\x00]*$",
        example = "correct horse battery"
    )]
    pub password: String,
}

/// `POST /api/v1/auth/token`: the OAuth2 password form.
#[derive(ToSchema)]
pub struct LoginForm {
    /// The username or the email address, matched case-insensitively.
    #[schema(example = "alice")]
    pub username: String,
    /// The password.
    #[schema(format = Password, example = "correct horse battery")]
    pub password: String,
}

/// `POST /api/v1/auth/refresh` and `/revoke`: a refresh token.
#[derive(ToSchema)]
pub struct RefreshRequest {
    /// A refresh token from `/api/v1/auth/token` or `/api/v1/auth/refresh`.
    #[schema(example = "q4Xq3mJ2bqVn7ZkQyR0sT1uV2wX3yZ4a5B6c7D8e9F0")]
    pub refresh_token: String,
}

// ----- reusable error responses: every one a problem+json body --------------------

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
/// its user disabled or deleted.
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers((
        "WWW-Authenticate" = String,
        description = "`Bearer` when no token was sent; `Bearer error=\"invalid_token\", \
                       error_description=\"…\"` when the token was refused (RFC 6750)."
    ))
)]
pub struct Unauthorized(pub Problem<'static>);

/// The refresh token is unknown, expired, revoked or already rotated (reusing a rotated
/// token revokes its whole session).
#[derive(ToResponse)]
#[response(
    content_type = "application/problem+json",
    headers((
        "WWW-Authenticate" = String,
        description = "`Bearer error=\"invalid_token\", error_description=\"…\"`"
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

// ----- the document ----------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(
        title = "authctl",
        description = "JWT authentication REST API: register, log in with the OAuth2 \
            password form, call protected APIs with a Bearer access token, rotate and revoke \
            refresh tokens. Errors are `application/problem+json` (RFC 9457). Every response \
            carries `X-Request-Id`. Unknown paths answer 404, known paths with the wrong \
            method 405 with `Allow`, both with problem bodies."
    ),
    paths(
        handlers::register,
        handlers::login,
        handlers::me,
        handlers::refresh,
        handlers::revoke,
        handlers::liveness,
        handlers::readiness,
        handlers::startup,
        openapi_document,
        swagger_ui,
        redoc,
    ),
    components(
        schemas(
            RegisterRequest,
            LoginForm,
            RefreshRequest,
            UserResponse,
            TokenPair,
            Health,
            Problem,
            FieldError
        ),
        responses(
            BadRequest,
            BadCredentials,
            Unauthorized,
            InvalidRefreshToken,
            Conflict,
            LengthRequired,
            PayloadTooLarge,
            UnsupportedMediaType,
            ValidationFailed,
            TooManyRequests,
            Unavailable
        )
    ),
    modifiers(&BearerScheme, &RetryAfterHeader, &RequestIdHeader),
    tags(
        (name = "auth", description = "Registration, login, tokens and sessions."),
        (name = "health", description = "Probes for orchestrators and load balancers."),
        (name = "docs", description = "This document and its viewers, served from the binary."),
    )
)]
pub struct ApiDoc;

/// Adds the HTTP Bearer (JWT) security scheme.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from `/api/v1/auth/token` or `/api/v1/auth/refresh`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// `Retry-After` is whole seconds, at least 1 (the derive can only say "unsigned").
struct RetryAfterHeader;

impl Modify for RetryAfterHeader {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let Some(RefOr::T(response)) = components.responses.get_mut("TooManyRequests") else {
            return;
        };
        if let Some(RefOr::T(header)) = response.headers.get_mut("Retry-After") {
            header.schema = Some(RefOr::T(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .into(),
            ));
        }
    }
}

/// Documents `X-Request-Id` on every response: one shared header component, referred
/// to from each response.
struct RequestIdHeader;

impl RequestIdHeader {
    const NAME: &'static str = "X-Request-Id";
}

impl Modify for RequestIdHeader {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let header = HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(128))
                    .pattern(Some("^[A-Za-z0-9._-]+$")),
            ))
            .description(Some(
                "The request's own `X-Request-Id` if it sent a sane one (at most 128 of \
                 `A-Z a-z 0-9 . _ -`), else a new one; also in the server's log line.",
            ))
            .build();
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .headers
            .insert(Self::NAME.to_string(), RefOr::T(header));
        let reference = || RefOr::Ref(Ref::new(format!("#/components/headers/{}", Self::NAME)));
        let add = |response: &mut RefOr<ResponseDoc>| {
            if let RefOr::T(response) = response {
                response.headers.insert(Self::NAME.to_string(), reference());
            }
        };
        components.responses.values_mut().for_each(add);
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
                &mut item.query,
            ];
            for op in operations.into_iter().flatten() {
                op.responses.responses.values_mut().for_each(add);
            }
        }
    }
}

/// The OpenAPI document.
pub fn openapi() -> OpenApiDoc {
    ApiDoc::openapi()
}

/// The OpenAPI document as pretty-printed JSON (what `/openapi.json` serves and
/// `authctl openapi` prints).
pub fn openapi_json() -> Result<String, Error> {
    openapi().to_pretty_json().map_err(|e| {
        Error::Internal(anyhow::Error::new(e).context("serializing the OpenAPI document"))
    })
}

/// The document, serialized once (compact, for `/openapi.json`).
static DOCUMENT: LazyLock<Result<Bytes, String>> = LazyLock::new(|| {
    serde_json::to_vec(&openapi())
        .map(Bytes::from)
        .map_err(|e| e.to_string())
});

// ----- serving ---------------------------------------------------------------------

/// What the docs pages may load: this origin only (plus `data:` images and fonts and
/// `blob:` workers, all local). `unsafe-inline` styles are for the viewers' generated
/// CSS; scripts come only from files on this origin. Nothing else is contacted.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
    connect-src 'self'; worker-src 'self' blob:; child-src 'self' blob:; \
    manifest-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const HTML: &str = "text/html; charset=utf-8";
const JAVASCRIPT: &str = "text/javascript; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Swagger UI's page. Ours rather than the bundled `index.html`, whose `./` URLs only
/// work under `/docs/`: with absolute URLs `/docs` and `/docs/` both work, no redirect.
const SWAGGER_UI_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>authctl API — Swagger UI</title>
  <link rel="stylesheet" type="text/css" href="/docs/swagger-ui.css">
  <link rel="stylesheet" type="text/css" href="/docs/index.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="/docs/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js" charset="utf-8"></script>
  <script src="/docs/swagger-ui-standalone-preset.js" charset="utf-8"></script>
  <script src="/docs/swagger-initializer.js" charset="utf-8"></script>
</body>
</html>
"#;

/// ReDoc's page: the vendored bundle from this origin, no web fonts.
const REDOC_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>authctl API — ReDoc</title>
  <style>body { margin: 0; padding: 0; }</style>
</head>
<body>
  <redoc spec-url="/openapi.json"></redoc>
  <script src="/redoc/redoc.standalone.js" charset="utf-8"></script>
</body>
</html>
"#;

/// ReDoc 2.5.4, from PyPI `drf-spectacular-sidecar` 2026.10.1 (see assets/redoc/README.md).
static REDOC_JS: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");
static REDOC_JS_LICENSES: &str = include_str!("../../assets/redoc/redoc.standalone.js.LICENSE.txt");
static REDOC_LICENSE: &str = include_str!("../../assets/redoc/LICENSE");

static SWAGGER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::new([OPENAPI_PATH])
            // The default would send the document to validator.swagger.io.
            .validator_url("none"),
    )
});

/// `GET /openapi.json`, `/docs[/…]`, `/redoc[/…]`; other methods 405.
pub fn routes() -> BoxedFilter<(Response,)> {
    let document = warp::path("openapi.json")
        .and(warp::path::end())
        .and(
            warp::get()
                .map(openapi_document)
                .or(method_not_allowed(&["GET"]))
                .unify(),
        )
        .boxed();

    let swagger = warp::path("docs")
        .and(
            warp::get()
                .and(warp::path::tail())
                .and_then(|tail: warp::path::Tail| async move { swagger_ui_file(tail.as_str()) })
                .or(method_not_allowed(&["GET"]))
                .unify(),
        )
        .boxed();

    let redoc = warp::path("redoc")
        .and(
            warp::get()
                .and(warp::path::tail())
                .and_then(|tail: warp::path::Tail| async move { redoc_file(tail.as_str()) })
                .or(method_not_allowed(&["GET"]))
                .unify(),
        )
        .boxed();

    document.or(swagger).unify().or(redoc).unify().boxed()
}

/// A docs response: `resp` with its content type, caching and the docs' CSP.
fn asset(content_type: &str, cache: &'static str, mut resp: Response) -> Response {
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        headers.insert(CONTENT_TYPE, v);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    resp
}

/// Pages and the document: always revalidated, so a new binary shows at once.
const NO_CACHE: &str = "no-cache";
/// The viewers' static files: the same for the life of a binary.
const CACHE_AN_HOUR: &str = "public, max-age=3600";

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "docs",
    operation_id = "openapi",
    summary = "This OpenAPI document",
    description = "The OpenAPI document of this API, generated from the code; \
        `authctl openapi` prints the same document without a server.",
    responses((status = 200, description = "The OpenAPI document.", body = Object,
        content_type = "application/json")),
)]
pub fn openapi_document() -> Response {
    match DOCUMENT.as_ref() {
        Ok(json) => asset(
            "application/json",
            NO_CACHE,
            Response::new(json.clone().into()),
        ),
        Err(e) => from_error(&Error::Internal(anyhow::anyhow!(
            "serializing the OpenAPI document: {e}"
        ))),
    }
}

/// `GET /docs`: Swagger UI.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "docs",
    operation_id = "swagger_ui",
    summary = "Swagger UI",
    description = "Interactive documentation of this document, served from the binary with \
        its assets under `/docs/`; it contacts no other host (online validator off).",
    responses((status = 200, description = "The Swagger UI page.", body = String,
        content_type = "text/html")),
)]
pub fn swagger_ui() -> Response {
    asset(HTML, NO_CACHE, Response::new(SWAGGER_UI_HTML.into()))
}

/// `GET /redoc`: ReDoc.
#[utoipa::path(
    get,
    path = "/redoc",
    tag = "docs",
    operation_id = "redoc",
    summary = "ReDoc",
    description = "Reference documentation of this document, served from the binary with \
        its script under `/redoc/`; it contacts no other host.",
    responses((status = 200, description = "The ReDoc page.", body = String,
        content_type = "text/html")),
)]
pub fn redoc() -> Response {
    asset(HTML, NO_CACHE, Response::new(REDOC_HTML.into()))
}

/// `/docs` and `/docs/` are the page; anything else below is a Swagger UI file.
fn swagger_ui_file(tail: &str) -> Result<Response, Rejection> {
    if tail.is_empty() || tail == "index.html" {
        return Ok(swagger_ui());
    }
    match utoipa_swagger_ui::serve(tail, SWAGGER_CONFIG.clone()) {
        Ok(Some(file)) => {
            let content_type = if file.content_type.starts_with("text/")
                || file.content_type == "application/javascript"
            {
                // Swagger UI's files are UTF-8; say so, and use the current JS type.
                let essence = match file.content_type.as_str() {
                    "application/javascript" => "text/javascript",
                    other => other,
                };
                format!("{essence}; charset=utf-8")
            } else {
                file.content_type
            };
            let body = match file.bytes {
                Cow::Borrowed(bytes) => Response::new(bytes.into()),
                Cow::Owned(bytes) => Response::new(bytes.into()),
            };
            let mut resp = asset(&content_type, CACHE_AN_HOUR, body);
            if file.gzpipped {
                resp.headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Ok(resp)
        }
        Ok(None) => Err(warp::reject::not_found()),
        Err(e) => Ok(from_error(&Error::Internal(anyhow::anyhow!(
            "serving Swagger UI file {tail}: {e}"
        )))),
    }
}

/// `/redoc` and `/redoc/` are the page; below it the bundle and its licences.
fn redoc_file(tail: &str) -> Result<Response, Rejection> {
    Ok(match tail {
        "" | "index.html" => redoc(),
        "redoc.standalone.js" => asset(JAVASCRIPT, CACHE_AN_HOUR, Response::new(REDOC_JS.into())),
        "redoc.standalone.js.LICENSE.txt" => {
            asset(TEXT, CACHE_AN_HOUR, Response::new(REDOC_JS_LICENSES.into()))
        }
        "LICENSE" => asset(TEXT, CACHE_AN_HOUR, Response::new(REDOC_LICENSE.into())),
        _ => return Err(warp::reject::not_found()),
    })
}
