//! catalog-svc over real gRPC, on SQLite and on the real Postgres (a fresh database per test).
#![allow(clippy::unwrap_used)]
mod helpers;

// `crate::on_both_backends!` in every module.
use learnhub_db::on_both_backends;

mod budgets;
mod caching;
mod census;
mod courses;
mod db_stats;
mod indexes;
mod lessons;
mod outbox;
mod profiler;
mod rpc_budgets;
mod stored_values;
mod validation;
