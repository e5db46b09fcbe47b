//! Test servers on port 0 with their own database, and statement counting.

use catalog_svc::{Application, Config};
use learnhub_db::{Backend, Db, DbArgs, testing::TestDatabase};
use learnhub_kit::shutdown::CancellationToken;
use learnhub_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tonic::transport::Channel;

pub use learnhub_kit::testing::Partition;

pub struct TestApp {
    pub client: CatalogServiceClient<Channel>,
    pub cache: Option<learnhub_cache_client::CacheClient>,
    pub db: Db,
    config: Config,
    server: Server,
    database: TestDatabase,
}

/// The running server: stopped when dropped.
struct Server {
    shutdown: CancellationToken,
    task: Option<ServerTask>,
}

impl Server {
    /// Stops the server and waits until its task (the outbox relay's too) has ended.
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("catalog-svc task")
                .expect("catalog-svc stops cleanly");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with_cache(backend, None).await
}

/// A catalog-svc that caches through the cache-svc at `cache_addr`.
pub async fn spawn_app_with_cache(backend: Backend, cache_addr: Option<String>) -> TestApp {
    let database = TestDatabase::create(backend).await;
    let config = Config {
        listen: "127.0.0.1:0".into(),
        metrics_addr: String::new(),
        db: DbArgs {
            database_url: database.url().to_owned(),
            db_pool_size: 4,
            slow_query_ms: 1_000,
            n_plus_one_threshold: 5,
        },
        cache_addr,
        near_cache: Default::default(),
        no_migrate: false,
        tls: learnhub_kit::tls::TlsArgs::plaintext(),
        server_limits: learnhub_kit::limits::ServerLimits::default(),
    };
    start(config, database).await
}

async fn start(config: Config, database: TestDatabase) -> TestApp {
    let app = Application::build(&config)
        .await
        .expect("catalog-svc starts");
    let addr = app.local_addr();
    let db = app.db().clone();
    let cache = app.cache().cloned();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = CatalogServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    TestApp {
        client,
        cache,
        db,
        config,
        server: Server {
            shutdown,
            task: Some(task),
        },
        database,
    }
}

impl TestApp {
    /// Stops this catalog-svc and lets go of everything it had in memory (its cache client,
    /// with any invalidation it was still retrying), then starts a new one on the same database
    /// and settings: what a restart of the process leaves.
    pub async fn restart(self) -> TestApp {
        let TestApp {
            client,
            cache,
            db,
            config,
            server,
            database,
        } = self;
        drop((client, cache, db));
        server.stop().await;
        start(config, database).await
    }

    pub async fn seed(&self, courses: u64) -> catalog_svc::seed::SeedReport {
        catalog_svc::seed::run(&self.db, courses, false)
            .await
            .expect("seed")
    }

    /// SQL statements the service ran while `call` ran.
    pub async fn statements<T>(&self, call: impl std::future::Future<Output = T>) -> (T, u64) {
        let before = self.db.profiler().statement_count();
        let result = call.await;
        (result, self.db.profiler().statement_count() - before)
    }
}

pub use learnhub_kit::testing::assert_status;

/// A cache-svc on Redis (127.0.0.1:6379) under a key prefix of its own, on port 0.
pub struct TestCache {
    pub addr: std::net::SocketAddr,
    prefix: String,
    shutdown: CancellationToken,
    task: Option<ServerTask>,
}

impl Drop for TestCache {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestCache {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts cache-svc again (after [`Self::stop`]) on the same address and Redis key prefix:
    /// the entries stored before the stop are still there.
    pub async fn restart(&mut self) {
        self.stop().await;
        let (_, shutdown, task) = serve_cache(&self.addr.to_string(), &self.prefix).await;
        self.shutdown = shutdown;
        self.task = Some(task);
    }

    /// Stops cache-svc and waits until it no longer answers anything.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("cache-svc task")
                .expect("cache-svc stops cleanly");
        }
    }
}

pub async fn spawn_cache() -> TestCache {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = format!(
        "lh-test-catalog-{}-{}:",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (addr, shutdown, task) = serve_cache("127.0.0.1:0", &prefix).await;
    TestCache {
        addr,
        prefix,
        shutdown,
        task: Some(task),
    }
}

type ServerTask = tokio::task::JoinHandle<Result<(), learnhub_kit::server::ServeError>>;

/// A cache-svc on `listen` over the test Redis, keys under `prefix`.
async fn serve_cache(
    listen: &str,
    prefix: &str,
) -> (std::net::SocketAddr, CancellationToken, ServerTask) {
    let config = cache_svc::Config {
        listen: listen.into(),
        redis_url: Some(
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
        key_prefix: prefix.to_owned(),
        ..cache_svc::Config::default()
    };
    let app = cache_svc::Application::build(&config)
        .await
        .expect("cache-svc starts");
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    (addr, shutdown, task)
}
