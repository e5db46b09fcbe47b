//! The gateway's one error type, rendered as a gRPC status or a REST `{"code","message"}` body.
//!
//! Upstream statuses the caller can act on (bad input, not found, conflicts) pass through with
//! their message; a down or slow upstream is UNAVAILABLE; anything else is INTERNAL, logged here
//! and never shown to the caller.
use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use tonic::{Code, Status};

use crate::auth::AuthError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// A request body over the size the gateway reads: REST 413, gRPC RESOURCE_EXHAUSTED.
    #[error("{0}")]
    TooLarge(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    NotFound(String),
    /// An optional upstream whose address was not given.
    #[error("{0} is not configured")]
    NotConfigured(&'static str),
    #[error("{service} did not answer within {timeout_ms} ms")]
    Timeout {
        service: &'static str,
        timeout_ms: u128,
    },
    #[error("{service} answered {}: {}", .status.code(), .status.message())]
    Upstream {
        service: &'static str,
        status: Status,
    },
    /// Start-up: a flag that cannot work.
    #[error("invalid {flag}: {reason}")]
    Config { flag: &'static str, reason: String },
    #[error(transparent)]
    Serve(#[from] learnhub_kit::server::ServeError),
    /// Start-up: no usable certificate for the calls to the services.
    #[error(transparent)]
    Tls(#[from] learnhub_kit::tls::TlsError),
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    /// The status a caller sees. Internal causes are logged here, once.
    pub fn to_status(&self) -> Status {
        match self {
            Error::InvalidArgument(message) => Status::invalid_argument(message),
            Error::TooLarge(message) => Status::resource_exhausted(message),
            Error::Auth(err) if err.is_forbidden() => Status::permission_denied(err.to_string()),
            Error::Auth(cause @ (AuthError::Sign(_) | AuthError::EmptySecret)) => {
                tracing::error!(%cause, "token set-up failed");
                Status::internal("internal error")
            }
            Error::Auth(err) => Status::unauthenticated(err.to_string()),
            Error::NotFound(message) => Status::not_found(message),
            Error::NotConfigured(_) | Error::Timeout { .. } => {
                Status::unavailable(self.to_string())
            }
            Error::Upstream { service, status } => upstream_status(service, status),
            Error::Config { .. } | Error::Serve(_) | Error::Tls(_) => {
                tracing::error!(error = %self, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// What the caller sees of an upstream's answer (the cause was logged where the call failed).
fn upstream_status(service: &str, status: &Status) -> Status {
    match status.code() {
        code if passes_through(code) => Status::new(code, status.message()),
        // A refused connection is Unavailable; a tonic-side timeout surfaces as Cancelled.
        Code::Unavailable | Code::Cancelled => {
            Status::unavailable(format!("{service} is unavailable"))
        }
        _ => Status::internal("internal error"),
    }
}

/// Upstream codes that describe the caller's request and keep their message.
pub fn passes_through(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
    )
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        err.to_status()
    }
}

/// The REST name of a gRPC code (`invalid_argument`, `not_found`, ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The HTTP status for a gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A REST error body: `{"code": "not_found", "message": "..."}`.
#[derive(Debug, serde::Serialize)]
pub struct ErrorBody {
    pub code: &'static str,
    pub message: String,
}

/// Renders a gRPC status as a REST error response.
pub fn status_response(status: &Status) -> Response {
    let body = ErrorBody {
        code: code_name(status.code()),
        message: status.message().to_owned(),
    };
    let mut response = (http_status(status.code()), Json(body)).into_response();
    if status.code() == Code::Unauthenticated {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::TooLarge(message) = self {
            let body = ErrorBody {
                code: "payload_too_large",
                message,
            };
            return (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
        }
        status_response(&self.to_status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Role;

    fn upstream(code: Code, message: &str) -> Error {
        Error::Upstream {
            service: "catalog-svc",
            status: Status::new(code, message),
        }
    }

    #[test]
    fn caller_errors_pass_through_with_their_message() {
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
            Code::DeadlineExceeded,
        ] {
            let status = upstream(code, "title: must not be empty").to_status();
            assert_eq!(status.code(), code);
            assert_eq!(status.message(), "title: must not be empty");
        }
    }

    #[test]
    fn unreachable_or_slow_upstreams_are_unavailable() {
        for err in [
            upstream(Code::Unavailable, "tcp connect error: Connection refused"),
            upstream(Code::Cancelled, "Timeout expired"),
            Error::Timeout {
                service: "catalog-svc",
                timeout_ms: 2000,
            },
            Error::NotConfigured("enrollment-svc"),
        ] {
            let status = err.to_status();
            assert_eq!(status.code(), Code::Unavailable, "{err}");
            assert!(!status.message().contains("tcp"), "{}", status.message());
        }
        assert_eq!(
            Error::NotConfigured("enrollment-svc").to_status().message(),
            "enrollment-svc is not configured"
        );
    }

    #[test]
    fn unexpected_upstream_errors_are_internal_and_hidden() {
        for code in [
            Code::Internal,
            Code::Unknown,
            Code::Unimplemented,
            Code::DataLoss,
        ] {
            let status = upstream(code, "relation \"courses\" does not exist").to_status();
            assert_eq!(status.code(), Code::Internal);
            assert_eq!(status.message(), "internal error");
        }
    }

    #[test]
    fn auth_errors_are_401_or_403() {
        assert_eq!(
            Error::from(AuthError::Expired).to_status().code(),
            Code::Unauthenticated
        );
        assert_eq!(
            Error::from(AuthError::MissingToken).to_status().code(),
            Code::Unauthenticated
        );
        assert_eq!(
            Error::from(AuthError::Forbidden {
                needed: Role::Admin
            })
            .to_status()
            .code(),
            Code::PermissionDenied
        );
    }

    #[test]
    fn http_mapping() {
        let cases = [
            (Code::InvalidArgument, 400, "invalid_argument"),
            (Code::Unauthenticated, 401, "unauthenticated"),
            (Code::PermissionDenied, 403, "permission_denied"),
            (Code::NotFound, 404, "not_found"),
            (Code::AlreadyExists, 409, "already_exists"),
            (Code::FailedPrecondition, 409, "failed_precondition"),
            (Code::ResourceExhausted, 429, "resource_exhausted"),
            (Code::Unavailable, 503, "unavailable"),
            (Code::DeadlineExceeded, 504, "deadline_exceeded"),
            (Code::Internal, 500, "internal"),
            (Code::Unknown, 500, "unknown"),
        ];
        for (code, http, name) in cases {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
            assert_eq!(code_name(code), name);
        }
    }

    #[test]
    fn rest_body_is_json_code_and_message() {
        let response =
            Error::invalid("page_size: must be between 1 and 100, got 0").into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "application/json"
        );
        let response = Error::from(AuthError::MissingToken).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[http::header::WWW_AUTHENTICATE], "Bearer");
    }
}
