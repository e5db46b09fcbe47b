//! The platform under test, in this process (`learnhub::Platform`): cache-svc (on the real
//! Redis, when the configuration has a cache), catalog-svc and enrollment-svc on the perf
//! databases, and the gateway in front — each bound to a loopback port 0 and served over real
//! gRPC — plus what perf-report reads from it (profilers, cache statistics).
use std::{net::SocketAddr, sync::Arc, time::Duration};

use learnhub::{CacheStore, PlatformConfig};
use learnhub_db::{Db, profiler::QueryProfiler};
use learnhub_kit::client::{self, ClientOptions, ServiceChannel};
use learnhub_proto::cache::v1::{
    CacheStats, ClearRequest, GetStatsRequest, ResetStatsRequest,
    cache_service_client::CacheServiceClient,
};

pub use crate::results::StatementLine;

/// Signing secret of the tokens perf-report issues to itself.
pub const SECRET: &str = "perf-report-signing-secret-of-32-bytes";
/// Connections per data service pool (2-core box: more would only queue in Postgres).
const POOL_SIZE: u32 = 8;
/// The profiler still counts every statement; only the slow-query log line is kept quiet,
/// so configuration (a)'s scans do not time the logger.
const SLOW_QUERY_MS: u64 = 10_000;
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the platform's data and cache live.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    pub catalog_url: String,
    pub enrollment_url: String,
    /// `(redis_url, key_prefix)`: cache-svc on Redis, and every service uses it.
    pub cache: Option<(String, String)>,
    /// The services call each other over mutual TLS, as in production.
    pub internal_mtls: bool,
}

impl PlatformOptions {
    /// The platform's configuration; perf-report decides which migrations are applied
    /// (indexes or not), so the services never migrate. The gateway's rate and load limits are
    /// off: perf-report measures the platform from one address at high concurrency, which the
    /// per-caller limits would refuse (`perf-report fairness` measures the limits themselves).
    pub fn config(&self) -> PlatformConfig {
        let mut config = PlatformConfig::new(&self.catalog_url, &self.enrollment_url, SECRET);
        config.gateway_limits = gateway::limits::LimitConfig::off();
        config.db_pool_size = POOL_SIZE;
        config.slow_query_ms = SLOW_QUERY_MS;
        config.upstream_timeout = UPSTREAM_TIMEOUT;
        config.migrate = false;
        config.internal = if self.internal_mtls {
            learnhub::InternalTransport::MutualTls
        } else {
            learnhub::InternalTransport::Plaintext
        };
        config.cache = match &self.cache {
            Some((url, prefix)) => CacheStore::Redis {
                url: url.clone(),
                key_prefix: Some(prefix.clone()),
            },
            None => CacheStore::Off,
        };
        config
    }
}

/// A running platform. [`Platform::stop`] shuts it down front to back.
pub struct Platform {
    pub gateway_addr: SocketAddr,
    pub catalog_db: Db,
    pub enrollment_db: Db,
    cache: Option<CacheServiceClient<ServiceChannel>>,
    platform: learnhub::Platform,
}

impl Platform {
    pub async fn start(options: &PlatformOptions) -> anyhow::Result<Self> {
        Self::start_with_limits(options, gateway::limits::LimitConfig::off()).await
    }

    /// [`Platform::start`] with the gateway's rate and load limits as given.
    pub async fn start_with_limits(
        options: &PlatformOptions,
        limits: gateway::limits::LimitConfig,
    ) -> anyhow::Result<Self> {
        let mut config = options.config();
        config.gateway_limits = limits;
        Self::start_with_config(config).await
    }

    /// The platform as `config` says (built from [`PlatformOptions::config`] and changed).
    pub async fn start_with_config(config: PlatformConfig) -> anyhow::Result<Self> {
        let platform = learnhub::Platform::start(&config).await?;
        // As the gateway calls it (its certificate, when the services use mutual TLS).
        let options = ClientOptions::new(UPSTREAM_TIMEOUT)
            .with_tls(platform.identity(learnhub::Service::Gateway)?);
        let cache = match platform.cache_addr() {
            Some(addr) => Some(CacheServiceClient::new(client::connect(
                "cache-svc",
                "--cache-addr",
                &format!("http://{addr}"),
                &options,
            )?)),
            None => None,
        };
        Ok(Self {
            gateway_addr: platform.gateway_addr(),
            catalog_db: platform.catalog_db().clone(),
            enrollment_db: platform.enrollment_db().clone(),
            cache,
            platform,
        })
    }

    /// One more gateway in front of the same services (`learnhub::Platform::replica_gateway_config`).
    pub fn replica_gateway_config(&self, config: &PlatformConfig) -> Option<gateway::Config> {
        self.platform.replica_gateway_config(config)
    }

    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway_addr)
    }

    /// Both data services' profilers.
    pub fn profilers(&self) -> [&Arc<QueryProfiler>; 2] {
        [self.catalog_db.profiler(), self.enrollment_db.profiler()]
    }

    pub fn reset_profilers(&self) {
        for profiler in self.profilers() {
            profiler.reset();
        }
    }

    /// Statements run and their total time, over both services, since the last reset.
    pub fn sql_totals(&self) -> (u64, Duration) {
        self.profilers()
            .into_iter()
            .flat_map(|p| p.statements().into_values())
            .fold((0, Duration::ZERO), |(count, total), s| {
                (count + s.count, total + s.total)
            })
    }

    /// The `n` statements that took the most time since the last reset, both services.
    pub fn top_statements(&self, n: usize) -> Vec<StatementLine> {
        let mut lines: Vec<StatementLine> = self
            .profilers()
            .into_iter()
            .flat_map(|p| p.statements())
            .map(|(sql, s)| StatementLine {
                sql,
                count: s.count,
                total: s.total,
                mean: s.mean(),
                median: s.median(),
                p99: s.p99(),
            })
            .collect();
        lines.sort_by_key(|line| std::cmp::Reverse(line.total));
        lines.truncate(n);
        lines
    }

    /// Empties the cache (start of a configuration: nothing left from an earlier run).
    pub async fn clear_cache(&self) -> anyhow::Result<()> {
        if let Some(mut cache) = self.cache.clone() {
            cache.clear(ClearRequest {}).await?;
        }
        Ok(())
    }

    pub async fn reset_cache_stats(&self) -> anyhow::Result<()> {
        if let Some(mut cache) = self.cache.clone() {
            cache.reset_stats(ResetStatsRequest {}).await?;
        }
        Ok(())
    }

    pub async fn cache_stats(&self) -> anyhow::Result<Option<CacheStats>> {
        match self.cache.clone() {
            Some(mut cache) => Ok(Some(
                cache.get_stats(GetStatsRequest {}).await?.into_inner(),
            )),
            None => Ok(None),
        }
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        Ok(self.platform.stop().await?)
    }
}
