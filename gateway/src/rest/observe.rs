//! What the REST router adds to every request's telemetry once it knows the route template:
//! the server span's name and `http.route`, and `learnhub_http_server_duration_seconds`.
use std::time::Instant;

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use http::Method;
use learnhub_kit::{metrics::HTTP_SERVER_DURATION, server::record_http_route};

/// The `route` label of requests no route matched (their paths are the caller's to invent).
const UNMATCHED: &str = "unmatched";

/// Names the server span `METHOD /template` and records the request's duration by method,
/// route template and status. gRPC requests that reach the REST fallback (unknown methods) are
/// RPCs, counted by the server layer: they pass untouched.
pub async fn observe(request: Request, next: Next) -> Response {
    if super::is_grpc(request.headers()) {
        return next.run(request).await;
    }
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|matched| matched.as_str().to_owned());
    if let Some(route) = &route {
        record_http_route(&request, route);
        crate::access::note_route(route);
    }
    let started = Instant::now();
    let response = next.run(request).await;
    metrics::histogram!(
        HTTP_SERVER_DURATION,
        "method" => method,
        "route" => route.unwrap_or_else(|| UNMATCHED.to_owned()),
        "status" => response.status().as_str().to_owned(),
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// The method as a bounded label: the standard methods, `_OTHER` for anything a caller makes up
/// (OpenTelemetry's convention).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let made_up = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&made_up), "_OTHER");
    }
}
