//! cache-svc integration tests: real servers on port 0, the real Redis (a fresh key prefix per
//! test), and a private redis-server for the tests that kill it.
// The whole crate is test code; clippy.toml's allowance covers only `#[test]` functions themselves.
#![allow(clippy::unwrap_used)]
mod audit;
mod client_bypass;
mod fallback;
mod health;
mod helpers;
mod invalidation;
mod keys;
mod leases;
mod limits;
mod lookups;
mod near;
mod peers;
mod rediss;
mod single_flight;
mod stats;
mod telemetry;
mod ttl;
mod validation;
