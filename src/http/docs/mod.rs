//! The API's own documentation, served from the binary so it works without internet:
//!
//! - [`ApiDoc`]: the OpenAPI document, generated from the code by utoipa (the
//!   `#[utoipa::path]` on each endpoint in `api`, their body and reply types);
//!   `GET /openapi.json` serves it and `authctl openapi` prints it ([`openapi_json`]);
//! - [`responses`]: the documented error responses the operations share;
//! - [`viewers`]: `GET /docs` (Swagger UI) and `GET /redoc` (ReDoc), vendored.
//!
//! Dependencies point one way: this file names the endpoints (to list them), the
//! endpoints name [`responses`], and `responses` names no endpoint.

pub mod responses;
pub mod viewers;

use std::sync::LazyLock;

use bytes::Bytes;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    Flow, HttpAuthScheme, HttpBuilder, OAuth2, Password, Scopes, SecurityRequirement,
    SecurityScheme,
};
use utoipa::openapi::{
    HeaderBuilder, ObjectBuilder, OpenApi as OpenApiDoc, Ref, RefOr, Response as ResponseDoc, Type,
};
use utoipa::{Modify, OpenApi};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::api;
use super::api::health::Health;
use super::api::metadata::AuthorizationServerMetadata;
use super::api::refresh::RefreshRequest;
use super::api::register::RegisterRequest;
use super::api::reply::UserResponse;
use super::api::revoke::RevocationForm;
use super::api::token::{LoginForm, RefreshGrant, TokenRequest};
use super::filters::get;
use super::problem::{Problem, from_error};
use crate::error::{Error, FieldError};
use crate::service::TokenPair;

/// The security scheme name that protected operations refer to.
pub const BEARER_SCHEME: &str = "bearer";

/// The OAuth2 password flow every Bearer-protected operation also accepts, so that
/// Swagger UI's Authorize logs in with a username and a password (as the original
/// FastAPI service's docs did).
pub const OAUTH2_SCHEME: &str = "oauth2";

/// The token endpoint, as the password flow names it (relative to the document).
const TOKEN_URL: &str = "/api/v1/auth/token";

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
        api::register::register,
        api::token::login,
        api::me::me,
        api::refresh::refresh,
        api::revoke::revoke,
        api::metadata::metadata,
        api::sessions::list,
        api::sessions::end,
        api::logout::logout,
        api::password::change_password,
        api::email::request_verification,
        api::email::verify,
        api::email::recover,
        api::email::reset,
        api::mfa::enrol,
        api::mfa::confirm,
        api::mfa::recovery_codes,
        api::mfa::disable,
        api::health::liveness,
        api::health::readiness,
        api::health::startup,
        api::jwks::jwks,
        api::introspect::introspect,
        crate::http::admin::users::list,
        crate::http::admin::users::create,
        crate::http::admin::users::read,
        crate::http::admin::users::update,
        crate::http::admin::users::delete,
        crate::http::admin::users::unlock,
        crate::http::admin::users::reset_link,
        crate::http::admin::sessions::list,
        crate::http::admin::sessions::revoke_all,
        crate::http::admin::audit::list,
        crate::http::oidc::discovery,
        crate::http::oidc::token::token,
        crate::http::oidc::token::userinfo,
        crate::http::oidc::token::userinfo_post,
        openapi_document,
        viewers::swagger_ui,
        viewers::redoc,
    ),
    components(
        schemas(
            RegisterRequest,
            LoginForm,
            TokenRequest,
            RefreshGrant,
            RefreshRequest,
            RevocationForm,
            AuthorizationServerMetadata,
            api::logout::LogoutRequest,
            api::password::PasswordChange,
            api::email::EmailRequest,
            api::email::VerifyRequest,
            api::email::ResetRequest,
            api::email::Accepted,
            api::token::MfaGrant,
            api::mfa::TotpEnrol,
            api::mfa::MfaCode,
            crate::service::mfa::Enrolment,
            crate::service::mfa::RecoveryCodes,
            crate::service::sessions::SessionView,
            crate::service::sessions::LogoutScope,
            UserResponse,
            api::introspect::IntrospectionForm,
            crate::service::introspect::Introspection,
            crate::service::admin::AdminUser,
            crate::service::admin::UserPage,
            crate::http::admin::sessions::AdminSession,
            TokenPair,
            Health,
            api::jwks::JwkSet,
            Problem,
            FieldError
        ),
        responses(
            responses::BadRequest,
            responses::BadCredentials,
            responses::Unauthorized,
            responses::InvalidRefreshToken,
            responses::Conflict,
            responses::LengthRequired,
            responses::PayloadTooLarge,
            responses::UnsupportedMediaType,
            responses::ValidationFailed,
            responses::TooManyRequests,
            responses::Unavailable,
            responses::MfaRequired,
            responses::Forbidden,
            responses::NotFound
        )
    ),
    modifiers(&BearerScheme, &ApiKeyScheme, &PasswordFlow, &RetryAfterHeader, &RequestIdHeader),
    tags(
        (name = "auth", description = "Registration, login, tokens and sessions."),
        (name = "email", description = "Email verification and password recovery (delivered through a durable outbox)."),
        (name = "mfa", description = "The caller's second factor: TOTP and recovery codes."),
        (name = "admin", description = "The admin API, for services holding an API key (`authctl apikey create`): users, their sessions, the audit log."),
        (name = "oidc", description = "The OpenID Connect provider (`oidc.enabled`): discovery, the token endpoint and userinfo. Its login, consent-free authorization and logout pages are HTML and not listed."),
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

/// Adds the API key scheme of the admin API and introspection: HTTP Bearer with an
/// `ak_…` key, so Swagger UI's Authorize takes a pasted key.
struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            crate::http::admin::API_KEY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("ak_…")
                    // `authctl apikey create`; each operation names the scope it needs.
                    .description(Some("API key ak_…"))
                    .build(),
            ),
        );
    }
}

