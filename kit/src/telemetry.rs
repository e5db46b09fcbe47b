//! Logs and traces. RUST_LOG filters (default `info`), LOG_FORMAT picks text or JSON; with
//! OTEL_EXPORTER_OTLP_ENDPOINT set, spans are exported over OTLP/gRPC (Jaeger takes them on 4317)
//! and W3C trace context crosses every gRPC hop, so one request is one trace.
use std::io::IsTerminal;

use opentelemetry::{
    global,
    propagation::{Extractor, Injector},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer, filter, fmt, prelude::*};

/// Keeps the trace exporter alive; dropping it flushes the spans still buffered.
#[must_use = "keep the guard until the process ends: dropping it stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            // On its own thread: shutting down the batch processor from a runtime worker can
            // deadlock with the tonic exporter.
            let flushed = std::thread::spawn(move || provider.shutdown()).join();
            if let Ok(Err(err)) = flushed {
                eprintln!("trace exporter shutdown: {err}");
            }
        }
    }
}

/// Installs the global subscriber once (later calls, as in tests or the monolith, only return a
/// guard that exports nothing), exporting spans to OTEL_EXPORTER_OTLP_ENDPOINT when it is set.
/// `service_name` is used unless OTEL_SERVICE_NAME says otherwise. Call from inside the tokio
/// runtime: the OTLP exporter is a tonic client.
pub fn init(service_name: &str, log_format: &str) -> Telemetry {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok();
    init_with_endpoint(service_name, log_format, endpoint.as_deref())
}

/// [`init`] with the OTLP endpoint given rather than read from the environment.
pub fn init_with_endpoint(
    service_name: &str,
    log_format: &str,
    otlp_endpoint: Option<&str>,
) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr, keeping stdout for what a command prints (the monolith's banner, seed
    // reports); colours only when a person is watching.
    let logs = if log_format == "json" {
        fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .boxed()
    };
    let provider = otlp_endpoint
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .and_then(|endpoint| tracer_provider(service_name, endpoint));
    let traces = provider.as_ref().map(|provider| {
        // The transport's own spans would trace the exporter exporting itself.
        let quiet = filter::Targets::new()
            .with_default(tracing::Level::INFO)
            .with_target("h2", filter::LevelFilter::OFF)
            .with_target("hyper", filter::LevelFilter::OFF)
            .with_target("tower", filter::LevelFilter::OFF)
            .with_target("tonic", filter::LevelFilter::OFF)
            .with_target("opentelemetry", filter::LevelFilter::OFF);
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("learnhub"))
            .with_filter(quiet)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(traces)
        .try_init()
        .is_ok();
    if installed {
        global::set_text_map_propagator(TraceContextPropagator::new());
        if let Some(provider) = &provider {
            global::set_tracer_provider(provider.clone());
        }
        Telemetry { provider }
    } else {
        Telemetry { provider: None }
    }
}

fn tracer_provider(service_name: &str, endpoint: &str) -> Option<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.to_owned())
        .build();
    let exporter = match exporter {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("tracing disabled: OTLP exporter for {endpoint}: {err}");
            return None;
        }
    };
    // Resource::builder() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours is the fallback.
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name.to_owned());
    }
    Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    )
}

/// The server span of one incoming gRPC/HTTP request, continuing the caller's trace when the
/// request carries a W3C `traceparent` header.
pub fn request_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let span =
        tracing::info_span!("request", otel.name = %path, otel.kind = "server", path = %path);
    let parent = global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(request.headers()))
    });
    // Fails only when no OpenTelemetry layer is installed: then there is nothing to continue.
    let _ = span.set_parent(parent);
    span
}

/// Adds the current span's trace context to an outgoing request's headers (what
/// [`crate::client::ServiceChannel`] does for every call).
pub fn inject_trace_headers(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(key, value);
        }
    }
}
