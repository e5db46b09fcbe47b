//! gRPC server bootstrap shared by every service: health (`grpc.health.v1`), server reflection
//! (v1 and v1alpha, so `grpcurl list` works without proto files), graceful shutdown, a server
//! span plus RED metrics for every request ([`ServerTelemetryLayer`]), the load limits of
//! [`crate::limits`], and mutual TLS with a per-RPC caller policy ([`Transport`], [`crate::tls`]).
use std::{
    future::Future,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
};

use futures::future::BoxFuture;
use prost::Message;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{server::NamedService, service::Routes, transport::server::TcpIncoming};
use tonic_health::{ServingStatus, server::HealthReporter};
use tower::{Layer, Service};

pub use crate::rpc_call::ObservedBody;
use crate::{
    limits::{self, ServerLimits},
    memory::{MemoryEndpoint, MemoryListener},
    rpc_call::{RpcCall, Side},
    telemetry::{self, ServerTrace},
    tls::{self, CallerPolicy, CallerPolicyLayer, MutualTls},
};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("reflection set-up: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    #[error("metrics listener on {addr}: {source}")]
    Metrics {
        addr: String,
        source: std::io::Error,
    },
    /// The server's task never returned: it panicked or was aborted.
    #[error("server task on {addr} ended abnormally: {source}")]
    Task {
        addr: String,
        source: tokio::task::JoinError,
    },
}

/// Binds a listener; port 0 picks a free port (tests), read it back with `local_addr`.
pub async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_owned(),
            source,
        })
}

/// Where an internal service takes its calls: a TCP port, or its name on the process's
/// in-memory network (the monolith: [`crate::memory`]).
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Memory(MemoryListener),
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Self::Tcp(listener)
    }
}

impl Listener {
    /// Listens on `memory`'s network when it is given (`addr` is then unused), else binds
    /// `addr` ([`bind`]).
    pub async fn bind(addr: &str, memory: Option<&MemoryEndpoint>) -> Result<Self, ServeError> {
        match memory {
            Some(memory) => memory
                .listen()
                .map(Self::Memory)
                .map_err(|source| ServeError::Bind {
                    addr: memory.address(),
                    source,
                }),
            None => bind(addr).await.map(Self::Tcp),
        }
    }

    /// The TCP address; `None` in memory.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Tcp(listener) => listener.local_addr().ok(),
            Self::Memory(_) => None,
        }
    }

    /// Where a client calls it: `http://ip:port` or `memory://name`.
    pub fn url(&self) -> String {
        match self {
            Self::Tcp(listener) => listener.local_addr().map_or_else(
                |_| "http://0.0.0.0:0".to_owned(),
                |addr| format!("http://{addr}"),
            ),
            Self::Memory(listener) => listener.address(),
        }
    }

    /// Who may call through this listener: in memory every connection knows its caller, so
    /// `policy` applies as it does over mutual TLS; on TCP, mutual TLS under `policy` when `tls`
    /// is set, else plaintext.
    pub fn transport(&self, tls: Option<Arc<MutualTls>>, policy: CallerPolicy) -> Transport {
        match self {
            Self::Memory(_) => Transport::InMemory { policy },
            Self::Tcp(_) => Transport::new(tls, policy),
        }
    }
}

/// What a server's reflection service describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reflection {
    /// Every learnhub service, whichever the server serves (internal servers).
    #[default]
    Everything,
    /// Only the server's own services and health; the definitions of other services are left
    /// out of the descriptors too (a public front door).
    OwnServices,
    /// No reflection service.
    Off,
}

/// Health and reflection for a server whose own services are `service_names`.
pub struct Probes {
    pub health: HealthReporter,
    service_names: Vec<&'static str>,
}

