//! What the OAuth2 endpoints (`/token`, `/refresh`, `/revoke`) share: every error they
//! answer — their own and their filters' refusals (415, 413, 429, …) — is a problem
//! with RFC 6749 §5.2's `error` member, and none is cached.

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::reply::respond;
use crate::http::problem::with_oauth_error;
use crate::http::rejection;

/// `route` (already past its path, so that its refusals are its own, not another
/// route's 404) with its refusals answered here as OAuth2 errors.
pub fn endpoint(route: BoxedFilter<(Response,)>) -> BoxedFilter<(Response,)> {
    route
        .recover(rejection::handle)
        .unify()
        .map(|resp: Response| respond(Ok(with_oauth_error(resp, None))))
        .boxed()
}
