//! Observability of the production topology: the four services as separate processes, traces
//! exported over OTLP/gRPC to a real `opentelemetry.proto.collector.trace.v1.TraceService`
//! receiver in this test, and each service's `/metrics` read with an independent Prometheus
//! text parser (`prometheus-parse`).
#![allow(clippy::unwrap_used)]
mod support {
    pub mod otlp;
    pub mod processes;
}

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use gateway::auth::{Role as TokenRole, issue_token};
use learnhub_proto::enrollment::v1::{
    CreateUserRequest, Role, enrollment_service_client::EnrollmentServiceClient,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value, json};
use support::{
    otlp::{Received, Receiver},
    processes::{Certificates, Service, free_port, run_once},
};

const SECRET: &str = "observability-test-secret-of-32-bytes!";

/// The four services, each a process of its own, exporting to `otlp`.
struct Topology {
    gateway: Service,
    catalog: Service,
    enrollment: Service,
    cache: Service,
    gateway_url: String,
    enrollment_url: String,
    certificates: Certificates,
    /// `/metrics` of every service, by service name.
    metrics: Vec<(&'static str, String)>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_topology(otlp: &str) -> Topology {
    let dir = std::env::temp_dir().join(format!(
        "lh-observability-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = |name: &str| format!("sqlite://{}", dir.join(name).display());
    let (gateway_port, catalog_port, enrollment_port, cache_port) =
        (free_port(), free_port(), free_port(), free_port());
    let (catalog_metrics, enrollment_metrics, cache_metrics) =
        (free_port(), free_port(), free_port());
    let addr = |port: u16| format!("127.0.0.1:{port}");
    let url = |port: u16| format!("http://127.0.0.1:{port}");
    // Every hop over mutual TLS, from certificate files, as in production.
    let certificates = Certificates::write(&dir);
    let otel = |service: &str| {
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.to_owned()),
            ("OTEL_SERVICE_NAME", service.to_owned()),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on".to_owned()),
        ];
        env.extend(certificates.env(service));
        env
    };

    let with = |mut base: Vec<(&'static str, String)>, more: Vec<(&'static str, String)>| {
        base.extend(more);
        base
    };
    let cache = Service::start(
        "cache-svc",
        &["serve"],
        &with(
            otel("cache-svc"),
            vec![
                ("LISTEN_ADDR", addr(cache_port)),
                ("METRICS_ADDR", addr(cache_metrics)),
            ],
        ),
        cache_port,
    );
    run_once(
        "catalog-svc",
        &["seed", "--courses", "24"],
        &[("DATABASE_URL", sqlite("catalog.db"))],
    );
    let catalog = Service::start(
        "catalog-svc",
        &["serve"],
        &with(
            otel("catalog-svc"),
            vec![
                ("LISTEN_ADDR", addr(catalog_port)),
                ("METRICS_ADDR", addr(catalog_metrics)),
                ("DATABASE_URL", sqlite("catalog.db")),
                ("CACHE_ADDR", url(cache_port)),
            ],
        ),
        catalog_port,
    );
    let enrollment = Service::start(
        "enrollment-svc",
        &["serve"],
        &with(
            otel("enrollment-svc"),
            vec![
                ("LISTEN_ADDR", addr(enrollment_port)),
                ("METRICS_ADDR", addr(enrollment_metrics)),
                ("DATABASE_URL", sqlite("enrollment.db")),
                ("CATALOG_ADDR", url(catalog_port)),
                ("CACHE_ADDR", url(cache_port)),
            ],
        ),
        enrollment_port,
    );
    let gateway = Service::start(
        "gateway",
        &[],
        &with(
            otel("gateway"),
            vec![
                ("LISTEN_ADDR", addr(gateway_port)),
                ("CATALOG_ADDR", url(catalog_port)),
                ("ENROLLMENT_ADDR", url(enrollment_port)),
                ("CACHE_ADDR", url(cache_port)),
                ("AUTH_JWT_SECRET", SECRET.to_owned()),
            ],
        ),
        gateway_port,
    );
    Topology {
        gateway,
        catalog,
        enrollment,
        cache,
        gateway_url: url(gateway_port),
        enrollment_url: url(enrollment_port),
        certificates,
        metrics: vec![
            ("gateway", format!("{}/metrics", url(gateway_port))),
            ("catalog-svc", format!("{}/metrics", url(catalog_metrics))),
            (
                "enrollment-svc",
                format!("{}/metrics", url(enrollment_metrics)),
            ),
            ("cache-svc", format!("{}/metrics", url(cache_metrics))),
        ],
        _dir: TempDir(dir),
    }
}

/// A service's `/metrics`, parsed by `prometheus-parse` (not by anything of ours).
async fn scrape(http: &reqwest::Client, url: &str) -> prometheus_parse::Scrape {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain"),
        "{url}: {content_type}"
    );
    let text = response.text().await.unwrap();
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).unwrap()
}

