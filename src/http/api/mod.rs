//! The REST API, one file per endpoint. Each holds its route filter (built from
//! [`filters`](super::filters)), its body type (the serde target and the OpenAPI
//! schema at once), its handler and the handler's `#[utoipa::path]`:
//!
//! - [`register`]: `POST /api/v1/auth/register`;
//! - [`token`]: `POST /api/v1/auth/token` (the OAuth2 token endpoint: the password
//!   and refresh grants);
//! - [`me`]: `GET /api/v1/auth/me`;
//! - [`refresh`]: `POST /api/v1/auth/refresh` (and the body `/revoke` shares);
//! - [`revoke`]: `POST /api/v1/auth/revoke` (JSON, or RFC 7009's form);
//! - [`metadata`]: `GET /.well-known/oauth-authorization-server` (RFC 8414);
//! - [`oauth`]: the RFC 6749 `error` member on the OAuth2 endpoints' errors;
//! - [`sessions`]: `GET /api/v1/auth/sessions`, `DELETE /api/v1/auth/sessions/{id}`;
//! - [`logout`]: `POST /api/v1/auth/logout` (Bearer, with a scope);
//! - [`password`]: `POST /api/v1/auth/password` (Bearer);
//! - [`mfa`]: `/api/v1/auth/mfa/…` (Bearer): TOTP enrolment, confirmation, recovery
//!   codes, disable;
//! - [`health`]: `GET /health/{liveness,readiness,startup}`;
//! - [`jwks`]: `GET /.well-known/jwks.json`;
//! - [`introspect`]: `POST /api/v1/auth/introspect` (RFC 7662, with an API key);
//! - [`reply`]: what they answer with (JSON, `no-store`, the public user).
//!
//! The admin API (`/api/v1/admin/…`) is its own module, `http/admin/`.
//!
//! A new endpoint is a new file here, a line in [`routes`], and its handler (and body
//! type) named in the document's `paths(...)` (and `schemas(...)`) in `docs`.

pub mod email;
pub mod health;
pub mod introspect;
pub mod jwks;
pub mod logout;
pub mod me;
pub mod metadata;
pub mod mfa;
pub mod oauth;
pub mod password;
pub mod refresh;
pub mod register;
pub mod reply;
pub mod revoke;
pub mod sessions;
pub mod token;

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::state::AppState;

/// Every endpoint of the API (the docs pages are `docs::routes`).
pub fn routes(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    register::route(state)
        .or(token::route(state))
        .unify()
        .or(me::route(state))
        .unify()
        .or(refresh::route(state))
        .unify()
        .or(revoke::route(state))
        .unify()
        .or(metadata::route(state))
        .unify()
        .or(sessions::route(state))
        .unify()
        .or(logout::route(state))
        .unify()
        .or(password::route(state))
        .unify()
        .or(mfa::route(state))
        .unify()
        .or(health::routes(state))
        .unify()
        .or(jwks::route(state))
        .unify()
        .or(email::routes(state))
        .unify()
        .or(introspect::route(state))
        .unify()
        .or(crate::http::admin::routes(state))
        .unify()
        .boxed()
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;
    use utoipa::openapi::{RefOr, Schema};

    use super::refresh::RefreshRequest;
    use super::register::RegisterRequest;
    use super::revoke::RevocationForm;
    use super::token::{LoginForm, MfaGrant, RefreshGrant};
    use crate::http::filters::Body;

    /// The names a body's `FIELDS` list, in order, against the fields its schema
    /// documents: all required, in declaration order.
    fn assert_listed_as_documented<T: Body + PartialSchema>() {
        let listed: Vec<String> = T::FIELDS.iter().map(|f| f.name.to_owned()).collect();
        let RefOr::T(Schema::Object(object)) = T::schema() else {
            panic!("a body is an object schema");
        };
        assert_eq!(listed, object.required);
        let mut sorted = listed.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            object.properties.keys().cloned().collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_body_lists_exactly_the_fields_its_schema_documents() {
        assert_listed_as_documented::<RegisterRequest>();
        assert_listed_as_documented::<LoginForm>();
        assert_listed_as_documented::<RefreshRequest>();
        assert_listed_as_documented::<RefreshGrant>();
        assert_listed_as_documented::<RevocationForm>();
        assert_listed_as_documented::<super::password::PasswordChange>();
        assert_listed_as_documented::<MfaGrant>();
        assert_listed_as_documented::<super::mfa::TotpEnrol>();
        assert_listed_as_documented::<super::mfa::MfaCode>();
    }
}
