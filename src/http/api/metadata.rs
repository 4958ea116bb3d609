//! `GET /.well-known/oauth-authorization-server`: the RFC 8414 metadata document,
//! which tells OAuth2 clients and resource servers where the token, revocation and
//! JWKS endpoints are, and what they support — exactly what works, nothing more.
//!
//! Its URLs are absolute. When `auth.issuer` is an `http(s)://` URL (the service's
//! public URL, as RFC 8414 wants the issuer to be), they are built from it; otherwise
//! from the request: `Host` over plain HTTP (the server speaks no TLS), or
//! `X-Forwarded-Proto` / `X-Forwarded-Host` when the peer is a trusted proxy
//! (`rate_limit.trusted_proxies`) — from anyone else those headers would let a client
//! choose the URLs the document names. Of those, only the right-most value counts
//! (every header line in order, as if comma-joined, as for `X-Forwarded-For` in
//! `client_ip`): a proxy appends what it saw, so the values before it are whatever the
//! client sent.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::http::header::{CACHE_CONTROL, HOST, HeaderMap, HeaderValue, VARY};
use warp::http::uri::Authority;
use warp::reply::Response;

use super::reply::json;
use crate::error::Error;
use crate::http::filters::get;
use crate::http::listener;
use crate::http::problem::from_error;
use crate::http::state::{AppState, Site};
use crate::service::mfa::MFA_GRANT;

pub const PATH: &str = "/.well-known/oauth-authorization-server";
const TOKEN_PATH: &str = "/api/v1/auth/token";
const REVOKE_PATH: &str = "/api/v1/auth/revoke";
const JWKS_PATH: &str = "/.well-known/jwks.json";
const INTROSPECT_PATH: &str = "/api/v1/auth/introspect";

