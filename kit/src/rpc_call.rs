//! One gRPC call from its start to its status, as a server or a client sees it: the status code
//! is read from the response headers (a trailers-only answer) or from the trailers frame at the
//! end of the body, then recorded once on the call's span and in its duration histogram.
use std::{
    error::Error,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use http_body::{Body, Frame, SizeHint};
use tonic::Code;

/// Server-side RPC durations (`rpc_service`, `rpc_method`, `grpc_code`).
pub const RPC_SERVER_DURATION: &str = "learnhub_rpc_server_duration_seconds";
/// Client-side RPC durations (`peer`, `rpc_service`, `rpc_method`, `grpc_code`).
pub const RPC_CLIENT_DURATION: &str = "learnhub_rpc_client_duration_seconds";
/// The `rpc_service` and `rpc_method` label of calls to methods nobody serves (UNIMPLEMENTED):
/// a caller must not be able to grow the label set with made-up paths.
pub const OTHER: &str = "_OTHER";

/// Which end of the call is recording it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Server,
    /// `peer` names the callee (`catalog-svc`).
    Client {
        peer: &'static str,
    },
}

/// `/package.Service/Method` split into `package.Service` and `Method`.
pub(crate) fn rpc_names(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    (!service.is_empty() && !method.is_empty() && !method.contains('/'))
        .then_some((service, method))
}

/// One RPC in flight. Finishing is idempotent: the first status seen wins (a gRPC-Web call is
/// seen both inside the gRPC-Web translation, where the trailers are real trailers, and outside
/// it, where they are bytes of the body).
#[derive(Debug)]
pub(crate) struct RpcCall {
    span: tracing::Span,
    started: Instant,
    side: Side,
    service: String,
    method: String,
    finished: AtomicBool,
}

impl RpcCall {
    pub(crate) fn start(span: tracing::Span, side: Side, path: &str) -> Arc<Self> {
        let (service, method) = rpc_names(path).unwrap_or((OTHER, OTHER));
        Arc::new(Self {
            span,
            started: Instant::now(),
            side,
            service: service.to_owned(),
            method: method.to_owned(),
            finished: AtomicBool::new(false),
        })
    }

    /// Records `code` on the span and the call's duration in its histogram, once.
    pub(crate) fn finish(&self, code: Code) {
        if self.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        self.span
            .record("rpc.grpc.status_code", i64::from(i32::from(code)));
        if is_error(self.side, code) {
            self.span.record("otel.status_code", "error");
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let (service, method) = if code == Code::Unimplemented {
            (OTHER.to_owned(), OTHER.to_owned())
        } else {
            (self.service.clone(), self.method.clone())
        };
        match self.side {
            Side::Server => metrics::histogram!(
                RPC_SERVER_DURATION,
                "rpc_service" => service,
                "rpc_method" => method,
                "grpc_code" => code_name(code),
            )
            .record(seconds),
            Side::Client { peer } => metrics::histogram!(
                RPC_CLIENT_DURATION,
                "peer" => peer,
                "rpc_service" => service,
                "rpc_method" => method,
                "grpc_code" => code_name(code),
            )
            .record(seconds),
        }
    }

    /// Finishes the call from the response head when it already says how the call ended: a
    /// trailers-only answer (`grpc-status` among the headers) or an HTTP error that never
    /// reached a gRPC service (mapped as the gRPC spec maps HTTP statuses). `false` when the
    /// status is still to come, in the trailers.
    pub(crate) fn finish_from_head<B>(&self, response: &http::Response<B>) -> bool {
        if let Some(status) = response.headers().get("grpc-status") {
            self.finish(Code::from_bytes(status.as_bytes()));
            return true;
        }
        if response.status() != http::StatusCode::OK {
            self.finish(code_of_http_status(response.status()));
            return true;
        }
        false
    }
}

/// Whether `code` makes the span an error (OpenTelemetry's gRPC conventions: for a server only
/// the codes that mean the server failed, for a client every code but OK).
fn is_error(side: Side, code: Code) -> bool {
    match side {
        Side::Client { .. } => code != Code::Ok,
        Side::Server => matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ),
    }
}

