//! End to end: catalog-svc (demo data) and enrollment-svc, each on a SQLite file or a fresh
//! Postgres database of its own, and cache-svc (the real Redis) behind the gateway, all on
//! 127.0.0.1:0, called over real HTTP (REST, gRPC-Web) and real gRPC.
// Helpers outside #[test] fns panic on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]
mod helpers;

// `crate::on_both_backends!` in every module.
use learnhub_db::on_both_backends;

mod admin;
mod authz;
mod bad_input;
mod cache;
mod catalog;
mod coherence;
mod console;
mod fanout;
mod health;
mod learner_bad_input;
mod learners;
mod near_cache;
mod protocols;
