//! learnhub's whole platform in one process: [`Platform`] builds cache-svc, catalog-svc,
//! enrollment-svc and the gateway from one [`PlatformConfig`], serves each on its own task and
//! stops them all as soon as one of them fails. The monolith (`learnhub`), the end-to-end tests and
//! perf-report all start the platform here, so each service's `Config` is written in this file
//! only.
use std::{fmt, future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use learnhub_cache_client::NearCacheArgs;
use learnhub_db::{Db, DbArgs};
use learnhub_kit::{
    client::ClientOptions,
    limits::ServerLimits,
    memory::MemoryNetwork,
    server::{Running, ServeError},
    shutdown::CancellationToken,
    tls::{DevCa, TlsArgs},
};

pub mod cli;
mod monolith;

/// Where every service but the gateway listens: loopback, any free port.
const LOOPBACK_ANY_PORT: &str = "127.0.0.1:0";
/// The deadline of enrollment-svc's catalog calls while it seeds demo learners.
const SEED_CATALOG_TIMEOUT: Duration = Duration::from_secs(5);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One of the four servers of the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Gateway,
    Catalog,
    Enrollment,
    Cache,
}

impl Service {
    /// The name the service goes by in logs, flags and the README.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gateway => "gateway",
            Self::Catalog => "catalog-svc",
            Self::Enrollment => "enrollment-svc",
            Self::Cache => "cache-svc",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What cache-svc stores in, if the platform has a cache at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStore {
    /// No cache-svc: every read goes to the databases (perf-report's uncached configurations).
    Off,
    /// cache-svc with its bounded in-process store.
    InProcess,
    /// cache-svc on this Redis, every key under `key_prefix` (cache-svc's default when `None`).
    Redis {
        url: String,
        key_prefix: Option<String>,
    },
}

/// Demo data written at start, into databases that hold none yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoData {
    None,
    /// The demo catalog: categories, courses, lessons, exercises.
    Catalog,
    /// The demo catalog, then learners with enrollments, progress and submissions.
    CatalogAndLearners,
}

/// What [`Platform::start`] seeded (`None`: that database already had data, or no seed asked).
#[derive(Debug, Default)]
pub struct DemoSeed {
    pub catalog: Option<catalog_svc::seed::SeedReport>,
    pub learners: Option<enrollment_svc::seed::SeedReport>,
}

/// The catalog-svc and enrollment-svc URLs the gateway calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayUpstreams {
    pub catalog: String,
    pub enrollment: String,
}

type UpstreamsFuture = Pin<Box<dyn Future<Output = GatewayUpstreams> + Send>>;

/// Given where catalog-svc and enrollment-svc listen, says where the gateway should call them:
/// the end-to-end tests put counting proxies in between.
#[derive(Clone)]
pub struct UpstreamHook(Arc<dyn Fn(GatewayUpstreams) -> UpstreamsFuture + Send + Sync>);

impl UpstreamHook {
    pub fn new<F, Fut>(route: F) -> Self
    where
        F: Fn(GatewayUpstreams) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = GatewayUpstreams> + Send + 'static,
    {
        Self(Arc::new(move |upstreams| Box::pin(route(upstreams))))
    }
}

impl fmt::Debug for UpstreamHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UpstreamHook(..)")
    }
}

/// How catalog-svc, enrollment-svc and cache-svc are reached inside the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InternalTransport {
    /// Plaintext on loopback ports: tests and perf-report call the services directly.
    #[default]
    Plaintext,
    /// Mutual TLS on loopback ports, with certificates of a CA made in memory at start: the
    /// ports take only the platform's own certificates, each RPC only the services its policy
    /// names (the production topology's security, in one process).
    MutualTls,
    /// No internal port at all: the services serve and call each other over the process's
    /// in-memory network (`learnhub_kit::memory`), each connection knowing which service dialled
    /// it, so the caller policies apply as over mutual TLS. The monolith's choice.
    InMemory,
}

