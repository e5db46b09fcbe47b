//! The platform under test, in this process: cache-svc (on the real Redis, when the
//! configuration has a cache), catalog-svc and enrollment-svc on the perf databases, and the
//! gateway in front — each bound to a loopback port 0 and served over real gRPC.
use std::{net::SocketAddr, time::Duration};

use anyhow::Context;
use learnhub_db::{Db, DbArgs, profiler::QueryProfiler};
use learnhub_kit::{server::Running, shutdown::CancellationToken};
use learnhub_proto::cache::v1::{
    CacheStats, ClearRequest, GetStatsRequest, ResetStatsRequest,
    cache_service_client::CacheServiceClient,
};
use std::sync::Arc;
use tonic::transport::Channel;

/// Signing secret of the tokens perf-report issues to itself.
pub const SECRET: &str = "perf-report-secret";
/// Connections per data service pool (2-core box: more would only queue in Postgres).
const POOL_SIZE: u32 = 8;
/// The profiler still counts every statement; only the slow-query log line is kept quiet,
/// so configuration (a)'s scans do not time the logger.
const SLOW_QUERY_MS: u64 = 10_000;

/// Where the platform's data and cache live.
#[derive(Debug, Clone)]
pub struct PlatformOptions {
    pub catalog_url: String,
    pub enrollment_url: String,
    /// `(redis_url, key_prefix)`: cache-svc on Redis, and every service uses it.
    pub cache: Option<(String, String)>,
}

/// One normalised statement's cost, from a profiler.
#[derive(Debug, Clone)]
pub struct StatementLine {
    pub sql: String,
    pub count: u64,
    pub total: Duration,
    pub mean: Duration,
    pub median: Duration,
    pub p99: Duration,
}

/// A running platform. [`Platform::stop`] shuts it down front to back.
pub struct Platform {
    pub gateway_addr: SocketAddr,
    pub catalog_db: Db,
    pub enrollment_db: Db,
    cache: Option<CacheServiceClient<Channel>>,
    /// Gateway first: it stops taking calls before the services behind it go.
    servers: Vec<Running>,
}

impl Platform {
    pub async fn start(options: &PlatformOptions) -> anyhow::Result<Self> {
        let mut servers = Vec::new();
        let mut cache_client = None;
        let cache_addr = match &options.cache {
            Some((redis_url, prefix)) => {
                let cache = cache_svc::Application::build(&cache_svc::Config {
                    listen: "127.0.0.1:0".into(),
                    redis_url: Some(redis_url.clone()),
                    key_prefix: prefix.clone(),
                    ..cache_svc::Config::default()
                })
                .await
                .context("starting cache-svc")?;
                let addr = cache.local_addr();
                let stop = CancellationToken::new();
                servers.push(Running::spawn(
                    addr,
                    stop.clone(),
                    cache.run_until_stopped(stop),
                ));
                let url = format!("http://{addr}");
                cache_client = Some(CacheServiceClient::new(
                    Channel::from_shared(url.clone())?.connect_lazy(),
                ));
                Some(url)
            }
            None => None,
        };

        let catalog = catalog_svc::Application::build(&catalog_svc::Config {
            listen: "127.0.0.1:0".into(),
            db: db_args(&options.catalog_url),
            cache_addr: cache_addr.clone(),
            // perf-report decides which migrations are applied (indexes or not).
            no_migrate: true,
        })
        .await
        .context("starting catalog-svc")?;
        let catalog_addr = catalog.local_addr();
        let catalog_db = catalog.db().clone();
        let stop = CancellationToken::new();
        servers.push(Running::spawn(
            catalog_addr,
            stop.clone(),
            catalog.run_until_stopped(stop),
        ));

        let mut config = enrollment_svc::Config::new(
            "127.0.0.1:0",
            db_args(&options.enrollment_url),
            format!("http://{catalog_addr}"),
        );
        config.cache_addr = cache_addr.clone();
        config.no_migrate = true;
        let enrollment = enrollment_svc::Application::build(&config)
            .await
            .context("starting enrollment-svc")?;
        let enrollment_addr = enrollment.local_addr();
        let enrollment_db = enrollment.db().clone();
        let stop = CancellationToken::new();
        servers.push(Running::spawn(
            enrollment_addr,
            stop.clone(),
            enrollment.run_until_stopped(stop),
        ));

        let gateway = gateway::Application::build(&gateway::Config {
            listen: "127.0.0.1:0".into(),
            catalog_addr: format!("http://{catalog_addr}"),
            enrollment_addr: Some(format!("http://{enrollment_addr}")),
            cache_addr,
            auth_jwt_secret: SECRET.into(),
            upstream_timeout_ms: 10_000,
        })
        .await
        .context("starting the gateway")?;
        let gateway_addr = gateway.local_addr();
        let stop = CancellationToken::new();
        servers.push(Running::spawn(
            gateway_addr,
            stop.clone(),
            gateway.run_until_stopped(stop),
        ));
        servers.reverse();
        Ok(Self {
            gateway_addr,
            catalog_db,
            enrollment_db,
            cache: cache_client,
            servers,
        })
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

    pub fn has_cache(&self) -> bool {
        self.cache.is_some()
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
        for server in self.servers {
            server.stop().await?;
        }
        Ok(())
    }
}

fn db_args(url: &str) -> DbArgs {
    DbArgs {
        database_url: url.to_owned(),
        db_pool_size: POOL_SIZE,
        slow_query_ms: SLOW_QUERY_MS,
        n_plus_one_threshold: 5,
    }
}
