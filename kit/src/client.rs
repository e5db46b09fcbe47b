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
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::{Arc, Weak},
    task::{Context, Poll},
    time::Duration,
};

use futures::future::BoxFuture;
use http_body_util::BodyExt;
use tonic::{
    body::Body,
    transport::{Endpoint, Uri},
};
use tower::{
    Service, ServiceExt,
    retry::{
        backoff::{Backoff, ExponentialBackoffMaker, MakeBackoff},
        budget::{Budget, TpsBudget},
    },
    util::rng::HasherRng,
};
use tracing::Instrument;

use crate::{
    memory::MemoryEndpoint,
    replicas::{Member, Replicas},
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

/// A channel to the service at `addr` (`http://host:port`, a bare `host:port`, a comma-separated
/// list of those naming the replicas of one service, or `memory://name` on
/// [`ClientOptions::memory`]'s network) that connects lazily, so a service starts before its
/// dependencies. Host names are resolved every few seconds; calls are balanced over every
/// address. `service` names the callee in errors and logs (`catalog-svc`); `flag` names the
/// setting in errors (`--catalog-addr`). Call inside a tokio runtime.
pub fn connect(
    service: &'static str,
    flag: &'static str,
    addr: &str,
    options: &ClientOptions,
) -> Result<ServiceChannel, BadAddress> {
    let bad = |reason: String| BadAddress { flag, reason };
    let addr = addr.trim();
    let replicas = if let Some(callee) = addr
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
        Replicas::new(service, vec![Member::new(None, channel)])
    } else {
        let targets = addr
            .split(',')
            .map(|one| target(one.trim()).map_err(&bad))
            .collect::<Result<Vec<_>, _>>()?;
        let replicas = Replicas::new(service, Vec::new());
        tokio::spawn(keep_current(
            service,
            Arc::downgrade(&replicas),
            targets,
            options.resolver.clone(),
            options.tls.clone(),
        ));
        replicas
    };
    Ok(ServiceChannel {
        replicas,
        service,
        timeout: options.timeout,
        budget: Arc::new(TpsBudget::new(
            RETRY_BUDGET_TTL,
            RETRY_BUDGET_MIN_PER_SEC,
            RETRY_BUDGET_RATIO,
        )),
    })
}

/// One `host:port` of an address setting: an IP literal or a name to resolve.
fn target(addr: &str) -> Result<(String, u16), String> {
    let with_scheme = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    };
    let uri: Uri = with_scheme
        .parse()
        .map_err(|err| format!("{addr:?} is not an address: {err}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{addr:?} must be http://host:port"));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("{addr:?} has no host"))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let port = uri
        .port_u16()
        .ok_or_else(|| format!("{addr:?} has no port"))?;
    Ok((host, port))
}

/// Keeps `replicas` equal to what `targets` resolve to (IP literals as they are), re-resolving
/// every few seconds; over mutual TLS with `tls`, every member replaced when the certificate
/// changes. Ends when the channel is dropped.
async fn keep_current(
    service: &'static str,
    replicas: Weak<Replicas>,
    targets: Vec<(String, u16)>,
    resolver: Resolver,
    tls: Option<Arc<MutualTls>>,
) {
    let mut rotated = tls.as_ref().map(|tls| tls.changes());
    let make = |addr: SocketAddr| -> Option<Arc<Member>> {
        let endpoint = match &tls {
            None => endpoint(&format!("http://{addr}")).ok(),
            Some(tls) => endpoint(&format!("https://{addr}"))
                .and_then(|endpoint| endpoint.tls_config(tls.client_config(service)))
                .inspect_err(|err| tracing::warn!(service, %err, "TLS endpoint"))
                .ok(),
        }?;
        Some(Member::new(Some(addr), endpoint.connect_lazy()))
    };
    let mut known: Vec<Arc<Member>> = Vec::new();
    let mut rebuild = false;
    loop {
        let mut found: Vec<SocketAddr> = Vec::new();
        let mut failed = false;
        for (host, port) in &targets {
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => found.push(SocketAddr::new(ip, *port)),
                Err(_) => match resolver.resolve(host, *port).await {
                    Ok(addrs) => found.extend(addrs),
                    Err(err) => {
                        // Keep the last known addresses: a DNS hiccup must not empty the set.
                        tracing::warn!(service, %host, %err, "cannot resolve; keeping known addresses");
                        failed = true;
                    }
                },
            }
        }
        found.sort_unstable();
        found.dedup();
        let Some(current) = replicas.upgrade() else {
            return;
        };
        let same =
            known.len() == found.len() && known.iter().zip(&found).all(|(m, a)| m.addr == Some(*a));
        if !failed && (rebuild || !same) {
            // Members still resolved keep their connection (and their ejection), unless the
            // certificate changed: then every one reconnects with the new one.
            let members: Vec<Arc<Member>> = found
                .iter()
                .filter_map(|addr| match known.iter().find(|m| m.addr == Some(*addr)) {
                    Some(kept) if !rebuild => Some(kept.clone()),
                    _ => make(*addr),
                })
                .collect();
            current.replace(members.clone());
            known = members;
        }
        drop(current);
        rebuild = false;
        let certificate_changed = async {
            match rotated.as_mut() {
                Some(rotated) => rotated.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(RESOLVE_EVERY) => {}
            true = certificate_changed => rebuild = true,
        }
    }
}