impl Probes {
    /// Adds health and reflection (of every learnhub service) to `routes` and marks every
    /// service SERVING.
    pub async fn install(
        routes: Routes,
        service_names: &[&'static str],
    ) -> Result<(Routes, Self), ServeError> {
        Self::install_with(routes, service_names, Reflection::Everything).await
    }

    /// [`Probes::install`] with the given [`Reflection`].
    pub async fn install_with(
        routes: Routes,
        service_names: &[&'static str],
        reflection: Reflection,
    ) -> Result<(Routes, Self), ServeError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let probes = Self {
            health,
            service_names: service_names.to_vec(),
        };
        probes.set_all(ServingStatus::Serving).await;
        let routes = routes.add_service(health_service);
        let routes = match reflection {
            Reflection::Off => routes,
            Reflection::Everything | Reflection::OwnServices => {
                let v1 = reflection_builder(reflection, service_names).build_v1()?;
                let v1alpha = reflection_builder(reflection, service_names).build_v1alpha()?;
                routes.add_service(v1).add_service(v1alpha)
            }
        };
        Ok((routes, probes))
    }

    /// The server-wide status (`""`) and every named service.
    pub async fn set_all(&self, status: ServingStatus) {
        self.health.set_service_status("", status).await;
        for name in &self.service_names {
            self.health.set_service_status(*name, status).await;
        }
    }
}

/// A reflection service's set-up: every learnhub descriptor, or only the files' messages and the
/// services named (with health and reflection itself).
fn reflection_builder(
    reflection: Reflection,
    service_names: &[&'static str],
) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    if reflection != Reflection::OwnServices {
        return builder.register_encoded_file_descriptor_set(learnhub_proto::FILE_DESCRIPTOR_SET);
    }
    // Embedded at build time and decoded by the proto crate's tests: it always decodes.
    let mut set = prost_types::FileDescriptorSet::decode(learnhub_proto::FILE_DESCRIPTOR_SET)
        .unwrap_or_default();
    for file in &mut set.file {
        let package = file.package().to_owned();
        file.service.retain(|service| {
            service_names.contains(&format!("{package}.{}", service.name()).as_str())
        });
    }
    service_names
        .iter()
        .copied()
        .chain([
            tonic_health::pb::health_server::SERVICE_NAME,
            tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
            tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
        ])
        .fold(
            builder.register_file_descriptor_set(set),
            |builder, name| builder.with_service_name(name),
        )
}

/// Serves `routes` (HTTP/2 gRPC, and HTTP/1 for REST/gRPC-Web routes) in plaintext until
/// `shutdown` is cancelled; then health flips to NOT_SERVING, the listener closes and in-flight
/// calls finish. The default [`ServerLimits`] apply.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    service_names: &[&'static str],
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    serve_with_limits(
        listener,
        routes,
        service_names,
        shutdown,
        &ServerLimits::default(),
        &Transport::Plaintext,
    )
    .await
}

/// [`serve`] with the given load limits: at most `max_concurrent_streams` HTTP/2 streams per
/// connection of which `max_requests_per_connection` are worked on at once (the rest wait),
/// `max_in_flight_requests` shed beyond with 503 / UNAVAILABLE, a deadline per
/// request, HTTP/2 keep-alive PINGs, at most `max_connections` open. hyper's HTTP/1 header-read
/// timeout (30 s) is on, since tonic gives hyper a timer. `transport` says who may connect.
pub async fn serve_with_limits(
    listener: impl Into<Listener>,
    routes: Routes,
    service_names: &[&'static str],
    shutdown: CancellationToken,
    limits: &ServerLimits,
    transport: &Transport,
) -> Result<(), ServeError> {
    let (routes, probes) = Probes::install(routes, service_names).await?;
    serve_probed(listener, routes, probes, shutdown, limits, transport).await
}

/// Who may reach a server.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// Anyone who reaches the port, unauthenticated: the public front door (behind its own
    /// checks), tests, and local development by name (`--insecure-plaintext`).
    #[default]
    Plaintext,
    /// Mutual TLS: a caller without a certificate of the CA is refused at the handshake, one
    /// whose service the policy does not allow gets PERMISSION_DENIED.
    MutualTls {
        tls: Arc<MutualTls>,
        policy: CallerPolicy,
    },
    /// The process's in-memory network ([`Listener::Memory`]): only the process's own services
    /// can dial, each connection knows which one did, and `policy` says what it may call.
    InMemory { policy: CallerPolicy },
}

impl Transport {
    /// Mutual TLS under `policy` when `tls` is set, else plaintext.
    pub fn new(tls: Option<Arc<MutualTls>>, policy: CallerPolicy) -> Self {
        match tls {
            Some(tls) => Self::MutualTls { tls, policy },
            None => Self::Plaintext,
        }
    }
}

/// [`serve_with_limits`] for routes that hold their probes already ([`Probes::install_with`]),
/// so a server can add layers around health and reflection too.
pub async fn serve_probed(
    listener: impl Into<Listener>,
    routes: Routes,
    probes: Probes,
    shutdown: CancellationToken,
    limits: &ServerLimits,
    transport: &Transport,
) -> Result<(), ServeError> {
    let listener = listener.into();
    let where_ = listener.url();
    let secured = match transport {
        Transport::Plaintext => "plaintext",
        Transport::MutualTls { .. } => "mutual TLS",
        Transport::InMemory { .. } => "in memory",
    };
    tracing::info!(addr = %where_, services = ?probes.service_names, transport = secured, "serving");
    let policy = match transport {
        Transport::Plaintext => None,
        Transport::MutualTls { policy, .. } | Transport::InMemory { policy } => Some(*policy),
    };
    let tcp = |listener: TcpListener| {
        limits::cap_connections(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            limits.max_connections,
        )
    };
    match (listener, transport) {
        (Listener::Memory(incoming), Transport::InMemory { .. }) => {
            serve_incoming(incoming, routes, probes, shutdown, limits, policy, &where_).await
        }
        (Listener::Tcp(listener), Transport::Plaintext) => {
            let incoming = tcp(listener);
            serve_incoming(incoming, routes, probes, shutdown, limits, policy, &where_).await
        }
        (Listener::Tcp(listener), Transport::MutualTls { tls, .. }) => {
            let incoming = tls::accept(tcp(listener), tls.clone());
            serve_incoming(incoming, routes, probes, shutdown, limits, policy, &where_).await
        }
        (_, _) => Err(ServeError::Bind {
            addr: where_,
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "in-memory transport and listener go together (Listener::transport)",
            ),
        }),
    }
}