/// Declares the OAuth2 password flow (`tokenUrl` = the token endpoint, which also
/// answers the refresh grant) and lets every operation that takes the Bearer scheme
/// take it as an alternative: the same access token, got by Swagger UI itself.
struct PasswordFlow;

impl Modify for PasswordFlow {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let flow = Password::with_refresh_url(TOKEN_URL, Scopes::new(), TOKEN_URL);
        components.add_security_scheme(
            OAUTH2_SCHEME,
            SecurityScheme::OAuth2(OAuth2::with_description(
                [Flow::Password(flow)],
                "The OAuth2 password grant at the token endpoint: log in with a username \
                 (or email) and a password; no client credentials.",
            )),
        );
        let bearer = SecurityRequirement::new(BEARER_SCHEME, Vec::<String>::new());
        let oauth2 = SecurityRequirement::new(OAUTH2_SCHEME, Vec::<String>::new());
        for op in operations_mut(openapi) {
            if let Some(security) = op.security.as_mut()
                && security.contains(&bearer)
                && !security.contains(&oauth2)
            {
                security.push(oauth2.clone());
            }
        }
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
        for op in operations_mut(openapi) {
            op.responses.responses.values_mut().for_each(add);
        }
    }
}

/// Every operation of the document, whatever its method.
fn operations_mut(openapi: &mut OpenApiDoc) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
            &mut item.query,
        ]
        .into_iter()
        .flatten()
    })
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

/// `GET /openapi.json`, `/docs[/…]`, `/redoc[/…]`; other methods 405.
pub fn routes() -> BoxedFilter<(Response,)> {
    let document = warp::path("openapi.json")
        .and(warp::path::end())
        .and(get(warp::any().map(openapi_document)))
        .boxed();
    document.or(viewers::routes()).unify().boxed()
}

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
        Ok(json) => viewers::asset(
            "application/json",
            viewers::NO_CACHE,
            Response::new(json.clone().into()),
        ),
        Err(e) => from_error(&Error::Internal(anyhow::anyhow!(
            "serializing the OpenAPI document: {e}"
        ))),
    }
}