/// The total count of a histogram's samples matching `labels`.
fn histogram_count(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(buckets) => buckets
                .iter()
                .filter(|b| b.less_than.is_infinite())
                .map(|b| b.count)
                .sum(),
            _ => 0.0,
        })
        .sum()
}

fn has_metric(scrape: &prometheus_parse::Scrape, name: &str) -> bool {
    scrape.samples.iter().any(|s| s.metric == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_one_trace_across_four_processes_and_every_service_serves_metrics() {
    let (receiver, otlp) = Receiver::start().await;
    let topology = tokio::task::spawn_blocking(move || start_topology(&otlp))
        .await
        .unwrap();
    let http = reqwest::Client::new();

    // A learner and their token.
    // As the gateway would: enrollment-svc takes calls from nobody else.
    let options = learnhub_kit::client::ClientOptions::new(Duration::from_secs(5))
        .with_tls(Some(topology.certificates.identity("gateway")));
    let mut enrollment = EnrollmentServiceClient::new(
        learnhub_kit::client::connect(
            "enrollment-svc",
            "--enrollment-addr",
            &topology.enrollment_url,
            &options,
        )
        .unwrap(),
    );
    let user = enrollment
        .create_user(CreateUserRequest {
            email: "observed@example.com".into(),
            display_name: "Observed".into(),
            role: Role::Learner.into(),
        })
        .await
        .unwrap()
        .into_inner();
    let token = issue_token(
        SECRET,
        &user.id.to_string(),
        TokenRole::Learner,
        Duration::from_secs(600),
    )
    .unwrap();

    let before: HashMap<&str, prometheus_parse::Scrape> = {
        let mut scrapes = HashMap::new();
        for (service, url) in &topology.metrics {
            scrapes.insert(*service, scrape(&http, url).await);
        }
        scrapes
    };

    // One learner catalog page and one enrollment, through the gateway's REST API.
    let page = http
        .get(format!("{}/v1/catalog?page_size=5", topology.gateway_url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page: Value = page.json().await.unwrap();
    let course_id = page["courses"][0]["id"].as_i64().unwrap();
    let enrolled = http
        .post(format!("{}/v1/enrollments", topology.gateway_url))
        .bearer_auth(&token)
        .json(&json!({ "course_id": course_id }))
        .send()
        .await
        .unwrap();
    assert!(enrolled.status().is_success(), "{}", enrolled.status());

    // Metrics: every service answers in the text format, with the names, types and labels of
    // the contract, and the counters moved with the traffic above.
    let mut after = HashMap::new();
    for (service, url) in &topology.metrics {
        after.insert(*service, scrape(&http, url).await);
    }
    for (service, scrape) in &after {
        assert!(
            has_metric(scrape, "learnhub_build_info"),
            "{service} build info"
        );
        assert!(
            has_metric(scrape, "process_resident_memory_bytes"),
            "{service} process metrics"
        );
    }
    let moved = |service: &str, name: &str, labels: &[(&str, &str)]| {
        histogram_count(&after[service], name, labels)
            - histogram_count(&before[service], name, labels)
    };
    assert!(
        moved(
            "gateway",
            "learnhub_http_server_duration_seconds",
            &[
                ("route", "/v1/catalog"),
                ("method", "GET"),
                ("status", "200")
            ]
        ) >= 1.0,
        "the gateway counted the page"
    );
    assert!(
        moved(
            "gateway",
            "learnhub_rpc_client_duration_seconds",
            &[("rpc_method", "GetCatalogSummary"), ("grpc_code", "OK")]
        ) >= 1.0,
        "the gateway counted its call to catalog-svc"
    );
    assert!(
        moved(
            "catalog-svc",
            "learnhub_rpc_server_duration_seconds",
            &[
                ("rpc_service", "learnhub.catalog.v1.CatalogService"),
                ("rpc_method", "GetCatalogSummary"),
                ("grpc_code", "OK")
            ]
        ) >= 1.0,
        "catalog-svc counted GetCatalogSummary"
    );
    assert!(
        moved(
            "enrollment-svc",
            "learnhub_rpc_server_duration_seconds",
            &[("rpc_method", "Enroll"), ("grpc_code", "OK")]
        ) >= 1.0,
        "enrollment-svc counted Enroll"
    );
    assert!(
        has_metric(&after["catalog-svc"], "learnhub_sql_statements_total"),
        "catalog-svc counts SQL"
    );
    assert!(
        has_metric(&after["catalog-svc"], "learnhub_db_pool_connections"),
        "catalog-svc reports its pool"
    );
    assert!(
        has_metric(&after["cache-svc"], "learnhub_cache_misses_total")
            || has_metric(&after["cache-svc"], "learnhub_cache_hits_total"),
        "cache-svc counts reads"
    );
    assert!(
        has_metric(&after["gateway"], "learnhub_cache_near_misses_total")
            && has_metric(&after["gateway"], "learnhub_cache_near_live"),
        "the gateway's near-cache counts its reads"
    );
    assert!(
        has_metric(&after["cache-svc"], "learnhub_cache_subscribers"),
        "cache-svc reports its near-cache subscribers"
    );

    // Stop every process the Kubernetes way: SIGTERM flushes the spans still batched.
    let Topology {
        gateway,
        catalog,
        enrollment: enrollment_svc,
        cache,
        ..
    } = topology;
    for service in [gateway, enrollment_svc, catalog, cache] {
        let name = service.name;
        let status = tokio::task::spawn_blocking(move || service.terminate())
            .await
            .unwrap();
        assert!(status.success(), "{name} exited {status}");
    }

    let spans = receiver.spans();
    let services: HashSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    for service in ["gateway", "catalog-svc", "enrollment-svc", "cache-svc"] {
        assert!(
            services.contains(service),
            "{service} exported spans: {services:?}"
        );
    }

    // The catalog page: one trace from the gateway's HTTP span through every service it touched.
    let page_span = spans
        .iter()
        .find(|s| {
            s.service == "gateway"
                && s.attr("http.route").as_deref() == Some("/v1/catalog")
                && s.attr("http.request.method").as_deref() == Some("GET")
        })
        .unwrap_or_else(|| panic!("no HTTP span for the page: {}", summary(&spans)));
    assert_eq!(page_span.span.name, "GET /v1/catalog");
    assert_eq!(
        page_span.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    let page_trace = in_trace(&spans, &page_span.span.trace_id);
    let touched: HashSet<&str> = page_trace.iter().map(|s| s.service.as_str()).collect();
    for service in ["gateway", "catalog-svc", "enrollment-svc"] {
        assert!(
            touched.contains(service),
            "the page trace reaches {service}: {}",
            summary(&page_trace)
        );
    }
    assert_rpc_hop(
        &page_trace,
        "gateway",
        "catalog-svc",
        "learnhub.catalog.v1.CatalogService",
        "GetCatalogSummary",
    );
    assert_rpc_hop(
        &page_trace,
        "gateway",
        "enrollment-svc",
        "learnhub.enrollment.v1.EnrollmentService",
        "BatchGetEnrollmentState",
    );
    // catalog-svc's SQL and cache reads are children in the same trace.
    assert!(
        page_trace.iter().any(|s| s.service == "catalog-svc"
            && s.attr("db.system.name").as_deref() == Some("sqlite")
            && s.attr("db.query.summary").is_some()),
        "database spans in the page trace: {}",
        summary(&page_trace)
    );
    assert!(
        page_trace
            .iter()
            .any(|s| s.service == "cache-svc" && s.attr("rpc.system").as_deref() == Some("grpc")),
        "cache-svc in the page trace: {}",
        summary(&page_trace)
    );
    assert!(
        page_trace.iter().any(|s| s.attr("cache.result").is_some()),
        "a cache span with its result in the page trace: {}",
        summary(&page_trace)
    );

    // The enrollment: gateway → enrollment-svc → catalog-svc, and enrollment-svc → cache-svc.
    let enroll_span = spans
        .iter()
        .find(|s| {
            s.service == "gateway" && s.attr("http.route").as_deref() == Some("/v1/enrollments")
        })
        .unwrap_or_else(|| panic!("no HTTP span for the enrollment: {}", summary(&spans)));
    let enroll_trace = in_trace(&spans, &enroll_span.span.trace_id);
    assert_rpc_hop(
        &enroll_trace,
        "gateway",
        "enrollment-svc",
        "learnhub.enrollment.v1.EnrollmentService",
        "Enroll",
    );
    let catalog_call = enroll_trace
        .iter()
        .find(|s| s.service == "catalog-svc" && s.span.kind == SpanKind::Server as i32)
        .unwrap_or_else(|| {
            panic!(
                "enrollment-svc called catalog-svc: {}",
                summary(&enroll_trace)
            )
        });
    let parent = parent_of(&enroll_trace, catalog_call).unwrap();
    assert_eq!(parent.service, "enrollment-svc");
    assert!(
        enroll_trace.iter().any(|s| s.service == "cache-svc"),
        "enrollment-svc invalidated in cache-svc within the trace: {}",
        summary(&enroll_trace)
    );
}

fn in_trace<'a>(spans: &'a [Received], trace_id: &[u8]) -> Vec<&'a Received> {
    spans
        .iter()
        .filter(|s| s.span.trace_id == trace_id)
        .collect()
}

fn parent_of<'a>(trace: &[&'a Received], span: &Received) -> Option<&'a Received> {
    trace
        .iter()
        .find(|candidate| candidate.id() == span.span.parent_span_id.as_slice())
        .copied()
}

