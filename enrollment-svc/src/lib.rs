//! enrollment-svc: learners, enrollments, lesson progress and exercise submissions behind
//! `learnhub.enrollment.v1`. Courses, lessons and exercises belong to catalog-svc, which this
//! service asks over gRPC.
use std::{net::SocketAddr, time::Duration};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use learnhub_cache_client::{CacheClient, CacheClientOptions};
use learnhub_db::{Db, DbArgs, DbOptions, Migrations, run_migrations};
use learnhub_kit::{
    client::{self, ClientOptions, Resolver},
    limits::ServerLimits,
    metrics::{self, MetricsListener},
    server::{self, Listener, ServeError, Transport},
    shutdown::CancellationToken,
    tls::{CallerPolicy, TlsArgs, TlsError},
};
use learnhub_proto::enrollment::v1::enrollment_service_server::EnrollmentServiceServer;

pub mod analytics;
mod cache;
pub mod catalog_client;
pub mod cli;
mod convert;
pub mod domain;
mod error;
mod learners;
pub mod models;
mod requests;
pub mod schema;
pub mod seed;
pub mod service;

/// The gRPC service name, as health checks ask for it.
pub const SERVICE_NAME: &str =
    learnhub_proto::enrollment::v1::enrollment_service_server::SERVICE_NAME;

const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");
const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");

/// enrollment-svc's migrations; the lock key keeps two replicas from migrating at once.
pub fn migrations() -> Migrations {
    Migrations {
        postgres: POSTGRES_MIGRATIONS,
        sqlite: SQLITE_MIGRATIONS,
        lock_key: 0x6c68_656e_7201, // "lhenr" + 1
    }
}

/// enrollment-svc's settings (flags with environment fallbacks).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to serve gRPC on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:50052")]
    pub listen: String,
    /// Address to serve Prometheus metrics on (`GET /metrics`); empty: no metrics listener.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9452")]
    pub metrics_addr: String,
    #[command(flatten)]
    pub db: DbArgs,
    /// cache-svc address (http://host:port). Without it every read goes to the database.
    #[arg(long, env = "CACHE_ADDR")]
    pub cache_addr: Option<String>,
    /// catalog-svc address (http://host:port; replicas: a name resolving to each, or a
    /// comma-separated list): Enroll, progress and submissions check courses, lessons and
    /// exercises there.
    #[arg(long, env = "CATALOG_ADDR")]
    pub catalog_addr: String,
    /// Deadline of each catalog-svc call (milliseconds); past it the call is UNAVAILABLE.
    #[arg(long, env = "CATALOG_TIMEOUT_MS", default_value_t = 3_000)]
    pub catalog_timeout_ms: u64,
    /// Largest submitted code accepted by SubmitExercise (bytes).
    #[arg(long, env = "MAX_SUBMISSION_BYTES", default_value_t = service::DEFAULT_MAX_SUBMISSION_BYTES)]
    pub max_submission_bytes: usize,
    /// Do not run pending migrations at start (run `enrollment-svc migrate` instead, e.g. as a Job).
    #[arg(long, env = "NO_MIGRATE")]
    pub no_migrate: bool,
    /// How host names in CATALOG_ADDR and CACHE_ADDR become addresses (the system's resolver;
    /// tests put replicas behind one name).
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub server_limits: ServerLimits,
    #[arg(skip)]
    pub resolver: Resolver,
}

/// Who may call what: everything is the gateway's (a learner's data reaches nobody else).
pub const POLICY: CallerPolicy = CallerPolicy {
    callee: "enrollment-svc",
    allowed: |_| &["gateway"],
};

impl Config {
    /// Settings with every optional flag at its default (tests, the monolith), except the
    /// metrics listener, which is off (embedded servers would all want the same port), and
    /// plaintext (set `tls` for mutual TLS).
    pub fn new(listen: impl Into<String>, db: DbArgs, catalog_addr: impl Into<String>) -> Self {
        Self {
            listen: listen.into(),
            metrics_addr: String::new(),
            db,
            cache_addr: None,
            catalog_addr: catalog_addr.into(),
            catalog_timeout_ms: 3_000,
            max_submission_bytes: service::DEFAULT_MAX_SUBMISSION_BYTES,
            no_migrate: false,
            resolver: Resolver::default(),
            tls: TlsArgs::plaintext(),
            server_limits: ServerLimits::default(),
        }
    }