fn endpoint(uri: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(uri.to_owned())?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true))
}

/// A channel to one learnhub service, made by [`connect`]: give it to a generated client
/// (`CatalogServiceClient::new(channel)`). Clones share the connections and the retry budget.
#[derive(Clone)]
pub struct ServiceChannel {
    replicas: Arc<Replicas>,
    service: &'static str,
    timeout: Duration,
    budget: Arc<TpsBudget>,
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

    /// One channel per replica known now, each calling only that replica over the connection
    /// this channel holds to it: for a call every replica must get (cache-svc passing an
    /// invalidation on to its peers). Empty while the address is not resolved yet.
    pub fn each_replica(&self) -> Vec<(Option<SocketAddr>, ServiceChannel)> {
        self.replicas
            .members()
            .iter()
            .map(|member| {
                let one = ServiceChannel {
                    replicas: Replicas::new(self.service, vec![member.clone()]),
                    service: self.service,
                    timeout: self.timeout,
                    budget: self.budget.clone(),
                };
                (member.addr, one)
            })
            .collect()
    }

    /// The addresses calls are balanced over now, and whether each is ejected.
    pub fn replicas(&self) -> Vec<(Option<SocketAddr>, bool)> {
        self.replicas
            .members()
            .iter()
            .map(|member| (member.addr, member.is_ejected()))
            .collect()
    }
}

/// The most attempts one call makes (the first and two retries).
const MAX_ATTEMPTS: u32 = 3;
/// The retry budget, per channel: retries may add 20 % to the calls of the last 10 s, and 10
/// a second when there were few calls. Beyond it a failure is returned as it is: a replica
/// set that is down is not hammered by retries.
const RETRY_BUDGET_TTL: Duration = Duration::from_secs(10);
const RETRY_BUDGET_MIN_PER_SEC: u32 = 10;
const RETRY_BUDGET_RATIO: f32 = 0.2;
/// Back-off before a retry that can only go to the replica that just failed.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(10);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(200);

/// `learnhub_rpc_client_retries_total{peer, reason}`: attempts made again after a failure
/// below gRPC (`not_sent`: the connection could not be made; `broken`: it broke under an
/// idempotent call).
pub const RETRIES: &str = "learnhub_rpc_client_retries_total";
pub use crate::replicas::EJECTIONS;

/// How an attempt failed, for the choice to retry it and to eject its replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// No connection, or the replica refused the stream before reading it: the request was
    /// not served, any call may go again (and a replica that refused a connection is ejected).
    NotSent { connection: bool },
    /// The connection broke under the call: it may have been served; only an idempotent call
    /// goes again, and the replica is ejected.
    Broken,
    /// The callee answered, with a status or by resetting this one call: its answer stands.
    Answered,
    /// The call's deadline passed (tonic's own check of `grpc-timeout`): nothing is left to
    /// retry in, and a slow replica is not a dead one.
    TimedOut,
}

impl Failure {
    fn of(err: &(dyn std::error::Error + 'static)) -> Self {
        if status_of_error(err).is_some() {
            return Self::Answered;
        }
        let mut source = Some(err);
        while let Some(err) = source {
            if err.is::<tonic::TimeoutExpired>() {
                return Self::TimedOut;
            }
            if err.is::<tonic::ConnectError>() {
                return Self::NotSent { connection: true };
            }
            if let Some(h2) = err.downcast_ref::<h2::Error>() {
                if h2.is_io() || h2.is_go_away() {
                    return Self::Broken;
                }
                // One stream reset by the peer, its connection alive: REFUSED_STREAM promises
                // the request was not processed; any other reason is the peer's answer to it.
                return if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                    Self::NotSent { connection: false }
                } else {
                    Self::Answered
                };
            }
            source = err.source();
        }
        Self::Broken
    }

