//! The one way a learnhub service calls another: [`connect`] builds every service-to-service
//! channel (gateway → catalog-svc / enrollment-svc, enrollment-svc → catalog-svc, every service
//! → cache-svc), so no caller can forget one of its three duties:
//!
//! - **balancing**: on Kubernetes the back ends sit behind headless Services; HTTP/2 would pin
//!   every call to the one pod a ClusterIP picked, so a host name is re-resolved periodically and
//!   calls are balanced over every address it returns (tonic has no resolver of its own, hence
//!   this small loop);
//! - **trace context and metrics**: every call gets a client span (`package.Service/Method`,
//!   `otel.kind=client`, `rpc.*`, `peer.service` naming the callee, `rpc.grpc.status_code` when
//!   it ends) whose W3C `traceparent` goes out with the call, so the callee's server span is its
//!   child and one request is one trace across the services; its duration goes to
//!   `learnhub_rpc_client_duration_seconds{peer, rpc_service, rpc_method, grpc_code}`;
//! - **mutual TLS** when the service has a certificate ([`ClientOptions::tls`]): the callee must
//!   show a certificate valid for its name, and this service shows its own; after a certificate
//!   rotation every endpoint reconnects with the new one;
//! - **the monolith's in-memory network** for `memory://<service>` addresses
//!   ([`ClientOptions::memory`], [`crate::memory`]): no port, no TLS, the callee learns who
//!   dialled;
//! - **a deadline per call**: every call carries `grpc-timeout` (the caller's own, when it set a
//!   shorter one) and is abandoned with `DEADLINE_EXCEEDED` when it passes, even while the
//!   channel is still connecting or has no endpoint at all.
use std::{
    collections::{HashMap, HashSet},
    fmt,
    net::SocketAddr,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use tonic::{
    body::Body,
    transport::{Channel, Endpoint, Uri, channel::Change},
};
use tower::{Service, ServiceExt};
use tracing::Instrument;

use crate::{
    memory::MemoryEndpoint,
    rpc_call::{ObservedBody, RpcCall, Side, status_of_error},
    tls::MutualTls,
};

/// How often a host name is resolved again.
const RESOLVE_EVERY: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
#[error("{flag}: {reason}")]
pub struct BadAddress {
    pub flag: &'static str,
    pub reason: String,
}

type ResolveFn =
    dyn Fn(String, u16) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> + Send + Sync;

/// How host names become addresses: the system's resolver (DNS, /etc/hosts) unless told
/// otherwise. [`Resolver::fixed`] serves a static table (tests, or static replicas).
#[derive(Clone, Default)]
pub struct Resolver(Option<Arc<ResolveFn>>);

impl Resolver {
    /// Each name in `table` resolves to its addresses (with their own ports); any other name to
    /// nothing.
    pub fn fixed(table: HashMap<String, Vec<SocketAddr>>) -> Self {
        let table = Arc::new(table);
        Self(Some(Arc::new(move |host: String, _port| {
            let found = table.get(&host).cloned().unwrap_or_default();
            Box::pin(async move { Ok(found) })
        })))
    }

    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        match &self.0 {
            Some(resolve) => resolve(host.to_owned(), port).await,
            None => Ok(tokio::net::lookup_host((host, port)).await?.collect()),
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            Some(_) => "Resolver(fixed)",
            None => "Resolver(system)",
        })
    }
}

/// What every channel to another service needs besides its address.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The longest any one call may take (a caller may ask for less with
    /// `tonic::Request::set_timeout`).
    pub timeout: Duration,
    pub resolver: Resolver,
    /// This service's identity: every call goes over mutual TLS. `None`: plaintext (asked for
    /// with `--insecure-plaintext`).
    pub tls: Option<Arc<MutualTls>>,
    /// This service on the process's in-memory network: `memory://<service>` addresses are
    /// dialled there, as this service (the monolith).
    pub memory: Option<MemoryEndpoint>,
}

