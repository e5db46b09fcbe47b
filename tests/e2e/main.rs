//! End to end: catalog-svc (SQLite file or a fresh Postgres database, demo data) and cache-svc
//! (the real Redis) behind the gateway, all on 127.0.0.1:0, called over real HTTP (REST,
//! gRPC-Web) and real gRPC.
// Helpers outside #[test] fns panic on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]
mod helpers;

mod admin;
mod bad_input;
mod cache;
mod catalog;
mod health;
mod protocols;