async fn serve_incoming<I, IO>(
    incoming: I,
    routes: Routes,
    probes: Probes,
    shutdown: CancellationToken,
    limits: &ServerLimits,
    policy: Option<CallerPolicy>,
    addr: &str,
) -> Result<(), ServeError>
where
    I: futures::Stream<Item = std::io::Result<IO>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
{
    let stopping = shutdown.clone();
    let drained = async move {
        stopping.cancelled().await;
        probes.set_all(ServingStatus::NotServing).await;
    };
    // Telemetry outside the limits, so shed, refused and timed-out requests show in the metrics
    // too.
    let mut builder = tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(limits.concurrent_streams())
        .http2_keepalive_interval(limits.keepalive_interval())
        .http2_keepalive_timeout(limits.keepalive_timeout());
    if let Some(per_connection) = limits.requests_per_connection() {
        builder = builder.concurrency_limit_per_connection(per_connection);
    }
    let server = builder
        .layer(ServerTelemetryLayer)
        .layer(CallerPolicyLayer(policy))
        .layer(limits.in_flight_layer())
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, drained);
    // In-flight calls get DRAIN_TIMEOUT to finish; a stream that never ends (a health Watch)
    // must not hold the process past Kubernetes' grace period.
    let deadline = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        served = server => served?,
        () = deadline => tracing::warn!(addr, "drain timed out; closing open calls"),
    }
    tracing::info!(addr, "stopped");
    Ok(())
}

/// How long in-flight calls may take to finish after a shutdown signal (Kubernetes' default
/// grace period is 30 s).
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// A server span around every request, and the RED metrics of every gRPC call (gRPC-Web
/// included), continuing the caller's trace from its `traceparent`:
///
/// - gRPC: span `package.Service/Method` with `rpc.*` attributes; when the call ends,
///   `rpc.grpc.status_code` (from `grpc-status` in the response headers of a trailers-only
///   answer, else from the trailers frame at the end of the body) and
///   `learnhub_rpc_server_duration_seconds{rpc_service, rpc_method, grpc_code}`;
/// - anything else (REST, probes): span `METHOD` with `http.request.method` and
///   `http.response.status_code`; the router that knows the route template names it
///   ([`record_http_route`]) and records the HTTP metric.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerTelemetryLayer;

impl<S> Layer<S> for ServerTelemetryLayer {
    type Service = ServerTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerTelemetry(inner)
    }
}

/// The service [`ServerTelemetryLayer`] makes.
#[derive(Debug, Clone)]
pub struct ServerTelemetry<S>(S);

/// What the server layer leaves in a request's extensions for the layers inside it.
#[derive(Clone)]
enum ServerSide {
    Rpc { call: Arc<RpcCall>, grpc_web: bool },
    Http(tracing::Span),
}

fn content_type(headers: &http::HeaderMap) -> &str {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

impl<S, B, ResBody> Service<http::Request<B>> for ServerTelemetry<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: http_body::Body + Unpin,
    ResBody::Error: std::error::Error + 'static,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let content_type = content_type(request.headers());
        if content_type.starts_with("application/grpc") {
            let grpc_web = content_type.starts_with("application/grpc-web");
            let path = request.uri().path();
            let trace = ServerTrace::start(request.headers(), || telemetry::rpc_server_span(path));
            let user = crate::enduser::of_request(
                request.headers(),
                request.extensions().get::<tls::Peer>(),
            );
            let call = RpcCall::start(trace.span().clone(), Side::Server, path);
            if let Some(user) = user {
                trace.span().record("enduser.id", &*user.id);
                request.extensions_mut().insert(user);
            }
            request.extensions_mut().insert(ServerSide::Rpc {
                call: call.clone(),
                grpc_web,
            });
            let response = trace.run(|| self.0.call(request));
            Box::pin(async move {
                let response = response
                    .await
                    .inspect_err(|_| call.finish(tonic::Code::Unknown))?;
                let call = (!call.finish_from_head(&response)).then_some(call);
                Ok(response.map(|body| ObservedBody::new(body, call)))
            })
        } else {
            let trace = ServerTrace::start(request.headers(), || {
                telemetry::http_server_span(request.method(), request.uri().path())
            });
            let span = trace.span().clone();
            request
                .extensions_mut()
                .insert(ServerSide::Http(span.clone()));
            let response = trace.run(|| self.0.call(request));
            Box::pin(async move {
                let response = response.await?;
                telemetry::record_http_status(&span, response.status());
                Ok(response.map(|body| ObservedBody::new(body, None)))
            })
        }
    }
}

