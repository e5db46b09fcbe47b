//! Per-caller rate limits and the per-learner submission quota, over REST, gRPC and gRPC-Web.
//!
//! A caller is the subject of a valid token, else the client address (an IPv6 address counts by
//! its /64: one host usually holds the whole prefix); `X-Forwarded-For` is believed only from
//! `--trusted-proxies`. Each route class has its own GCRA limiter (`governor`); over it, REST gets
//! 429 with `Retry-After` and a JSON body, gRPC `RESOURCE_EXHAUSTED`. Liveness, readiness,
//! metrics and gRPC health are never limited.
use std::{
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::Arc,
    time::Duration,
};

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use governor::{
    Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::NoOpMiddleware,
    state::keyed::HashMapStateStore,
};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use ipnet::IpNet;
use learnhub_kit::{
    enduser::{self, EndUser},
    limits::{LogThrottle, ServerLimits},
    shutdown::CancellationToken,
};
use tokio::sync::Semaphore;
use tonic::transport::server::TcpConnectInfo;

use crate::{
    auth::{Role, TokenVerifier},
    error::ErrorBody,
};

/// The gateway's rate limits and load limits; every flag also reads its environment variable.
/// A rate of `0` turns that limit off.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Rate and load limits")]
pub struct LimitConfig {
    /// Public reads (catalog, courses, categories, the caller's own records) one caller may make
    /// per minute, on average.
    #[arg(long, env = "RATE_LIMIT_READS_PER_MINUTE", default_value_t = 6000)]
    pub rate_limit_reads_per_minute: u32,
    /// Public reads one caller may make at once before the per-minute rate applies.
    #[arg(long, env = "RATE_LIMIT_READS_BURST", default_value_t = 300)]
    pub rate_limit_reads_burst: u32,
    /// Learner writes (enrol, progress, submissions) one caller may make per minute.
    #[arg(long, env = "RATE_LIMIT_WRITES_PER_MINUTE", default_value_t = 600)]
    pub rate_limit_writes_per_minute: u32,
    /// Learner writes one caller may make at once.
    #[arg(long, env = "RATE_LIMIT_WRITES_BURST", default_value_t = 60)]
    pub rate_limit_writes_burst: u32,
    /// Admin calls (course writes, users, statistics, cache) one caller may make per minute.
    #[arg(long, env = "RATE_LIMIT_ADMIN_PER_MINUTE", default_value_t = 3000)]
    pub rate_limit_admin_per_minute: u32,
    /// Admin calls one caller may make at once.
    #[arg(long, env = "RATE_LIMIT_ADMIN_BURST", default_value_t = 150)]
    pub rate_limit_admin_burst: u32,
    /// Bytes of exercise submissions (request bodies) one learner may send per hour, all of it
    /// at once if they like.
    #[arg(long, env = "SUBMISSION_QUOTA_BYTES_PER_HOUR", default_value_t = 2 * 1024 * 1024)]
    pub submission_quota_bytes_per_hour: u32,
    /// How long a request over its rate limit waits before its 429 / RESOURCE_EXHAUSTED
    /// (milliseconds on average: each wait is drawn from half to one and a half times it; at
    /// most 256 such waits at once, the rest are answered at once). A caller that keeps calling
    /// after 429s then holds its own connection's request slots instead of the CPUs everyone
    /// shares, and its retries come back spread out rather than all at once.
    #[arg(long, env = "RATE_LIMIT_REFUSAL_DELAY_MS", default_value_t = 250)]
    pub rate_limit_refusal_delay_ms: u64,
    /// Proxies whose `X-Forwarded-For` names the client (comma-separated CIDRs or addresses,
    /// e.g. 10.0.0.0/8). Default: none, the connection's address is the client.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = cidr)]
    pub trusted_proxies: Vec<IpNet>,
    #[command(flatten)]
    pub server: ServerLimits,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            rate_limit_reads_per_minute: 6000,
            rate_limit_reads_burst: 300,
            rate_limit_writes_per_minute: 600,
            rate_limit_writes_burst: 60,
            rate_limit_admin_per_minute: 3000,
            rate_limit_admin_burst: 150,
            submission_quota_bytes_per_hour: 2 * 1024 * 1024,
            rate_limit_refusal_delay_ms: 250,
            trusted_proxies: Vec::new(),
            server: ServerLimits::default(),
        }
    }
}

