//! enrollment-svc's one error type and its mapping to gRPC status codes.
//!
//! Use `Error::invalid(field, ..)` for bad input, `NotFound` / `AlreadyExists` /
//! `FailedPrecondition` for domain outcomes, `Unavailable` when catalog-svc cannot be reached;
//! database and pool errors convert with `?`.
use diesel::result::{DatabaseErrorKind, Error as DieselError};
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
    /// A service this one depends on (catalog-svc) did not answer.
    #[error("{0}")]
    Unavailable(String),
    /// A dependency answered something this service cannot use (logged, never shown).
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Db(#[from] DbError),
    /// A failure already mapped to its gRPC status: a load shared by several callers through
    /// the cache's single flight hands each of them the leader's outcome.
    #[error("{0}")]
    Status(Status),
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

impl From<DieselError> for Error {
    fn from(err: DieselError) -> Self {
        Self::Db(DbError::Query(err))
    }
}

/// True for a unique-constraint violation (an email that is taken).
pub fn is_unique_violation(err: &DieselError) -> bool {
    matches!(
        err,
        DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// True for a foreign-key violation (a row naming a user that does not exist).
pub fn is_foreign_key_violation(err: &DieselError) -> bool {
    matches!(
        err,
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
    )
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        match err {
            Error::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
            Error::NotFound(_) => Status::not_found(err.to_string()),
            Error::AlreadyExists(msg) => Status::already_exists(msg),
            Error::FailedPrecondition(msg) => Status::failed_precondition(msg),
            Error::Unavailable(msg) => {
                tracing::warn!(error = %msg, "dependency unavailable");
                Status::unavailable(msg)
            }
            Error::Internal(msg) => {
                tracing::error!(error = %msg, "unexpected answer from a dependency");
                Status::internal("internal error")
            }
            Error::Db(db) if db.is_unavailable() => {
                tracing::warn!(error = %db, "database unavailable");
                Status::unavailable("enrollment database unavailable")
            }
            Error::Db(db) => {
                tracing::error!(error = %db, "database error");
                Status::internal("internal error")
            }
            Error::Status(status) => status,
        }
    }
}
