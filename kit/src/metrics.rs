//! Prometheus metrics: the one process-wide recorder (the `metrics` facade records into it from
//! every crate), its text rendering for `GET /metrics`, and a listener that serves only that.
//!
//! Installing is idempotent: the monolith runs four services in one process and tests build many
//! applications, so every [`install`] after the first only adds its `learnhub_build_info`.
//! Histograms named `*_duration_seconds` get [`DURATION_BUCKETS`]; process metrics
//! (`process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, …) are
//! collected at each render.
use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};

use axum::{Router, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::server::ServeError;

/// The Prometheus text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds (seconds) of every `*_duration_seconds` histogram: from a cache hit to a
/// request that is about to time out.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets, scraped or not.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

type Collect = Arc<dyn Fn() + Send + Sync>;

struct Registry {
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    on_scrape: Mutex<Vec<Collect>>,
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

fn registry() -> &'static Registry {
    REGISTRY.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("_duration_seconds".into()),
                &DURATION_BUCKETS,
            )
            .expect("DURATION_BUCKETS is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Only a test or an embedding program installs another recorder; say what it costs.
            tracing::warn!("another metrics recorder is installed: /metrics will stay empty");
        }
        describe();
        let process = metrics_process::Collector::default();
        process.describe();
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(%err, "no metrics upkeep thread: histograms fold only when scraped");
        }
        Registry {
            handle,
            process,
            on_scrape: Mutex::new(Vec::new()),
        }
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(
        "learnhub_build_info",
        "1 for each service in the process, labelled with its version"
    );
    describe_histogram!(
        crate::rpc_call::RPC_SERVER_DURATION,
        Unit::Seconds,
        "gRPC calls served, by service, method and status code"
    );
    describe_histogram!(
        crate::rpc_call::RPC_CLIENT_DURATION,
        Unit::Seconds,
        "gRPC calls made to other learnhub services, by callee, method and status code"
    );
    describe_counter!(
        crate::client::RETRIES,
        "gRPC call attempts made again after a failure below gRPC, by callee and reason \
         (not_sent: no connection; broken: the connection broke under an idempotent call)"
    );
    describe_counter!(
        crate::client::EJECTIONS,
        "replicas of a callee taken out of the balance after failing below gRPC (re-admitted \
         when they accept connections again)"
    );
    describe_histogram!(
        HTTP_SERVER_DURATION,
        Unit::Seconds,
        "HTTP (REST) requests served, by method, route template and status"
    );
}

/// HTTP (REST) request durations (`method`, `route`, `status`), recorded by the gateway.
pub const HTTP_SERVER_DURATION: &str = "learnhub_http_server_duration_seconds";

/// Installs the process-wide recorder unless it is installed already, and records
/// `learnhub_build_info{service, version} 1` for `service`.
pub fn install(service: &str, version: &str) {
    registry();
    metrics::gauge!(
        "learnhub_build_info",
        "service" => service.to_owned(),
        "version" => version.to_owned(),
    )
    .set(1.0);
}

/// Runs `collect` before every render, for gauges that are read rather than kept up to date
/// (a pool's idle connections).
pub fn on_scrape(collect: impl Fn() + Send + Sync + 'static) {
    registry()
        .on_scrape
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::new(collect));
}

/// Every metric of the process in the Prometheus text format (installs the recorder if nobody
/// has yet).
pub fn render() -> String {
    let registry = registry();
    registry.process.collect();
    let collectors = registry
        .on_scrape
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for collect in collectors {
        collect();
    }
    registry.handle.render()
}

/// The `GET /metrics` answer: [`render`] as [`CONTENT_TYPE`], never cached.
pub async fn scrape() -> axum::response::Response {
    (
        [
            (http::header::CONTENT_TYPE, CONTENT_TYPE),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        render(),
    )
        .into_response()
}

/// A router serving `GET /metrics`, and `GET /healthz` (200 while the process serves: the
/// listener closes at shutdown). Kubernetes probes the internal services here, in plaintext: a
/// kubelet gRPC probe cannot show the client certificate their gRPC port asks for.
pub fn router() -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/healthz", get(|| async { "ok\n" }))
}

