//! CORS for browsers calling REST and gRPC-Web from other origins: only the configured origins
//! (`CORS_ALLOWED_ORIGINS`) get `Access-Control-Allow-*` headers; with none configured the
//! gateway sends no CORS header at all and browsers keep the same-origin rule.
use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http::{HeaderValue, Method, StatusCode, header};

/// Methods the gateway serves (REST reads and writes, gRPC-Web POSTs).
const ALLOW_METHODS: &str = "GET, POST, PATCH, OPTIONS";
/// Request headers a browser may send: REST's and those of grpc-web clients.
const ALLOW_HEADERS: &str =
    "authorization, content-type, x-grpc-web, x-user-agent, grpc-timeout, x-request-id";
/// Response headers a browser script may read: gRPC-Web statuses and the request id.
const EXPOSE_HEADERS: &str = "grpc-status, grpc-message, grpc-status-details-bin, x-request-id";
/// How long a browser may cache a preflight answer (seconds).
const MAX_AGE: &str = "600";
const VARY: &str = "origin, access-control-request-method, access-control-request-headers";

/// The origins allowed to call cross-origin, exactly as browsers send them
/// (`https://app.example.com`, `http://localhost:3000`).
#[derive(Debug, Clone, Default)]
pub struct CorsPolicy {
    origins: Arc<[HeaderValue]>,
}

impl CorsPolicy {
    /// Origins from configuration; empty entries are ignored. `*`, paths and other schemes than
    /// http(s) are refused: an allow-list names sites.
    pub fn new(origins: &[String]) -> Result<Self, String> {
        let origins = origins
            .iter()
            .map(|origin| origin.trim())
            .filter(|origin| !origin.is_empty())
            .map(origin)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            origins: origins.into(),
        })
    }

    pub fn is_enabled(&self) -> bool {
        !self.origins.is_empty()
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.origins
            .iter()
            .any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
    }
}

fn origin(text: &str) -> Result<HeaderValue, String> {
    let refuse = |why: &str| Err(format!("{text:?}: {why}"));
    let Some((scheme, host)) = text.split_once("://") else {
        return refuse("an origin is scheme://host[:port]");
    };
    if !matches!(scheme, "http" | "https") {
        return refuse("the scheme must be http or https");
    }
    let authority_only = host.parse::<http::uri::Authority>().is_ok_and(|authority| {
        authority.as_str() == host && !host.contains('@') && !host.contains('*')
    });
    if !authority_only {
        return refuse("only a host and optional port may follow the scheme (no path, no *)");
    }
    HeaderValue::from_str(text).or_else(|_| refuse("not a header value"))
}

/// Answers preflights itself and adds the allow headers to the answers of allowed origins.
pub async fn apply(State(policy): State<CorsPolicy>, request: Request, next: Next) -> Response {
    if !policy.is_enabled() {
        return next.run(request).await;
    }
    let origin = request.headers().get(header::ORIGIN).cloned();
    let allowed = origin.filter(|origin| policy.allows(origin));
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        preflight_response(allowed.as_ref())
    } else {
        let mut response = next.run(request).await;
        if let Some(origin) = allowed {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
        response
    };
    // The answer depends on the origin: a shared cache must not give one origin's to another.
    response
        .headers_mut()
        .append(header::VARY, HeaderValue::from_static(VARY));
    response
}

/// 204; with the allow headers only when the origin is allowed (the browser then refuses).
fn preflight_response(allowed: Option<&HeaderValue>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    if let Some(origin) = allowed {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(MAX_AGE),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port_only() {
        let policy = CorsPolicy::new(&[
            "https://app.example.com".into(),
            " http://localhost:3000 ".into(),
            String::new(),
        ])
        .unwrap();
        assert!(policy.allows(&HeaderValue::from_static("https://app.example.com")));
        assert!(policy.allows(&HeaderValue::from_static("HTTPS://APP.example.com")));
        assert!(policy.allows(&HeaderValue::from_static("http://localhost:3000")));
        assert!(!policy.allows(&HeaderValue::from_static("http://app.example.com")));
        assert!(!policy.allows(&HeaderValue::from_static("https://app.example.com.evil")));
        for bad in [
            "*",
            "https://*.example.com",
            "app.example.com",
            "ftp://app.example.com",
            "https://app.example.com/",
            "https://app.example.com/path",
            "https://user@app.example.com",
        ] {
            assert!(CorsPolicy::new(&[bad.into()]).is_err(), "{bad}");
        }
        assert!(!CorsPolicy::new(&[]).unwrap().is_enabled());
    }
}
