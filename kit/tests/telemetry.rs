//! The spans and metrics of calls through `learnhub_kit::server::serve` and
//! `learnhub_kit::client::ServiceChannel`: names, attributes and status codes as OpenTelemetry
//! writes them, the server span a child of the client span, and the RED histograms. Spans are
//! captured in memory by a subscriber local to each test (single-threaded runtimes, so every
//! task runs where that subscriber is the default).
#![allow(clippy::unwrap_used)]
use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::body::Bytes;
use learnhub_kit::{
    client::{ClientOptions, connect},
    metrics, server,
    shutdown::CancellationToken,
};
use opentelemetry::{
    KeyValue, Value,
    trace::{SpanKind, Status, TracerProvider as _},
};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, SpanData, SpanExporter},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
use tower::{Layer, ServiceExt};
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanData>>>);

impl SpanExporter for Spans {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        self.0.lock().unwrap().extend(batch);
        std::future::ready(Ok(()))
    }
}

impl Spans {
    fn named(&self, name: &str, kind: SpanKind) -> Vec<SpanData> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|span| span.name == name && span.span_kind == kind)
            .cloned()
            .collect()
    }
}

/// Spans of this thread go to the returned collector until the guard is dropped.
fn capture_spans() -> (Spans, SdkTracerProvider, tracing::subscriber::DefaultGuard) {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let spans = Spans::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let guard = tracing::subscriber::set_default(subscriber);
    (spans, provider, guard)
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|KeyValue { key: k, .. }| k.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn text(span: &SpanData, key: &str) -> String {
    attribute(span, key)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

fn status_code(span: &SpanData) -> Option<i64> {
    match attribute(span, "rpc.grpc.status_code") {
        Some(Value::I64(code)) => Some(code),
        other => panic!("rpc.grpc.status_code is {other:?} on {}", span.name),
    }
}

/// A server with only health and reflection, on a free port.
async fn health_server() -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
    let listener = server::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        server::serve(listener, tonic::service::Routes::default(), &[], stop)
            .await
            .unwrap();
    });
    (addr, shutdown, task)
}

fn metric_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|line| line.starts_with(prefix))
}

