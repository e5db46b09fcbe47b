//! One request is one trace: the gateway's span and catalog-svc's spans for the calls it makes
//! share a trace id, exported over OTLP/gRPC to a collector (an in-process OTLP receiver here,
//! Jaeger in a deployment). Its own test binary: the tracing subscriber is process-global.
#![allow(clippy::unwrap_used)]
use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use learnhub_db::{Backend, DbArgs, testing::TestDatabase};
use learnhub_kit::shutdown::CancellationToken;
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
        "text",
        Some(&format!("http://{otlp}")),
    );
    assert!(telemetry.exporting());

    let database = TestDatabase::create(Backend::Sqlite).await;
    let catalog = catalog_svc::Application::build(&catalog_svc::Config {
        listen: "127.0.0.1:0".into(),
        db: DbArgs {
            database_url: database.url().to_owned(),
            db_pool_size: 2,
            slow_query_ms: 1_000,
            n_plus_one_threshold: 5,
        },
        cache_addr: None,
        no_migrate: false,
    })
    .await
    .unwrap();
    catalog_svc::seed::run(catalog.db(), 5, false)
        .await
        .unwrap();
    let catalog_addr = catalog.local_addr();
    let stop = CancellationToken::new();
    tokio::spawn(catalog.run_until_stopped(stop.clone()));
    let gateway = gateway::Application::build(&gateway::Config {
        listen: "127.0.0.1:0".into(),
        catalog_addr: format!("http://{catalog_addr}"),
        enrollment_addr: None,
        cache_addr: None,
        auth_jwt_secret: "tracing-test".into(),
        upstream_timeout_ms: 5_000,
    })
    .await
    .unwrap();
    let gateway_addr = gateway.local_addr();
    tokio::spawn(gateway.run_until_stopped(stop.clone()));

    let response = reqwest::get(format!("http://{gateway_addr}/v1/catalog?page_size=2"))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    stop.cancel();
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
        .find(|names| names.contains("/v1/catalog"))
        .unwrap_or_else(|| panic!("no trace for the page: {traces:?}"));
    for upstream in [
        "/learnhub.catalog.v1.CatalogService/GetCatalogSummary",
        "/learnhub.catalog.v1.CatalogService/ListCourses",
    ] {
        assert!(
            page_trace.contains(upstream),
            "{upstream} in {page_trace:?}"
        );
    }
}
