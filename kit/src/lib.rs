//! learnhub's runtime kit: what every service shares to start, serve, log and call other
//! services. The database layer is its own crate (`learnhub-db`), so the gateway and cache-svc
//! compile without diesel.

pub mod capture;
pub mod client;
pub mod config;
pub mod limits;
pub mod metrics;
pub mod page_token;
mod rpc_call;
pub mod server;
pub mod shutdown;
pub mod telemetry;
pub mod testing;
pub mod time;
pub mod validate;

pub use page_token::PageToken;
