//! The services behind the gateway: lazy channels, per-call timeouts, readiness checks.
use std::{future::Future, time::Duration};

use learnhub_cache_client::{CacheClient, CacheClientOptions, NearCacheArgs};
use learnhub_kit::client::{self, ClientOptions, ServiceChannel};
use learnhub_proto::{
    cache::v1::cache_service_client::CacheServiceClient,
    catalog::v1::catalog_service_client::CatalogServiceClient,
    enrollment::v1::enrollment_service_client::EnrollmentServiceClient,
};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use tonic::Code;

use crate::error::{Error, passes_through};

pub const CATALOG: &str = "catalog-svc";
pub const ENROLLMENT: &str = "enrollment-svc";
pub const CACHE: &str = "cache-svc";

// The gRPC services whose health `/readyz` checks, as the generated code names them.
const CATALOG_SERVICE: &str = learnhub_proto::catalog::v1::catalog_service_server::SERVICE_NAME;
const ENROLLMENT_SERVICE: &str =
    learnhub_proto::enrollment::v1::enrollment_service_server::SERVICE_NAME;
const CACHE_SERVICE: &str = learnhub_proto::cache::v1::cache_service_server::SERVICE_NAME;

/// What the gateway's L1 holds: public first pages (`catalog:page:…`), the category list
/// (`catalog:gateway:categories`) and published courses (`course:7`, `course:slug:…`) — the keys
/// catalog-svc invalidates on the writes that change them.
const NEAR_NAMESPACES: &[&str] = &["catalog", "course"];

/// One upstream: its name, the gRPC service its health is checked for, and its channel.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: &'static str,
    health_service: &'static str,
    channel: ServiceChannel,
}

/// Clients for every upstream. Channels connect lazily, so the gateway starts (and answers
/// `/healthz`) while an upstream is still down; calls then fail fast with UNAVAILABLE.
#[derive(Debug, Clone)]
pub struct Upstreams {
    catalog: Upstream,
    enrollment: Option<Upstream>,
    cache: Option<Upstream>,
    /// Read-through cache of public catalog pages, on cache-svc's channel.
    page_cache: Option<CacheClient>,
    timeout: Duration,
}

/// The longest `/readyz` waits for an upstream's health check: well inside a kubelet probe's
/// timeout, so a slow upstream never fails the gateway's own readiness.
const READINESS_CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// State of one upstream, reported by `/readyz` (for people; the gateway's readiness does not
/// depend on it).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Readiness {
    pub name: &'static str,
    pub ready: bool,
    /// "serving", or why not: "not_serving", "unavailable", "timeout", "unimplemented", ...
    pub state: String,
}

impl Upstreams {
    /// Lazy channels to the configured addresses (`http://host:port` or `host:port`; an empty
    /// optional address counts as unset), each built by the kit's one client constructor.
    pub fn connect_lazy(
        catalog: &str,
        enrollment: Option<&str>,
        cache: Option<&str>,
        near_cache: &NearCacheArgs,
        options: &ClientOptions,
    ) -> Result<Self, Error> {
        let upstream = |flag: &'static str,
                        name: &'static str,
                        health_service: &'static str,
                        addr: &str|
         -> Result<Upstream, Error> {
            let channel =
                client::connect(name, flag, addr, options).map_err(|err| Error::Config {
                    flag,
                    reason: err.reason,
                })?;
            Ok(Upstream {
                name,
                health_service,
                channel,
            })
        };
        let cache = client::configured(cache)
            .map(|addr| upstream("--cache-addr", CACHE, CACHE_SERVICE, addr))
            .transpose()?;
        let page_cache = cache.as_ref().map(|up| {
            let options = CacheClientOptions {
                caller: "gateway",
                near: near_cache.options(NEAR_NAMESPACES),
                ..CacheClientOptions::default()
            };
            CacheClient::from_channel(up.channel.clone(), options)
        });
        Ok(Self {
            catalog: upstream("--catalog-addr", CATALOG, CATALOG_SERVICE, catalog)?,
            enrollment: client::configured(enrollment)
                .map(|addr| upstream("--enrollment-addr", ENROLLMENT, ENROLLMENT_SERVICE, addr))
                .transpose()?,
            cache,
            page_cache,
            timeout: options.timeout,
        })
    }

