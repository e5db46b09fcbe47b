//! The gateway over real HTTP and gRPC, in front of in-memory upstream fakes.
// Helpers and fakes outside #[test] fns panic on purpose: a failed set-up is a failed test.
#![allow(clippy::unwrap_used)]
mod access_log;
mod auth_hardening;
mod db_stats;
mod fakes;
mod grpc;
mod http_surface;
mod limits;
mod metrics;
mod rest;
mod stale;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use fakes::FakeCatalog;
use gateway::auth::{Role, issue_token};
use learnhub_kit::shutdown::CancellationToken;

pub const SECRET: &str = "gateway-test-secret-of-at-least-32-bytes";

pub struct TestGateway {
    pub addr: SocketAddr,
    pub url: String,
    pub http: reqwest::Client,
    pub catalog: Arc<FakeCatalog>,
    shutdown: CancellationToken,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestGateway {
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url))
    }

    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.patch(format!("{}{path}", self.url))
    }

    pub async fn grpc(
        &self,
    ) -> learnhub_proto::gateway::v1::gateway_service_client::GatewayServiceClient<
        tonic::transport::Channel,
    > {
        learnhub_proto::gateway::v1::gateway_service_client::GatewayServiceClient::connect(format!(
            "http://{}",
            self.addr
        ))
        .await
        .unwrap()
    }
}

pub struct Options {
    pub catalog: FakeCatalog,
    /// Point CATALOG_ADDR at a closed port instead of the fake.
    pub catalog_down: bool,
    pub enrollment: bool,
    pub timeout_ms: u64,
    /// The gateway's rate and load limits (the flags' defaults unless set).
    pub limits: gateway::limits::LimitConfig,
    /// Point CATALOG_ADDR at a listener that accepts connections and closes them at once.
    pub catalog_resets: bool,
    /// CORS, HSTS and reflection settings.
    pub edge: gateway::edge::EdgeConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            catalog: FakeCatalog::new(),
            catalog_down: false,
            enrollment: false,
            timeout_ms: 2000,
            limits: Default::default(),
            catalog_resets: false,
            edge: gateway::edge::EdgeConfig::default(),
        }
    }
}

pub async fn spawn_gateway(options: Options) -> TestGateway {
    let shutdown = CancellationToken::new();
    let catalog = Arc::new(options.catalog);
    let catalog_addr = if options.catalog_down {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}")
    } else if options.catalog_resets {
        fakes::spawn_resetting(&shutdown).await
    } else {
        fakes::spawn_catalog(catalog.clone(), &shutdown).await
    };
    let enrollment_addr = if options.enrollment {
        Some(fakes::spawn_enrollment(&shutdown).await)
    } else {
        None
    };
    let config = gateway::Config {
        near_cache: Default::default(),
        listen: "127.0.0.1:0".into(),
        catalog_addr,
        enrollment_addr,
        cache_addr: None,
        auth_jwt_secret: SECRET.into(),
        upstream_timeout_ms: options.timeout_ms,
        stale_if_error_secs: gateway::DEFAULT_STALE_IF_ERROR_SECS,
        auth_jwt_previous_secrets: Vec::new(),
        auth_jwt_issuer: None,
        auth_jwt_audience: None,
        auth_max_token_hours: 24,
        limits: options.limits,
        edge: options.edge,
        tls: learnhub_kit::tls::TlsArgs::plaintext(),
    };
    let app = gateway::Application::build(&config).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestGateway {
        addr,
        url: format!("http://{addr}"),
        http: reqwest::Client::new(),
        catalog,
        shutdown,
    }
}

pub fn token(role: Role, subject: &str) -> String {
    issue_token(SECRET, subject, role, Duration::from_secs(600)).unwrap()
}

pub fn admin() -> String {
    token(Role::Admin, "1000")
}

pub fn learner() -> String {
    token(Role::Learner, "1")
}

#[tokio::test]
async fn config_debug_hides_the_secret() {
    let config = gateway::Config {
        near_cache: Default::default(),
        listen: "127.0.0.1:0".into(),
        catalog_addr: "http://127.0.0.1:1".into(),
        enrollment_addr: None,
        cache_addr: None,
        auth_jwt_secret: "super-secret-value-of-at-least-32-bytes".into(),
        upstream_timeout_ms: 10,
        stale_if_error_secs: gateway::DEFAULT_STALE_IF_ERROR_SECS,
        auth_jwt_previous_secrets: Vec::new(),
        auth_jwt_issuer: None,
        auth_jwt_audience: None,
        auth_max_token_hours: 24,
        limits: gateway::limits::LimitConfig::default(),
        edge: gateway::edge::EdgeConfig::default(),
        tls: learnhub_kit::tls::TlsArgs::plaintext(),
    };
    assert!(!format!("{config:?}").contains("super-secret-value-of-at-least-32-bytes"));
    let empty = gateway::Config {
        near_cache: Default::default(),
        auth_jwt_secret: String::new().into(),
        ..config.clone()
    };
    assert!(gateway::Application::build(&empty).await.is_err());
    let bad_addr = gateway::Config {
        near_cache: Default::default(),
        catalog_addr: "http://exa mple:1".into(),
        ..config
    };
    let err = gateway::Application::build(&bad_addr).await.err().unwrap();
    assert!(err.to_string().contains("--catalog-addr"), "{err}");
}
