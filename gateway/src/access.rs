//! Request ids and the access log: every request to the gateway (REST, gRPC, gRPC-Web, probes)
//! gets an `x-request-id` (the caller's, if sane, else a new UUID), returned on the response, and
//! one `learnhub::access` line when its response ends: method, route, status, duration, caller,
//! request id.
//!
//! What only the handlers learn (the route template, who the caller is) reaches the line through
//! the request's [`AccessEntry`], a task-local the handlers fill in ([`note_route`],
//! [`note_caller`]) and the audit events read ([`request_id`]).
use std::{
    pin::Pin,
    sync::{Arc, OnceLock},
    task::{Context, Poll},
    time::Instant,
};

use axum::{body::Body, extract::Request, middleware::Next, response::Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body::Frame;

use crate::auth::Caller;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The `tracing` target of access lines.
pub const TARGET: &str = "learnhub::access";
/// Longest caller-sent request id kept; a longer one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;
/// The caller of a request that named none (or whose handler did not get as far).
const ANONYMOUS: &str = "anonymous";
/// The route of a REST request no route matched (its path is the caller's to invent).
const UNMATCHED: &str = "unmatched";

tokio::task_local! {
    static ENTRY: Arc<AccessEntry>;
}

/// What the access line of one request says beyond its method and status.
#[derive(Debug)]
pub struct AccessEntry {
    pub request_id: HeaderValue,
    route: OnceLock<String>,
    caller: OnceLock<String>,
}

/// Records the route template the router matched (REST), for the request being served.
pub fn note_route(route: &str) {
    let _ = ENTRY.try_with(|entry| entry.route.set(route.to_owned()));
}

/// Records who the request's caller is, once authenticated.
pub fn note_caller(caller: &Caller) {
    let _ = ENTRY.try_with(|entry| entry.caller.set(caller.subject.clone()));
}

/// The id of the request being served (`-` outside one, e.g. in a unit test).
pub fn request_id() -> String {
    ENTRY
        .try_with(|entry| entry.request_id.to_str().unwrap_or_default().to_owned())
        .unwrap_or_else(|_| "-".to_owned())
}

/// The caller's `x-request-id` when it is one value of 1 to 128 visible ASCII characters, so it
/// can go into logs and headers as it is; otherwise a new random UUID.
pub fn request_id_of(headers: &HeaderMap) -> HeaderValue {
    let mut sent = headers.get_all(&X_REQUEST_ID).iter();
    match (sent.next(), sent.next()) {
        (Some(value), None) if is_sane(value.as_bytes()) => value.clone(),
        _ => new_request_id(),
    }
}

fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic)
}

fn new_request_id() -> HeaderValue {
    let uuid = uuid::Builder::from_random_bytes(fastrand::u128(..).to_be_bytes()).into_uuid();
    let mut text = [0; uuid::fmt::Hyphenated::LENGTH];
    HeaderValue::from_str(uuid.hyphenated().encode_lower(&mut text))
        .unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The outermost layer of the gateway's routes: request id in, request id out, access line at
/// the end of the response body.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = request_id_of(request.headers());
    request
        .headers_mut()
        .insert(X_REQUEST_ID, request_id.clone());
    let grpc = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"));
    let method = request.method().clone();
    // An RPC's route is its method's path; a REST request's, the template its router notes.
    let rpc_path = grpc.then(|| request.uri().path().to_owned());
    let entry = Arc::new(AccessEntry {
        request_id: request_id.clone(),
        route: OnceLock::new(),
        caller: OnceLock::new(),
    });
    let mut response = ENTRY.scope(entry.clone(), next.run(request)).await;
    response.headers_mut().insert(X_REQUEST_ID, request_id);
    let grpc_status = response.headers().get("grpc-status").cloned();
    let line = AccessLine {
        method,
        rpc_path,
        status: response.status().as_u16(),
        grpc_status,
        entry,
        started,
    };
    response.map(|inner| {
        Body::new(AccessBody {
            inner,
            line: Some(line),
        })
    })
}

