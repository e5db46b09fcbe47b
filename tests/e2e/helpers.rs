//! `spawn_platform`: catalog-svc + gateway on port 0 over a throwaway database, with demo data.
use std::time::Duration;

use gateway::auth::{Role, issue_token};
use learnhub_kit::{
    Backend, config::DbArgs, server::Running, shutdown::CancellationToken, testing::TestDatabase,
};
use learnhub_proto::gateway::v1::gateway_service_client::GatewayServiceClient;
use reqwest::StatusCode;
use serde_json::Value;
use tonic::transport::Channel;

pub const SECRET: &str = "e2e-secret";

pub struct Platform {
    pub url: String,
    pub http: reqwest::Client,
    catalog: Option<Running>,
    gateway_shutdown: CancellationToken,
    cache_shutdown: CancellationToken,
    // Dropped last: the servers stop before their database goes.
    _database: TestDatabase,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.gateway_shutdown.cancel();
        self.cache_shutdown.cancel();
        if let Some(catalog) = &self.catalog {
            catalog.shutdown.cancel();
        }
    }
}

/// gateway + catalog-svc + cache-svc (on the real Redis, under a key prefix of this test's own).
pub async fn spawn_platform(backend: Backend) -> Platform {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let cache_config = cache_svc::Config {
        listen: "127.0.0.1:0".into(),
        redis_url: Some(
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
        key_prefix: format!(
            "lh-test-e2e-{}-{}:",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ),
        ..cache_svc::Config::default()
    };
    let cache = cache_svc::Application::build(&cache_config)
        .await
        .expect("cache-svc starts");
    let cache_addr = format!("http://{}", cache.local_addr());
    let cache_shutdown = CancellationToken::new();
    tokio::spawn(cache.run_until_stopped(cache_shutdown.clone()));

    let database = TestDatabase::create(backend).await;
    let catalog_config = catalog_svc::Config {
        listen: "127.0.0.1:0".into(),
        db: DbArgs {
            database_url: database.url().to_owned(),
            db_pool_size: 4,
            slow_query_ms: 1_000,
        },
        cache_addr: Some(cache_addr.clone()),
        no_migrate: false,
    };
    let catalog = catalog_svc::Application::build(&catalog_config)
        .await
        .expect("catalog-svc starts");
    let seeded = catalog_svc::seed::demo(catalog.db())
        .await
        .expect("demo seed");
    assert!(seeded.is_some(), "a fresh database gets the demo catalog");
    let catalog_addr = catalog.local_addr();
    let catalog_shutdown = CancellationToken::new();
    let catalog = Running::spawn(
        catalog_addr,
        catalog_shutdown.clone(),
        catalog.run_until_stopped(catalog_shutdown),
    );

    let gateway_config = gateway::Config {
        listen: "127.0.0.1:0".into(),
        catalog_addr: format!("http://{catalog_addr}"),
        enrollment_addr: None,
        cache_addr: Some(cache_addr),
        auth_jwt_secret: SECRET.into(),
        upstream_timeout_ms: 5_000,
    };
    let app = gateway::Application::build(&gateway_config)
        .await
        .expect("gateway starts");
    let gateway_addr = app.local_addr();
    let gateway_shutdown = CancellationToken::new();
    tokio::spawn(app.run_until_stopped(gateway_shutdown.clone()));
    Platform {
        url: format!("http://{gateway_addr}"),
        http: reqwest::Client::new(),
        catalog: Some(catalog),
        gateway_shutdown,
        cache_shutdown,
        _database: database,
    }
}

impl Platform {
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url))
    }

    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.patch(format!("{}{path}", self.url))
    }

    /// GET `path` and return its JSON, asserting 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn grpc(&self) -> GatewayServiceClient<Channel> {
        GatewayServiceClient::connect(self.url.clone())
            .await
            .unwrap()
    }

    /// Stops catalog-svc (the gateway keeps running) and waits for it to drain.
    pub async fn stop_catalog(&mut self) {
        if let Some(catalog) = self.catalog.take() {
            catalog.stop().await.unwrap();
        }
    }
}

pub fn token(role: Role, subject: &str) -> String {
    issue_token(SECRET, subject, role, Duration::from_secs(600)).unwrap()
}

pub fn admin() -> String {
    token(Role::Admin, "1")
}

pub fn learner() -> String {
    token(Role::Learner, "2")
}

/// A REST error: status, `code` and `message`.
pub async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Every course of the catalog page for `query`, following next_page_token to the end.
pub async fn all_pages(platform: &Platform, query: &str) -> (Vec<Value>, usize) {
    let mut courses = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/catalog?{query}");
        if let Some(token) = &token {
            path.push_str(&format!("&page_token={token}"));
        }
        let page = platform.get_json(&path).await;
        pages += 1;
        courses.extend(page["courses"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 1_000, "pagination does not end");
    }
    (courses, pages)
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
