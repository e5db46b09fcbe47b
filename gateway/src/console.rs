//! The admin console: a page for people (`GET /admin`) over the admin REST routes — cache
//! statistics with a live chart, invalidation, database statistics, draft courses. Its files
//! (`gateway/console/`) are compiled into the binary, so `cargo run --release` needs no Node
//! toolchain; the chart library (uPlot) is vendored with its licence (`console/vendor/`).
//!
//! The page itself is public (it holds no data); every number and action comes from the admin
//! routes, with the bearer token the person pastes (kept in sessionStorage, never a cookie, so no
//! other site can ride it). It runs under its own strict Content-Security-Policy: scripts,
//! styles and fetches from this origin only, nothing inline.
use axum::{
    extract::Path,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};

use crate::error::ErrorBody;

/// The console's policy: its own files and its own origin's API, nothing inline, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Every file of the console: (path under `/admin/assets/`, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/app.css"),
    ),
    (
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../console/vendor/uPlot.iife.min.js"),
    ),
    (
        "uPlot.min.css",
        "text/css; charset=utf-8",
        include_bytes!("../console/vendor/uPlot.min.css"),
    ),
];

const INDEX: &[u8] = include_bytes!("../console/index.html");

/// `GET /admin`: the page.
pub async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX)
}

/// `GET /admin/assets/{file}`: one of [`ASSETS`], or a JSON 404.
pub async fn asset(Path(path): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == path) {
        Some((_, content_type, bytes)) => file(content_type, bytes),
        None => {
            let body = ErrorBody {
                code: "not_found",
                message: format!("no console file {path:?}"),
            };
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
    }
}

fn file(content_type: &'static str, bytes: &'static [u8]) -> Response {
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    // The files change with the binary: browsers revalidate rather than keep an old one.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The bytes a browser fetches for the page: the page and every file.
#[cfg(test)]
fn page_weight() -> usize {
    INDEX.len()
        + ASSETS
            .iter()
            .map(|(_, _, bytes)| bytes.len())
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_under_its_weight_budget_and_names_only_served_files() {
        assert!(page_weight() < 150 * 1024, "{} bytes", page_weight());
        let index = String::from_utf8_lossy(INDEX);
        for reference in index.split("/admin/assets/").skip(1) {
            let name: String = reference
                .chars()
                .take_while(|c| !matches!(c, '"' | '\'' | ' ' | '>'))
                .collect();
            assert!(
                ASSETS.iter().any(|(served, _, _)| *served == name),
                "index.html names {name:?}, which is not served"
            );
        }
        // No inline script or style: the policy would block it.
        assert!(!index.contains("<script>"), "inline script");
        assert!(!index.contains(" style="), "inline style");
        for handler in [
            "onclick=",
            "onload=",
            "onsubmit=",
            "onchange=",
            "oninput=",
            "onkeydown=",
        ] {
            assert!(!index.contains(handler), "inline event handler {handler}");
        }
    }
}
