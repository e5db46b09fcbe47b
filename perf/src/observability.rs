//! `perf-report load --observability on`: spans exported over OTLP/gRPC to a receiver in this
//! process that counts and drops them, so the benchmark pays for the export (batching, encoding,
//! the gRPC call) as a deployment does, without a Jaeger to run.
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use learnhub_kit::telemetry::{self, Telemetry};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};

#[derive(Default, Clone)]
struct Sink {
    spans: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans: usize = request
            .get_ref()
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.spans.fetch_add(spans as u64, Ordering::Relaxed);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts the receiver on a loopback port and installs the tracing subscriber exporting to it
/// (logs at `RUST_LOG`, default warn here: the services' info lines are not the report).
pub async fn export_to_sink() -> anyhow::Result<Telemetry> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Sink::default()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let telemetry = telemetry::init_with_endpoint(
        "perf-report",
        env!("CARGO_PKG_VERSION"),
        "text",
        Some(&format!("http://{addr}")),
    );
    anyhow::ensure!(telemetry.exporting(), "the OTLP exporter did not start");
    Ok(telemetry)
}
