//! A real OTLP/gRPC trace receiver (`opentelemetry.proto.collector.trace.v1.TraceService`) on a
//! loopback port, keeping every span it gets with the `service.name` of the process that sent it.
// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, KeyValue, any_value},
    trace::v1::Span,
};

/// A span as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: String,
    pub span: Span,
}

impl Received {
    pub fn attr(&self, key: &str) -> Option<String> {
        attribute(&self.span.attributes, key)
    }

    pub fn id(&self) -> &[u8] {
        &self.span.span_id
    }
}

pub fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value: &AnyValue| value.value.as_ref())
        .map(|value| match value {
            any_value::Value::StringValue(s) => s.clone(),
            any_value::Value::IntValue(i) => i.to_string(),
            any_value::Value::BoolValue(b) => b.to_string(),
            any_value::Value::DoubleValue(d) => d.to_string(),
            other => format!("{other:?}"),
        })
}

#[derive(Default, Clone)]
pub struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    /// Serves on 127.0.0.1:0; returns the receiver and its `http://` endpoint.
    pub async fn start() -> (Self, String) {
        let receiver = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver.clone()))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (receiver, endpoint)
    }

    /// [`Receiver::start`], then this process's tracing exporting to it (as `learnhub-test`);
    /// drop the guard to flush what is still batched.
    pub async fn start_exporting() -> (Self, learnhub_kit::telemetry::Telemetry) {
        let (receiver, endpoint) = Self::start().await;
        let telemetry = learnhub_kit::telemetry::init_with_endpoint(
            "learnhub-test",
            env!("CARGO_PKG_VERSION"),
            "text",
            Some(&endpoint),
        );
        assert!(telemetry.exporting());
        (receiver, telemetry)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .as_ref()
                .and_then(|r| attribute(&r.attributes, "service.name"))
                .unwrap_or_default();
            for span in resource_spans
                .scope_spans
                .into_iter()
                .flat_map(|scope| scope.spans)
            {
                spans.push(Received {
                    service: service.clone(),
                    span,
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}