/// How to build the platform. [`PlatformConfig::new`] gives monolithic mode's settings.
#[derive(Clone)]
pub struct PlatformConfig {
    /// Where the gateway listens (port 0 picks a free one); the services take loopback ports.
    pub listen: String,
    /// catalog-svc's and enrollment-svc's databases: `postgres://…` or `sqlite://PATH`.
    pub catalog_database_url: String,
    pub enrollment_database_url: String,
    /// Connections of each data service's pool.
    pub db_pool_size: u32,
    /// Statements slower than this are logged as slow queries (milliseconds).
    pub slow_query_ms: u64,
    pub cache: CacheStore,
    /// HS256 secret of caller tokens. Never logged.
    pub auth_jwt_secret: String,
    /// How long one gateway call to a service may take.
    pub upstream_timeout: Duration,
    /// Run pending migrations at start (otherwise the caller manages the schema).
    pub migrate: bool,
    pub demo_data: DemoData,
    pub gateway_upstreams: Option<UpstreamHook>,
    /// Give catalog-svc, enrollment-svc and cache-svc each a `/metrics` listener on a free
    /// loopback port ([`Platform::metrics_addr`]). Off by default: the process has one metrics
    /// registry, served with every service's series by the gateway's `GET /metrics`.
    pub service_metrics_listeners: bool,
    /// The gateway's per-caller rate limits and load limits (the flags' defaults unless set).
    pub gateway_limits: gateway::limits::LimitConfig,
    /// How the services reach each other. Plaintext ports in [`PlatformConfig::new`]: tests and
    /// perf-report call the services directly; the monolith uses the in-memory network.
    pub internal: InternalTransport,
    /// The gateway's and catalog-svc's near-caches (L1) in front of cache-svc (the flags'
    /// defaults unless set; [`NearCacheArgs::off`] for none).
    pub near_cache: NearCacheArgs,
}

impl PlatformConfig {
    /// Monolithic mode's settings over these databases: the gateway on a free loopback port,
    /// the in-process cache, 8 connections per pool, migrations, no demo data, 2 s upstream
    /// timeout.
    pub fn new(
        catalog_database_url: impl Into<String>,
        enrollment_database_url: impl Into<String>,
        auth_jwt_secret: impl Into<String>,
    ) -> Self {
        Self {
            listen: LOOPBACK_ANY_PORT.into(),
            catalog_database_url: catalog_database_url.into(),
            enrollment_database_url: enrollment_database_url.into(),
            db_pool_size: 8,
            slow_query_ms: 100,
            cache: CacheStore::InProcess,
            auth_jwt_secret: auth_jwt_secret.into(),
            upstream_timeout: Duration::from_secs(2),
            migrate: true,
            demo_data: DemoData::None,
            gateway_upstreams: None,
            service_metrics_listeners: false,
            gateway_limits: gateway::limits::LimitConfig::default(),
            internal: InternalTransport::Plaintext,
            near_cache: NearCacheArgs::default(),
        }
    }
}

// By hand, so the secret cannot reach a log through `{:?}`.
impl fmt::Debug for PlatformConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformConfig")
            .field("listen", &self.listen)
            .field("catalog_database_url", &self.catalog_database_url)
            .field("enrollment_database_url", &self.enrollment_database_url)
            .field("db_pool_size", &self.db_pool_size)
            .field("slow_query_ms", &self.slow_query_ms)
            .field("cache", &self.cache)
            .field("auth_jwt_secret", &"<redacted>")
            .field("upstream_timeout", &self.upstream_timeout)
            .field("migrate", &self.migrate)
            .field("demo_data", &self.demo_data)
            .field("gateway_upstreams", &self.gateway_upstreams)
            .field("service_metrics_listeners", &self.service_metrics_listeners)
            .field("gateway_limits", &self.gateway_limits)
            .field("internal", &self.internal)
            .field("near_cache", &self.near_cache)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("starting {service}: {source}")]
    Start { service: Service, source: BoxError },
    #[error("seeding the {what}: {source}")]
    Seed {
        what: &'static str,
        source: BoxError,
    },
    #[error("{service} failed: {source}")]
    Failed {
        service: Service,
        source: ServeError,
    },
    #[error("{service} stopped on its own while the platform was running")]
    Exited { service: Service },
}

impl PlatformError {
    /// The service the error is about, when it is about one.
    pub fn service(&self) -> Option<Service> {
        match self {
            Self::Start { service, .. }
            | Self::Failed { service, .. }
            | Self::Exited { service } => Some(*service),
            Self::Seed { .. } => None,
        }
    }
}

fn start_error<E>(service: Service) -> impl FnOnce(E) -> PlatformError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |source| PlatformError::Start {
        service,
        source: Box::new(source),
    }
}

fn seed_error<E>(what: &'static str) -> impl FnOnce(E) -> PlatformError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |source| PlatformError::Seed {
        what,
        source: Box::new(source),
    }
}

/// A server of the platform on its task.
struct Server {
    service: Service,
    running: Running,
}

impl Server {
    /// Serves `run` on a task of its own, with a shutdown token of its own; `url` is where.
    fn spawn<F>(service: Service, url: String, run: impl FnOnce(CancellationToken) -> F) -> Self
    where
        F: Future<Output = Result<(), ServeError>> + Send + 'static,
    {
        let stop = CancellationToken::new();
        Self {
            service,
            running: Running::spawn(url, stop.clone(), run(stop)),
        }
    }
}

