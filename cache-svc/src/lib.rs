//! cache-svc: the one owner of Redis — statistics, pattern invalidation, safe fills, fallback.
//!
//! [`Application::build`] binds the listener and connects the store; [`Application::run_until_stopped`]
//! serves `learnhub.cache.v1` (plus health and reflection) until the token is cancelled. Without a
//! Redis URL the bounded in-process store is the whole cache (the monolith's mode).
//!
//! What the numbers mean:
//! - keys are `namespace:rest`; the namespace (`[A-Za-z0-9_.-]`, at most 64 bytes) is the unit of
//!   statistics and of O(1) invalidation. Values are opaque bytes.
//! - `InvalidatePattern("ns:*")` bumps the namespace generation (one Lua call, O(log N) for the
//!   count); `removed` is the number of live values the old generation held, read from its index
//!   sorted set with ZCOUNT (exact unless something outside cache-svc deleted or evicted keys). The
//!   old entries are unreachable at once and deleted by a background sweep in batches of 1000.
//!   Narrower patterns run `SCAN MATCH .. COUNT 1000` + batched UNLINK; `removed` counts the values
//!   unlinked (lease markers are removed too, not counted).
//! - statistics: `hits`/`misses` per key looked up; `sets` values stored; `sets_refused` fills whose
//!   lease an invalidation voided; `deletes` values removed by Delete; `invalidations`
//!   InvalidatePattern calls and `entries_removed` their `removed`; `errors` failed Redis calls
//!   while serving, per key (each is then served by the in-process store). `key_count` is the live
//!   values under this service's prefix (sum of the current generations' index counts), never
//!   DBSIZE; `redis_used_memory_bytes` is Redis's own `used_memory`, the whole instance's.
//! - Clear bumps every namespace (found in `P#namespaces` and by a SCAN for generation keys) and
//!   deletes the old generations before it returns; generations themselves are never deleted.
//! - Redis persistence: a Redis restored from an old snapshot brings back whatever the snapshot
//!   held, as it would for any DEL. Run the cache's Redis without persistence (as the tests do), or
//!   with an AOF that syncs every write.
use std::{net::SocketAddr, sync::Arc, time::Duration};

use learnhub_kit::{
    limits::ServerLimits,
    metrics::{self, MetricsListener},
    server::{Listener, ServeError, Transport},
    shutdown::CancellationToken,
    tls::CallerPolicy,
};
use learnhub_proto::cache::v1::cache_service_server::{CacheServiceServer, SERVICE_NAME};
use tonic::service::Routes;

pub(crate) mod bench;
pub(crate) mod cache;
pub mod cli;
pub(crate) mod config;
pub(crate) mod error;
pub mod key;
pub(crate) mod peers;
pub(crate) mod push;
pub(crate) mod service;
pub(crate) mod stats;
pub(crate) mod store;
pub(crate) mod summary;

pub use cache::Cache;
pub use config::Config;
pub use error::Error;

/// What a gRPC request may carry beyond one value of the largest size: its key, or the keys of a
/// batch of small values. A request is at most `max_value_bytes` + this: a client cannot make the
/// service decode (and hold) much more than the one value it could store.
pub const MESSAGE_OVERHEAD_BYTES: usize = 1 << 20;
/// Largest gRPC response: a GetMany of values up to the value limit.
const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A bound, connected cache-svc, ready to serve.
pub struct Application {
    listener: Listener,
    metrics: Option<MetricsListener>,
    cache: Cache,
    limits: service::Limits,
    server_limits: ServerLimits,
    /// How often the invalidation summary is logged; `None`: never.
    log_summary: Option<Duration>,
    /// Mutual TLS under [`POLICY`], or plaintext.
    transport: Transport,
    /// Every replica (`--peers`), which gets each invalidation and delete.
    peers: Option<Arc<peers::Peers>>,
}

/// Who may call what: reads, writes and invalidation for the gateway and the data services
/// (they invalidate what they change, after their commit), invalidation also for the other
/// replicas (`--peers`); statistics and `Clear` for the
/// gateway's admin routes only.
pub const POLICY: CallerPolicy = CallerPolicy {
    callee: "cache-svc",
    allowed: |method| match method {
        "Get" | "GetMany" | "Lookup" | "Set" | "SetMany" | "Subscribe" => {
            &["gateway", "catalog-svc", "enrollment-svc"]
        }
        // cache-svc itself: a replica passing an invalidation on to its peers.
        "Delete" | "InvalidatePattern" => {
            &["gateway", "catalog-svc", "enrollment-svc", "cache-svc"]
        }
        _ => &["gateway"],
    },
};

