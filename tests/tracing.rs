//! One request is one trace: the gateway's span and catalog-svc's spans for the calls it makes
//! share a trace id, exported over OTLP/gRPC to a collector (an in-process OTLP receiver here,
//! Jaeger in a deployment). Its own test binary: the tracing subscriber is process-global.
#![allow(clippy::unwrap_used)]
use std::collections::{HashMap, HashSet};

use learnhub::{CacheStore, DemoData, Platform, PlatformConfig};
use learnhub_db::{Backend, testing::TestDatabase};
use support::otlp::Receiver;

mod support {
    pub mod otlp;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_one_trace_across_services() {
    let (receiver, telemetry) = Receiver::start_exporting().await;

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

    let mut traces: HashMap<Vec<u8>, HashSet<String>> = HashMap::new();
    let mut service_names = HashSet::new();
    for received in receiver.spans() {
        service_names.insert(received.service);
        traces
            .entry(received.span.trace_id)
            .or_default()
            .insert(received.span.name);
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