impl LimitConfig {
    /// No rate limit, no quota, no load limit: for benchmarks that measure the platform itself,
    /// and for measuring what the limits protect against.
    pub fn off() -> Self {
        Self {
            rate_limit_reads_per_minute: 0,
            rate_limit_writes_per_minute: 0,
            rate_limit_admin_per_minute: 0,
            submission_quota_bytes_per_hour: 0,
            rate_limit_refusal_delay_ms: 0,
            server: ServerLimits::off(),
            ..Self::default()
        }
    }
}

/// A CIDR (`10.0.0.0/8`) or a single address (`10.0.0.7`, meaning /32 or /128).
fn cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is neither a CIDR (10.0.0.0/8) nor an IP address"))
}

/// Which limit a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    PublicRead,
    LearnerWrite,
    Admin,
}

impl RouteClass {
    const ALL: [RouteClass; 3] = [Self::PublicRead, Self::LearnerWrite, Self::Admin];

    fn label(self) -> &'static str {
        match self {
            Self::PublicRead => "public_read",
            Self::LearnerWrite => "learner_write",
            Self::Admin => "admin",
        }
    }
}

/// What a request is, for the limits: its class (`None`: never limited) and whether its body is
/// a submission, charged to the learner's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub class: Option<RouteClass>,
    pub submission: bool,
}

const GATEWAY_SERVICE: &str = "/learnhub.gateway.v1.GatewayService/";

impl Route {
    pub fn of(method: &Method, path: &str) -> Self {
        if let Some(rpc) = path.strip_prefix(GATEWAY_SERVICE) {
            let class = match rpc {
                "CreateCourse" | "UpdateCourse" | "PublishCourse" | "ArchiveCourse" | "GetUser"
                | "GetEnrollmentStats" | "GetCacheStats" | "InvalidateCache" | "GetDbStats" => {
                    RouteClass::Admin
                }
                "Enroll" | "RecordProgress" | "SubmitExercise" => RouteClass::LearnerWrite,
                _ => RouteClass::PublicRead,
            };
            return Self {
                class: Some(class),
                submission: rpc == "SubmitExercise",
            };
        }
        let exempt = matches!(path, "/healthz" | "/readyz" | "/metrics")
            || path.starts_with("/grpc.health.v1.Health/");
        let class = if exempt {
            None
        } else if path.starts_with("/v1/admin/") {
            Some(RouteClass::Admin)
        } else if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            Some(RouteClass::PublicRead)
        } else {
            Some(RouteClass::LearnerWrite)
        };
        let submission = *method == Method::POST
            && path.starts_with("/v1/exercises/")
            && path.ends_with("/submissions");
        Self { class, submission }
    }
}

/// Whom a limit counts: the token's subject, else the client address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CallerKey {
    Subject(String),
    Address(IpAddr),
}

impl CallerKey {
    /// An address as a key: IPv4 as is (IPv4-mapped IPv6 included), IPv6 by its /64.
    pub fn address(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                Self::Address(IpAddr::V6(Ipv6Addr::from(prefix)))
            }
            v4 => Self::Address(v4),
        }
    }
}

/// At most this many `X-Forwarded-For` hops are read, from the right.
const MAX_FORWARDED_HOPS: usize = 16;

/// The client behind `peer`: `peer` itself unless it is a trusted proxy; then the rightmost
/// `X-Forwarded-For` hop that is not a trusted proxy (hops on its left were written by the
/// client and prove nothing). An unreadable hop stops the walk at the last proxy that wrote one.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        let hop = hop.trim();
        let Some(ip) = hop
            .parse::<IpAddr>()
            .ok()
            .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        else {
            return client;
        };
        client = ip;
        if !is_trusted(&ip) {
            return ip;
        }
    }
    client
}

type KeyedLimiter<K, C> =
    RateLimiter<K, HashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The limiters of one gateway, shared by every request.
