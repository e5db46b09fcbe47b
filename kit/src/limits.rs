//! Load limits every server applies, so one client cannot break service for the others: HTTP/2
//! streams per connection, requests in flight (shed with a fast 503 / UNAVAILABLE, never a
//! 500), a per-request deadline, open connections, and log lines about them at a bounded rate.
use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt, future::BoxFuture};
use http::{HeaderValue, StatusCode, header};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tonic::{
    body::Body,
    transport::server::{Connected, TcpConnectInfo},
};
use tower::{Layer, Service};

/// The limits of one server; every flag also reads its environment variable. `0` turns a limit
/// off (for measuring what it protects against, never for production).
#[derive(Debug, Clone, clap::Args)]
pub struct ServerLimits {
    /// HTTP/2 streams one connection may have open at once (advertised as
    /// SETTINGS_MAX_CONCURRENT_STREAMS; a client queues the rest on its side).
    #[arg(long, env = "MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,
    /// Requests of one connection worked on at once; its others wait their turn (not refused),
    /// so one busy connection cannot fill the scheduler's queue ahead of everyone else's.
    #[arg(long, env = "MAX_REQUESTS_PER_CONNECTION", default_value_t = 32)]
    pub max_requests_per_connection: usize,
    /// Requests this server works on at once, over all connections; one more is answered at once
    /// with 503 (REST) or UNAVAILABLE (gRPC).
    #[arg(long, env = "MAX_IN_FLIGHT_REQUESTS", default_value_t = 1024)]
    pub max_in_flight_requests: usize,
    /// Open connections; one more is closed as soon as it is accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Longest time from a request's arrival to its response head, reading of the request body
    /// included (seconds); then 503 (REST) or DEADLINE_EXCEEDED (gRPC).
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Interval of HTTP/2 PINGs on an otherwise idle connection (seconds); a peer that does not
    /// answer within the keep-alive timeout is disconnected.
    #[arg(long, env = "HTTP2_KEEPALIVE_SECS", default_value_t = 30)]
    pub http2_keepalive_secs: u64,
    /// How long an HTTP/2 PING may go unanswered before the connection is closed (seconds).
    #[arg(long, env = "HTTP2_KEEPALIVE_TIMEOUT_SECS", default_value_t = 10)]
    pub http2_keepalive_timeout_secs: u64,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 256,
            max_requests_per_connection: 32,
            max_in_flight_requests: 1024,
            max_connections: 4096,
            request_timeout_secs: 30,
            http2_keepalive_secs: 30,
            http2_keepalive_timeout_secs: 10,
        }
    }
}

impl ServerLimits {
    /// Every limit off: the server as tonic builds it by default (no stream cap, nothing shed).
    /// For measuring what the limits protect against.
    pub fn off() -> Self {
        Self {
            max_concurrent_streams: 0,
            max_requests_per_connection: 0,
            max_in_flight_requests: 0,
            max_connections: 0,
            request_timeout_secs: 0,
            http2_keepalive_secs: 0,
            http2_keepalive_timeout_secs: 0,
        }
    }

    pub(crate) fn concurrent_streams(&self) -> Option<u32> {
        nonzero(self.max_concurrent_streams.into()).map(|_| self.max_concurrent_streams)
    }

    pub(crate) fn requests_per_connection(&self) -> Option<usize> {
        (self.max_requests_per_connection > 0).then_some(self.max_requests_per_connection)
    }

    pub(crate) fn keepalive_interval(&self) -> Option<Duration> {
        nonzero(self.http2_keepalive_secs).map(Duration::from_secs)
    }

    pub(crate) fn keepalive_timeout(&self) -> Option<Duration> {
        nonzero(self.http2_keepalive_timeout_secs).map(Duration::from_secs)
    }

