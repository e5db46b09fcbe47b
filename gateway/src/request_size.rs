//! Request lines and headers larger than the gateway reads: 414 and 431 with our JSON body (gRPC:
//! RESOURCE_EXHAUSTED), answered before routing. hyper has its own, larger limits that answer
//! first with an empty body (see the README's "HTTP surface" section).
use axum::{Json, extract::Request, middleware::Next, response::IntoResponse, response::Response};
use http::StatusCode;

use crate::error::ErrorBody;

/// Longest path and query accepted, in bytes.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes accepted (names and values), in bytes.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

pub async fn refuse_oversize(request: Request, next: Next) -> Response {
    let uri_bytes = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if uri_bytes > MAX_URI_BYTES {
        let message = format!("uri: {uri_bytes} bytes, at most {MAX_URI_BYTES}");
        return refuse(&request, StatusCode::URI_TOO_LONG, "uri_too_long", message);
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        let message = format!("headers: {header_bytes} bytes, at most {MAX_HEADER_BYTES}");
        return refuse(
            &request,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            message,
        );
    }
    next.run(request).await
}

fn refuse(request: &Request, status: StatusCode, code: &'static str, message: String) -> Response {
    if crate::rest::is_grpc(request.headers()) {
        return tonic::Status::resource_exhausted(message)
            .into_http::<axum::body::Body>()
            .into_response();
    }
    (status, Json(ErrorBody { code, message })).into_response()
}