pub struct RateLimits<C: Clock = DefaultClock> {
    /// One per [`RouteClass`], in [`RouteClass::ALL`] order; `None`: unlimited.
    classes: [Option<KeyedLimiter<CallerKey, C>>; 3],
    /// Submission bytes per learner (token subject).
    submissions: Option<KeyedLimiter<String, C>>,
    submission_quota_bytes: u32,
    /// Slots for refusals that wait [`RateLimits::refusal_delay`] before they are sent.
    delayed_refusals: Arc<Semaphore>,
    refusal_delay: Duration,
    trusted_proxies: Vec<IpNet>,
    tokens: TokenVerifier,
    clock: C,
}

/// Why a request was refused by the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Over the class's rate: try again after the wait.
    RateLimited { class: RouteClass, wait: Duration },
    /// The learner's submission quota is spent for now.
    QuotaExceeded { wait: Duration },
    /// One submission larger than the whole quota (or than the gateway reads): never accepted.
    TooLarge { limit: u64 },
}

impl RateLimits<DefaultClock> {
    pub fn new(config: &LimitConfig, tokens: TokenVerifier) -> Self {
        Self::with_clock(config, tokens, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// The limits on a given clock (tests use governor's fake clock).
    pub fn with_clock(config: &LimitConfig, tokens: TokenVerifier, clock: C) -> Self {
        let per_minute = |rate: u32, burst: u32| {
            let rate = NonZeroU32::new(rate)?;
            let quota = Quota::with_period(Duration::from_secs(60) / rate.get())?
                .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
            Some(RateLimiter::hashmap_with_clock(quota, clock.clone()))
        };
        let submissions = NonZeroU32::new(config.submission_quota_bytes_per_hour)
            .map(|bytes| RateLimiter::hashmap_with_clock(Quota::per_hour(bytes), clock.clone()));
        Self {
            classes: [
                per_minute(
                    config.rate_limit_reads_per_minute,
                    config.rate_limit_reads_burst,
                ),
                per_minute(
                    config.rate_limit_writes_per_minute,
                    config.rate_limit_writes_burst,
                ),
                per_minute(
                    config.rate_limit_admin_per_minute,
                    config.rate_limit_admin_burst,
                ),
            ],
            submissions,
            submission_quota_bytes: config.submission_quota_bytes_per_hour,
            delayed_refusals: Arc::new(Semaphore::new(MAX_DELAYED_REFUSALS)),
            refusal_delay: Duration::from_millis(config.rate_limit_refusal_delay_ms),
            trusted_proxies: config.trusted_proxies.clone(),
            tokens,
            clock,
        }
    }

    fn limiter(&self, class: RouteClass) -> Option<&KeyedLimiter<CallerKey, C>> {
        let index = RouteClass::ALL.iter().position(|c| *c == class)?;
        self.classes[index].as_ref()
    }

    /// Counts one request of `class` by `caller`.
    pub fn check(&self, class: RouteClass, caller: &CallerKey) -> Result<(), Refusal> {
        let Some(limiter) = self.limiter(class) else {
            return Ok(());
        };
        limiter
            .check_key(caller)
            .map_err(|not_until| Refusal::RateLimited {
                class,
                wait: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Charges `bytes` of one submission to `subject`'s quota.
    pub fn charge_submission(&self, subject: &str, bytes: usize) -> Result<(), Refusal> {
        let Some(limiter) = &self.submissions else {
            return Ok(());
        };
        let quota = u64::from(self.submission_quota_bytes);
        let Some(cells) = u32::try_from(bytes).ok().and_then(NonZeroU32::new) else {
            return if bytes == 0 {
                Ok(())
            } else {
                Err(Refusal::TooLarge { limit: quota })
            };
        };
        match limiter.check_key_n(&subject.to_owned(), cells) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Refusal::QuotaExceeded {
                wait: not_until.wait_time_from(self.clock.now()),
            }),
            Err(_) => Err(Refusal::TooLarge { limit: quota }),
        }
    }

    /// Drops callers whose state is the same as a fresh one (their bucket refilled), so the
    /// limiters hold only callers active within their burst window. Returns the keys left.
    pub fn sweep(&self) -> usize {
        let mut left = 0;
        for limiter in self.classes.iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            left += limiter.len();
        }
        if let Some(limiter) = &self.submissions {
            limiter.retain_recent();
            limiter.shrink_to_fit();
            left += limiter.len();
        }
        left
    }

    /// The caller a request counts as: the subject of a valid token, else the client address.
    /// An absent, invalid or doubled token counts by address; the handler refuses it anyway.
    pub fn caller(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> CallerKey {
        self.caller_and_user(headers, peer).0
    }

    /// [`RateLimits::caller`], and the end user the services are told about (a valid token's
    /// subject and whether it is an admin).
    fn caller_and_user(
        &self,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> (CallerKey, Option<EndUser>) {
        let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
        if let (Some(value), None) = (authorization.next(), authorization.next())
            && let Ok(Some(caller)) = self.tokens.authenticate(Some(value.as_bytes()))
        {
            let user = match caller.role {
                Role::Admin => EndUser::admin(caller.subject.as_str()),
                Role::Learner => EndUser::learner(caller.subject.as_str()),
            };
            return (CallerKey::Subject(caller.subject), Some(user));
        }
        let peer = peer.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        let key = CallerKey::address(client_address(peer, headers, &self.trusted_proxies));
        (key, None)
    }
}

/// Refusals waiting out their delay at once; beyond, refusals are sent at once, so delayed ones
/// never hold more than this many of the server's in-flight requests.
const MAX_DELAYED_REFUSALS: usize = 256;

impl<C: Clock> RateLimits<C> {
    /// Waits the refusal delay if a slot is free: the caller over its limit holds its own
    /// connection's request slots (`--max-requests-per-connection`) meanwhile, so a flood of
    /// refused calls costs the CPUs little.
    async fn delay_refusal(&self) {
        if self.refusal_delay.is_zero() {
            return;
        }
        if let Ok(_slot) = self.delayed_refusals.clone().try_acquire_owned() {
            // Jittered: refusals of requests that arrived together would otherwise end together,
            // and a flooder's next wave would hit the CPUs in one burst every delay.
            tokio::time::sleep(self.refusal_delay.mul_f64(0.5 + fastrand::f64())).await;
        }
    }
}

/// How often idle callers are dropped from the limiters.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Sweeps `limits` every few seconds until `shutdown`, bounding their memory by the callers
/// active within one burst window.
pub async fn sweep_until_stopped<C: Clock + Clone>(
    limits: Arc<RateLimits<C>>,
    shutdown: CancellationToken,
) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = every.tick() => {
                let left = limits.sweep();
                tracing::debug!(callers = left, "rate limiters swept");
            }
        }
    }
}

/// The most of a submission's body the gateway reads to charge it: a gRPC message's limit plus
/// its frame header. A larger one is refused as too large.
const MAX_SUBMISSION_BODY: usize = 4 * 1024 * 1024 + 5;

static LIMITED_LOG: LogThrottle = LogThrottle::new(Duration::from_secs(10));

/// The axum middleware applying [`RateLimits`] to every request of the gateway's router.
pub async fn enforce(
    State(limits): State<Arc<RateLimits>>,
    request: Request,
    next: Next,
) -> Response {
    let route = Route::of(request.method(), request.uri().path());
    let Some(class) = route.class else {
        return next.run(request).await;
    };
    let grpc = GrpcContentType::of(request.headers());
    let peer = request
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .map(|addr| addr.ip());
    let (caller, user) = limits.caller_and_user(request.headers(), peer);
    if let Err(refusal) = limits.check(class, &caller) {
        limits.delay_refusal().await;
        return refuse(&refusal, &caller, grpc);
    }
    let (CallerKey::Subject(subject), Some(user)) = (&caller, user) else {
        return next.run(request).await;
    };
    // Calls to the services made for this request name its caller.
    if !route.submission || limits.submissions.is_none() {
        return enduser::scope(user, next.run(request)).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_SUBMISSION_BODY).await else {
        let refusal = Refusal::TooLarge {
            limit: MAX_SUBMISSION_BODY as u64,
        };
        return refuse(&refusal, &caller, grpc);
    };
    if let Err(refusal) = limits.charge_submission(subject, bytes.len()) {
        return refuse(&refusal, &caller, grpc);
    }
    enduser::scope(
        user,
        next.run(Request::from_parts(parts, Body::from(bytes))),
    )
    .await
}

/// The content type of a gRPC (or gRPC-Web) request, to answer in it; `None` for REST.
struct GrpcContentType(Option<HeaderValue>);

impl GrpcContentType {
    fn of(headers: &HeaderMap) -> Self {
        Self(
            headers
                .get(header::CONTENT_TYPE)
                .filter(|value| value.as_bytes().starts_with(b"application/grpc"))
                .cloned(),
        )
    }
}

/// Whole seconds to wait, rounded up, at least 1.
fn retry_after_secs(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis().div_ceil(1000))
        .unwrap_or(u64::MAX)
        .max(1)
}