/// gateway + catalog-svc + enrollment-svc + cache-svc, each serving on its own task. Dropping it
/// asks every server to stop; [`Platform::stop`] also waits for them to drain.
pub struct Platform {
    gateway_addr: SocketAddr,
    /// The services' TCP addresses; `None` on the in-memory network.
    catalog_addr: Option<SocketAddr>,
    enrollment_addr: Option<SocketAddr>,
    cache_addr: Option<SocketAddr>,
    /// The services' own `/metrics` listeners, when [`PlatformConfig::service_metrics_listeners`].
    metrics_addrs: Vec<(Service, SocketAddr)>,
    catalog_db: Db,
    enrollment_db: Db,
    demo_seed: DemoSeed,
    /// The CA of the services' certificates, or their in-memory network.
    tls: Internal,
    /// Front to back: the gateway stops taking calls before the services behind it go.
    servers: Vec<Server>,
}

impl Platform {
    /// Builds every service (each binds its listener), serves them, then seeds the demo data
    /// asked for. Nothing is served unless every service could be built.
    pub async fn start(config: &PlatformConfig) -> Result<Self, PlatformError> {
        let tls = Internal::new(config.internal)?;
        let cache = match cache_config(config, tls.args(Service::Cache)?) {
            Some(cache_config) => Some(
                cache_svc::Application::build(&cache_config)
                    .await
                    .map_err(start_error(Service::Cache))?,
            ),
            None => None,
        };
        let cache_url = cache.as_ref().map(cache_svc::Application::url);
        let cache_addr = cache
            .as_ref()
            .map(cache_svc::Application::local_addr)
            .filter(|_| !tls.in_memory());

        let catalog = catalog_svc::Application::build(&catalog_config(
            config,
            cache_url.clone(),
            tls.args(Service::Catalog)?,
        ))
        .await
        .map_err(start_error(Service::Catalog))?;
        let catalog_addr = Some(catalog.local_addr()).filter(|_| !tls.in_memory());
        let catalog_url = catalog.url();

        let enrollment = enrollment_svc::Application::build(&enrollment_config(
            config,
            &catalog_url,
            cache_url.clone(),
            tls.args(Service::Enrollment)?,
        ))
        .await
        .map_err(start_error(Service::Enrollment))?;
        let enrollment_addr = Some(enrollment.local_addr()).filter(|_| !tls.in_memory());
        let enrollment_url = enrollment.url();

        let mut upstreams = GatewayUpstreams {
            catalog: catalog_url.clone(),
            enrollment: enrollment_url.clone(),
        };
        if let Some(UpstreamHook(route)) = &config.gateway_upstreams {
            upstreams = route(upstreams).await;
        }
        let gateway = gateway::Application::build(&gateway_config(
            config,
            upstreams,
            cache_url,
            tls.args(Service::Gateway)?,
        ))
        .await
        .map_err(start_error(Service::Gateway))?;
        let gateway_addr = gateway.local_addr();
        let mut metrics_addrs = vec![(Service::Gateway, gateway_addr)];
        metrics_addrs.extend(
            [
                (Service::Catalog, catalog.metrics_addr()),
                (Service::Enrollment, enrollment.metrics_addr()),
                (
                    Service::Cache,
                    cache
                        .as_ref()
                        .and_then(cache_svc::Application::metrics_addr),
                ),
            ]
            .into_iter()
            .filter_map(|(service, addr)| Some((service, addr?))),
        );

        let catalog_db = catalog.db().clone();
        let enrollment_db = enrollment.db().clone();
        let mut servers = vec![
            Server::spawn(Service::Gateway, format!("http://{gateway_addr}"), |stop| {
                gateway.run_until_stopped(stop)
            }),
            Server::spawn(Service::Enrollment, enrollment_url, |stop| {
                enrollment.run_until_stopped(stop)
            }),
            Server::spawn(Service::Catalog, catalog_url.clone(), |stop| {
                catalog.run_until_stopped(stop)
            }),
        ];
        if let Some(cache) = cache {
            servers.push(Server::spawn(Service::Cache, cache.url(), |stop| {
                cache.run_until_stopped(stop)
            }));
        }
        let seeder = tls.args(Service::Enrollment)?;
        let mut platform = Self {
            gateway_addr,
            catalog_addr,
            enrollment_addr,
            cache_addr,
            metrics_addrs,
            catalog_db,
            enrollment_db,
            demo_seed: DemoSeed::default(),
            tls,
            servers,
        };
        match platform.seed(config.demo_data, &catalog_url, &seeder).await {
            Ok(seeded) => platform.demo_seed = seeded,
            Err(err) => {
                let _ = platform.stop().await;
                return Err(err);
            }
        }
        Ok(platform)
    }