/// One access line, written when the response body ends or is dropped.
struct AccessLine {
    method: Method,
    rpc_path: Option<String>,
    status: u16,
    /// From the response head (an error answered at once) or, later, from the trailers.
    grpc_status: Option<HeaderValue>,
    entry: Arc<AccessEntry>,
    started: Instant,
}

impl AccessLine {
    fn write(self) {
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let caller = self.entry.caller.get().map_or(ANONYMOUS, String::as_str);
        let request_id = self.entry.request_id.to_str().unwrap_or_default();
        match &self.rpc_path {
            Some(route) => {
                // A unary call that ends without trailers never got an answer.
                let grpc_status = self
                    .grpc_status
                    .as_ref()
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("none");
                tracing::info!(
                    target: TARGET,
                    method = %self.method,
                    route,
                    status = self.status,
                    grpc_status,
                    duration_ms,
                    caller,
                    request_id,
                    "request"
                );
            }
            None => {
                let route = self.entry.route.get().map_or(UNMATCHED, String::as_str);
                tracing::info!(
                    target: TARGET,
                    method = %self.method,
                    route,
                    status = self.status,
                    duration_ms,
                    caller,
                    request_id,
                    "request"
                );
            }
        }
    }
}

/// A response body that writes its request's access line when it ends.
struct AccessBody {
    inner: Body,
    line: Option<AccessLine>,
}

impl http_body::Body for AccessBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                let status = match (frame.trailers_ref(), frame.data_ref()) {
                    (Some(trailers), _) => trailers.get("grpc-status").cloned(),
                    (None, Some(data)) => grpc_web_status(data),
                    (None, None) => None,
                };
                if let (Some(status), Some(line)) = (status, self.line.as_mut()) {
                    line.grpc_status = Some(status);
                }
            }
            Poll::Ready(None | Some(Err(_))) => {
                if let Some(line) = self.line.take() {
                    line.write();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The `grpc-status` of a binary gRPC-Web trailers frame (flag `0x80`, then `name:value` lines),
/// which tonic-web writes as a chunk of its own.
fn grpc_web_status(chunk: &[u8]) -> Option<HeaderValue> {
    let (&0x80, rest) = chunk.split_first()? else {
        return None;
    };
    let text = std::str::from_utf8(rest.get(4..)?).ok()?;
    text.split("\r\n")
        .find_map(|line| line.strip_prefix("grpc-status:"))
        .and_then(|code| HeaderValue::from_str(code.trim()).ok())
}

impl Drop for AccessBody {
    /// A body the server never read to its end (HEAD, a client gone, an empty body) still logs.
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            line.write();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_REQUEST_ID, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn grpc_web_trailers_frames_give_their_status() {
        let trailers = b"grpc-status:5\r\ngrpc-message:no%20course\r\n";
        let mut chunk = vec![0x80];
        chunk.extend((trailers.len() as u32).to_be_bytes());
        chunk.extend(trailers);
        assert_eq!(grpc_web_status(&chunk).unwrap(), "5");
        assert_eq!(grpc_web_status(&[0, 0, 0, 0, 1, 8]), None);
        assert_eq!(grpc_web_status(&[0x80]), None);
    }

    #[test]
    fn a_sane_request_id_is_kept_and_anything_else_replaced() {
        assert_eq!(request_id_of(&headers(&["abc-123_X.y"])), "abc-123_X.y");
        let max = "a".repeat(MAX_REQUEST_ID_LEN);
        assert_eq!(request_id_of(&headers(&[&max])), max.as_str());
        for bad in [
            vec![""],
            vec!["has space"],
            vec![&*"a".repeat(MAX_REQUEST_ID_LEN + 1)],
            vec!["one", "two"],
            vec![],
        ] {
            let id = request_id_of(&headers(&bad));
            let id = id.to_str().unwrap();
            assert_eq!(id.len(), 36, "{bad:?} -> {id}");
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        }
        let mut non_ascii = HeaderMap::new();
        non_ascii.insert(
            X_REQUEST_ID,
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
        );
        assert_ne!(request_id_of(&non_ascii), "caf\u{e9}");
        assert_ne!(
            request_id_of(&HeaderMap::new()),
            request_id_of(&HeaderMap::new())
        );
    }
}