    fn ejects(self) -> bool {
        matches!(self, Self::NotSent { connection: true } | Self::Broken)
    }
}

/// Whether `path`'s request is a stream of messages (client or bidirectional streaming): such a
/// call is never retried and has no deadline of its own (see `ServiceChannel::call_streaming`).
pub fn streams_requests(path: &str) -> bool {
    path == "/learnhub.cache.v1.CacheService/Lookup"
}

/// Whether calling `path` twice does what calling it once does: reads, and the writes that set
/// a value (an update of given fields, a cache entry set, deleted or invalidated). Creating,
/// enrolling, publishing, archiving, recording progress and submitting are not retried once
/// sent: a second one adds a row or answers differently.
pub fn idempotent(path: &str) -> bool {
    let Some((service, method)) = path.trim_start_matches('/').rsplit_once('/') else {
        return false;
    };
    ["Get", "List", "BatchGet", "Update"]
        .iter()
        .any(|prefix| method.starts_with(prefix))
        || matches!(
            (service, method),
            ("grpc.health.v1.Health", "Check")
                | (
                    "learnhub.enrollment.v1.EnrollmentService",
                    "EnrollmentStats"
                )
                | (
                    "learnhub.cache.v1.CacheService",
                    "Set" | "SetMany" | "Delete" | "InvalidatePattern" | "Clear"
                )
        )
}

impl Service<http::Request<Body>> for ServiceChannel {
    type Response = http::Response<Body>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    /// Always ready: waiting for the channel happens inside the call, under its deadline (a
    /// name not resolved yet would otherwise wait forever).
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if streams_requests(request.uri().path()) {
            return self.call_streaming(request);
        }
        let (span, call) = self.start(&mut request);
        let timeout = request
            .headers()
            .get("grpc-timeout")
            .and_then(|value| parse_grpc_timeout(value.as_bytes()))
            .map_or(self.timeout, |asked| asked.min(self.timeout));
        if let Ok(value) = http::HeaderValue::from_str(&format_grpc_timeout(timeout)) {
            request.headers_mut().insert("grpc-timeout", value);
        }
        let channel = self.clone();
        let service = self.service;
        Box::pin(
            async move {
                let deadline = tokio::time::Instant::now() + timeout;
                let late = || {
                    // tonic turns a boxed Status back into that status.
                    Box::new(tonic::Status::deadline_exceeded(format!(
                        "{service} did not answer within {} ms",
                        timeout.as_millis()
                    ))) as tower::BoxError
                };
                let answered =
                    match tokio::time::timeout_at(deadline, channel.attempts(request, deadline))
                        .await
                    {
                        Ok(Err(err)) if Failure::of(err.as_ref()) == Failure::TimedOut => {
                            Err(late())
                        }
                        Ok(result) => result,
                        Err(_) => Err(late()),
                    };
                conclude(call, service, answered)
            }
            .instrument(span),
        )
    }
}

impl ServiceChannel {
    /// A call's client span and its record, with the span's trace context and the end user put
    /// in the request's headers.
    fn start(&self, request: &mut http::Request<Body>) -> (tracing::Span, Arc<RpcCall>) {
        let path = request.uri().path();
        let span = crate::telemetry::rpc_client_span(self.service, path);
        let call = RpcCall::start(span.clone(), Side::Client { peer: self.service }, path);
        // The client span's context, not the caller's: the callee's span is the client span's child.
        crate::telemetry::inject_trace_context(&span, request.headers_mut());
        crate::enduser::inject(request.headers_mut());
        (span, call)
    }