/// Names the server span of an HTTP request after the route its router matched (`GET
/// /v1/courses/{key}`, recorded as `http.route` too). Call it from the router that knows the
/// template; a request that did not come through [`serve`] has no such span, and nothing
/// happens.
pub fn record_http_route<B>(request: &http::Request<B>, route: &str) {
    if let Some(ServerSide::Http(span)) = request.extensions().get::<ServerSide>() {
        telemetry::record_http_route(span, request.method(), route);
    }
}

/// `service` answering gRPC-Web as well as gRPC (`tonic_web::GrpcWebLayer`), with the status of
/// each gRPC-Web call read inside the translation: outside it, the trailers are bytes of the
/// body. Add the result to the routes like the service itself.
pub fn grpc_web<S>(service: S) -> tonic_web::GrpcWebService<GrpcWebStatus<S>> {
    tonic_web::GrpcWebLayer::new().layer(GrpcWebStatus(service))
}

/// Reads the status of a gRPC-Web call inside the gRPC-Web translation (see [`grpc_web`]).
#[derive(Debug, Clone)]
pub struct GrpcWebStatus<S>(S);

impl<S: NamedService> NamedService for GrpcWebStatus<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, ResBody> Service<http::Request<B>> for GrpcWebStatus<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: http_body::Body + Unpin,
    ResBody::Error: std::error::Error + 'static,
{
    type Response = http::Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = match request.extensions().get::<ServerSide>() {
            Some(ServerSide::Rpc {
                call,
                grpc_web: true,
            }) => Some(call.clone()),
            _ => None,
        };
        let response = self.0.call(request);
        Box::pin(async move {
            let response = response.await?;
            let call = call.filter(|call| !call.finish_from_head(&response));
            Ok(response.map(|body| ObservedBody::new(body, call)))
        })
    }
}

/// A server task bound to its address, for tests and the monolith.
pub struct Running {
    /// Where it serves (`127.0.0.1:50051`, `memory://catalog-svc`), for errors.
    pub addr: String,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<Result<(), ServeError>>,
    /// [`Running::exited`] has returned the task's outcome: there is nothing left to wait for.
    reported: bool,
}

impl Running {
    pub fn spawn<F>(addr: impl ToString, shutdown: CancellationToken, server: F) -> Self
    where
        F: Future<Output = Result<(), ServeError>> + Send + 'static,
    {
        Self {
            addr: addr.to_string(),
            shutdown,
            task: tokio::spawn(server),
            reported: false,
        }
    }

    /// Cancels and waits for the server to drain.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        if self.reported {
            return Ok(());
        }
        self.exited().await
    }

    /// Waits for the server to end without asking it to (cancel `shutdown` for that): `Ok` when
    /// it returned cleanly, [`ServeError::Task`] when it panicked or was aborted. Once this has
    /// returned, the outcome is reported: a later call or [`Running::stop`] returns `Ok` at once.
    pub async fn exited(&mut self) -> Result<(), ServeError> {
        if self.reported {
            return Ok(());
        }
        let joined = (&mut self.task).await;
        self.reported = true;
        joined.unwrap_or_else(|source| {
            Err(ServeError::Task {
                addr: self.addr.clone(),
                source,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9))
    }

    #[tokio::test]
    async fn a_panicked_server_is_reported_as_a_panic_not_a_bind_error() {
        let running = Running::spawn(addr(), CancellationToken::new(), async {
            panic!("boom");
        });
        let err = running.stop().await.unwrap_err();
        assert!(matches!(&err, ServeError::Task { source, .. } if source.is_panic()));
        let message = err.to_string();
        assert!(
            message.contains("127.0.0.1:9") && message.contains("panicked"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn an_aborted_server_is_reported_as_cancelled() {
        let mut running = Running::spawn(addr(), CancellationToken::new(), async {
            std::future::pending::<()>().await;
            Ok(())
        });
        running.task.abort();
        let err = running.exited().await.unwrap_err();
        assert!(matches!(&err, ServeError::Task { source, .. } if source.is_cancelled()));
        // The outcome was reported once; stopping afterwards has nothing left to wait for.
        running.stop().await.unwrap();
    }
}
