//! cache-svc's settings: flags with environment fallbacks (`cache-svc serve --help`).
use std::time::Duration;

use learnhub_kit::limits::ServerLimits;

use crate::store::redis::RedisOptions;

/// 64 MiB: the in-process store's default bound.
pub const DEFAULT_MEMORY_MAX_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to serve gRPC on (port 0: any free port).
    #[arg(long = "listen", env = "LISTEN_ADDR", default_value = "0.0.0.0:50053")]
    pub listen: String,
    /// Address to serve Prometheus metrics on (`GET /metrics`); empty: no metrics listener.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9453")]
    pub metrics_addr: String,
    /// Redis to use, e.g. `redis://127.0.0.1:6379`. Absent: the in-process store only.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Every Redis key this service touches starts with it, so several deployments (or tests)
    /// can share one Redis and Clear never touches anything else.
    #[arg(long, env = "CACHE_KEY_PREFIX", default_value = "learnhub:")]
    pub key_prefix: String,
    /// TTL of a Set that gives none (seconds).
    #[arg(long, env = "CACHE_DEFAULT_TTL_SECS", default_value_t = 300)]
    pub default_ttl_secs: u32,
    /// Bytes the in-process store may hold (used without Redis, or while Redis is down): keys,
    /// values and a per-entry overhead; the least useful entries go first.
    #[arg(long, env = "CACHE_MEMORY_MAX_BYTES", default_value_t = DEFAULT_MEMORY_MAX_BYTES)]
    pub memory_max_bytes: u64,
    /// Largest value accepted by Set (bytes). gRPC requests may be this large plus
    /// [`crate::MESSAGE_OVERHEAD_BYTES`], no larger.
    #[arg(long, env = "CACHE_MAX_VALUE_BYTES", default_value_t = 1 << 20)]
    pub max_value_bytes: usize,
    /// How long a miss's lease stays valid (seconds): a fill slower than this is not stored.
    #[arg(long, env = "CACHE_LEASE_TTL_SECS", default_value_t = 30)]
    pub lease_ttl_secs: u64,
    /// Bound on each Redis call (ms); past it the call counts as failed and the in-process store
    /// serves until Redis is back.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = 500)]
    pub redis_timeout_ms: u64,
    /// Redis connections (each one multiplexes many calls).
    #[arg(long, env = "REDIS_POOL_SIZE", default_value_t = 8)]
    pub redis_pool_size: u32,
    /// Every this many seconds, one INFO line per (caller, namespace) counting the
    /// invalidations, deletes and values removed since the last (none when there were none);
    /// each call itself is logged at debug (an operator's through the gateway stays an audit
    /// event). 0: no summary.
    #[arg(long, env = "CACHE_LOG_SUMMARY_SECS", default_value_t = 60)]
    pub log_summary_secs: u64,
    /// Every replica of this cache-svc (`host:port`, a comma-separated list, or one name that
    /// resolves to every replica, such as a headless Service; this replica may be among them).
    /// Each invalidation and delete is passed on to all of them before it is acknowledged, so
    /// during a Redis outage no replica's in-process store keeps what another removed. Unset: a
    /// lone replica.
    #[arg(long, env = "CACHE_PEERS")]
    pub peers: Option<String>,
    /// HTTP/2 streams, requests in flight, connections, deadlines.
    #[command(flatten)]
    pub server_limits: ServerLimits,
    /// Mutual TLS with the services that call it.
    #[command(flatten)]
    pub tls: learnhub_kit::tls::TlsArgs,
}

impl Default for Config {
    /// The flag defaults: in-process store, port 50053; but no metrics listener (embedded and
    /// test servers would all want port 9453), and plaintext (the binary refuses to start
    /// without certificates unless told `--insecure-plaintext`).
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:50053".into(),
            metrics_addr: String::new(),
            redis_url: None,
            key_prefix: "learnhub:".into(),
            default_ttl_secs: 300,
            memory_max_bytes: DEFAULT_MEMORY_MAX_BYTES,
            max_value_bytes: 1 << 20,
            lease_ttl_secs: 30,
            redis_timeout_ms: 500,
            redis_pool_size: 8,
            log_summary_secs: 60,
            peers: None,
            server_limits: ServerLimits::default(),
            tls: learnhub_kit::tls::TlsArgs::plaintext(),
        }
    }
}

impl Config {
    pub fn default_ttl(&self) -> Duration {
        Duration::from_secs(u64::from(self.default_ttl_secs))
    }

    pub fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.lease_ttl_secs.max(1))
    }

    pub fn redis_options(&self) -> Option<RedisOptions> {
        self.redis_url.as_ref().map(|url| RedisOptions {
            url: url.clone(),
            prefix: self.key_prefix.clone(),
            lease_ttl: self.lease_ttl(),
            timeout: Duration::from_millis(self.redis_timeout_ms.max(1)),
            pool_size: self.redis_pool_size,
        })
    }
}
