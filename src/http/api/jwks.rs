//! `GET /.well-known/jwks.json` (SPEC §9): the public keys that verify access tokens
//! now, for resource servers that check tokens themselves. Never an HMAC key: with
//! HS* the set is empty. Cacheable for five minutes, which is why a rotated-out key
//! stays published until every token it signed has expired.

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::http::header::{CACHE_CONTROL, HeaderValue};
use warp::reply::Response;

use super::reply::json;
use crate::http::docs::responses::Unavailable;
use crate::http::filters::{get, with_service};
use crate::http::state::AppState;
use crate::service::AuthService;

/// A JWK Set (RFC 7517 §5), as the OpenAPI document describes it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documentation only: the body is `tokens::signing::Jwks`.
pub struct JwkSet {
    /// Public keys: `kty`, `crv`, `x` (and `y` for P-256), `kid`, `alg`, `use: "sig"`.
    #[schema(value_type = Vec<Object>, example = json!([{"kty": "OKP", "crv": "Ed25519",
        "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"}]))]
    keys: Vec<serde_json::Value>,
}

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    warp::path!(".well-known" / "jwks.json")
        .and(get(with_service(state.clone()).map(jwks)))
        .boxed()
}

/// The public signing keys.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "auth",
    operation_id = "jwks",
    summary = "Public signing keys (JWKS)",
    description = "The public keys of every signing key that may still have valid access \
        tokens: the current key and rotated-out keys until their tokens expire. Verify an \
        access token by its `kid` header, pinning the key's `alg`, and check `iss` and `exp`. \
        Empty with an HMAC algorithm (HS*), whose key is a secret.",
    responses(
        (status = 200, description = "The JWK Set; `Cache-Control: public, max-age=300`.",
            body = JwkSet),
        (status = 503, response = Unavailable),
    ),
)]
pub fn jwks(service: Arc<AuthService>) -> Response {
    let mut resp = json(StatusCode::OK, &service.published_jwks());
    resp.headers_mut().insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    resp
}
