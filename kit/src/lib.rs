//! learnhub's runtime kit: what every service shares to start, serve, log and call other
//! services. The database layer is its own crate (`learnhub-db`), so the gateway and cache-svc
//! compile without diesel.

pub mod capture;
pub mod client;
pub mod config;
pub mod enduser;
pub mod limits;
pub mod memory;
pub mod metrics;
pub mod page_token;
mod replicas;
mod rpc_call;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
pub mod time;
pub mod tls;
pub mod validate;

pub use page_token::PageToken;

/// The allocator every learnhub binary runs on (`#[global_allocator] static ALLOC: Allocator =
/// Allocator;` in its `main.rs`). glibc's malloc took a fifth of a loaded process's CPU, much of it
/// in arena locks and `malloc_consolidate`; mimalloc's thread-local heaps raised the catalog page
/// from about 14,000 to about 18,000 calls/s in `perf-report load` (docs/perf/observability-cost.md).
pub use mimalloc::MiMalloc as Allocator;