/// A bound metrics listener (`--metrics-addr`), ready to serve `GET /metrics`.
#[derive(Debug)]
pub struct MetricsListener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `addr` (port 0 picks a free port); an empty or blank `addr` means no listener.
    pub async fn bind(addr: &str) -> Result<Option<Self>, ServeError> {
        let Some(addr) = crate::client::configured(Some(addr)) else {
            return Ok(None);
        };
        let listener = crate::server::bind(addr).await?;
        let local = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
        Ok(Some(Self {
            listener,
            addr: local,
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `GET /metrics` until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), ServeError> {
        let addr = self.addr;
        tracing::info!(%addr, "serving metrics");
        axum::serve(self.listener, router())
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|source| ServeError::Metrics {
                addr: addr.to_string(),
                source,
            })
    }
}

/// Runs `server` with the metrics listener (if any) beside it: both stop on `shutdown`, and the
/// metrics listener also stops when `server` ends on its own. The first error is returned.
pub async fn serve_beside<F>(
    metrics: Option<MetricsListener>,
    shutdown: CancellationToken,
    server: F,
) -> Result<(), ServeError>
where
    F: Future<Output = Result<(), ServeError>>,
{
    let Some(metrics) = metrics else {
        return server.await;
    };
    let metrics_stop = shutdown.child_token();
    let server = async {
        let served = server.await;
        metrics_stop.cancel();
        served
    };
    let (served, scraped) = tokio::join!(server, metrics.serve(metrics_stop.clone()));
    served.and(scraped)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get_metrics(addr: SocketAddr) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[test]
    fn installing_twice_keeps_one_registry_with_both_services() {
        install("kit-test-a", "1.0.0");
        install("kit-test-b", "2.0.0");
        let text = render();
        assert!(
            text.contains(r#"learnhub_build_info{service="kit-test-a",version="1.0.0"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"learnhub_build_info{service="kit-test-b",version="2.0.0"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn duration_histograms_have_the_buckets_and_process_metrics_are_collected() {
        install("kit-test-buckets", "0");
        metrics::histogram!("learnhub_kit_test_duration_seconds").record(0.003);
        let text = render();
        assert!(
            text.contains(r#"learnhub_kit_test_duration_seconds_bucket{le="0.0005"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"learnhub_kit_test_duration_seconds_bucket{le="0.005"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"learnhub_kit_test_duration_seconds_bucket{le="10"} 1"#),
            "{text}"
        );
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
        assert!(text.contains("process_cpu_seconds_total"), "{text}");
    }

    #[test]
    fn scrape_hooks_run_before_each_render() {
        on_scrape(|| metrics::gauge!("learnhub_kit_test_scraped").increment(1.0));
        let first = render();
        let second = render();
        assert!(first.contains("learnhub_kit_test_scraped"), "{first}");
        let value = |text: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix("learnhub_kit_test_scraped "))
                .and_then(|value| value.parse().ok())
                .unwrap_or_default()
        };
        assert!(value(&second) > value(&first), "{first}\n{second}");
    }

    #[tokio::test]
    async fn an_empty_address_means_no_listener() {
        assert!(MetricsListener::bind("").await.unwrap().is_none());
        assert!(MetricsListener::bind("  ").await.unwrap().is_none());
        let err = MetricsListener::bind("not an address").await.unwrap_err();
        assert!(err.to_string().contains("not an address"), "{err}");
    }

    #[tokio::test]
    async fn the_listener_serves_prometheus_text_until_shutdown() {
        install("kit-test-listener", "0.1.0");
        let listener = MetricsListener::bind("127.0.0.1:0").await.unwrap().unwrap();
        let addr = listener.local_addr();
        assert_ne!(addr.port(), 0);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(listener.serve(shutdown.clone()));

        let response = get_metrics(addr).await;
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
            "{head}"
        );
        assert!(head.contains("cache-control: no-store"), "{head}");
        assert!(
            body.contains(r#"learnhub_build_info{service="kit-test-listener",version="0.1.0"} 1"#),
            "{body}"
        );

        shutdown.cancel();
        task.await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn the_listener_stops_when_its_server_ends() {
        let listener = MetricsListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.as_ref().unwrap().local_addr();
        let served = serve_beside(listener, CancellationToken::new(), async {
            Err(ServeError::Bind {
                addr: "x".into(),
                source: std::io::Error::other("gone"),
            })
        })
        .await;
        assert!(matches!(served, Err(ServeError::Bind { .. })), "{served:?}");
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
