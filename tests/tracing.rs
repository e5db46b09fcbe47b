//! One request is one trace: the gateway's span and catalog-svc's spans for the calls it makes
//! share a trace id, exported over OTLP/gRPC to a collector (an in-process OTLP receiver here,
//! Jaeger in a deployment). Its own test binary: the tracing subscriber is process-global.
#![allow(clippy::unwrap_used)]
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use learnhub::{CacheStore, DemoData, Platform, PlatformConfig};
use learnhub_db::{Backend, testing::TestDatabase};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};

#[derive(Default, Clone)]
struct Collector {
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.requests.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_across_services() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let telemetry = learnhub_kit::telemetry::init_with_endpoint(
        "learnhub-test",
        env!("CARGO_PKG_VERSION"),
        "text",
        Some(&format!("http://{otlp}")),
    );
    assert!(telemetry.exporting());

    let databases = [
        TestDatabase::create(Backend::Sqlite).await,
        TestDatabase::create(Backend::Sqlite).await,
    ];
    let mut config = PlatformConfig::new(
        databases[0].url(),
        databases[1].url(),
        "tracing-test-secret-of-at-least-32-bytes",
    );
    config.cache = CacheStore::Off;
    config.demo_data = DemoData::Catalog;
    let platform = Platform::start(&config).await.unwrap();
    let gateway_addr = platform.gateway_addr();

    let response = reqwest::get(format!("http://{gateway_addr}/v1/catalog?page_size=2"))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    platform.stop().await.unwrap();
    // Dropping the guard flushes the batch of spans to the collector.
    drop(telemetry);

    let requests = collector.requests.lock().unwrap();
    let mut traces: HashMap<Vec<u8>, HashSet<String>> = HashMap::new();
    let mut service_names = HashSet::new();
    for request in requests.iter() {
        for resource in &request.resource_spans {
            for attribute in resource.resource.iter().flat_map(|r| &r.attributes) {
                if attribute.key == "service.name" {
                    service_names.insert(format!("{:?}", attribute.value));
                }
            }
            for span in resource.scope_spans.iter().flat_map(|s| &s.spans) {
                traces
                    .entry(span.trace_id.clone())
                    .or_default()
                    .insert(span.name.clone());
            }
        }
    }
    assert!(
        service_names
            .iter()
            .any(|name| name.contains("learnhub-test")),
        "{service_names:?}"
    );
    let page_trace = traces
        .values()
        .find(|names| names.contains("GET /v1/catalog"))
        .unwrap_or_else(|| panic!("no trace for the page: {traces:?}"));
    for upstream in [
        "learnhub.catalog.v1.CatalogService/GetCatalogSummary",
        "learnhub.catalog.v1.CatalogService/ListCourses",
    ] {
        assert!(
            page_trace.contains(upstream),
            "{upstream} in {page_trace:?}"
        );
    }
}
