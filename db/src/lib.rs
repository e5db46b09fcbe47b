//! learnhub's database layer: one pool over Postgres or SQLite chosen by URL, embedded
//! migrations, the query profiler, typed text columns and throwaway test databases. Only the
//! data services (catalog-svc, enrollment-svc) link it; the gateway and cache-svc do not.

mod args;
mod backend;
mod database;
mod error;
pub mod outbox;
mod pg_target;
mod pool_metrics;
pub mod profiler;
mod rpc_layer;
mod seed_rng;
pub mod testing;
mod text_enum;

pub use args::DbArgs;
pub use backend::Backend;
pub use database::{
    Db, DbConn, DbOptions, Migrations, PgConn, SqliteConn, run_migrations, sqlite_path,
};
pub use error::{
    DbError, ServiceError, is_foreign_key_violation, is_unique_violation,
    query_error_is_unavailable,
};
pub use pg_target::{PgTarget, SslMode};
pub use profiler::QueryProfiler;
pub use rpc_layer::{ProfileLayer, profiled};
pub use seed_rng::SplitMix64;

// The macros name these through `$crate`.
#[doc(hidden)]
pub use diesel as __diesel;