    /// The layer shedding requests beyond `max_in_flight_requests` and ending those that take
    /// longer than `request_timeout_secs`.
    pub fn in_flight_layer(&self) -> InFlightLimitLayer {
        InFlightLimitLayer {
            permits: nonzero(self.max_in_flight_requests as u64)
                .map(|_| Arc::new(Semaphore::new(self.max_in_flight_requests))),
            timeout: nonzero(self.request_timeout_secs).map(Duration::from_secs),
        }
    }
}

fn nonzero(value: u64) -> Option<u64> {
    (value > 0).then_some(value)
}

/// Lets one log line through per interval for failures of one kind, and counts the rest, so a
/// flood of identical failures costs a line every few seconds rather than one per request.
#[derive(Debug)]
pub struct LogThrottle {
    every: Duration,
    state: Mutex<ThrottleState>,
}

#[derive(Debug)]
struct ThrottleState {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new(ThrottleState {
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line is due (n = failures of this kind not logged since the last one),
    /// `None` when this failure is only counted.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    /// [`LogThrottle::admit`] at a given instant.
    pub fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let due = state
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= self.every);
        if due {
            state.last = Some(now);
            Some(std::mem::take(&mut state.suppressed))
        } else {
            state.suppressed += 1;
            None
        }
    }
}

/// How often a limit's log line may repeat.
const LOG_EVERY: Duration = Duration::from_secs(10);
static SHED_LOG: LogThrottle = LogThrottle::new(LOG_EVERY);
static TIMEOUT_LOG: LogThrottle = LogThrottle::new(LOG_EVERY);
static CONNECTION_LOG: LogThrottle = LogThrottle::new(LOG_EVERY);

/// See [`ServerLimits::in_flight_layer`].
#[derive(Debug, Clone)]
pub struct InFlightLimitLayer {
    permits: Option<Arc<Semaphore>>,
    timeout: Option<Duration>,
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            permits: self.permits.clone(),
            timeout: self.timeout,
        }
    }
}

/// The service [`InFlightLimitLayer`] makes. A request holds a permit until its response head
/// is ready: a long response stream (a health `Watch`) does not hold one for its lifetime.
#[derive(Debug, Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    permits: Option<Arc<Semaphore>>,
    timeout: Option<Duration>,
}

impl<S, B, ResBody> Service<http::Request<B>> for InFlightLimit<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = tonic::codegen::Bytes> + Send + 'static,
    ResBody::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let protocol = Protocol::of(request.headers());
        let permit = match &self.permits {
            None => None,
            // Probes are cheap and must answer under load: a shed liveness probe restarts a pod
            // that is only busy.
            Some(_) if is_probe(request.uri().path()) => None,
            Some(permits) => match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    if let Some(suppressed) = SHED_LOG.admit() {
                        tracing::warn!(
                            suppressed,
                            "overloaded: shedding requests beyond --max-in-flight-requests"
                        );
                    }
                    return Box::pin(std::future::ready(Ok(protocol.refusal(Refusal::Shed))));
                }
            },
        };
        let response = self.inner.call(request);
        let timeout = self.timeout;
        Box::pin(async move {
            let _permit = permit;
            let response = match timeout {
                None => response.await?,
                Some(timeout) => match tokio::time::timeout(timeout, response).await {
                    Ok(response) => response?,
                    Err(_) => {
                        if let Some(suppressed) = TIMEOUT_LOG.admit() {
                            tracing::warn!(
                                suppressed,
                                timeout_secs = timeout.as_secs(),
                                "a request outlived --request-timeout-secs"
                            );
                        }
                        return Ok(protocol.refusal(Refusal::Timeout(timeout)));
                    }
                },
            };
            Ok(response.map(Body::new))
        })
    }
}

fn is_probe(path: &str) -> bool {
    path == "/healthz" || path.starts_with("/grpc.health.v1.Health/")
}

/// Why a request was answered by the limits rather than by its handler.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    Shed,
    Timeout(Duration),
}