impl ClientOptions {
    /// Plaintext calls with this timeout, names resolved by the system.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            resolver: Resolver::default(),
            tls: None,
            memory: None,
        }
    }

    /// These options, calling over mutual TLS with `tls` when it is set.
    pub fn with_tls(self, tls: Option<Arc<MutualTls>>) -> Self {
        Self { tls, ..self }
    }

    /// These options, dialling `memory://` addresses on `memory`'s network when it is set.
    pub fn with_memory(self, memory: Option<MemoryEndpoint>) -> Self {
        Self { memory, ..self }
    }
}

/// `value` unless it is absent or blank: the one rule for optional address settings (an empty
/// `CACHE_ADDR` means "no cache" in every service).
pub fn configured(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// A channel to the service at `addr` (`http://host:port`, a bare `host:port`, or
/// `memory://name` on [`ClientOptions::memory`]'s network) that connects lazily, so a service
/// starts before its dependencies. An IP literal gets one endpoint; a host
/// name is resolved every few seconds and balanced over all its addresses. `service` names the
/// callee in errors and logs (`catalog-svc`); `flag` names the setting in errors
/// (`--catalog-addr`). Call inside a tokio runtime.
pub fn connect(
    service: &'static str,
    flag: &'static str,
    addr: &str,
    options: &ClientOptions,
) -> Result<ServiceChannel, BadAddress> {
    let bad = |reason: String| BadAddress { flag, reason };
    let addr = addr.trim();
    if let Some(callee) = addr
        .strip_prefix(crate::memory::SCHEME)
        .and_then(|rest| rest.strip_prefix("://"))
    {
        let Some(memory) = &options.memory else {
            return Err(bad(format!(
                "{addr:?} is an in-memory address: only services of the same process reach it"
            )));
        };
        let channel = endpoint(&format!("http://{callee}"))
            .map_err(|err| bad(format!("{addr:?} is not an address: {err}")))?
            .connect_with_connector_lazy(memory.connector(callee));
        return Ok(ServiceChannel {
            inner: channel,
            service,
            timeout: options.timeout,
        });
    }
    let with_scheme = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|err| bad(format!("{addr:?} is not an address: {err}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad(format!("{addr:?} must be http://host:port")));
    }
    let host = uri
        .host()
        .ok_or_else(|| bad(format!("{addr:?} has no host")))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let port = uri
        .port_u16()
        .ok_or_else(|| bad(format!("{addr:?} has no port")))?;
    let channel = match (&options.tls, host.parse::<std::net::IpAddr>()) {
        (None, Ok(_)) => endpoint(&format!(
            "http://{}",
            uri.authority().map_or("", |a| a.as_str())
        ))
        .map_err(|err| bad(err.to_string()))?
        .connect_lazy(),
        (None, Err(_)) => balanced(service, host, port, options.resolver.clone(), None),
        // Over TLS even one address goes through the balancer: it is what reconnects every
        // endpoint when the certificate changes.
        (Some(tls), ip) => {
            let resolver = match ip {
                Ok(ip) => Resolver::fixed(HashMap::from([(
                    host.clone(),
                    vec![SocketAddr::new(ip, port)],
                )])),
                Err(_) => options.resolver.clone(),
            };
            balanced(service, host, port, resolver, Some(tls.clone()))
        }
    };
    Ok(ServiceChannel {
        inner: channel,
        service,
        timeout: options.timeout,
    })
}

/// A channel balanced over every address `host` resolves to, kept current in the background;
/// over mutual TLS with `tls`, every endpoint replaced when the certificate changes.
fn balanced(
    service: &'static str,
    host: String,
    port: u16,
    resolver: Resolver,
    tls: Option<Arc<MutualTls>>,
) -> Channel {
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    let mut rotated = tls.as_ref().map(|tls| tls.changes());
    tokio::spawn(async move {
        let mut known: HashSet<SocketAddr> = HashSet::new();
        let make = |addr: SocketAddr| -> Option<Endpoint> {
            match &tls {
                None => endpoint(&format!("http://{addr}")).ok(),
                Some(tls) => endpoint(&format!("https://{addr}"))
                    .and_then(|endpoint| endpoint.tls_config(tls.client_config(service)))
                    .inspect_err(|err| tracing::warn!(service, %err, "TLS endpoint"))
                    .ok(),
            }
        };
        loop {
            match resolver.resolve(&host, port).await {
                Ok(found) => {
                    let found: HashSet<SocketAddr> = found.into_iter().collect();
                    for gone in known.difference(&found) {
                        if changes.send(Change::Remove(*gone)).await.is_err() {
                            return;
                        }
                    }
                    for new in found.difference(&known) {
                        let Some(endpoint) = make(*new) else {
                            continue;
                        };
                        if changes.send(Change::Insert(*new, endpoint)).await.is_err() {
                            return;
                        }
                    }
                    known = found;
                }
                // Keep the last known addresses: a DNS hiccup must not empty the pool.
                Err(err) => {
                    tracing::warn!(service, %host, %err, "cannot resolve; keeping known addresses");
                }
            }
            if changes.is_closed() {
                return;
            }
            let certificate_changed = async {
                match rotated.as_mut() {
                    Some(rotated) => rotated.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(RESOLVE_EVERY) => {}
                true = certificate_changed => {
                    // Same address, new endpoint: the balancer drops the old connection.
                    for addr in &known {
                        let Some(endpoint) = make(*addr) else {
                            continue;
                        };
                        if changes.send(Change::Insert(*addr, endpoint)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    channel
}

fn endpoint(uri: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(uri.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// A channel to one learnhub service, made by [`connect`]: give it to a generated client
/// (`CatalogServiceClient::new(channel)`). Clones share the connections.
#[derive(Clone)]
pub struct ServiceChannel {
    inner: Channel,
    service: &'static str,
    timeout: Duration,
}

impl fmt::Debug for ServiceChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceChannel")
            .field("service", &self.service)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ServiceChannel {
    /// The service this channel calls.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// The longest a call may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Service<http::Request<Body>> for ServiceChannel {
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    /// Always ready: waiting for the channel happens inside the call, under its deadline (a
    /// balanced channel with no endpoint would otherwise wait forever).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path();
        let span = crate::telemetry::rpc_client_span(self.service, path);
        let call = RpcCall::start(span.clone(), Side::Client { peer: self.service }, path);
        // The client span's context, not the caller's: the callee's span is the client span's child.
        crate::telemetry::inject_trace_context(&span, request.headers_mut());
        crate::enduser::inject(request.headers_mut());
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| parse_grpc_timeout(value.as_bytes()))
            .map_or(self.timeout, |asked| asked.min(self.timeout));
        if let Ok(value) = http::HeaderValue::from_str(&format_grpc_timeout(timeout)) {
            request.headers_mut().insert("grpc-timeout", value);
        }
        let channel = self.inner.clone();
        let service = self.service;
        Box::pin(
            async move {
                let sent = async move { channel.oneshot(request).await.map_err(Into::into) };
                let answered = match tokio::time::timeout(timeout, sent).await {
                    Ok(result) => result,
                    // tonic turns a boxed Status back into that status.
                    Err(_) => Err(Box::new(tonic::Status::deadline_exceeded(format!(
                        "{service} did not answer within {} ms",
                        timeout.as_millis()
                    ))) as tower::BoxError),
                };
                match answered {
                    Ok(response) if call.finish_from_head(&response) => Ok(response),
                    Ok(response) => {
                        Ok(response.map(|body| Body::new(ObservedBody::new(body, Some(call)))))
                    }
                    Err(err) => match status_of_error(err.as_ref()) {
                        Some(status) => {
                            call.finish(status.code());
                            Err(err)
                        }
                        // A failure below gRPC (no connection, a connection reset while the call
                        // waited: the callee was killed) would reach the caller as UNKNOWN
                        // "transport error"; it is the callee being unavailable.
                        None => {
                            call.finish(tonic::Code::Unavailable);
                            Err(Box::new(tonic::Status::unavailable(format!(
                                "{service} unavailable: {err}"
                            ))) as tower::BoxError)
                        }
                    },
                }
            }
            .instrument(span),
        )
    }
}

/// `grpc-timeout` as the gRPC spec writes it: at most 8 digits and a unit.
fn format_grpc_timeout(timeout: Duration) -> String {
    let millis = timeout.as_millis();
    if millis < 100_000_000 {
        format!("{}m", millis.max(1))
    } else {
        format!("{}S", timeout.as_secs().min(99_999_999))
    }
}

fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b"H" => Duration::from_secs(amount * 3600),
        b"M" => Duration::from_secs(amount * 60),
        b"S" => Duration::from_secs(amount),
        b"m" => Duration::from_millis(amount),
        b"u" => Duration::from_micros(amount),
        b"n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_what_is_not_an_http_address() {
        let options = ClientOptions::new(Duration::from_secs(1));
        for bad in [
            "https://catalog:443",
            "http://catalog",
            "catalog",
            "not a uri",
            "",
        ] {
            assert!(
                connect("catalog-svc", "--catalog-addr", bad, &options).is_err(),
                "{bad}"
            );
        }
        for good in [
            "http://127.0.0.1:50051",
            "127.0.0.1:50051",
            "http://localhost:50051",
            "http://[::1]:50051",
        ] {
            assert!(
                connect("catalog-svc", "--catalog-addr", good, &options).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn an_empty_address_is_no_address() {
        assert_eq!(configured(None), None);
        assert_eq!(configured(Some("")), None);
        assert_eq!(configured(Some("  ")), None);
        assert_eq!(configured(Some(" http://c:1 ")), Some("http://c:1"));
    }

    #[test]
    fn grpc_timeouts_round_trip() {
        for (text, duration) in [
            ("250m", Duration::from_millis(250)),
            ("3S", Duration::from_secs(3)),
            ("2M", Duration::from_secs(120)),
            ("1H", Duration::from_secs(3600)),
            ("1500u", Duration::from_micros(1500)),
            ("7n", Duration::from_nanos(7)),
        ] {
            assert_eq!(
                parse_grpc_timeout(text.as_bytes()),
                Some(duration),
                "{text}"
            );
        }
        for bad in ["", "m", "123456789m", "10x", "-1m", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(format_grpc_timeout(Duration::from_millis(2000)), "2000m");
        assert_eq!(format_grpc_timeout(Duration::ZERO), "1m");
        assert_eq!(
            parse_grpc_timeout(format_grpc_timeout(Duration::from_secs(200_000)).as_bytes()),
            Some(Duration::from_secs(200_000))
        );
    }

    /// A call to an address where nothing listens ends at the deadline, as DEADLINE_EXCEEDED
    /// or UNAVAILABLE, never hanging.
    #[tokio::test]
    async fn a_call_that_cannot_connect_ends_by_its_deadline() {
        let options = ClientOptions::new(Duration::from_millis(200));
        // A name that resolves to nothing: the balanced channel has no endpoint at all.
        let resolver = Resolver::fixed(HashMap::new());
        let channel = connect(
            "nothing-svc",
            "--nothing-addr",
            "http://nowhere.test:1",
            &ClientOptions {
                resolver,
                ..options
            },
        )
        .unwrap_or_else(|err| panic!("{err}"));
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let started = std::time::Instant::now();
        let status = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .err()
            .map(|status| status.code());
        assert_eq!(status, Some(tonic::Code::DeadlineExceeded));
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
