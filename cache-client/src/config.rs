//! Client settings: who is calling, per-call bounds and the circuit breaker.
use std::{sync::Arc, time::Duration};

use learnhub_kit::{memory::MemoryEndpoint, tls::MutualTls};

use crate::NearCacheOptions;

/// Read batches under way at once by default (`CacheClientOptions::reads_in_flight`). One: on
/// the Lookup stream a batch costs far more than a key, so one batch carrying every read made
/// during the round trip beats two of half the size. In `cache-svc bench` one slot gave more
/// throughput and a lower p50 than two at every concurrency measured (1 to 32 readers); see
/// docs/perf/README.md, "cache-svc vs raw Redis".
pub const DEFAULT_READS_IN_FLIGHT: usize = 1;

/// The caller's name, timeouts and breaker settings.
#[derive(Debug, Clone)]
pub struct CacheClientOptions {
    /// The calling service (`catalog-svc`, `gateway`, …): the `service` label of the client's
    /// metrics (`learnhub_cache_client_*`).
    pub caller: &'static str,
    /// Bound on each Get/Set made by `get_or_load`.
    pub call_timeout: Duration,
    /// Bound on invalidate/delete: writers can afford to wait longer than readers.
    pub invalidate_timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
    /// Read batches (a `Get`, a Lookup stream message or a `GetMany`) under way at once; reads
    /// made while all are taken wait, and the next batch to finish takes them all together.
    pub reads_in_flight: usize,
    /// The caller's identity: calls go over mutual TLS. `None`: plaintext.
    pub tls: Option<Arc<MutualTls>>,
    /// The caller on the process's in-memory network, for a `memory://cache-svc` address.
    pub memory: Option<MemoryEndpoint>,
    /// An L1 in this process for some namespaces, kept coherent by cache-svc's pushes. `None`
    /// (or a zero lifetime): every read asks cache-svc.
    pub near: Option<NearCacheOptions>,
}

impl Default for CacheClientOptions {
    fn default() -> Self {
        Self {
            caller: "unknown",
            call_timeout: Duration::from_millis(50),
            invalidate_timeout: Duration::from_secs(1),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(2),
            reads_in_flight: DEFAULT_READS_IN_FLIGHT,
            tls: None,
            memory: None,
            near: None,
        }
    }
}

/// The L1's flags, shared by the services that keep one (gateway, catalog-svc).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct NearCacheArgs {
    /// Lifetime (milliseconds) of an entry of this process's near-cache: an L1 in front of
    /// cache-svc, kept coherent by the invalidations cache-svc pushes, the lifetime bounding
    /// staleness should a push be lost. 0 turns the L1 off. Used only with CACHE_ADDR.
    #[arg(long, env = "NEAR_CACHE_TTL_MS", default_value_t = 5000)]
    pub near_cache_ttl_ms: u64,
    /// Most entries the near-cache holds.
    #[arg(long, env = "NEAR_CACHE_MAX_ENTRIES", default_value_t = 10_000)]
    pub near_cache_max_entries: u64,
    /// Most bytes (encoded values and keys) the near-cache holds.
    #[arg(long, env = "NEAR_CACHE_MAX_BYTES", default_value_t = 32 << 20)]
    pub near_cache_max_bytes: u64,
}

impl Default for NearCacheArgs {
    fn default() -> Self {
        Self {
            near_cache_ttl_ms: 5000,
            near_cache_max_entries: 10_000,
            near_cache_max_bytes: 32 << 20,
        }
    }
}

impl NearCacheArgs {
    /// No L1.
    pub fn off() -> Self {
        Self {
            near_cache_ttl_ms: 0,
            ..Self::default()
        }
    }

    /// The L1 for `namespaces`, or `None` when a setting is 0.
    pub fn options(&self, namespaces: &[&'static str]) -> Option<NearCacheOptions> {
        (self.near_cache_ttl_ms > 0
            && self.near_cache_max_entries > 0
            && self.near_cache_max_bytes > 0)
            .then(|| NearCacheOptions {
                ttl: Duration::from_millis(self.near_cache_ttl_ms),
                max_entries: self.near_cache_max_entries,
                max_bytes: self.near_cache_max_bytes,
                namespaces: namespaces.to_vec(),
            })
    }
}