/// How to answer a request the limits refuse: as gRPC (gRPC-Web included) or as REST.
#[derive(Debug, Clone)]
enum Protocol {
    Grpc(HeaderValue),
    Rest,
}

impl Protocol {
    fn of(headers: &http::HeaderMap) -> Self {
        match headers.get(header::CONTENT_TYPE) {
            Some(value) if value.as_bytes().starts_with(b"application/grpc") => {
                Self::Grpc(value.clone())
            }
            _ => Self::Rest,
        }
    }

    fn refusal(&self, refusal: Refusal) -> http::Response<Body> {
        let (status, code, message) = match refusal {
            Refusal::Shed => (
                tonic::Status::unavailable(OVERLOADED),
                "unavailable",
                OVERLOADED.to_owned(),
            ),
            Refusal::Timeout(timeout) => {
                let message = format!("the request took longer than {} s", timeout.as_secs());
                (
                    tonic::Status::deadline_exceeded(message.clone()),
                    "timeout",
                    message,
                )
            }
        };
        match self {
            Self::Grpc(content_type) => {
                let mut response = status.into_http::<Body>();
                // A gRPC-Web caller reads the status from the headers of a response in its own
                // content type.
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
                response
            }
            Self::Rest => json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({"code": code, "message": message}),
                Some(1),
            ),
        }
    }
}

const OVERLOADED: &str = "the server is overloaded; retry after a short backoff";

/// A JSON response (`{"code","message"}` like every REST error), with `Retry-After` when given.
pub fn json_response(
    status: StatusCode,
    body: serde_json::Value,
    retry_after_secs: Option<u64>,
) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// `incoming` with at most `max` connections open at once (`0`: no cap). A connection beyond the
/// cap is closed as soon as it is accepted: the caller sees a reset at once, not a hang, and the
/// connections already open keep their share of the server.
pub fn cap_connections<I>(
    incoming: I,
    max: usize,
) -> impl Stream<Item = io::Result<CappedConnection>> + Send + 'static
where
    I: Stream<Item = io::Result<TcpStream>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(if max == 0 {
        Semaphore::MAX_PERMITS
    } else {
        max
    }));
    incoming.filter_map(move |accepted| {
        let admitted = accepted.map(|stream| {
            let permit = permits.clone().try_acquire_owned().ok()?;
            Some(CappedConnection {
                stream,
                _permit: permit,
            })
        });
        std::future::ready(match admitted {
            Ok(Some(connection)) => Some(Ok(connection)),
            Ok(None) => {
                if let Some(suppressed) = CONNECTION_LOG.admit() {
                    tracing::warn!(
                        suppressed,
                        max,
                        "closing connections beyond --max-connections"
                    );
                }
                None
            }
            Err(err) => Some(Err(err)),
        })
    })
}

/// A TCP connection counted against the connection cap until it closes.
#[derive(Debug)]
pub struct CappedConnection {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl Connected for CappedConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for CappedConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for CappedConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_log_lets_one_line_through_per_interval_and_counts_the_rest() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.admit_at(start), Some(0));
        for second in 0..100 {
            let now = start + Duration::from_millis(second * 90);
            assert_eq!(throttle.admit_at(now), None);
        }
        assert_eq!(
            throttle.admit_at(start + Duration::from_secs(10)),
            Some(100)
        );
        assert_eq!(throttle.admit_at(start + Duration::from_secs(11)), None);
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let off = ServerLimits::off();
        assert_eq!(off.concurrent_streams(), None);
        assert_eq!(off.requests_per_connection(), None);
        assert_eq!(off.keepalive_interval(), None);
        let layer = off.in_flight_layer();
        assert!(layer.permits.is_none() && layer.timeout.is_none());
        let on = ServerLimits::default();
        assert_eq!(on.concurrent_streams(), Some(256));
        assert_eq!(
            on.in_flight_layer()
                .permits
                .map(|permits| permits.available_permits()),
            Some(1024)
        );
    }
}
