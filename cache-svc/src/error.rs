//! cache-svc's one error type and its mapping to gRPC status codes.
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input; `field` names the request field.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// A Redis call failed. Request paths never return it (they fall back to the in-process
    /// store); it reaches callers only from start-up and the benchmark.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A call before the first successful connect.
    #[error("redis: not connected")]
    NotConnected,
    /// Redis answered with something this store never writes.
    #[error("unexpected redis reply: {0}")]
    Unexpected(String),
    #[error("redis call timed out")]
    Timeout,
    #[error("invalid --redis-url: {0}")]
    RedisUrl(String),
    #[error(transparent)]
    Serve(#[from] learnhub_kit::server::ServeError),
    #[error("benchmark: {0}")]
    Bench(String),
    #[error(transparent)]
    Tls(#[from] learnhub_kit::tls::TlsError),
}

impl Error {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
            Error::Redis(_) | Error::NotConnected | Error::Timeout | Error::Unexpected(_) => {
                tracing::warn!(error = %err, "redis unavailable");
                Status::unavailable("cache store unavailable")
            }
            other => {
                tracing::error!(error = %other, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