    /// A certificate of `service` under the platform's CA, for a caller that calls a service
    /// directly as that service would (perf-report reading cache-svc's statistics as the
    /// gateway); `None` when the services talk plaintext.
    pub fn identity(
        &self,
        service: Service,
    ) -> Result<Option<std::sync::Arc<learnhub_kit::tls::MutualTls>>, learnhub_kit::tls::TlsError>
    {
        match &self.tls {
            Internal::MutualTls(ca) => ca.identity(service.name()).map(Some),
            Internal::Plaintext | Internal::InMemory(_) => Ok(None),
        }
    }

    /// Demo learners need the catalog serving: enrollment-svc reads courses and lessons from it
    /// (with `seeder`'s identity, enrollment-svc's).
    async fn seed(
        &self,
        demo_data: DemoData,
        catalog_url: &str,
        seeder: &TlsArgs,
    ) -> Result<DemoSeed, PlatformError> {
        let mut seeded = DemoSeed::default();
        if demo_data == DemoData::None {
            return Ok(seeded);
        }
        seeded.catalog = catalog_svc::seed::demo(&self.catalog_db)
            .await
            .map_err(seed_error("demo catalog"))?;
        if let Some(report) = &seeded.catalog {
            tracing::info!(?report, "seeded the demo catalog");
        }
        if demo_data == DemoData::CatalogAndLearners {
            // It calls catalog-svc as enrollment-svc does.
            let tls = seeder
                .load(Service::Enrollment.name())
                .map_err(seed_error("demo learners"))?;
            let catalog = enrollment_svc::catalog_client::CatalogClient::connect(
                catalog_url,
                &ClientOptions::new(SEED_CATALOG_TIMEOUT)
                    .with_tls(tls)
                    .with_memory(seeder.memory.clone()),
            )
            .map_err(seed_error("demo learners"))?;
            seeded.learners = enrollment_svc::seed::demo(&self.enrollment_db, &catalog)
                .await
                .map_err(seed_error("demo learners"))?;
            if let Some(report) = &seeded.learners {
                tracing::info!(?report, "seeded demo learners");
            }
        }
        Ok(seeded)
    }

    pub fn gateway_addr(&self) -> SocketAddr {
        self.gateway_addr
    }

    /// `http://` and the gateway's address.
    pub fn gateway_url(&self) -> String {
        format!("http://{}", self.gateway_addr)
    }

    /// catalog-svc's TCP address; `None` on the in-memory network.
    pub fn catalog_addr(&self) -> Option<SocketAddr> {
        self.catalog_addr
    }

    /// enrollment-svc's TCP address; `None` on the in-memory network.
    pub fn enrollment_addr(&self) -> Option<SocketAddr> {
        self.enrollment_addr
    }

    /// cache-svc's TCP address; `None` with [`CacheStore::Off`] or on the in-memory network.
    pub fn cache_addr(&self) -> Option<SocketAddr> {
        self.cache_addr
    }

    /// The configuration of one more gateway replica in front of this platform's services, as
    /// `config` (the one the platform was started with) sets the first, on a free loopback port:
    /// for tests and benchmarks of several gateways. `None` unless the services take plaintext
    /// on loopback ports ([`InternalTransport::Plaintext`]).
    pub fn replica_gateway_config(&self, config: &PlatformConfig) -> Option<gateway::Config> {
        if config.internal != InternalTransport::Plaintext {
            return None;
        }
        let url = |addr: SocketAddr| format!("http://{addr}");
        let upstreams = GatewayUpstreams {
            catalog: url(self.catalog_addr?),
            enrollment: url(self.enrollment_addr?),
        };
        let mut replica = gateway_config(
            config,
            upstreams,
            self.cache_addr.map(url),
            TlsArgs::plaintext(),
        );
        replica.listen = LOOPBACK_ANY_PORT.into();
        Some(replica)
    }

    /// Where `service` serves `GET /metrics`: the gateway on its own port; the other services
    /// only with [`PlatformConfig::service_metrics_listeners`]. In one process every address
    /// serves the same registry.
    pub fn metrics_addr(&self, service: Service) -> Option<SocketAddr> {
        self.metrics_addrs
            .iter()
            .find(|(listed, _)| *listed == service)
            .map(|(_, addr)| *addr)
    }

    /// catalog-svc's database (its profiler counts the statements the service ran).
    pub fn catalog_db(&self) -> &Db {
        &self.catalog_db
    }

    /// enrollment-svc's database.
    pub fn enrollment_db(&self) -> &Db {
        &self.enrollment_db
    }