fn refuse(refusal: &Refusal, caller: &CallerKey, grpc: GrpcContentType) -> Response {
    let (status, code, message, retry_after) = match refusal {
        Refusal::RateLimited { class, wait } => {
            metrics::counter!("learnhub_gateway_rate_limited_total", "class" => class.label())
                .increment(1);
            let secs = retry_after_secs(*wait);
            (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many {} requests from this caller; retry after {secs} s",
                    class.label().replace('_', " ")
                ),
                Some(secs),
            )
        }
        Refusal::QuotaExceeded { wait } => {
            metrics::counter!("learnhub_gateway_rate_limited_total", "class" => "submission_bytes")
                .increment(1);
            let secs = retry_after_secs(*wait);
            (
                StatusCode::TOO_MANY_REQUESTS,
                "quota_exceeded",
                format!("this learner's submission quota is spent; retry after {secs} s"),
                Some(secs),
            )
        }
        Refusal::TooLarge { limit } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("a submission may be at most {limit} bytes"),
            None,
        ),
    };
    if let Some(suppressed) = LIMITED_LOG.admit() {
        tracing::warn!(
            ?caller,
            code,
            suppressed,
            "refusing requests over the rate limits"
        );
    }
    let mut response = match grpc.0 {
        Some(content_type) => {
            let mut response = tonic::Status::resource_exhausted(message)
                .into_http::<Body>()
                .into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type);
            response
        }
        None => (status, axum::Json(ErrorBody { code, message })).into_response(),
    };
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn verifier() -> TokenVerifier {
        TokenVerifier::new("limits-unit-test-secret-of-32-bytes!!").unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn routes_fall_into_their_classes() {
        let rpc = |name: &str| Route::of(&Method::POST, &format!("{GATEWAY_SERVICE}{name}"));
        assert_eq!(rpc("GetCatalogPage").class, Some(RouteClass::PublicRead));
        assert_eq!(rpc("ListMySubmissions").class, Some(RouteClass::PublicRead));
        assert_eq!(rpc("Enroll").class, Some(RouteClass::LearnerWrite));
        assert!(rpc("SubmitExercise").submission);
        assert_eq!(rpc("InvalidateCache").class, Some(RouteClass::Admin));
        let rest = |method: Method, path: &str| Route::of(&method, path);
        assert_eq!(
            rest(Method::GET, "/v1/catalog").class,
            Some(RouteClass::PublicRead)
        );
        assert_eq!(
            rest(Method::POST, "/v1/enrollments").class,
            Some(RouteClass::LearnerWrite)
        );
        assert_eq!(
            rest(Method::GET, "/v1/admin/cache/stats").class,
            Some(RouteClass::Admin)
        );
        assert!(rest(Method::POST, "/v1/exercises/3/submissions").submission);
        assert!(!rest(Method::GET, "/v1/exercises/3/submissions").submission);
        for exempt in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/grpc.health.v1.Health/Check",
        ] {
            assert_eq!(rest(Method::GET, exempt).class, None, "{exempt}");
        }
    }

    #[test]
    fn x_forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec![cidr("10.0.0.0/8").unwrap(), cidr("192.0.2.1").unwrap()];
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.7, 10.1.2.3".parse().unwrap());
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_address(ip("203.0.113.5"), &headers, &trusted),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_address(ip("10.9.9.9"), &headers, &[]),
            ip("10.9.9.9")
        );
        // Behind trusted proxies: the rightmost untrusted hop.
        assert_eq!(
            client_address(ip("192.0.2.1"), &headers, &trusted),
            ip("198.51.100.7")
        );
        // Garbage on the right stops the walk at the proxy that wrote it.
        headers.insert(
            "x-forwarded-for",
            "198.51.100.7, not-an-ip".parse().unwrap(),
        );
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("10.0.0.1")
        );
        // Ports and brackets are read.
        headers.insert("x-forwarded-for", "[2001:db8::1]:443".parse().unwrap());
        assert_eq!(
            client_address(ip("10.0.0.1"), &headers, &trusted),
            ip("2001:db8::1")
        );
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("proxy.local").is_err());
    }

    #[test]
    fn an_ipv6_client_counts_by_its_64_prefix() {
        assert_eq!(
            CallerKey::address(ip("2001:db8:1:2:aaaa::1")),
            CallerKey::address(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            CallerKey::address(ip("2001:db8:1:2::1")),
            CallerKey::address(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            CallerKey::address(ip("::ffff:192.0.2.7")),
            CallerKey::Address(ip("192.0.2.7"))
        );
    }

    #[test]
    fn a_valid_token_names_the_caller_and_anything_else_counts_by_address() {
        let limits = RateLimits::new(&LimitConfig::default(), verifier());
        let token = crate::auth::issue_token(
            "limits-unit-test-secret-of-32-bytes!!",
            "42",
            crate::auth::Role::Learner,
            Duration::from_secs(60),
        )
        .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        let peer = Some(ip("192.0.2.9"));
        assert_eq!(
            limits.caller(&headers, peer),
            CallerKey::Subject("42".into())
        );
        headers.append(header::AUTHORIZATION, "Bearer other".parse().unwrap());
        assert_eq!(
            limits.caller(&headers, peer),
            CallerKey::Address(ip("192.0.2.9"))
        );
        headers.insert(header::AUTHORIZATION, "Bearer forged".parse().unwrap());
        assert_eq!(
            limits.caller(&headers, peer),
            CallerKey::Address(ip("192.0.2.9"))
        );
    }

    #[test]
    fn sweeping_forgets_idle_callers_and_keeps_the_limited_ones() {
        let clock = FakeRelativeClock::default();
        let config = LimitConfig {
            rate_limit_reads_per_minute: 60,
            rate_limit_reads_burst: 2,
            ..LimitConfig::default()
        };
        let limits = RateLimits::with_clock(&config, verifier(), clock.clone());
        for n in 0..1000u32 {
            let caller = CallerKey::Address(IpAddr::from(n.to_be_bytes()));
            limits.check(RouteClass::PublicRead, &caller).unwrap();
        }
        let busy = CallerKey::Subject("7".into());
        limits.check(RouteClass::PublicRead, &busy).unwrap();
        limits.check(RouteClass::PublicRead, &busy).unwrap();
        let refused = limits.check(RouteClass::PublicRead, &busy).unwrap_err();
        assert!(
            matches!(refused, Refusal::RateLimited { wait, .. } if wait == Duration::from_secs(1))
        );
        assert_eq!(limits.sweep(), 1001);
        // Two seconds on, the single-call callers' buckets have been full again for a cell's
        // time: indistinguishable from callers never seen, so they go; the busy one is still
        // owed part of its burst.
        clock.advance(Duration::from_secs(2));
        assert_eq!(limits.sweep(), 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(limits.sweep(), 0);
        limits.check(RouteClass::PublicRead, &busy).unwrap();
    }

    #[test]
    fn the_submission_quota_counts_bytes_per_learner() {
        let clock = FakeRelativeClock::default();
        let config = LimitConfig {
            submission_quota_bytes_per_hour: 3600,
            ..LimitConfig::default()
        };
        let limits = RateLimits::with_clock(&config, verifier(), clock.clone());
        limits.charge_submission("1", 3000).unwrap();
        assert!(matches!(
            limits.charge_submission("1", 1000),
            Err(Refusal::QuotaExceeded { wait }) if wait == Duration::from_secs(400)
        ));
        limits.charge_submission("2", 3600).unwrap();
        assert_eq!(
            limits.charge_submission("3", 3601),
            Err(Refusal::TooLarge { limit: 3600 })
        );
        clock.advance(Duration::from_secs(400));
        limits.charge_submission("1", 1000).unwrap();
        assert!(LimitConfig::off().submission_quota_bytes_per_hour == 0);
        let off = RateLimits::with_clock(&LimitConfig::off(), verifier(), clock);
        off.charge_submission("1", 10 << 20).unwrap();
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
    }
}
