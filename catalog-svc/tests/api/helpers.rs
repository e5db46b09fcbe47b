//! Test servers on port 0 with their own database, and statement counting.
use catalog_svc::{Application, Config};
use learnhub_db::{Backend, Db, DbArgs, testing::TestDatabase};
use learnhub_kit::shutdown::CancellationToken;
use learnhub_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tonic::transport::Channel;

pub struct TestApp {
    pub client: CatalogServiceClient<Channel>,
    pub cache: Option<learnhub_cache_client::CacheClient>,
    pub db: Db,
    shutdown: CancellationToken,
    _database: TestDatabase,
}

impl Drop for TestApp {
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
        no_migrate: false,
        tls: learnhub_kit::tls::TlsArgs::plaintext(),
        server_limits: learnhub_kit::limits::ServerLimits::default(),
    };
    let app = Application::build(&config)
        .await
        .expect("catalog-svc starts");
    let addr = app.local_addr();
    let db = app.db().clone();
    let cache = app.cache().cloned();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = CatalogServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    TestApp {
        client,
        cache,
        db,
        shutdown,
        _database: database,
    }
}

impl TestApp {
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
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), learnhub_kit::server::ServeError>>>,
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
    let config = cache_svc::Config {
        listen: "127.0.0.1:0".into(),
        redis_url: Some(
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
        key_prefix: prefix,
        ..cache_svc::Config::default()
    };
    let app = cache_svc::Application::build(&config)
        .await
        .expect("cache-svc starts");
    let addr = app.local_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestCache {
        addr,
        shutdown,
        task: Some(task),
    }
}