    pub fn demo_seed(&self) -> &DemoSeed {
        &self.demo_seed
    }

    /// Waits until a server ends while nobody asked it to, and returns why, naming it:
    /// [`PlatformError::Failed`] (it returned an error, panicked or was aborted) or
    /// [`PlatformError::Exited`]. The other servers keep running. `Ok` only when no server is
    /// left to wait for.
    pub async fn wait(&mut self) -> Result<(), PlatformError> {
        if self.servers.is_empty() {
            return Ok(());
        }
        let (outcome, index) = {
            let (outcome, index, _others) = futures::future::select_all(
                self.servers
                    .iter_mut()
                    .map(|server| Box::pin(server.running.exited())),
            )
            .await;
            (outcome, index)
        };
        let service = self.servers.remove(index).service;
        Err(match outcome {
            Ok(()) => PlatformError::Exited { service },
            Err(source) => PlatformError::Failed { service, source },
        })
    }

    /// Serves until `shutdown` is cancelled, then stops every server. If a server ends first,
    /// the platform is only half-working: the others are stopped and its error is returned.
    pub async fn run_until_stopped(
        mut self,
        shutdown: CancellationToken,
    ) -> Result<(), PlatformError> {
        let ended = tokio::select! {
            () = shutdown.cancelled() => None,
            ended = self.wait() => Some(ended),
        };
        match ended {
            None => self.stop().await,
            Some(ended) => {
                if let Err(err) = &ended {
                    tracing::error!(%err, "a service ended; stopping the others");
                }
                if let Err(err) = self.stop().await {
                    tracing::warn!(%err, "while stopping the other services");
                }
                ended
            }
        }
    }

    /// Stops one server and waits for it to drain; the others keep running (the gateway then
    /// answers UNAVAILABLE for what needs it). Stopping it is not a failure for [`Platform::wait`].
    pub async fn stop_service(&mut self, service: Service) -> Result<(), PlatformError> {
        let Some(index) = self.servers.iter().position(|s| s.service == service) else {
            return Ok(());
        };
        let server = self.servers.remove(index);
        server
            .running
            .stop()
            .await
            .map_err(|source| PlatformError::Failed { service, source })
    }

    /// Stops every server, front to back, each draining before the next; the first error is
    /// returned once all are stopped.
    pub async fn stop(mut self) -> Result<(), PlatformError> {
        let mut outcome = Ok(());
        for Server { service, running } in std::mem::take(&mut self.servers) {
            if let Err(source) = running.stop().await {
                tracing::warn!(%service, %source, "stopped with an error");
                if outcome.is_ok() {
                    outcome = Err(PlatformError::Failed { service, source });
                }
            }
        }
        outcome
    }
}

impl Drop for Platform {
    fn drop(&mut self) {
        for server in &self.servers {
            server.running.shutdown.cancel();
        }
    }
}

// Each service's configuration, written once.

fn db_args(config: &PlatformConfig, database_url: &str) -> DbArgs {
    DbArgs {
        database_url: database_url.to_owned(),
        db_pool_size: config.db_pool_size,
        slow_query_ms: config.slow_query_ms,
        n_plus_one_threshold: 5,
    }
}

/// Where a service behind the gateway serves its metrics: nowhere unless asked (see
/// [`PlatformConfig::service_metrics_listeners`]).
fn service_metrics_addr(config: &PlatformConfig) -> String {
    if config.service_metrics_listeners {
        LOOPBACK_ANY_PORT.into()
    } else {
        String::new()
    }
}

/// The services' `tls` settings for each [`InternalTransport`].
enum Internal {
    Plaintext,
    /// Identities under a CA made at start (boxed: a CA is large beside the other variants).
    MutualTls(Box<DevCa>),
    InMemory(MemoryNetwork),
}

impl Internal {
    fn new(transport: InternalTransport) -> Result<Self, PlatformError> {
        Ok(match transport {
            InternalTransport::Plaintext => Self::Plaintext,
            InternalTransport::MutualTls => Self::MutualTls(Box::new(
                DevCa::new().map_err(start_error(Service::Gateway))?,
            )),
            InternalTransport::InMemory => Self::InMemory(MemoryNetwork::new()),
        })
    }

    fn in_memory(&self) -> bool {
        matches!(self, Self::InMemory(_))
    }

    /// `service`'s settings: plaintext, a certificate of its own under the CA, or its place on
    /// the in-memory network.
    fn args(&self, service: Service) -> Result<TlsArgs, PlatformError> {
        match self {
            Self::Plaintext => Ok(TlsArgs::plaintext()),
            Self::MutualTls(ca) => ca
                .identity(service.name())
                .map(TlsArgs::with_identity)
                .map_err(start_error(service)),
            Self::InMemory(network) => Ok(TlsArgs::on_memory(network.endpoint(service.name()))),
        }
    }
}

