//! catalog-svc: courses, categories, lessons and exercises behind `learnhub.catalog.v1`.
use std::net::SocketAddr;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use learnhub_cache_client::{CacheClient, CacheClientOptions, NearCacheArgs};
use learnhub_db::{Db, DbArgs, DbOptions, Migrations, run_migrations};
use learnhub_kit::{
    limits::ServerLimits,
    metrics::{self, MetricsListener},
    server::{self, Listener, ServeError, Transport},
    shutdown::CancellationToken,
    tls::{CallerPolicy, TlsArgs, TlsError},
};
use learnhub_proto::catalog::v1::catalog_service_server::CatalogServiceServer;

mod cache;
mod catalog;
pub mod cli;
mod convert;
mod domain;
mod error;
pub mod models;
mod requests;
mod schema;
pub mod seed;
mod service;

pub const SERVICE_NAME: &str = learnhub_proto::catalog::v1::catalog_service_server::SERVICE_NAME;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// The catalog's migrations; the lock key keeps two replicas from migrating at once.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: POSTGRES_MIGRATIONS,
        sqlite: SQLITE_MIGRATIONS,
        lock_key: 0x6c68_6361_7401, // "lhcat" + 1
    }
}

/// catalog-svc's settings (flags with environment fallbacks).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:50051")]
    pub listen: String,
    /// Address to serve Prometheus metrics on (`GET /metrics`); empty: no metrics listener.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9451")]
    pub metrics_addr: String,
    #[command(flatten)]
    pub db: DbArgs,
    /// cache-svc address (http://host:port). Without it every read goes to the database.
    #[arg(long, env = "CACHE_ADDR")]
    pub cache_addr: Option<String>,
    /// The catalog summary's parts (census, featured) and first pages kept in this process too.
    #[command(flatten)]
    pub near_cache: NearCacheArgs,
    /// Do not run pending migrations at start (run `catalog-svc migrate` instead, e.g. as a Job).
    #[arg(long, env = "NO_MIGRATE")]
    pub no_migrate: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub server_limits: ServerLimits,
}

/// Who may call what: the reads enrollment-svc makes (what it checks before an enrollment or a
/// submission, and what its demo seeding reads) for it and the gateway; writes, the other reads
/// and the profiler for the gateway only.
pub const POLICY: CallerPolicy = CallerPolicy {
    callee: "catalog-svc",
    allowed: |method| match method {
        "ListCourses" | "GetCourse" | "BatchGetCourses" | "BatchGetLessons" | "GetExercise"
        | "ListExercises" => &["gateway", "enrollment-svc"],
        _ => &["gateway"],
    },
};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] learnhub_db::DbError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error("CACHE_ADDR: {0}")]
    Cache(#[from] learnhub_cache_client::CacheError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A catalog-svc bound to its address, ready to serve.
pub struct Application {
    listener: Listener,
    metrics: Option<MetricsListener>,
    db: Db,
    cache: Option<CacheClient>,
    /// The cache's invalidation outbox and the relay's own pool (with a cache only).
    outbox: Option<(learnhub_db::outbox::Outbox, Db)>,
    /// Mutual TLS under [`POLICY`], or plaintext.
    transport: Transport,
    server_limits: ServerLimits,
}

impl Application {
    /// Migrates (unless told not to), opens the pool and binds the listeners (port 0 works),
    /// installing the process's metrics recorder if nobody has yet.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let tls = config.tls.load("catalog-svc")?;
        metrics::install("catalog-svc", env!("CARGO_PKG_VERSION"));
        if !config.no_migrate {
            let applied = run_migrations(&config.db.database_url, migrations()).await?;
            if !applied.is_empty() {
                tracing::info!(?applied, "migrations applied");
            }
        }
        let db = Db::connect(&config.db.options("catalog-svc")).await?;
        let cache = learnhub_kit::client::configured(config.cache_addr.as_deref())
            .map(|addr| {
                CacheClient::connect_lazy(
                    addr,
                    CacheClientOptions {
                        caller: "catalog-svc",
                        tls: tls.clone(),
                        memory: config.tls.memory.clone(),
                        near: config.near_cache.options(&[cache::CATALOG_NS]),
                        ..CacheClientOptions::default()
                    },
                )
            })
            .transpose()?;
        let outbox = match &cache {
            Some(client) => {
                let options = DbOptions {
                    pool_size: 1,
                    application_name: "catalog-svc-outbox",
                    ..config.db.options("catalog-svc")
                };
                let relay_db = Db::connect(&options).await?;
                Some((
                    learnhub_db::outbox::Outbox::new(client.clone(), "catalog-svc"),
                    relay_db,
                ))
            }
            None => None,
        };
        let listener = Listener::bind(&config.listen, config.tls.memory.as_ref()).await?;
        let transport = listener.transport(tls, POLICY);
        let metrics = MetricsListener::bind(&config.metrics_addr).await?;
        Ok(Self {
            listener,
            metrics,
            db,
            cache,
            outbox,
            transport,
            server_limits: config.server_limits.clone(),
        })
    }

    /// The TCP address it listens on (`0.0.0.0:0` on the in-memory network: see [`Self::url`]).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where a client calls it: `http://ip:port`, or `memory://catalog-svc` in the monolith.
    pub fn url(&self) -> String {
        self.listener.url()
    }

    /// Where `GET /metrics` is served; `None` when METRICS_ADDR is empty.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::local_addr)
    }

    /// The cache client, when CACHE_ADDR is set (tests read its counters).
    pub fn cache(&self) -> Option<&CacheClient> {
        self.cache.as_ref()
    }

    /// The database the service uses (tests read its profiler; the monolith seeds it).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Serves gRPC and the metrics listener, and relays the cache outbox, until `shutdown` is
    /// cancelled.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let (outbox, relay) = match self.outbox {
            Some((outbox, relay_db)) => {
                let relay = outbox.spawn_relay(relay_db, shutdown.clone());
                (Some(outbox), Some(relay))
            }
            None => (None, None),
        };
        let api = service::CatalogApi::new(catalog::Catalog::new(self.db), outbox);
        let routes =
            learnhub_db::profiled(tonic::service::Routes::new(CatalogServiceServer::new(api)));
        let grpc = server::serve_with_limits(
            self.listener,
            routes,
            &[SERVICE_NAME],
            shutdown.clone(),
            &self.server_limits,
            &self.transport,
        );
        let served = metrics::serve_beside(self.metrics, shutdown, grpc).await;
        if let Some(relay) = relay
            && let Err(err) = relay.await
        {
            tracing::error!(%err, "cache outbox relay failed");
        }
        served
    }
}