/// A server span of `callee` for `service/method` whose parent is a client span of `caller`,
/// both with the RPC semantic-convention attributes and status OK.
fn assert_rpc_hop(trace: &[&Received], caller: &str, callee: &str, service: &str, method: &str) {
    let server = trace
        .iter()
        .find(|s| {
            s.service == callee
                && s.span.kind == SpanKind::Server as i32
                && s.attr("rpc.method").as_deref() == Some(method)
        })
        .unwrap_or_else(|| panic!("no {callee} server span for {method}: {}", summary(trace)));
    assert_eq!(server.span.name, format!("{service}/{method}"));
    assert_eq!(server.attr("rpc.system").as_deref(), Some("grpc"));
    assert_eq!(server.attr("rpc.service").as_deref(), Some(service));
    assert_eq!(server.attr("rpc.grpc.status_code").as_deref(), Some("0"));
    let client = parent_of(trace, server)
        .unwrap_or_else(|| panic!("{callee}'s {method} span has no parent in the trace"));
    assert_eq!(client.service, caller, "{method}'s parent");
    assert_eq!(
        client.span.kind,
        SpanKind::Client as i32,
        "{method}'s parent kind"
    );
    assert_eq!(client.attr("rpc.method").as_deref(), Some(method));
    assert_eq!(client.attr("rpc.grpc.status_code").as_deref(), Some("0"));
}

fn summary(spans: &[impl std::borrow::Borrow<Received>]) -> String {
    spans
        .iter()
        .map(|s| {
            let s = s.borrow();
            format!("{}:{}", s.service, s.span.name)
        })
        .collect::<Vec<_>>()
        .join(", ")
}
