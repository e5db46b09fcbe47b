//! learnhub's front door: gRPC (`learnhub.gateway.v1.GatewayService`), gRPC-Web and REST/JSON
//! on one port, in front of catalog-svc (and enrollment-svc and cache-svc when configured).
pub(crate) mod access;
pub(crate) mod admin;
pub(crate) mod audit;
pub mod auth;
pub(crate) mod catalog;
pub(crate) mod console;
pub(crate) mod cors;
pub mod edge;
pub(crate) mod error;
pub(crate) mod grpc;
pub(crate) mod learner;
pub mod limits;
pub(crate) mod request_size;
pub(crate) mod rest;
pub(crate) mod stale;
pub(crate) mod state;
pub(crate) mod unary;
pub(crate) mod upstream;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use learnhub_kit::{
    client::ClientOptions,
    server::{Probes, ServeError, bind, serve_probed},
    shutdown::CancellationToken,
};
use learnhub_proto::gateway::v1::gateway_service_server::SERVICE_NAME;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use crate::{error::Error, grpc::GatewayGrpc, state::Gateway};
pub use crate::{
    request_size::{MAX_HEADER_BYTES, MAX_URI_BYTES},
    rest::MAX_BODY_BYTES as MAX_REST_BODY_BYTES,
};

/// How old a stale copy of a public read may be (`--stale-if-error-secs`): the public page's
/// cache lifetime, so a copy is never older than a cached page could be.
pub const DEFAULT_STALE_IF_ERROR_SECS: u64 = 300;

/// Gateway configuration; every flag also reads its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to serve gRPC, gRPC-Web and REST on.
    #[arg(long = "listen", env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: String,
    /// catalog-svc's gRPC address, e.g. http://127.0.0.1:50051; replicas: a name resolving to
    /// each, or a comma-separated list.
    #[arg(long, env = "CATALOG_ADDR")]
    pub catalog_addr: String,
    /// enrollment-svc's gRPC address. Absent: learner calls answer UNAVAILABLE.
    #[arg(long, env = "ENROLLMENT_ADDR")]
    pub enrollment_addr: Option<String>,
    /// cache-svc's gRPC address. Absent: cache admin calls answer UNAVAILABLE.
    #[arg(long, env = "CACHE_ADDR")]
    pub cache_addr: Option<String>,
    /// HS256 secret that signs caller tokens, at least 32 bytes. Never logged.
    #[arg(long, env = "AUTH_JWT_SECRET", hide_env_values = true, value_parser = secret)]
    pub auth_jwt_secret: SecretString,
    /// How long one upstream call may take before the caller gets UNAVAILABLE (milliseconds).
    #[arg(long, env = "UPSTREAM_TIMEOUT_MS", default_value_t = 2000)]
    pub upstream_timeout_ms: u64,
    /// When catalog-svc does not answer, public catalog pages, published courses and the
    /// categories are answered with their last good copy if it is at most this old, marked
    /// `x-learnhub-stale-seconds`; 0 turns it off.
    #[arg(long, env = "STALE_IF_ERROR_SECS", default_value_t = DEFAULT_STALE_IF_ERROR_SECS)]
    pub stale_if_error_secs: u64,
    /// Earlier secrets still accepted while a rotation rolls out (comma-separated, each at least
    /// 32 bytes); tokens are verified with them, never signed. Never logged.
    #[arg(long, env = "AUTH_JWT_PREVIOUS_SECRETS", hide_env_values = true, value_parser = secret, value_delimiter = ',')]
    pub auth_jwt_previous_secrets: Vec<SecretString>,
    /// The `iss` claim every caller token must carry (unchecked when absent).
    #[arg(long, env = "AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,
    /// The `aud` claim every caller token must name (when absent, a token naming an audience is refused).
    #[arg(long, env = "AUTH_JWT_AUDIENCE")]
    pub auth_jwt_audience: Option<String>,
    /// The longest token lifetime accepted, in hours: `exp - iat` (or `exp - now` without `iat`).
    #[arg(long, env = "AUTH_MAX_TOKEN_HOURS", default_value_t = auth::DEFAULT_MAX_TOKEN_HOURS)]
    pub auth_max_token_hours: u64,
    /// Public catalog pages, published courses and the categories kept in this process too, in
    /// front of cache-svc (with CACHE_ADDR).
    #[command(flatten)]
    pub near_cache: learnhub_cache_client::NearCacheArgs,
    /// Per-caller rate limits, the submission quota and the server's load limits.
    #[command(flatten)]
    pub limits: limits::LimitConfig,
    /// CORS, security headers and reflection.
    #[command(flatten)]
    pub edge: edge::EdgeConfig,
    /// Mutual TLS on its calls to catalog-svc, enrollment-svc and cache-svc (its own port is
    /// the public front door: TLS from clients ends at the ingress).
    #[command(flatten)]
    pub tls: learnhub_kit::tls::TlsArgs,
}