/// The RFC 8414 authorization server metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthorizationServerMetadata {
    /// The `iss` of every access token (`auth.issuer`).
    #[schema(example = "https://auth.example.com")]
    pub issuer: String,
    /// `POST`: the password, refresh and MFA grants.
    #[schema(example = "https://auth.example.com/api/v1/auth/token")]
    pub token_endpoint: String,
    /// The public keys that verify access tokens (empty with an HMAC algorithm).
    #[schema(example = "https://auth.example.com/.well-known/jwks.json")]
    pub jwks_uri: String,
    /// `POST`: RFC 7009 revocation.
    #[schema(example = "https://auth.example.com/api/v1/auth/revoke")]
    pub revocation_endpoint: String,
    /// `POST`: RFC 7662 introspection, with an API key holding `introspect`.
    #[schema(example = "https://auth.example.com/api/v1/auth/introspect")]
    pub introspection_endpoint: String,
    /// `["password", "refresh_token", "urn:authctl:grant-type:mfa"]`: the last is a
    /// login's second step (SPEC §14).
    pub grant_types_supported: [&'static str; 3],
    /// `["none"]`: clients do not authenticate (public clients).
    pub token_endpoint_auth_methods_supported: [&'static str; 1],
    /// `["none"]`, likewise.
    pub revocation_endpoint_auth_methods_supported: [&'static str; 1],
    /// `[]`: there is no authorization endpoint, so no response type.
    pub response_types_supported: [&'static str; 0],
}

impl AuthorizationServerMetadata {
    fn new(issuer: &str, base: &str) -> Self {
        AuthorizationServerMetadata {
            issuer: issuer.to_owned(),
            token_endpoint: format!("{base}{TOKEN_PATH}"),
            jwks_uri: format!("{base}{JWKS_PATH}"),
            revocation_endpoint: format!("{base}{REVOKE_PATH}"),
            introspection_endpoint: format!("{base}{INTROSPECT_PATH}"),
            grant_types_supported: ["password", "refresh_token", MFA_GRANT],
            token_endpoint_auth_methods_supported: ["none"],
            revocation_endpoint_auth_methods_supported: ["none"],
            response_types_supported: [],
        }
    }
}

/// What the request says about where it was sent. The forwarded values are the
/// right-most ones ([`rightmost`]); whether they count is [`base_url`]'s to decide.
struct Requested {
    peer: Option<SocketAddr>,
    host: Option<String>,
    forwarded_proto: Option<String>,
    forwarded_host: Option<String>,
}

impl Requested {
    fn new(peer: Option<SocketAddr>, headers: &HeaderMap) -> Self {
        Requested {
            peer,
            host: headers
                .get(HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            forwarded_proto: rightmost(headers, "x-forwarded-proto"),
            forwarded_host: rightmost(headers, "x-forwarded-host"),
        }
    }
}

/// The right-most value of header `name`, every line of it counting in order as if
/// comma-joined: the value the nearest proxy set. An empty or non-ASCII last value is
/// no value — never one further left, which a client may have chosen.
fn rightmost(headers: &HeaderMap, name: &str) -> Option<String> {
    let last = headers.get_all(name).iter().next_back()?;
    let value = last.to_str().ok()?.rsplit(',').next()?.trim();
    (!value.is_empty()).then(|| value.to_owned())
}

pub fn route(state: &Arc<AppState>) -> BoxedFilter<(Response,)> {
    let state = state.clone();
    warp::path!(".well-known" / "oauth-authorization-server")
        .and(get(listener::remote()
            .and(warp::header::headers_cloned())
            .map(move |peer, headers: HeaderMap| {
                metadata(&state.site, &Requested::new(peer, &headers))
            })))
        .boxed()
}

/// The base URL the document's endpoints hang from, and whether it came from the
/// request (so caches must key on the headers it came from).
fn base_url(site: &Site, req: &Requested) -> Result<(String, bool), Error> {
    let issuer = site.issuer.trim_end_matches('/');
    if issuer.starts_with("https://") || issuer.starts_with("http://") {
        return Ok((issuer.to_owned(), false));
    }
    let trusted = req
        .peer
        .is_some_and(|p| site.trusted_proxies.iter().any(|net| net.contains(&p.ip())));
    let (scheme, host) = if trusted {
        (
            req.forwarded_proto.clone().unwrap_or_else(|| "http".into()),
            req.forwarded_host.clone().or_else(|| req.host.clone()),
        )
    } else {
        ("http".into(), req.host.clone())
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(Error::MalformedBody(
            "X-Forwarded-Proto must be http or https".into(),
        ));
    }
    let host = host.ok_or_else(|| Error::MalformedBody("a Host header is required".into()))?;
    // Only a bare authority (host[:port]): nothing that would bend the URLs.
    let authority = Authority::from_str(&host)
        .ok()
        .filter(|a| !a.as_str().contains('@'))
        .ok_or_else(|| Error::MalformedBody("the Host header is not a valid host".into()))?;
    Ok((format!("{scheme}://{authority}"), true))
}

/// The metadata document.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "auth",
    operation_id = "authorization_server_metadata",
    summary = "OAuth 2.0 authorization server metadata (RFC 8414)",
    description = "Where the token, revocation and JWKS endpoints are and what they \
        support. URLs are built from `auth.issuer` when it is an `http(s)://` URL, else \
        from the request's `Host` (or, from a trusted proxy, `X-Forwarded-Proto` and \
        `X-Forwarded-Host`, their right-most value: the one the nearest proxy set).",
    responses(
        (status = 200, description = "The metadata document.", body = AuthorizationServerMetadata,
            headers(("Cache-Control" = String, description = "`public, max-age=300`"))),
        (status = 400, response = crate::http::docs::responses::BadRequest),
    ),
)]
fn metadata(site: &Site, requested: &Requested) -> Response {
    let (base, from_request) = match base_url(site, requested) {
        Ok(found) => found,
        Err(e) => return from_error(&e),
    };
    let mut resp = json(
        StatusCode::OK,
        &AuthorizationServerMetadata::new(&site.issuer, &base),
    );
    let headers = resp.headers_mut();
    // It changes only with the configuration: like the JWKS, cacheable for 5 minutes.
    headers.insert(
        CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    if from_request {
        headers.insert(
            VARY,
            HeaderValue::from_static("Host, X-Forwarded-Host, X-Forwarded-Proto"),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(issuer: &str, proxies: &[&str]) -> Site {
        Site {
            issuer: issuer.into(),
            trusted_proxies: proxies.iter().map(|p| p.parse().unwrap()).collect(),
        }
    }

    fn request(
        peer: &str,
        host: Option<&str>,
        proto: Option<&str>,
        fhost: Option<&str>,
    ) -> Requested {
        Requested {
            peer: Some(peer.parse().unwrap()),
            host: host.map(Into::into),
            forwarded_proto: proto.map(Into::into),
            forwarded_host: fhost.map(Into::into),
        }
    }

    #[test]
    fn an_issuer_url_is_the_base_whatever_the_request_says() {
        let s = site("https://auth.example.com/", &[]);
        let r = request("127.0.0.1:1", Some("evil.example"), None, None);
        assert_eq!(
            base_url(&s, &r).unwrap(),
            ("https://auth.example.com".into(), false)
        );
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let s = site("authctl", &["10.0.0.0/8"]);
        let via_proxy = request(
            "10.1.2.3:5000",
            Some("backend:8000"),
            Some("https"),
            Some("auth.example.com"),
        );
        assert_eq!(
            base_url(&s, &via_proxy).unwrap().0,
            "https://auth.example.com"
        );
        let direct = request(
            "192.0.2.7:5000",
            Some("localhost:8000"),
            Some("https"),
            Some("evil.example"),
        );
        assert_eq!(base_url(&s, &direct).unwrap().0, "http://localhost:8000");
    }

    #[test]
    fn the_rightmost_value_over_every_line_is_the_one_that_counts() {
        let headers = |lines: &[&str]| {
            let mut h = HeaderMap::new();
            for line in lines {
                h.append("x-forwarded-host", HeaderValue::from_str(line).unwrap());
            }
            h
        };
        let cases: &[(&[&str], Option<&str>)] = &[
            (&[], None),
            (&["auth.example.com"], Some("auth.example.com")),
            // The client's own value first, the proxy's appended.
            (
                &["evil.example, auth.example.com"],
                Some("auth.example.com"),
            ),
            (
                &["evil.example", "auth.example.com"],
                Some("auth.example.com"),
            ),
            (
                &["evil.example", "a.example, auth.example.com "],
                Some("auth.example.com"),
            ),
            // An empty last value is none: never the one before it.
            (&["evil.example,"], None),
            (&["evil.example", ""], None),
        ];
        for (lines, expected) in cases {
            assert_eq!(
                rightmost(&headers(lines), "x-forwarded-host").as_deref(),
                *expected,
                "{lines:?}"
            );
        }
        let mut h = headers(&["evil.example"]);
        h.append(
            "x-forwarded-host",
            HeaderValue::from_bytes(b"caf\xc3\xa9.example").unwrap(),
        );
        assert_eq!(rightmost(&h, "x-forwarded-host"), None, "non-ASCII");
    }

    #[test]
    fn a_missing_or_bent_host_is_refused() {
        let s = site("authctl", &[]);
        for host in [None, Some("user@evil.example"), Some("a/b"), Some("")] {
            let r = request("127.0.0.1:1", host, None, None);
            assert!(
                matches!(base_url(&s, &r), Err(Error::MalformedBody(_))),
                "{host:?}"
            );
        }
    }
}
