//! catalog-svc's one error type: the data services' shared [`learnhub_db::ServiceError`] and its
//! one mapping to gRPC status codes (see its documentation for which variant to use where).
pub use learnhub_db::{ServiceError as Error, is_foreign_key_violation, is_unique_violation};

pub type Result<T, E = Error> = std::result::Result<T, E>;
