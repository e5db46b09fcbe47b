//! enrollment-svc over real gRPC, on SQLite and on the real Postgres (a fresh database per
//! test), calling a real catalog-svc (on its own SQLite database) for courses and lessons.
// clippy.toml allows unwrap only inside #[test] functions; these helpers and scenario functions
// are test code too, where a panic is the failure report.
#![allow(clippy::unwrap_used)]
mod helpers;

// `crate::on_both_backends!` in every module.
use learnhub_db::on_both_backends;

mod budgets;
mod cache;
mod db_stats;
mod enrollments;
mod indexes;
mod outbox;
mod progress;
mod rollup;
mod rpc_budgets;
mod seed;
mod stats;
mod stored_enums;
mod submissions;
mod users;