    /// A call whose request is a stream (see [`streams_requests`]): sent once, its body never
    /// held for a retry, and bounded only until the answer's head (the channel's timeout); the
    /// caller bounds each message itself. The span and duration cover the whole stream.
    fn call_streaming(
        &self,
        mut request: http::Request<Body>,
    ) -> BoxFuture<'static, Result<http::Response<Body>, tower::BoxError>> {
        let (span, call) = self.start(&mut request);
        request.headers_mut().remove("grpc-timeout");
        let channel = self.clone();
        let service = self.service;
        Box::pin(
            async move {
                let deadline = tokio::time::Instant::now() + channel.timeout;
                let sent = tokio::time::timeout_at(deadline, async {
                    let member = channel.replicas.next(None).await;
                    channel.send_to(&member, request).await
                })
                .await;
                let answered = match sent {
                    Ok(Ok(response)) => Ok(response),
                    Ok(Err((err, _))) => Err(err),
                    Err(_) => Err(Box::new(tonic::Status::deadline_exceeded(format!(
                        "{service} did not answer within {} ms",
                        channel.timeout.as_millis()
                    ))) as tower::BoxError),
                };
                conclude(call, service, answered)
            }
            .instrument(span),
        )
    }

    /// `request` sent once to `member`, counted in its calls in flight; a failure that says the
    /// replica is gone (see [`Failure::ejects`]) ejects it.
    async fn send_to(
        &self,
        member: &Arc<Member>,
        request: http::Request<Body>,
    ) -> Result<http::Response<Body>, (tower::BoxError, Failure)> {
        let answered = {
            let _in_flight = member.enter();
            member.channel.clone().oneshot(request).await
        };
        answered.map_err(|err| {
            let err = tower::BoxError::from(err);
            let failure = Failure::of(err.as_ref());
            if failure.ejects() {
                self.replicas.eject(member, err.as_ref());
            }
            (err, failure)
        })
    }

    /// Sends `request` to a replica, and again to another (or, when there is no other, to the
    /// same after a jittered back-off) when it failed below gRPC in a way that allows it, within
    /// [`MAX_ATTEMPTS`] and the retry budget. The request body is held for that: unary bodies
    /// are small.
    async fn attempts(
        &self,
        request: http::Request<Body>,
        deadline: tokio::time::Instant,
    ) -> Result<http::Response<Body>, tower::BoxError> {
        let (head, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let idempotent = idempotent(head.uri.path());
        self.budget.deposit();
        let mut backoff = ExponentialBackoffMaker::new(
            RETRY_BACKOFF_MIN,
            RETRY_BACKOFF_MAX,
            1.0,
            HasherRng::default(),
        )
        .map(|mut maker| maker.make_backoff())
        .ok();
        let mut failed: Option<Arc<Member>> = None;
        let mut attempt = 1;
        loop {
            let member = self.replicas.next(failed.as_ref()).await;
            if failed
                .as_ref()
                .is_some_and(|failed| Arc::ptr_eq(failed, &member))
                && let Some(backoff) = backoff.as_mut()
            {
                backoff.next_backoff().await;
            }
            let mut request = http::Request::from_parts(
                head.clone(),
                Body::new(http_body_util::Full::new(body.clone())),
            );
            if attempt > 1 {
                // A retry has what is left of the call's time, and says so to the callee.
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if let Ok(value) = http::HeaderValue::from_str(&format_grpc_timeout(left)) {
                    request.headers_mut().insert("grpc-timeout", value);
                }
            }
            let (err, failure) = match self.send_to(&member, request).await {
                Ok(response) => return Ok(response),
                Err(failed) => failed,
            };
            let again = match failure {
                Failure::NotSent { .. } => true,
                Failure::Broken => idempotent,
                Failure::Answered | Failure::TimedOut => false,
            };
            if !again || attempt >= MAX_ATTEMPTS || !self.budget.withdraw() {
                return Err(err);
            }
            let reason = match failure {
                Failure::NotSent { .. } => "not_sent",
                _ => "broken",
            };
            metrics::counter!(RETRIES, "peer" => self.service, "reason" => reason).increment(1);
            tracing::debug!(service = self.service, %err, attempt, "retrying on another replica");
            attempt += 1;
            failed = Some(member);
        }
    }
}

/// What the caller gets of a call's outcome, its status recorded: the answer, its body observed
/// until the trailers when the head does not say the status already; or the failure.
fn conclude(
    call: Arc<RpcCall>,
    service: &'static str,
    answered: Result<http::Response<Body>, tower::BoxError>,
) -> Result<http::Response<Body>, tower::BoxError> {
    match answered {
        Ok(response) if call.finish_from_head(&response) => {
            Ok(response.map(|body| Body::new(body.map_err(body_failure(service)))))
        }
        Ok(response) => Ok(response.map(|body| {
            let body = body.map_err(body_failure(service));
            Body::new(ObservedBody::new(body, Some(call)))
        })),
        Err(err) => match status_of_error(err.as_ref()) {
            Some(status) => {
                call.finish(status.code());
                Err(err)
            }
            // A failure below gRPC (no connection, a connection reset while the call waited:
            // the callee was killed) would reach the caller as UNKNOWN "transport error"; it is
            // the callee being unavailable.
            None => {
                call.finish(tonic::Code::Unavailable);
                Err(Box::new(tonic::Status::unavailable(format!(
                    "{service} unavailable: {err}"
                ))) as tower::BoxError)
            }
        },
    }
}

