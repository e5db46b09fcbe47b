//! catalog-svc over real gRPC, on SQLite and on the real Postgres (a fresh database per test).
#![allow(clippy::unwrap_used)]
mod helpers;

mod budgets;
mod caching;
mod courses;
mod db_stats;
mod indexes;
mod lessons;
mod profiler;
mod rpc_budgets;
mod validation;