fn cache_config(config: &PlatformConfig, tls: TlsArgs) -> Option<cache_svc::Config> {
    let (redis_url, key_prefix) = match &config.cache {
        CacheStore::Off => return None,
        CacheStore::InProcess => (None, None),
        CacheStore::Redis { url, key_prefix } => (Some(url.clone()), key_prefix.clone()),
    };
    let mut cache = cache_svc::Config {
        listen: LOOPBACK_ANY_PORT.into(),
        metrics_addr: service_metrics_addr(config),
        redis_url,
        tls,
        ..cache_svc::Config::default()
    };
    if let Some(key_prefix) = key_prefix {
        cache.key_prefix = key_prefix;
    }
    Some(cache)
}

fn catalog_config(
    config: &PlatformConfig,
    cache_url: Option<String>,
    tls: TlsArgs,
) -> catalog_svc::Config {
    catalog_svc::Config {
        near_cache: config.near_cache.clone(),
        listen: LOOPBACK_ANY_PORT.into(),
        metrics_addr: service_metrics_addr(config),
        db: db_args(config, &config.catalog_database_url),
        cache_addr: cache_url,
        no_migrate: !config.migrate,
        tls,
        server_limits: ServerLimits::default(),
    }
}

fn enrollment_config(
    config: &PlatformConfig,
    catalog_url: &str,
    cache_url: Option<String>,
    tls: TlsArgs,
) -> enrollment_svc::Config {
    let mut enrollment = enrollment_svc::Config::new(
        LOOPBACK_ANY_PORT,
        db_args(config, &config.enrollment_database_url),
        catalog_url,
    );
    enrollment.cache_addr = cache_url;
    enrollment.no_migrate = !config.migrate;
    enrollment.metrics_addr = service_metrics_addr(config);
    enrollment.tls = tls;
    enrollment
}

fn gateway_config(
    config: &PlatformConfig,
    upstreams: GatewayUpstreams,
    cache_url: Option<String>,
    tls: TlsArgs,
) -> gateway::Config {
    gateway::Config {
        near_cache: config.near_cache.clone(),
        listen: config.listen.clone(),
        catalog_addr: upstreams.catalog,
        enrollment_addr: Some(upstreams.enrollment),
        cache_addr: cache_url,
        auth_jwt_secret: config.auth_jwt_secret.clone().into(),
        upstream_timeout_ms: u64::try_from(config.upstream_timeout.as_millis()).unwrap_or(u64::MAX),
        stale_if_error_secs: gateway::DEFAULT_STALE_IF_ERROR_SECS,
        auth_jwt_previous_secrets: Vec::new(),
        auth_jwt_issuer: None,
        auth_jwt_audience: None,
        auth_max_token_hours: gateway::auth::DEFAULT_MAX_TOKEN_HOURS,
        limits: config.gateway_limits.clone(),
        edge: gateway::edge::EdgeConfig::default(),
        tls,
    }
}

#[cfg(test)]
mod tests {
    use learnhub_db::{Backend, testing::TestDatabase};

    use super::*;

    /// The whole platform on two fresh SQLite files, with the in-process cache.
    async fn platform() -> (Platform, [TestDatabase; 2]) {
        let databases = [
            TestDatabase::create(Backend::Sqlite).await,
            TestDatabase::create(Backend::Sqlite).await,
        ];
        let config = PlatformConfig::new(
            databases[0].url(),
            databases[1].url(),
            "fail-fast-test-secret-of-at-least-32-bytes",
        );
        let platform = Platform::start(&config).await.unwrap();
        (platform, databases)
    }

    fn server(platform: &mut Platform, service: Service) -> &mut Server {
        platform
            .servers
            .iter_mut()
            .find(|server| server.service == service)
            .unwrap()
    }

    /// Every listener of the platform refuses connections: nothing is left serving.
    async fn assert_all_closed(addrs: &[SocketAddr]) {
        for addr in addrs {
            assert!(
                tokio::net::TcpStream::connect(addr).await.is_err(),
                "{addr} still accepts connections"
            );
        }
    }

    fn addrs(platform: &Platform) -> Vec<SocketAddr> {
        let mut addrs = vec![platform.gateway_addr()];
        addrs.extend(platform.catalog_addr());
        addrs.extend(platform.enrollment_addr());
        addrs.extend(platform.cache_addr());
        addrs
    }

