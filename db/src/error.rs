//! What can go wrong reaching a database, and how to tell "away" from "refused".

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    BadUrl(String),
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("migrations failed: {0}")]
    Migration(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

impl DbError {
    /// True when the database could not be reached (as opposed to a query it refused).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Query(err) => query_error_is_unavailable(err),
            _ => false,
        }
    }
}

/// A connection lost mid-query is the database being away, not a bad query; so is a server
/// that ends the session because it is shutting down, crashing or not yet up (SQLSTATE class 57:
/// its transaction did not commit).
pub fn query_error_is_unavailable(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match err {
        Error::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | Error::BrokenTransactionManager => true,
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            is_server_going_away(info.message())
        }
        _ => false,
    }
}

/// Postgres's messages for SQLSTATE 57P01–57P03. diesel-async reports these as `Unknown` with
/// the server's message and no SQLSTATE, so the message is the only handle (a server set to
/// another `lc_messages` makes them INTERNAL again).
fn is_server_going_away(message: &str) -> bool {
    const GOING_AWAY: [&str; 4] = [
        "terminating connection due to administrator command",
        "terminating connection because of crash of another server process",
        "terminating connection due to unexpected postmaster exit",
        "the database system is ",
    ];
    GOING_AWAY.iter().any(|prefix| message.starts_with(prefix))
}

/// The one error of a data service (catalog-svc, enrollment-svc) and its one mapping to a gRPC
/// status: each service names it `Error` (`pub type Error = learnhub_db::ServiceError;`).
///
/// Use `ServiceError::invalid(field, ..)` for bad input, `NotFound` / `AlreadyExists` /
/// `FailedPrecondition` for domain outcomes, `Unavailable` when a service this one depends on
/// cannot be reached, `Internal` for an answer it cannot use; database and pool errors convert
/// with `?`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A service this one depends on did not answer.
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
    Status(tonic::Status),
}

impl ServiceError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<diesel::result::Error> for ServiceError {
    fn from(err: diesel::result::Error) -> Self {
        Self::Db(DbError::Query(err))
    }
}

impl From<tonic::Status> for ServiceError {
    fn from(status: tonic::Status) -> Self {
        Self::Status(status)
    }
}

/// True for a unique-constraint violation (a taken slug, email or lesson position).
pub fn is_unique_violation(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        err,
        Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}

/// True for a foreign-key violation (a row naming a parent that does not exist).
pub fn is_foreign_key_violation(err: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    matches!(
        err,
        Error::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
    )
}

impl From<ServiceError> for tonic::Status {
    fn from(err: ServiceError) -> Self {
        use tonic::Status;
        match err {
            ServiceError::InvalidArgument { .. } => Status::invalid_argument(err.to_string()),
            ServiceError::NotFound(_) => Status::not_found(err.to_string()),
            ServiceError::AlreadyExists(msg) => Status::already_exists(msg),
            ServiceError::FailedPrecondition(msg) => Status::failed_precondition(msg),
            ServiceError::Unavailable(msg) => {
                tracing::warn!(error = %msg, "dependency unavailable");
                Status::unavailable(msg)
            }
            ServiceError::Internal(msg) => {
                tracing::error!(error = %msg, "unexpected answer from a dependency");
                Status::internal("internal error")
            }
            ServiceError::Db(db) if db.is_unavailable() => {
                tracing::warn!(error = %db, "database unavailable");
                Status::unavailable("database unavailable")
            }
            ServiceError::Db(db) => {
                tracing::error!(error = %db, "database error");
                Status::internal("internal error")
            }
            ServiceError::Status(status) => status,
        }
    }
}

#[cfg(test)]
mod going_away_tests {
    use diesel::result::{DatabaseErrorKind, Error};

    use super::*;

    fn unknown(message: &str) -> Error {
        Error::DatabaseError(DatabaseErrorKind::Unknown, Box::new(message.to_owned()))
    }

    #[test]
    fn a_server_shutting_down_is_unavailable_and_a_bad_query_is_not() {
        for message in [
            "terminating connection due to administrator command",
            "the database system is shutting down",
            "the database system is starting up",
        ] {
            assert!(query_error_is_unavailable(&unknown(message)), "{message}");
        }
        assert!(!query_error_is_unavailable(&unknown(
            "column \"nope\" does not exist"
        )));
    }
}