/// A secret from a flag or the environment; its `Debug` is `[REDACTED]`, so it cannot reach a log.
fn secret(text: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(text))
}

/// A gateway bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    routes: Routes,
    rate_limits: Arc<limits::RateLimits>,
    server_limits: learnhub_kit::limits::ServerLimits,
    edge: edge::Edge,
}

impl Application {
    /// Binds the listener (port 0 picks a free one) and prepares lazy upstream channels, so the
    /// gateway starts even while its upstreams are down.
    pub async fn build(config: &Config) -> Result<Self, Error> {
        if config.upstream_timeout_ms == 0 {
            return Err(Error::Config {
                flag: "--upstream-timeout-ms",
                reason: "must be at least 1".into(),
            });
        }
        // Before the upstream clients: they register series (the near-cache's counters, the
        // breaker gauge) as they are built, which would go nowhere without a recorder.
        learnhub_kit::metrics::install("gateway", env!("CARGO_PKG_VERSION"));
        let upstreams = upstream::Upstreams::connect_lazy(
            &config.catalog_addr,
            config.enrollment_addr.as_deref(),
            config.cache_addr.as_deref(),
            &config.near_cache,
            &ClientOptions::new(Duration::from_millis(config.upstream_timeout_ms))
                .with_tls(config.tls.load("gateway")?)
                .with_memory(config.tls.memory.clone()),
        )?;
        let tokens = token_verifier(config)?;
        let rate_limits = Arc::new(limits::RateLimits::new(&config.limits, tokens.clone()));
        let gateway = Arc::new(
            Gateway::new(upstreams, tokens)
                .with_stale_if_error(Duration::from_secs(config.stale_if_error_secs)),
        );
        let edge = edge::Edge::new(&config.edge)?;
        let listener = bind(&config.listen).await?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        Ok(Self {
            listener,
            local_addr,
            routes: rate_limited(routes(gateway, &edge), rate_limits.clone()),
            rate_limits,
            server_limits: config.limits.server.clone(),
            edge,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight calls.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        tracing::info!(addr = %self.local_addr, "gateway listening (gRPC, gRPC-Web, REST)");
        tokio::spawn(limits::sweep_until_stopped(
            self.rate_limits,
            shutdown.clone(),
        ));
        let (routes, probes) =
            Probes::install_with(self.routes, &[SERVICE_NAME], self.edge.reflection).await?;
        serve_probed(
            self.listener,
            self.edge.layer(routes),
            probes,
            shutdown,
            &self.server_limits,
            // The public front door: callers authenticate with their tokens.
            &learnhub_kit::server::Transport::Plaintext,
        )
        .await
    }
}

/// The verifier of caller tokens; a weak secret or an impossible rule stops the start, naming its
/// flag (never the secret). Empty entries (`AUTH_JWT_ISSUER=`) mean the same as absent ones.
fn token_verifier(config: &Config) -> Result<auth::TokenVerifier, Error> {
    let given = |value: &Option<String>| value.clone().filter(|value| !value.is_empty());
    let previous: Vec<&str> = config
        .auth_jwt_previous_secrets
        .iter()
        .map(ExposeSecret::expose_secret)
        .filter(|secret| !secret.is_empty())
        .collect();
    let rules = auth::TokenRules {
        issuer: given(&config.auth_jwt_issuer),
        audience: given(&config.auth_jwt_audience),
        max_lifetime: Duration::from_secs(config.auth_max_token_hours.saturating_mul(3600)),
    };
    auth::TokenVerifier::with_rules(config.auth_jwt_secret.expose_secret(), &previous, rules)
        .map_err(|err| Error::Config {
            flag: match err {
                auth::VerifierConfigError::SecretTooShort => "--auth-jwt-secret",
                auth::VerifierConfigError::PreviousSecretTooShort { .. } => {
                    "--auth-jwt-previous-secrets"
                }
                auth::VerifierConfigError::NoLifetime => "--auth-max-token-hours",
            },
            reason: err.to_string(),
        })
}

/// REST routes plus the gRPC service. gRPC-Web wraps only the gRPC service: on the whole server
/// it would answer 400 to plain HTTP/1 REST requests. Inside it, every call's body is checked
/// ([`unary::UnaryRequests`]), whichever protocol brought it.
pub fn routes(gateway: Arc<Gateway>, edge: &edge::Edge) -> Routes {
    let grpc = unary::UnaryRequests(GatewayGrpc::new(gateway.clone()).into_server());
    Routes::from(rest::router(gateway, edge.security.clone()))
        .add_service(learnhub_kit::server::grpc_web(grpc))
}

/// `routes` behind the per-caller rate limits ([`limits::enforce`]), REST and gRPC alike.
fn rate_limited(routes: Routes, rate_limits: Arc<limits::RateLimits>) -> Routes {
    Routes::from(
        routes
            .into_axum_router()
            .layer(axum::middleware::from_fn_with_state(
                rate_limits,
                limits::enforce,
            )),
    )
}