    pub fn catalog_timeout(&self) -> Duration {
        Duration::from_millis(self.catalog_timeout_ms)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Db(#[from] learnhub_db::DbError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    CatalogAddr(#[from] learnhub_kit::client::BadAddress),
    #[error("--cache-addr: {0}")]
    CacheAddr(#[from] learnhub_cache_client::CacheError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// An enrollment-svc bound to its address, ready to serve.
pub struct Application {
    listener: Listener,
    metrics: Option<MetricsListener>,
    learners: learners::Learners,
    /// The cache's invalidation outbox and the relay's own pool (with a cache only).
    relay: Option<(learnhub_db::outbox::Outbox, Db)>,
    max_submission_bytes: usize,
    /// Mutual TLS under [`POLICY`], or plaintext.
    transport: Transport,
    server_limits: ServerLimits,
}

impl Application {
    /// Migrates (unless told not to), opens the pool, prepares the catalog-svc client (it
    /// connects on first use) and binds the listeners (port 0 works), installing the process's
    /// metrics recorder if nobody has yet.
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        let tls = config.tls.load("enrollment-svc")?;
        metrics::install("enrollment-svc", env!("CARGO_PKG_VERSION"));
        if !config.no_migrate {
            let applied = run_migrations(&config.db.database_url, migrations()).await?;
            if !applied.is_empty() {
                tracing::info!(?applied, "migrations applied");
            }
        }
        let db = Db::connect(&config.db.options("enrollment-svc")).await?;
        let catalog = catalog_client::CatalogClient::connect(
            &config.catalog_addr,
            &ClientOptions {
                timeout: config.catalog_timeout(),
                resolver: config.resolver.clone(),
                tls: tls.clone(),
                memory: config.tls.memory.clone(),
            },
        )?;
        let cache_client = client::configured(config.cache_addr.as_deref())
            .map(|addr| {
                CacheClient::connect(
                    addr,
                    CacheClientOptions {
                        caller: "enrollment-svc",
                        tls: tls.clone(),
                        memory: config.tls.memory.clone(),
                        ..CacheClientOptions::default()
                    },
                    &config.resolver,
                )
            })
            .transpose()?;
        let outbox =
            cache_client.map(|client| learnhub_db::outbox::Outbox::new(client, "enrollment-svc"));
        let relay_db = match &outbox {
            Some(_) => {
                let options = DbOptions {
                    pool_size: 1,
                    application_name: "enrollment-svc-outbox",
                    ..config.db.options("enrollment-svc")
                };
                Some(Db::connect(&options).await?)
            }
            None => None,
        };
        let relay = outbox.clone().zip(relay_db);
        let cache = cache::LearnerCache::new(outbox);
        let listener = Listener::bind(&config.listen, config.tls.memory.as_ref()).await?;
        let transport = listener.transport(tls, POLICY);
        let metrics = MetricsListener::bind(&config.metrics_addr).await?;
        Ok(Self {
            listener,
            metrics,
            learners: learners::Learners::new(db, catalog, cache),
            relay,
            max_submission_bytes: config.max_submission_bytes,
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

    /// Where a client calls it: `http://ip:port`, or `memory://enrollment-svc` in the monolith.
    pub fn url(&self) -> String {
        self.listener.url()
    }

    /// Where `GET /metrics` is served; `None` when METRICS_ADDR is empty.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsListener::local_addr)
    }

    /// The database the service uses (tests read its profiler; the monolith seeds it).
    pub fn db(&self) -> &Db {
        self.learners.db()
    }

    /// Serves gRPC and the metrics listener, and relays the cache outbox, until `shutdown` is
    /// cancelled.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let relay = self
            .relay
            .map(|(outbox, relay_db)| outbox.spawn_relay(relay_db, shutdown.clone()));
        let api = service::EnrollmentApi::new(self.learners, self.max_submission_bytes);
        let routes = learnhub_db::profiled(tonic::service::Routes::new(
            EnrollmentServiceServer::new(api),
        ));
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
