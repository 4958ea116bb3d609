//! The one `recover`: turns every rejection — ours (raised in `filters`) and warp's
//! own — into a problem response, so no request ever gets an HTML page or an empty 500.

use std::convert::Infallible;

use warp::Rejection;
use warp::http::StatusCode;
use warp::http::header::{ALLOW, HeaderValue};
use warp::reply::Response;

use super::filters::{ApiReject, HttpReject, MAX_BODY_BYTES};
use super::problem::{from_error, problem, with_fault};

pub async fn handle(rejection: Rejection) -> Result<Response, Infallible> {
    if let Some(ApiReject(err)) = rejection.find::<ApiReject>() {
        return Ok(from_error(err));
    }
    if let Some(r) = rejection.find::<HttpReject>() {
        return Ok(match r {
            HttpReject::MethodNotAllowed(allow) => {
                let mut resp = problem(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("This endpoint accepts {}.", allow.join(", ")),
                    None,
                );
                if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
                    resp.headers_mut().insert(ALLOW, v);
                }
                resp
            }
            HttpReject::UnsupportedMediaType(expected) => problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("Content-Type must be {expected}."),
                None,
            ),
        });
    }
    let (status, detail) = if let Some(e) = rejection.find::<warp::cors::CorsForbidden>() {
        (StatusCode::FORBIDDEN, format!("CORS: {e}."))
    } else if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "No such resource.".to_string())
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request body exceeds {MAX_BODY_BYTES} bytes."),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        (
            StatusCode::LENGTH_REQUIRED,
            "A Content-Length header is required.".to_string(),
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "Method not allowed.".to_string(),
        )
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        (
            StatusCode::BAD_REQUEST,
            format!("Invalid header: {}.", e.name()),
        )
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        (
            StatusCode::BAD_REQUEST,
            format!("Missing header: {}.", e.name()),
        )
    } else if rejection
        .find::<warp::reject::UnsupportedMediaType>()
        .is_some()
    {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type.".to_string(),
        )
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        (StatusCode::BAD_REQUEST, "Invalid query string.".to_string())
    } else {
        return Ok(with_fault(
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "An internal error occurred.",
                None,
            ),
            format!("unhandled rejection: {rejection:?}"),
        ));
    };
    Ok(problem(status, &detail, None))
}