/// What a failure while reading an answer's body becomes: the callee died under its answer (the
/// connection broke: tonic says UNKNOWN "h2 protocol error", which a gateway would have to answer
/// with a 500) is the callee being unavailable. A status the callee sent passes as it is: only a
/// status tonic made from a transport error carries a source.
fn body_failure(service: &'static str) -> impl Fn(tonic::Status) -> tonic::Status + Clone {
    move |status| {
        if status.code() == tonic::Code::Unknown && std::error::Error::source(&status).is_some() {
            tonic::Status::unavailable(format!("{service} unavailable: {}", status.message()))
        } else {
            status
        }
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
            "http://catalog:1,",
            "http://catalog:1,https://catalog:2",
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
            "http://catalog-a:50051, http://catalog-b:50051",
            "127.0.0.1:50051,127.0.0.1:50052",
        ] {
            assert!(
                connect("catalog-svc", "--catalog-addr", good, &options).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn only_the_cache_lookup_streams_its_requests() {
        assert!(streams_requests("/learnhub.cache.v1.CacheService/Lookup"));
        for path in [
            "/learnhub.cache.v1.CacheService/GetMany",
            "/learnhub.cache.v1.CacheService/Subscribe",
            "/learnhub.catalog.v1.CatalogService/ListCourses",
        ] {
            assert!(!streams_requests(path), "{path}");
        }
    }

    #[test]
    fn reads_and_setting_writes_are_idempotent_creating_ones_are_not() {
        for path in [
            "/learnhub.catalog.v1.CatalogService/GetCourse",
            "/learnhub.catalog.v1.CatalogService/ListCourses",
            "/learnhub.catalog.v1.CatalogService/BatchGetLessons",
            "/learnhub.catalog.v1.CatalogService/UpdateCourse",
            "/learnhub.enrollment.v1.EnrollmentService/EnrollmentStats",
            "/learnhub.cache.v1.CacheService/Set",
            "/learnhub.cache.v1.CacheService/InvalidatePattern",
            "/grpc.health.v1.Health/Check",
        ] {
            assert!(idempotent(path), "{path}");
        }
        for path in [
            "/learnhub.catalog.v1.CatalogService/CreateCourse",
            "/learnhub.catalog.v1.CatalogService/PublishCourse",
            "/learnhub.catalog.v1.CatalogService/DeleteLesson",
            "/learnhub.enrollment.v1.EnrollmentService/Enroll",
            "/learnhub.enrollment.v1.EnrollmentService/RecordLessonProgress",
            "/learnhub.enrollment.v1.EnrollmentService/SubmitExercise",
            "/grpc.health.v1.Health/Watch",
            "not a path",
        ] {
            assert!(!idempotent(path), "{path}");
        }
    }

    #[test]
    fn a_failure_is_told_apart_by_what_the_callee_could_have_done() {
        let connect = tonic::ConnectError(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert_eq!(Failure::of(&connect), Failure::NotSent { connection: true });
        let refused = h2::Error::from(h2::Reason::REFUSED_STREAM);
        assert_eq!(
            Failure::of(&refused),
            Failure::NotSent { connection: false }
        );
        let cancelled = h2::Error::from(h2::Reason::CANCEL);
        assert_eq!(Failure::of(&cancelled), Failure::Answered);
        let status = tonic::Status::unavailable("database unavailable");
        assert_eq!(Failure::of(&status), Failure::Answered);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(Failure::of(&reset), Failure::Broken);
        assert_eq!(Failure::of(&tonic::TimeoutExpired(())), Failure::TimedOut);
        assert!(!Failure::TimedOut.ejects());
        assert!(Failure::Broken.ejects() && Failure::NotSent { connection: true }.ejects());
        assert!(!Failure::Answered.ejects() && !Failure::NotSent { connection: false }.ejects());
    }

    #[test]
    fn a_body_broken_by_the_transport_is_unavailable_a_sent_status_is_not() {
        let map = body_failure("catalog-svc");
        let mut broken = tonic::Status::unknown("h2 protocol error: error reading a body");
        broken.set_source(Arc::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )));
        let mapped = map(broken);
        assert_eq!(mapped.code(), tonic::Code::Unavailable);
        assert!(
            mapped
                .message()
                .starts_with("catalog-svc unavailable: h2 protocol error")
        );
        for sent in [
            tonic::Status::unknown("the callee said so"),
            tonic::Status::not_found("course 7"),
        ] {
            let code = sent.code();
            assert_eq!(map(sent).code(), code);
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