    /// With internal mutual TLS every hop still works (the gateway's reads, writes and admin
    /// calls, enrollment-svc's catalog checks, every service's cache calls, the demo learners'
    /// seeding), and the services' ports refuse a caller without the platform's certificate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_internal_mtls_every_hop_works_and_strangers_are_refused() {
        let (platform, _databases) = every_hop_works(InternalTransport::MutualTls).await;
        end_users_act_only_for_themselves(&platform).await;
        for addr in addrs(&platform).into_iter().skip(1) {
            let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_lazy();
            let answered = tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await;
            assert!(answered.is_err(), "{addr} answered a plaintext caller");
        }
        platform.stop().await.unwrap();
    }

    /// On the in-memory network every hop works as over mutual TLS (the caller policies and the
    /// end user's forwarding included) and the internal services have no port at all: the only
    /// listening socket the platform opened is the gateway's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_every_hop_works_and_only_the_gateway_listens() {
        let (platform, _databases) = every_hop_works(InternalTransport::InMemory).await;
        assert_eq!(platform.catalog_addr(), None);
        assert_eq!(platform.enrollment_addr(), None);
        assert_eq!(platform.cache_addr(), None);
        assert_eq!(addrs(&platform), vec![platform.gateway_addr()]);
        platform.stop().await.unwrap();
    }

    /// Behind the gateway's own checks, enrollment-svc checks the end user the gateway forwards:
    /// a learner reads its own submissions and enrollments only, an admin anyone's.
    async fn end_users_act_only_for_themselves(platform: &Platform) {
        use learnhub_kit::enduser::{self, EndUser};
        use learnhub_proto::enrollment::v1::{
            ListEnrollmentsRequest, ListSubmissionsRequest,
            enrollment_service_client::EnrollmentServiceClient,
        };
        let options = ClientOptions::new(Duration::from_secs(5))
            .with_tls(platform.identity(Service::Gateway).unwrap());
        let addr = platform.enrollment_addr().expect("a TCP port");
        let channel = learnhub_kit::client::connect(
            "enrollment-svc",
            "--enrollment-addr",
            &addr.to_string(),
            &options,
        )
        .unwrap();
        let client = EnrollmentServiceClient::new(channel);
        let submissions = |user: EndUser, user_id: i64| {
            let mut client = client.clone();
            enduser::scope(user, async move {
                client
                    .list_submissions(ListSubmissionsRequest {
                        user_id,
                        ..Default::default()
                    })
                    .await
                    .map(drop)
                    .map_err(|status| status.code())
            })
        };
        assert_eq!(submissions(EndUser::learner("1"), 1).await, Ok(()));
        assert_eq!(
            submissions(EndUser::learner("2"), 1).await,
            Err(tonic::Code::PermissionDenied)
        );
        assert_eq!(submissions(EndUser::admin("9"), 1).await, Ok(()));
        let mut enrollments = client.clone();
        let denied = enduser::scope(EndUser::learner("2"), async move {
            enrollments
                .list_enrollments(ListEnrollmentsRequest {
                    user_id: 1,
                    ..Default::default()
                })
                .await
        })
        .await
        .unwrap_err();
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert!(denied.message().contains("end user 2"), "{denied:?}");
    }

    /// A platform over `internal` with demo learners, after one call of each kind through the
    /// gateway.
    async fn every_hop_works(internal: InternalTransport) -> (Platform, [TestDatabase; 2]) {
        const SECRET: &str = "internal-mtls-test-secret-of-at-least-32-bytes";
        let databases = [
            TestDatabase::create(Backend::Sqlite).await,
            TestDatabase::create(Backend::Sqlite).await,
        ];
        let mut config = PlatformConfig::new(databases[0].url(), databases[1].url(), SECRET);
        config.internal = internal;
        config.demo_data = DemoData::CatalogAndLearners;
        let platform = Platform::start(&config).await.unwrap();
        assert!(
            platform.demo_seed().learners.is_some(),
            "learners seeded over {internal:?}"
        );
        let http = reqwest::Client::new();
        let url = platform.gateway_url();
        let token = |subject: &str, role| {
            gateway::auth::issue_token(SECRET, subject, role, Duration::from_secs(600)).unwrap()
        };
        let (admin, learner) = (
            token("1", gateway::auth::Role::Admin),
            token("1", gateway::auth::Role::Learner),
        );
        let get =
            |path: &str, token: &str| http.get(format!("{url}{path}")).bearer_auth(token).send();

        let page: serde_json::Value = get("/v1/catalog?page_size=50", &learner)
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let courses = page["courses"].as_array().cloned().unwrap_or_default();
        assert!(!courses.is_empty(), "{page}");
        get("/v1/me/enrollments", &learner)
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        // Enrolling makes enrollment-svc check the course with catalog-svc.
        let statuses = futures::future::join_all(courses.iter().map(|course| {
            http.post(format!("{url}/v1/enrollments"))
                .bearer_auth(&learner)
                .json(&serde_json::json!({ "course_id": course["id"] }))
                .send()
        }))
        .await;
        let statuses: Vec<u16> = statuses
            .into_iter()
            .map(|response| response.unwrap().status().as_u16())
            .collect();
        assert!(
            statuses.iter().any(|status| (200..300).contains(status)),
            "{statuses:?}"
        );
        assert!(
            statuses
                .iter()
                .all(|status| [200, 201, 409].contains(status)),
            "{statuses:?}"
        );
        get("/v1/admin/cache/stats", &admin)
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        // A write: catalog-svc invalidates in cache-svc after its commit.
        let id = &courses[0]["id"];
        http.post(format!("{url}/v1/admin/courses/{id}/archive"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
        (platform, databases)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crashed_service_stops_the_whole_platform_with_an_error_naming_it() {
        let (mut platform, _databases) = platform().await;
        let addrs = addrs(&platform);
        server(&mut platform, Service::Catalog).running.task.abort();

        let err = tokio::time::timeout(
            Duration::from_secs(30),
            platform.run_until_stopped(CancellationToken::new()),
        )
        .await
        .expect("the platform stops without a signal")
        .unwrap_err();
        assert_eq!(err.service(), Some(Service::Catalog), "{err}");
        assert!(matches!(err, PlatformError::Failed { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with("catalog-svc failed"), "{message}");
        assert_all_closed(&addrs).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicked_service_is_named_with_its_panic() {
        let (mut platform, _databases) = platform().await;
        let cache = server(&mut platform, Service::Cache);
        cache.running.shutdown.cancel();
        let addr = cache.running.addr.clone();
        // Stand-in for a cache-svc whose task panics while serving.
        let replaced = std::mem::replace(
            &mut cache.running,
            Running::spawn(addr, CancellationToken::new(), async {
                panic!("the store fell over")
            }),
        );
        replaced.stop().await.unwrap();

        let err = platform.wait().await.unwrap_err();
        let message = err.to_string();
        assert_eq!(err.service(), Some(Service::Cache), "{message}");
        assert!(message.starts_with("cache-svc failed"), "{message}");
        assert!(message.contains("the store fell over"), "{message}");
        platform.stop().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_service_that_stops_on_its_own_is_an_error_too() {
        let (mut platform, _databases) = platform().await;
        server(&mut platform, Service::Enrollment)
            .running
            .shutdown
            .cancel();

        let err = platform.wait().await.unwrap_err();
        assert!(
            matches!(
                err,
                PlatformError::Exited {
                    service: Service::Enrollment
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().starts_with("enrollment-svc stopped"),
            "{err}"
        );
        platform.stop().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_services_metrics_listeners_are_off_unless_asked_for() {
        let databases = [
            TestDatabase::create(Backend::Sqlite).await,
            TestDatabase::create(Backend::Sqlite).await,
        ];
        let mut config = PlatformConfig::new(
            databases[0].url(),
            databases[1].url(),
            "metrics-test-secret-of-at-least-32-bytes",
        );
        let platform = Platform::start(&config).await.unwrap();
        assert_eq!(
            platform.metrics_addr(Service::Gateway),
            Some(platform.gateway_addr())
        );
        for service in [Service::Catalog, Service::Enrollment, Service::Cache] {
            assert_eq!(platform.metrics_addr(service), None, "{service}");
        }
        platform.stop().await.unwrap();

        config.service_metrics_listeners = true;
        let platform = Platform::start(&config).await.unwrap();
        let mut listeners = Vec::new();
        for service in [Service::Catalog, Service::Enrollment, Service::Cache] {
            let addr = platform.metrics_addr(service).unwrap();
            let text = reqwest::get(format!("http://{addr}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            // One registry per process: every listener serves every service's series.
            for name in ["gateway", "catalog-svc", "enrollment-svc", "cache-svc"] {
                let build_info = format!("learnhub_build_info{{service=\"{name}\"");
                assert!(
                    text.contains(&build_info),
                    "{service}: {build_info} in\n{text}"
                );
            }
            listeners.push(addr);
        }
        platform.stop().await.unwrap();
        assert_all_closed(&listeners).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shutdown_or_a_deliberate_stop_is_not_a_failure() {
        let (mut platform, _databases) = platform().await;
        let addrs = addrs(&platform);
        platform.stop_service(Service::Catalog).await.unwrap();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        platform.run_until_stopped(shutdown).await.unwrap();
        assert_all_closed(&addrs).await;
    }
}