#[tokio::test]
async fn a_call_is_a_client_span_whose_child_is_the_server_span_with_its_status() {
    metrics::install("telemetry-test", "0.0.1");
    let (spans, provider, _guard) = capture_spans();
    let (addr, shutdown, task) = health_server().await;
    let channel = connect(
        "health-peer",
        "--health-addr",
        &format!("http://{addr}"),
        &ClientOptions::new(Duration::from_secs(5)),
    )
    .unwrap();
    let mut health = HealthClient::new(channel);
    health.check(HealthCheckRequest::default()).await.unwrap();
    let missing = health
        .check(HealthCheckRequest {
            service: "learnhub.nothing.v1.Nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    shutdown.cancel();
    task.await.unwrap();
    provider.force_flush().unwrap();

    let name = "grpc.health.v1.Health/Check";
    let servers = spans.named(name, SpanKind::Server);
    let clients = spans.named(name, SpanKind::Client);
    assert_eq!(servers.len(), 2, "{servers:#?}");
    assert_eq!(clients.len(), 2, "{clients:#?}");
    for span in servers.iter().chain(&clients) {
        assert_eq!(text(span, "rpc.system"), "grpc");
        assert_eq!(text(span, "rpc.service"), "grpc.health.v1.Health");
        assert_eq!(text(span, "rpc.method"), "Check");
    }
    for client in &clients {
        assert_eq!(text(client, "peer.service"), "health-peer");
        // The server span of the same call is the client span's child, in its trace.
        let server = servers
            .iter()
            .find(|server| server.parent_span_id == client.span_context.span_id())
            .unwrap_or_else(|| panic!("no server span under {client:#?}"));
        assert_eq!(
            server.span_context.trace_id(),
            client.span_context.trace_id()
        );
        assert_eq!(status_code(server), status_code(client));
        match status_code(client) {
            Some(0) => {
                assert_eq!(client.status, Status::Unset);
                assert_eq!(server.status, Status::Unset);
            }
            // A client counts every failure; a server only its own (NOT_FOUND is the caller's).
            Some(5) => {
                assert!(matches!(client.status, Status::Error { .. }), "{client:#?}");
                assert_eq!(server.status, Status::Unset);
            }
            other => panic!("unexpected status {other:?}"),
        }
    }

    let rendered = metrics::render();
    for prefix in [
        r#"learnhub_rpc_server_duration_seconds_count{rpc_service="grpc.health.v1.Health",rpc_method="Check",grpc_code="NOT_FOUND"}"#,
        r#"learnhub_rpc_client_duration_seconds_count{peer="health-peer",rpc_service="grpc.health.v1.Health",rpc_method="Check",grpc_code="OK"} 1"#,
        r#"learnhub_rpc_client_duration_seconds_count{peer="health-peer",rpc_service="grpc.health.v1.Health",rpc_method="Check",grpc_code="NOT_FOUND"} 1"#,
        r#"learnhub_rpc_client_duration_seconds_bucket{peer="health-peer",rpc_service="grpc.health.v1.Health",rpc_method="Check",grpc_code="OK",le="10"} 1"#,
    ] {
        assert!(
            metric_line(&rendered, prefix).is_some(),
            "{prefix} in\n{rendered}"
        );
    }
}

#[tokio::test]
async fn a_call_to_an_unknown_method_is_counted_without_its_made_up_name() {
    metrics::install("telemetry-test", "0.0.1");
    // Every test thread has a subscriber: tracing caches whether a callsite is wanted per
    // process, and a thread with none could make it unwanted for the others.
    let (spans, provider, _guard) = capture_spans();
    let (addr, shutdown, task) = health_server().await;
    let channel = connect(
        "unknown-peer",
        "--unknown-addr",
        &format!("http://{addr}"),
        &ClientOptions::new(Duration::from_secs(5)),
    )
    .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/made.up.v1.Service/Method");
    let answer: Result<tonic::Response<HealthCheckRequest>, _> = grpc
        .unary(
            tonic::Request::new(HealthCheckRequest::default()),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_eq!(answer.unwrap_err().code(), tonic::Code::Unimplemented);
    shutdown.cancel();
    task.await.unwrap();

    provider.force_flush().unwrap();
    // The span keeps the real name: spans are not aggregated, labels are.
    assert_eq!(
        spans
            .named("made.up.v1.Service/Method", SpanKind::Client)
            .len(),
        1
    );

    let rendered = metrics::render();
    assert!(!rendered.contains("made.up.v1.Service"), "{rendered}");
    let prefix = r#"learnhub_rpc_client_duration_seconds_count{peer="unknown-peer",rpc_service="_OTHER",rpc_method="_OTHER",grpc_code="UNIMPLEMENTED"} 1"#;
    assert!(metric_line(&rendered, prefix).is_some(), "{rendered}");
}

#[tokio::test]
async fn an_http_request_is_a_span_named_after_its_route_continuing_the_callers_trace() {
    let (spans, provider, _guard) = capture_spans();
    let listener = server::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new().route(
        "/hello/{name}",
        axum::routing::get(|request: axum::extract::Request| async move {
            server::record_http_route(&request, "/hello/{name}");
            (http::StatusCode::IM_A_TEAPOT, "hi")
        }),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server::serve(
        listener,
        tonic::service::Routes::from(router),
        &[],
        shutdown.clone(),
    ));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /hello/ada HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
              traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n",
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 418"), "{response}");
    shutdown.cancel();
    task.await.unwrap().unwrap();
    provider.force_flush().unwrap();

    let [span] = &spans.named("GET /hello/{name}", SpanKind::Server)[..] else {
        panic!(
            "one span named after the route: {:#?}",
            spans.0.lock().unwrap()
        );
    };
    assert_eq!(text(span, "http.request.method"), "GET");
    assert_eq!(text(span, "http.route"), "/hello/{name}");
    assert_eq!(text(span, "url.path"), "/hello/ada");
    assert_eq!(
        attribute(span, "http.response.status_code"),
        Some(Value::I64(418))
    );
    assert_eq!(
        span.span_context.trace_id().to_string(),
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(span.parent_span_id.to_string(), "b7ad6b7169203331");
}

/// Polls a body to its end.
async fn drain<B>(mut body: B) -> Vec<u8>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut bytes = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes.extend_from_slice(&data);
        }
    }
    bytes
}

#[tokio::test]
async fn a_grpc_web_call_has_the_status_from_its_trailers() {
    let (spans, provider, _guard) = capture_spans();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let routes = tonic::service::Routes::new(server::grpc_web(health));
    let service = server::ServerTelemetryLayer.layer(routes);
    let message = prost::Message::encode_to_vec(&HealthCheckRequest::default());
    let request = http::Request::post("/grpc.health.v1.Health/Check")
        .header(http::header::CONTENT_TYPE, "application/grpc-web+proto")
        .body(axum::body::Body::from(
            learnhub_kit::testing::grpc_web::frame(&message),
        ))
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::OK);
    assert!(response.headers().get("grpc-status").is_none());
    let body = drain(response.into_body()).await;
    let answer = learnhub_kit::testing::grpc_web::split_unary(&body);
    assert!(answer.trailers.starts_with("grpc-status:0"), "{answer:?}");
    provider.force_flush().unwrap();

    let [span] = &spans.named("grpc.health.v1.Health/Check", SpanKind::Server)[..] else {
        panic!("one server span: {:#?}", spans.0.lock().unwrap());
    };
    // Outside the gRPC-Web translation the trailers are body bytes: without the status read
    // inside it, the call would end UNKNOWN (2).
    assert_eq!(status_code(span), Some(0));
}