    pub fn catalog(&self) -> CatalogServiceClient<ServiceChannel> {
        CatalogServiceClient::new(self.catalog.channel.clone())
    }

    /// The enrollment client, or UNAVAILABLE when enrollment-svc is not configured.
    pub fn enrollment(&self) -> Result<EnrollmentServiceClient<ServiceChannel>, Error> {
        self.enrollment
            .as_ref()
            .map(|up| EnrollmentServiceClient::new(up.channel.clone()))
            .ok_or(Error::NotConfigured(ENROLLMENT))
    }

    pub fn has_enrollment(&self) -> bool {
        self.enrollment.is_some()
    }

    /// The cache client, or UNAVAILABLE when cache-svc is not configured.
    pub fn cache(&self) -> Result<CacheServiceClient<ServiceChannel>, Error> {
        self.cache
            .as_ref()
            .map(|up| CacheServiceClient::new(up.channel.clone()))
            .ok_or(Error::NotConfigured(CACHE))
    }

    /// The cache of public catalog pages, when cache-svc is configured.
    pub fn page_cache(&self) -> Option<&CacheClient> {
        self.page_cache.as_ref()
    }

    /// A request for an upstream (its channel adds the deadline and the trace context).
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// Awaits one upstream call. Its channel bounds it by the upstream timeout; a call that ran
    /// out of it (DEADLINE_EXCEEDED: the deadline travels with the call, so an upstream's own
    /// DEADLINE_EXCEEDED is ours too) is `Error::Timeout`.
    pub async fn call<T, F>(&self, service: &'static str, call: F) -> Result<T, Error>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        // Failures are logged here, inside the handler's span; the caller sees only the status.
        match call.await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) if status.code() == Code::DeadlineExceeded => {
                let timeout_ms = self.timeout.as_millis();
                tracing::warn!(service, timeout_ms, "upstream timed out");
                Err(Error::Timeout {
                    service,
                    timeout_ms,
                })
            }
            Err(status) => {
                let code = status.code();
                if matches!(code, Code::Unavailable | Code::Cancelled) {
                    tracing::warn!(
                        service,
                        ?code,
                        message = status.message(),
                        "upstream unavailable"
                    );
                } else if !passes_through(code) {
                    tracing::error!(
                        service,
                        ?code,
                        message = status.message(),
                        "upstream failed"
                    );
                }
                Err(Error::Upstream { service, status })
            }
        }
    }

    /// Checks every configured upstream's `grpc.health.v1` status concurrently, each within
    /// [`READINESS_CHECK_TIMEOUT`].
    pub async fn readiness(&self) -> Vec<Readiness> {
        let checks = [
            Some(&self.catalog),
            self.enrollment.as_ref(),
            self.cache.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|upstream| self.check(upstream));
        futures::future::join_all(checks).await
    }

    async fn check(&self, upstream: &Upstream) -> Readiness {
        let mut client = HealthClient::new(upstream.channel.clone());
        let request = self.request(HealthCheckRequest {
            service: upstream.health_service.to_owned(),
        });
        // The reason is kept short (a code, not the transport error): /readyz is public.
        let checked = tokio::time::timeout(
            READINESS_CHECK_TIMEOUT,
            self.call(upstream.name, client.check(request)),
        )
        .await;
        let state = match checked {
            Ok(Ok(response)) => match ServingStatus::try_from(response.status) {
                Ok(ServingStatus::Serving) => "serving".to_owned(),
                Ok(other) => other.as_str_name().to_lowercase(),
                Err(_) => "unknown".to_owned(),
            },
            Ok(Err(Error::Upstream { status, .. })) => {
                crate::error::code_name(status.code()).to_owned()
            }
            Ok(Err(_)) | Err(_) => "timeout".to_owned(),
        };
        Readiness {
            name: upstream.name,
            ready: state == "serving",
            state,
        }
    }
}
