//! Client settings, as flags with environment fallbacks for the services that embed the client.
use std::time::Duration;

use crate::{CacheClient, CacheError};

/// How a service reaches cache-svc. Flatten it into the service's own flags.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheClientArgs {
    /// cache-svc address (`host:port` or `http://host:port`). Absent: no caching.
    #[arg(long, env = "CACHE_ADDR")]
    pub cache_addr: Option<String>,
    /// Bound on each cache read or fill (ms); past it the request goes to the database.
    #[arg(long, env = "CACHE_TIMEOUT_MS", default_value_t = 50)]
    pub cache_timeout_ms: u64,
    /// Consecutive cache failures that open the circuit breaker.
    #[arg(long, env = "CACHE_BREAKER_FAILURES", default_value_t = 5)]
    pub cache_breaker_failures: u32,
    /// How long an open breaker skips the cache before one call probes it (ms).
    #[arg(long, env = "CACHE_BREAKER_COOLDOWN_MS", default_value_t = 2000)]
    pub cache_breaker_cooldown_ms: u64,
}

impl CacheClientArgs {
    pub fn options(&self) -> CacheClientOptions {
        CacheClientOptions {
            call_timeout: Duration::from_millis(self.cache_timeout_ms.max(1)),
            breaker_failures: self.cache_breaker_failures,
            breaker_cooldown: Duration::from_millis(self.cache_breaker_cooldown_ms),
            ..CacheClientOptions::default()
        }
    }

    /// A lazily connected client if an address is set (cache-svc need not be up yet).
    pub fn connect_lazy(&self) -> Result<Option<CacheClient>, CacheError> {
        self.cache_addr
            .as_deref()
            .map(|addr| CacheClient::connect_lazy(addr, self.options()))
            .transpose()
    }
}

/// Timeouts and breaker settings.
#[derive(Debug, Clone)]
pub struct CacheClientOptions {
    /// Bound on each Get/Set made by `get_or_load`.
    pub call_timeout: Duration,
    /// Bound on invalidate/delete: writers can afford to wait longer than readers.
    pub invalidate_timeout: Duration,
    pub breaker_failures: u32,
    pub breaker_cooldown: Duration,
}

impl Default for CacheClientOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_millis(50),
            invalidate_timeout: Duration::from_secs(1),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(2),
        }
    }
}
