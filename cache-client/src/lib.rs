//! Client of cache-svc for learnhub services (no Redis dependency): typed keys, get-or-load with
//! single flight and leases, bypass to the loader with a circuit breaker when the cache is down.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use learnhub_cache_client::{CacheClient, CacheClientOptions, CacheKey, CachePattern};
//! use learnhub_proto::catalog::v1::ListCategoriesResponse;
//!
//! let cache = CacheClient::connect_lazy("127.0.0.1:50053", CacheClientOptions::default())?;
//! let key = CacheKey::new("catalog").push("categories");
//! let categories = cache
//!     .get_or_load(&key, Duration::from_secs(600), || async {
//!         Ok::<_, tonic::Status>(ListCategoriesResponse::default()) // the database read
//!     })
//!     .await?;
//! // After a write commits:
//! cache.invalidate(&CachePattern::namespace("catalog")).await.ok();
//! # let _ = categories; Ok(()) }
//! ```
mod breaker;
mod client;
mod config;
mod error;
mod key;
mod lookups;
mod near;
mod reads;

pub use client::{CacheClient, ClientCounters, get_or_load};
pub use config::{CacheClientOptions, DEFAULT_READS_IN_FLIGHT, NearCacheArgs};
pub use error::CacheError;
pub use key::{CacheKey, CachePattern};
pub use near::{NearCache, NearCacheOptions, NearNamespaceStats, NearStats, NearTicket};
pub use reads::MAX_READ_BATCH;
