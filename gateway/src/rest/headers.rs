//! The headers every REST answer carries: no MIME sniffing, no referrer, no framing, a policy
//! that lets a JSON answer load nothing, no storing of answers to authenticated requests, and
//! HSTS when configured (only where browsers reach the gateway over HTTPS).
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};
use http::{HeaderValue, header};

/// A JSON API has nothing to load or embed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; frame-ancestors 'none'";

/// The REST router's response headers; only HSTS is configurable.
#[derive(Debug, Clone, Default)]
pub struct SecurityHeaders {
    /// `Strict-Transport-Security`, when `--hsts-max-age-secs` is set.
    hsts: Option<HeaderValue>,
}

impl SecurityHeaders {
    pub fn new(hsts_max_age_secs: Option<u64>) -> Self {
        Self {
            hsts: hsts_max_age_secs.map(|secs| {
                HeaderValue::from_str(&format!("max-age={secs}"))
                    .unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
            }),
        }
    }
}

pub async fn apply(
    State(security): State<SecurityHeaders>,
    request: Request,
    next: Next,
) -> Response {
    // Answers to a request with credentials are the caller's own (enrollment state, admin
    // views, or a 401 about their token): no cache may keep them.
    let personal = request.headers().contains_key(header::AUTHORIZATION);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A page that sets its own policy (the admin console) keeps it; everything else is JSON.
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The same URL answers differently with a token (the catalog adds the caller's enrollments).
    headers.append(header::VARY, HeaderValue::from_static("authorization"));
    if personal {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(hsts) = &security.hsts {
        headers.insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    response
}