impl Application {
    /// Binds `config.listen` and `config.metrics_addr` (port 0 picks a free port), installs the
    /// process's metrics recorder if nobody has yet, and starts the store. Redis being down is
    /// not an error: the in-process store serves until it is back.
    pub async fn build(config: &Config) -> Result<Self, Error> {
        if config.memory_max_bytes == 0 {
            return Err(Error::invalid("memory_max_bytes", "must be at least 1"));
        }
        if config.max_value_bytes as u64 > config.memory_max_bytes {
            return Err(Error::invalid(
                "max_value_bytes",
                format!(
                    "must not exceed memory_max_bytes ({}): such a value could never be held",
                    config.memory_max_bytes
                ),
            ));
        }
        if config.key_prefix.is_empty() {
            return Err(Error::invalid(
                "key_prefix",
                "must not be empty: it keeps this cache's keys apart in a shared Redis",
            ));
        }
        let tls = config.tls.load("cache-svc")?;
        metrics::install("cache-svc", env!("CARGO_PKG_VERSION"));
        let listener = Listener::bind(&config.listen, config.tls.memory.as_ref()).await?;
        let peers = match learnhub_kit::client::configured(config.peers.as_deref()) {
            Some(addr) => Some(Arc::new(peers::Peers::connect(addr, tls.clone())?)),
            None => None,
        };
        let transport = listener.transport(tls, POLICY);
        let metrics = MetricsListener::bind(&config.metrics_addr).await?;
        let cache = Cache::start(
            cache::CacheOptions {
                memory_max_bytes: config.memory_max_bytes,
                lease_ttl: config.lease_ttl(),
                redis: config.redis_options(),
            },
            Arc::new(stats::Stats::new()),
        )
        .await?;
        Ok(Self {
            listener,
            metrics,
            cache,
            limits: service::Limits {
                default_ttl: config.default_ttl(),
                max_value_bytes: config.max_value_bytes,
            },
            server_limits: config.server_limits.clone(),
            log_summary: (config.log_summary_secs > 0)
                .then(|| Duration::from_secs(config.log_summary_secs)),
            transport,
            peers,
        })
    }

    /// The TCP address it listens on (`0.0.0.0:0` on the in-memory network: see [`Self::url`]).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where a client calls it: `http://ip:port`, or `memory://cache-svc` in the monolith.
    pub fn url(&self) -> String {
        self.listener.url()
    }

    /// Where `GET /metrics` is served; `None` when METRICS_ADDR is empty.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::local_addr)
    }

    /// The cache behind the service (tests read its state directly).
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Serves gRPC and the metrics listener until `shutdown` is cancelled, then stops the
    /// background tasks.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let max_request_bytes = self.limits.max_value_bytes + MESSAGE_OVERHEAD_BYTES;
        // The summary task stops with the server, however the server ends.
        let stop_summary = shutdown.child_token();
        let summary = self.log_summary.map(|every| {
            let summary = Arc::new(summary::Summary::new());
            let task = tokio::spawn(summary::run(summary.clone(), every, stop_summary.clone()));
            (summary, task)
        });
        let api = service::CacheApi::new(
            self.cache.clone(),
            self.limits,
            summary.as_ref().map(|(summary, _)| summary.clone()),
            self.peers.clone(),
            Arc::new(push::Push::new(shutdown.clone())),
        );
        let server = CacheServiceServer::new(api)
            .max_decoding_message_size(max_request_bytes)
            .max_encoding_message_size(MAX_RESPONSE_BYTES);
        let grpc = learnhub_kit::server::serve_with_limits(
            self.listener,
            Routes::new(server),
            &[SERVICE_NAME],
            shutdown.clone(),
            &self.server_limits,
            &self.transport,
        );
        let result = metrics::serve_beside(self.metrics, shutdown, grpc).await;
        stop_summary.cancel();
        if let Some((_, task)) = summary {
            // It writes the last period's lines as it stops.
            let _ = task.await;
        }
        self.cache.shutdown().await;
        result
    }
}
