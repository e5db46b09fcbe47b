//! Test servers on port 0 with their own database, and statement counting.
use catalog_svc::{Application, Config};
use learnhub_kit::{
    Backend, Db, config::DbArgs, shutdown::CancellationToken, testing::TestDatabase,
};
use learnhub_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use tonic::transport::Channel;

pub struct TestApp {
    pub client: CatalogServiceClient<Channel>,
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
    let database = TestDatabase::create(backend).await;
    let config = Config {
        listen: "127.0.0.1:0".into(),
        db: DbArgs {
            database_url: database.url().to_owned(),
            db_pool_size: 4,
            slow_query_ms: 1_000,
        },
        cache_addr: None,
        no_migrate: false,
    };
    let app = Application::build(&config)
        .await
        .expect("catalog-svc starts");
    let addr = app.local_addr();
    let db = app.db().clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = CatalogServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    TestApp {
        client,
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

/// Runs `$test(Backend)` once on SQLite and once on Postgres.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),+ $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$test(learnhub_kit::Backend::Sqlite).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$test(learnhub_kit::Backend::Postgres).await
                }
            }
        )+
    };
}

/// Asserts a gRPC error's code and that its message names `field`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    field: &str,
) {
    let status = result.expect_err("expected an error");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(field),
        "message {:?} should name {field:?}",
        status.message()
    );
}
