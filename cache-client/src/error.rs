//! The client's error type. get_or_load never returns it: on any cache failure it loads instead.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    #[error("invalid cache-svc address `{addr}`: {reason}")]
    InvalidAddress { addr: String, reason: String },
    #[error("cache-svc call timed out")]
    Timeout,
    #[error("cache-svc: {0}")]
    Status(#[from] tonic::Status),
}

impl CacheError {
    /// Whether the failure says cache-svc (or the path to it) is unhealthy, as opposed to a
    /// request it refused: only those open the circuit breaker.
    pub fn is_outage(&self) -> bool {
        match self {
            Self::InvalidAddress { .. } => false,
            Self::Timeout => true,
            Self::Status(status) => !matches!(
                status.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::NotFound
                    | tonic::Code::PermissionDenied
                    | tonic::Code::Unauthenticated
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::OutOfRange
                    | tonic::Code::AlreadyExists
            ),
        }
    }
}