/// The code's name as the gRPC spec writes it (`OK`, `NOT_FOUND`): the `grpc_code` label.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// gRPC's mapping of an HTTP status that came without a `grpc-status`
/// (doc/http-grpc-status-mapping.md).
fn code_of_http_status(status: http::StatusCode) -> Code {
    match status.as_u16() {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502..=504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

/// The code of a failed call: the `Status` somewhere in the error's chain, else UNAVAILABLE
/// (what is left is the transport failing: no connection, a reset stream).
pub(crate) fn code_of_error(err: &(dyn Error + 'static)) -> Code {
    status_of_error(err).map_or(Code::Unavailable, tonic::Status::code)
}

/// The `Status` somewhere in the error's chain (tonic answers the caller with it), if any.
pub(crate) fn status_of_error<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a tonic::Status> {
    let mut source = Some(err);
    while let Some(err) = source {
        if let Some(status) = err.downcast_ref::<tonic::Status>() {
            return Some(status);
        }
        source = err.source();
    }
    None
}

/// A response body that finishes its call when the trailers go by: with their `grpc-status`,
/// UNKNOWN when the body ends without one, CANCELLED when it is dropped before its end (the
/// peer went away). Polled inside the call's span. Without a call it only passes frames on.
#[derive(Debug)]
pub struct ObservedBody<B> {
    inner: B,
    call: Option<Arc<RpcCall>>,
}

impl<B> ObservedBody<B> {
    pub(crate) fn new(inner: B, call: Option<Arc<RpcCall>>) -> Self {
        Self { inner, call }
    }
}

impl<B> Body for ObservedBody<B>
where
    B: Body + Unpin,
    B::Error: Error + 'static,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(call) = &this.call else {
            return Pin::new(&mut this.inner).poll_frame(cx);
        };
        let polled = call
            .span
            .in_scope(|| Pin::new(&mut this.inner).poll_frame(cx));
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = trailers
                        .get("grpc-status")
                        .map_or(Code::Unknown, |status| Code::from_bytes(status.as_bytes()));
                    call.finish(code);
                }
            }
            Poll::Ready(Some(Err(err))) => call.finish(code_of_error(err)),
            Poll::Ready(None) => call.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for ObservedBody<B> {
    fn drop(&mut self) {
        if let Some(call) = &self.call {
            call.finish(Code::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_path_names_its_service_and_method() {
        assert_eq!(
            rpc_names("/learnhub.catalog.v1.CatalogService/ListCourses"),
            Some(("learnhub.catalog.v1.CatalogService", "ListCourses"))
        );
        for bad in [
            "",
            "/",
            "/Service",
            "/Service/",
            "//Method",
            "/a/b/c",
            "no-slash/M",
        ] {
            assert_eq!(rpc_names(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_statuses_without_grpc_status_map_as_the_spec_says() {
        assert_eq!(
            code_of_http_status(http::StatusCode::BAD_REQUEST),
            Code::Internal
        );
        assert_eq!(
            code_of_http_status(http::StatusCode::NOT_FOUND),
            Code::Unimplemented
        );
        assert_eq!(
            code_of_http_status(http::StatusCode::SERVICE_UNAVAILABLE),
            Code::Unavailable
        );
        assert_eq!(
            code_of_http_status(http::StatusCode::IM_A_TEAPOT),
            Code::Unknown
        );
    }

    #[test]
    fn a_status_in_an_error_chain_gives_its_code() {
        let status = tonic::Status::not_found("nope");
        assert_eq!(code_of_error(&status), Code::NotFound);
        let io = std::io::Error::other("reset");
        assert_eq!(code_of_error(&io), Code::Unavailable);
    }

    #[test]
    fn only_server_failures_are_server_span_errors() {
        assert!(!is_error(Side::Server, Code::NotFound));
        assert!(!is_error(Side::Server, Code::InvalidArgument));
        assert!(is_error(Side::Server, Code::Internal));
        assert!(is_error(Side::Client { peer: "x" }, Code::NotFound));
        assert!(!is_error(Side::Client { peer: "x" }, Code::Ok));
    }
}
