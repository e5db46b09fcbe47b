//! catalog-svc's one error type and its mapping to gRPC status codes.
//!
//! Use `Error::invalid(field, ..)` for bad input, `NotFound` / `AlreadyExists` /
//! `FailedPrecondition` for domain outcomes; database and pool errors convert with `?`.
use learnhub_kit::DbError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(err))
    }
}

/// True for a unique-constraint violation (duplicate slug, taken lesson position).
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    matches!(
        err,
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)
    )
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
            Error::NotFound(_) => Status::not_found(err.to_string()),
            Error::AlreadyExists(msg) => Status::already_exists(msg),
            Error::FailedPrecondition(msg) => Status::failed_precondition(msg),
            Error::Db(db) if db.is_unavailable() => {
                tracing::warn!(error = %db, "database unavailable");
                Status::unavailable("catalog database unavailable")
            }
            Error::Db(db) => {
                tracing::error!(error = %db, "database error");
                Status::internal("internal error")
            }
        }
    }
}
