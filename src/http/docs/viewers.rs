//! The document's viewers, served from the binary: `GET /docs` (Swagger UI, vendored
//! in `utoipa-swagger-ui`, online validator off) and `GET /redoc` (ReDoc, the
//! standalone bundle vendored under `assets/redoc`).
//!
//! The pages reference same-origin URLs only, and a `Content-Security-Policy` keeps the
//! browser from contacting any other host (ReDoc's bundle would fetch a logo from a CDN).

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use warp::filters::BoxedFilter;
use warp::http::header::{
    CACHE_CONTROL, CONTENT_ENCODING, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue,
};
use warp::reply::Response;
use warp::{Filter, Rejection};

use crate::error::Error;
use crate::http::filters::get;
use crate::http::problem::from_error;

/// Where the viewers load the document from (served by `docs::routes`).
pub const OPENAPI_PATH: &str = "/openapi.json";

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
static REDOC_JS: &[u8] = include_bytes!("../../../assets/redoc/redoc.standalone.js");
static REDOC_JS_LICENSES: &str =
    include_str!("../../../assets/redoc/redoc.standalone.js.LICENSE.txt");
static REDOC_LICENSE: &str = include_str!("../../../assets/redoc/LICENSE");

static SWAGGER_CONFIG: LazyLock<Arc<utoipa_swagger_ui::Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        utoipa_swagger_ui::Config::new([OPENAPI_PATH])
            // The default would send the document to validator.swagger.io.
            .validator_url("none"),
    )
});

/// `GET /docs[/…]`, `/redoc[/…]`; other methods 405.
pub fn routes() -> BoxedFilter<(Response,)> {
    let swagger = warp::path("docs")
        .and(get(warp::path::tail().and_then(
            |tail: warp::path::Tail| async move { swagger_ui_file(tail.as_str()) },
        )))
        .boxed();

    let redoc = warp::path("redoc")
        .and(get(warp::path::tail().and_then(
            |tail: warp::path::Tail| async move { redoc_file(tail.as_str()) },
        )))
        .boxed();

    swagger.or(redoc).unify().boxed()
}

/// A docs response: `resp` with its content type, caching and the docs' CSP.
pub fn asset(content_type: &str, cache: &'static str, mut resp: Response) -> Response {
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
pub const NO_CACHE: &str = "no-cache";
/// The viewers' static files: the same for the life of a binary.
const CACHE_AN_HOUR: &str = "public, max-age=3600";

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
