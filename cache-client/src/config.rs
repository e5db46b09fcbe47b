//! Client settings: who is calling, per-call bounds and the circuit breaker.
use std::{sync::Arc, time::Duration};

use learnhub_kit::{memory::MemoryEndpoint, tls::MutualTls};

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
    /// The caller's identity: calls go over mutual TLS. `None`: plaintext.
    pub tls: Option<Arc<MutualTls>>,
    /// The caller on the process's in-memory network, for a `memory://cache-svc` address.
    pub memory: Option<MemoryEndpoint>,
}

impl Default for CacheClientOptions {
    fn default() -> Self {
        Self {
            caller: "unknown",
            call_timeout: Duration::from_millis(50),
            invalidate_timeout: Duration::from_secs(1),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(2),
            tls: None,
            memory: None,
        }
    }
}
