//! Logs and traces. RUST_LOG filters (default `info`), LOG_FORMAT picks text or JSON; with
//! OTEL_EXPORTER_OTLP_ENDPOINT set, spans are exported over OTLP/gRPC (Jaeger takes them on 4317)
//! and W3C trace context crosses every gRPC hop, so one request is one trace. JSON log lines
//! written inside a span carry its `trace_id` and `span_id`, so a log line leads to its trace.
//!
//! Spans follow OpenTelemetry's conventions: a gRPC call is `package.Service/Method` on both
//! ends (`otel.kind` server or client, `rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`); an HTTP request is `METHOD /route/{template}` (`http.request.method`,
//! `http.route`, `http.response.status_code`). Sampling follows OTEL_TRACES_SAMPLER and
//! OTEL_TRACES_SAMPLER_ARG; the resource is OTEL_SERVICE_NAME (else the service's own name),
//! `service.version` and OTEL_RESOURCE_ATTRIBUTES.
use std::{
    future::Future,
    io::IsTerminal,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
};

use opentelemetry::{
    KeyValue, global,
    propagation::{Extractor, Injector},
    trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    resource::TelemetryResourceDetector,
    trace::{IdGenerator, RandomIdGenerator, Sampler, SdkTracerProvider},
};
use tracing::{Dispatch, Subscriber, dispatcher::WeakDispatch, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::{self, FilterExt},
    fmt::{self, FmtContext, FormatEvent, FormatFields, MakeWriter, format::Writer},
    prelude::*,
    registry::{LookupSpan, Registry},
};

/// Keeps the trace pipeline alive; dropping it flushes the spans still buffered.
#[must_use = "keep the guard until the process ends: dropping it stops trace export"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    exporting: bool,
}

impl Telemetry {
    /// Spans leave the process (an OTLP endpoint is configured and this call installed the
    /// subscriber).
    pub fn exporting(&self) -> bool {
        self.exporting
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
/// `service_name` is used unless OTEL_SERVICE_NAME says otherwise; `service_version` is the
/// calling crate's (`env!("CARGO_PKG_VERSION")`). Call from inside the tokio runtime: the OTLP
/// exporter is a tonic client.
pub fn init(service_name: &str, service_version: &str, log_format: &str) -> Telemetry {
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok();
    init_with_endpoint(
        service_name,
        service_version,
        log_format,
        endpoint.as_deref(),
    )
}

/// [`init`] with the OTLP endpoint given rather than read from the environment.
pub fn init_with_endpoint(
    service_name: &str,
    service_version: &str,
    log_format: &str,
    otlp_endpoint: Option<&str>,
) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = log_format == "json";
    let (sampling, sampling_problem) = Sampling::from_env();
    let exporter = otlp_endpoint
        .map(str::trim)
        .filter(|endpoint| !endpoint.is_empty())
        .and_then(span_exporter);
    let exporting = exporter.is_some();
    // JSON logs need span ids even when nothing is exported: a provider without an exporter
    // gives every span its trace and span id (and W3C context still crosses the hops).
    let provider = (exporting || json).then(|| {
        let env = |name| std::env::var(name).ok();
        let resource = resource(
            service_name,
            service_version,
            env("OTEL_SERVICE_NAME").as_deref(),
            env("OTEL_RESOURCE_ATTRIBUTES").as_deref(),
        );
        let builder = SdkTracerProvider::builder()
            .with_sampler(sampling.sampler())
            .with_id_generator(DecidedIds::default())
            .with_resource(resource);
        match exporter {
            Some(exporter) => builder.with_batch_exporter(exporter),
            None => builder,
        }
        .build()
    });
    let installed = subscriber(filter, json, std::io::stderr, provider.as_ref())
        .try_init()
        .is_ok();
    if !installed {
        // Another call installed the subscriber first; this provider would export nothing.
        drop(Telemetry {
            provider,
            exporting: false,
        });
        return Telemetry {
            provider: None,
            exporting: false,
        };
    }
    global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(provider) = &provider {
        global::set_tracer_provider(provider.clone());
        let _ = SAMPLING.set(sampling);
    }
    if let Some(problem) = sampling_problem {
        tracing::warn!(%problem, fallback = ?problem.fallback(), "trace sampling misconfigured");
    }
    Telemetry {
        provider,
        exporting,
    }
}

/// The subscriber [`init`] installs, writing logs to `writer` (tests capture them).
fn subscriber<W>(
    filter: EnvFilter,
    json: bool,
    writer: W,
    provider: Option<&SdkTracerProvider>,
) -> impl Subscriber + Send + Sync + for<'span> LookupSpan<'span> + use<W>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // The JSON formatter reads span ids through the dispatcher, which it cannot ask for while an
    // event is being dispatched: the slot hands it over when the subscriber is installed.
    let dispatch = DispatchSlot::default();
    // Logs go to stderr, keeping stdout for what a command prints (the monolith's banner, seed
    // reports); colours only when a person is watching.
    let logs = if json {
        let with_ids = dispatch.clone();
        fmt::layer()
            .json()
            .with_current_span(true)
            .map_event_format(|format| WithTraceIds {
                format,
                dispatch: with_ids,
            })
            .with_writer(writer)
            .boxed()
    } else {
        fmt::layer()
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(writer)
            .boxed()
    };
    if provider.is_some() {
        SPANS_BUILT.store(true, Ordering::Relaxed);
    }
    // Without a provider the slot holds a layer that wants nothing, behind a filter of its own.
    // Not `None`: a plain layer (an `Option` is one) above per-layer filters turns each callsite
    // they all refuse into "sometimes" and says yes to it, so every span of every crate (h2's
    // trace spans, a few per frame, included) was built even with RUST_LOG=warn.
    let traces = match provider {
        Some(provider) => traces_layer(provider).boxed(),
        None => tracing_subscriber::layer::Identity::new()
            .with_filter(filter::LevelFilter::OFF)
            .boxed(),
    };
    let unsampled_spans_off = UnsampledSpansOff {
        logs_level: filter
            .max_level_hint()
            .unwrap_or(filter::LevelFilter::TRACE),
        // The same directives (EnvFilter prints them back): the log layer's own filter is moved
        // into it below.
        logs: EnvFilter::new(filter.to_string()),
        traces: provider.is_some().then(quiet_targets),
    };
    // RUST_LOG filters the logs only: traces keep their own level, so a quiet log does not
    // silence the traces.
    // The slot sees no span or event: a layer without a filter would make every callsite of
    // every crate (h2's per-frame events included) ask the filters above on every hit.
    // The plain layer outermost: `enabled` asks it first, and its "no" is final (the per-layer
    // filters below are not asked).
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .with(dispatch.with_filter(filter::LevelFilter::OFF))
        .with(unsampled_spans_off)
}

/// The OpenTelemetry layer: sampled spans of [`quiet_targets`], exported through `provider`.
fn traces_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + use<S>
where
    S: Subscriber + for<'span> LookupSpan<'span> + Send + Sync,
{
    let quiet = quiet_targets();
    // Per-span extras off: source location, thread, target and busy/idle timing (two clock
    // reads per poll) cost on every span, sampled or not, and nothing reads them. Nothing
    // here reads OpenTelemetry's current context either (trace context is injected from the
    // tracing span), so it is not activated on every enter.
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("learnhub"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(quiet.and(SkipUnsampled))
}

/// What the OpenTelemetry layer sees: info and above, except the transport's own spans, which
/// would trace the exporter exporting itself.
fn quiet_targets() -> filter::Targets {
    filter::Targets::new()
        .with_default(tracing::Level::INFO)
        .with_target("h2", filter::LevelFilter::OFF)
        .with_target("hyper", filter::LevelFilter::OFF)
        .with_target("tower", filter::LevelFilter::OFF)
        .with_target("tonic", filter::LevelFilter::OFF)
        .with_target("opentelemetry", filter::LevelFilter::OFF)
}

fn span_exporter(endpoint: &str) -> Option<opentelemetry_otlp::SpanExporter> {
    opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.to_owned())
        .build()
        .inspect_err(|err| eprintln!("tracing disabled: OTLP exporter for {endpoint}: {err}"))
        .ok()
}

/// The traces' resource: our name and version, overridden by OTEL_RESOURCE_ATTRIBUTES
/// (`key=value,…`), whose `service.name` OTEL_SERVICE_NAME overrides in turn, as the
/// OpenTelemetry spec orders them.
fn resource(
    service_name: &str,
    service_version: &str,
    env_service_name: Option<&str>,
    env_attributes: Option<&str>,
) -> Resource {
    let builder = Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", service_version.to_owned()))
        .with_attributes(resource_attributes(env_attributes.unwrap_or_default()));
    match env_service_name
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        Some(name) => builder.with_service_name(name.to_owned()),
        None => builder,
    }
    .build()
}

/// `key1=value1,key2=value2` (values percent-encoded) as attributes; entries without `=` or
/// with an empty key are skipped.
fn resource_attributes(text: &str) -> Vec<KeyValue> {
    text.split(',')
        .filter_map(|entry| {
            let (key, value) = entry.split_once('=')?;
            let key = key.trim();
            (!key.is_empty()).then(|| KeyValue::new(key.to_owned(), percent_decode(value.trim())))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Which traces are recorded: OTEL_TRACES_SAMPLER (default `parentbased_always_on`) with its
/// OTEL_TRACES_SAMPLER_ARG ratio (default 1.0). We parse them ourselves: the SDK does too, but
/// falls back silently (its warnings go to its own internal log, which is off).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Sampling {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    #[default]
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

/// A sampler setting that cannot be used, and what is used instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    #[error(
        "OTEL_TRACES_SAMPLER={value:?} is not one of always_on, always_off, traceidratio, \
         parentbased_always_on, parentbased_always_off, parentbased_traceidratio; \
         using parentbased_always_on"
    )]
    UnknownSampler { value: String },
    #[error("OTEL_TRACES_SAMPLER_ARG={value:?} is not a ratio between 0 and 1; using 1.0")]
    BadRatio { value: String, fallback: Sampling },
}

impl SamplingError {
    /// The sampling used instead of the one asked for.
    pub fn fallback(&self) -> Sampling {
        match self {
            Self::UnknownSampler { .. } => Sampling::default(),
            Self::BadRatio { fallback, .. } => *fallback,
        }
    }
}

impl Sampling {
    /// The sampling the environment asks for, or the fallback and why it was not usable.
    fn from_env() -> (Self, Option<SamplingError>) {
        let sampler = std::env::var("OTEL_TRACES_SAMPLER").ok();
        let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
        match Self::parse(sampler.as_deref(), arg.as_deref()) {
            Ok(sampling) => (sampling, None),
            Err(err) => (err.fallback(), Some(err)),
        }
    }

    /// `sampler` as OTEL_TRACES_SAMPLER spells it (case and surrounding blanks ignored; absent
    /// or blank is the default), with `arg` as the ratio of the ratio samplers.
    pub fn parse(sampler: Option<&str>, arg: Option<&str>) -> Result<Self, SamplingError> {
        let name = sampler
            .map(str::trim)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let ratio = |with: fn(f64) -> Self| {
            let Some(text) = arg.map(str::trim).filter(|text| !text.is_empty()) else {
                return Ok(with(1.0));
            };
            match text.parse::<f64>() {
                Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(with(ratio)),
                _ => Err(SamplingError::BadRatio {
                    value: text.to_owned(),
                    fallback: with(1.0),
                }),
            }
        };
        match name.as_str() {
            "" | "parentbased_always_on" => Ok(Self::ParentBasedAlwaysOn),
            "always_on" => Ok(Self::AlwaysOn),
            "always_off" => Ok(Self::AlwaysOff),
            "parentbased_always_off" => Ok(Self::ParentBasedAlwaysOff),
            "traceidratio" => ratio(Self::TraceIdRatio),
            "parentbased_traceidratio" => ratio(Self::ParentBasedTraceIdRatio),
            _ => Err(SamplingError::UnknownSampler {
                value: sampler.unwrap_or_default().to_owned(),
            }),
        }
    }

    /// Whether a caller's decision is followed (the parent-based samplers).
    fn follows_parent(self) -> bool {
        matches!(
            self,
            Self::ParentBasedAlwaysOn
                | Self::ParentBasedAlwaysOff
                | Self::ParentBasedTraceIdRatio(_)
        )
    }

    /// Whether a new trace (no parent) with this id is sampled: the decision of [`Self::sampler`]
    /// (for a ratio, the SDK's test on the id's lower 63 bits), taken without building a span.
    fn samples_new_trace(self, trace_id: TraceId) -> bool {
        match self {
            Self::AlwaysOn | Self::ParentBasedAlwaysOn => true,
            Self::AlwaysOff | Self::ParentBasedAlwaysOff => false,
            Self::TraceIdRatio(ratio) | Self::ParentBasedTraceIdRatio(ratio) => {
                if ratio >= 1.0 {
                    return true;
                }
                let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
                let bytes = trace_id.to_bytes();
                let mut low = [0u8; 8];
                low.copy_from_slice(&bytes[8..]);
                (u64::from_be_bytes(low) >> 1) < bound
            }
        }
    }

    /// The SDK sampler that does it.
    pub fn sampler(self) -> Sampler {
        let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
        match self {
            Self::AlwaysOn => Sampler::AlwaysOn,
            Self::AlwaysOff => Sampler::AlwaysOff,
            Self::TraceIdRatio(ratio) => Sampler::TraceIdRatioBased(ratio),
            Self::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
            Self::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
            Self::ParentBasedTraceIdRatio(ratio) => parent_based(Sampler::TraceIdRatioBased(ratio)),
        }
    }
}

/// The JSON event format with `"trace_id"` and `"span_id"` (lowercase hex, as Jaeger shows
/// them) first on every line written inside a traced span.
struct WithTraceIds<F> {
    format: F,
    dispatch: DispatchSlot,
}

/// The dispatcher the subscriber was installed as, kept weakly (it owns the layers that hold
/// this slot).
#[derive(Clone, Default)]
struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

impl<S: Subscriber> Layer<S> for DispatchSlot {
    fn on_register_dispatch(&self, dispatch: &Dispatch) {
        let _ = self.0.set(dispatch.downgrade());
    }
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    N: for<'w> FormatFields<'w> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let dispatch = self.dispatch.0.get().and_then(WeakDispatch::upgrade);
        let Some((trace_id, span_id)) =
            dispatch.and_then(|dispatch| trace_ids(ctx, event, &dispatch))
        else {
            return self.format.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.format
            .format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                let comma = if rest.starts_with('}') { "" } else { "," };
                write!(
                    writer,
                    "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"{comma}{rest}"
                )
            }
            None => writer.write_str(&line),
        }
    }
}

/// The trace and span id of the innermost span around the event that has them (spans the
/// OpenTelemetry layer filters out, like the transport's, are skipped). The spans are looked up
/// in the registry itself: the log layer's own view leaves out the spans RUST_LOG filters out,
/// and a WARN line inside an INFO request span still belongs to that request's trace.
fn trace_ids<S, N>(
    ctx: &FmtContext<'_, S, N>,
    event: &tracing::Event<'_>,
    dispatch: &Dispatch,
) -> Option<(TraceId, SpanId)>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
    N: for<'w> FormatFields<'w> + 'static,
{
    let innermost = if event.is_contextual() {
        ctx.current_span().id().cloned()
    } else {
        event.parent().cloned()
    };
    let unsampled = || {
        UNSAMPLED
            .try_with(|trace| (trace.trace_id(), trace.span_id()))
            .ok()
    };
    let Some(innermost) = innermost else {
        return unsampled();
    };
    let registry = dispatch.downcast_ref::<Registry>()?;
    registry
        .span(&innermost)?
        .scope()
        .filter_map(|span| tracing_opentelemetry::get_otel_context(&span.id(), dispatch))
        .map(|context| context.span().span_context().clone())
        .find(|span_context| span_context.is_valid())
        .map(|span_context| (span_context.trace_id(), span_context.span_id()))
        .or_else(unsampled)
}

/// Whether spans are built for OpenTelemetry (an exporter, or JSON logs that need span ids).
static SPANS_BUILT: AtomicBool = AtomicBool::new(false);

/// The sampling [`init`] gave the tracer provider, so a server can decide a new trace's sampling
/// before building any span for it.
static SAMPLING: OnceLock<Sampling> = OnceLock::new();

thread_local! {
    /// The trace id a server decided to sample, for the root span it builds next (see
    /// [`DecidedIds`]).
    static NEXT_TRACE_ID: std::cell::Cell<Option<TraceId>> = const { std::cell::Cell::new(None) };
}

/// The SDK's random ids, except that the root span a server builds right after deciding to sample
/// a new trace gets the trace id the decision was taken on (the SDK's ratio sampler, deciding on
/// the same id, agrees).
#[derive(Debug, Default)]
struct DecidedIds(RandomIdGenerator);

impl IdGenerator for DecidedIds {
    fn new_trace_id(&self) -> TraceId {
        NEXT_TRACE_ID
            .with(std::cell::Cell::take)
            .unwrap_or_else(|| self.0.new_trace_id())
    }

    fn new_span_id(&self) -> SpanId {
        self.0.new_span_id()
    }
}

tokio::task_local! {
    /// The trace context of the request this task serves, when that request is not sampled.
    static UNSAMPLED: SpanContext;
}

/// Whether this code runs inside a request that is not sampled: its spans are not built (see
/// [`SkipUnsampled`]), and a span of its own would start a trace of its own.
pub fn in_unsampled_request() -> bool {
    UNSAMPLED.try_with(|_| ()).is_ok()
}

/// The OpenTelemetry layer's filter that leaves out every span and event of a request that is not
/// sampled. Building a span costs the same sampled or not (the registry's slot, its fields as
/// attributes, the sampler); at a 1 % sampler almost every span of a request would be built only
/// to be dropped, so the decision is taken once, on the request's server span, and the rest of
/// the request makes none. Its trace context still crosses the hops (flag not sampled), so the
/// callees make none either, and JSON log lines still carry its trace id.
struct SkipUnsampled;

impl<S> tracing_subscriber::layer::Filter<S> for SkipUnsampled {
    fn enabled(
        &self,
        _: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !in_unsampled_request()
    }
}

/// Keeps the spans of a request that is not sampled from being built at all when the logs do not
/// want them either (RUST_LOG above their level, as deployments run).
///
/// [`SkipUnsampled`] alone is not enough: it is a per-layer filter, and tracing-subscriber's
/// registry builds every span some per-layer filter *might* want (`Registry::enabled` reports
/// "enabled" unless every one of 64 filter slots said no), then hides it from the layers that
/// said no. So each span of an unsampled request still took a registry slot, and each poll of
/// its future an enter and an exit with their lookups: about 120,000 instructions per REST
/// catalog page, a seventh of its cost (callgrind, `perf-report load`, on vs off). A plain layer
/// can say no for everyone; it only does so above the logs' level (what it refuses reaches no
/// log line), inside an unsampled request, and for events outside every span.
struct UnsampledSpansOff {
    /// The most verbose level the log filter lets through anywhere.
    logs_level: filter::LevelFilter,
    /// The log layer's directives and the OpenTelemetry layer's targets (`None` without one),
    /// asked only when a callsite registers.
    logs: EnvFilter,
    traces: Option<filter::Targets>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for UnsampledSpansOff {
    /// `never` exactly where every per-layer filter says never (a plain layer above them that
    /// answers anything else turns such a callsite into "sometimes", and its spans get built),
    /// else neutral (`always`): the per-layer filters' own interest then decides whether
    /// `enabled` is asked on each hit. Not the default, which asks `enabled` once here and could
    /// disable a callsite for good when it first fires inside an unsampled request.
    fn register_callsite(
        &self,
        metadata: &'static tracing::Metadata<'static>,
    ) -> tracing::subscriber::Interest {
        use tracing_subscriber::layer::Filter;
        let logs = Filter::<S>::callsite_enabled(&self.logs, metadata);
        let traces = self
            .traces
            .as_ref()
            .map_or_else(tracing::subscriber::Interest::never, |targets| {
                Filter::<S>::callsite_enabled(targets, metadata)
            });
        if logs.is_never() && traces.is_never() {
            tracing::subscriber::Interest::never()
        } else {
            tracing::subscriber::Interest::always()
        }
    }

    /// Above the logs' level, only the traces could want a span or an event: nothing of an
    /// unsampled request, and of an event only one made inside a (sampled) span, which it is
    /// recorded on. The gateway's access line, at info under `RUST_LOG=warn`, is written when
    /// the response body ends, outside the request's scope and span: without this it was built
    /// and handed to every layer on every request.
    fn enabled(
        &self,
        metadata: &tracing::Metadata<'_>,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        if *metadata.level() <= self.logs_level {
            return true;
        }
        if in_unsampled_request() {
            return false;
        }
        !(metadata.is_event() && ctx.current_span().id().is_none())
    }
}

/// How a server traces one request: under its server span (sampled, or no OpenTelemetry layer
/// at all), or under no span with its trace context kept for the hops it makes.
pub(crate) struct ServerTrace {
    span: tracing::Span,
    unsampled: Option<SpanContext>,
}

impl ServerTrace {
    /// Continues the caller's trace from its W3C `traceparent` (or starts one), with `make_span`
    /// the request's server span. A caller's unsampled trace makes no span at all; a new trace
    /// the sampler leaves out builds the server span only to take that decision.
    pub(crate) fn start(
        headers: &http::HeaderMap,
        make_span: impl FnOnce() -> tracing::Span,
    ) -> Self {
        Self::start_with(headers, SAMPLING.get().copied(), make_span)
    }

    /// [`ServerTrace::start`] with the tracer's sampling given (`None`: unknown, so a new trace
    /// is decided by building its server span and asking the tracer).
    fn start_with(
        headers: &http::HeaderMap,
        sampling: Option<Sampling>,
        make_span: impl FnOnce() -> tracing::Span,
    ) -> Self {
        let parent = global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(headers))
        });
        if !SPANS_BUILT.load(Ordering::Relaxed) {
            // No span is built for export here; a subscriber of the caller's own (tests) may
            // still trace, so the span continues the caller's trace all the same.
            let span = make_span();
            let _ = span.set_parent(parent);
            return Self {
                span,
                unsampled: None,
            };
        }
        let remote = parent.span().span_context().clone();
        if remote.is_valid() {
            if !remote.is_sampled() && sampling.is_none_or(Sampling::follows_parent) {
                return Self::unsampled(&remote);
            }
        } else if let Some(sampling) = sampling {
            // A new trace: decided here, on an id of our own, before any span exists.
            let trace_id = RandomIdGenerator::default().new_trace_id();
            if !sampling.samples_new_trace(trace_id) {
                return Self::unsampled(&SpanContext::new(
                    trace_id,
                    SpanId::INVALID,
                    TraceFlags::default(),
                    false,
                    opentelemetry::trace::TraceState::default(),
                ));
            }
            NEXT_TRACE_ID.with(|next| next.set(Some(trace_id)));
            let span = make_span();
            // Built now, on this thread, so it takes the decided id.
            let _ = span.context();
            NEXT_TRACE_ID.with(|next| next.set(None));
            return Self {
                span,
                unsampled: None,
            };
        }
        let span = make_span();
        let _ = span.set_parent(parent);
        let decided = span.context().span().span_context().clone();
        if decided.is_valid() && !decided.is_sampled() {
            return Self::unsampled(&decided);
        }
        Self {
            span,
            unsampled: None,
        }
    }

    /// A request of `trace` under no span; the hops it makes name a span id of this hop's own.
    fn unsampled(trace: &SpanContext) -> Self {
        let context = SpanContext::new(
            trace.trace_id(),
            RandomIdGenerator::default().new_span_id(),
            TraceFlags::default(),
            true,
            trace.trace_state().clone(),
        );
        Self {
            span: tracing::Span::none(),
            unsampled: Some(context),
        }
    }

    /// The request's server span (disabled when the request is not sampled).
    pub(crate) fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Runs `call` (the inner service's `call`, which may start spans of its own) and the future
    /// it returns within the request's trace.
    pub(crate) fn run<F: Future>(
        self,
        call: impl FnOnce() -> F,
    ) -> futures::future::Either<
        tracing::instrument::Instrumented<F>,
        tokio::task::futures::TaskLocalFuture<SpanContext, F>,
    > {
        use tracing::Instrument as _;
        match self.unsampled {
            None => futures::future::Either::Left(call().instrument(self.span)),
            Some(trace) => {
                let future = UNSAMPLED.sync_scope(trace.clone(), call);
                futures::future::Either::Right(UNSAMPLED.scope(trace, future))
            }
        }
    }
}

/// The server span of a gRPC call (`package.Service/Method`); the status code is recorded when
/// the call ends.
pub(crate) fn rpc_server_span(path: &str) -> tracing::Span {
    let (service, method) = crate::rpc_call::rpc_names(path)
        .unwrap_or((crate::rpc_call::OTHER, crate::rpc_call::OTHER));
    tracing::info_span!(
        "rpc.server",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "server",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
        enduser.id = Empty,
    )
}

/// The client span of a gRPC call to `peer` (`catalog-svc`).
pub(crate) fn rpc_client_span(peer: &'static str, path: &str) -> tracing::Span {
    let (service, method) = crate::rpc_call::rpc_names(path)
        .unwrap_or((crate::rpc_call::OTHER, crate::rpc_call::OTHER));
    tracing::info_span!(
        "rpc.client",
        otel.name = %format_args!("{service}/{method}"),
        otel.kind = "client",
        otel.status_code = Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = Empty,
        peer.service = peer,
    )
}

/// The server span of a plain HTTP request, named after its method until the router knows its
/// route ([`record_http_route`]).
pub(crate) fn http_server_span(method: &http::Method, path: &str) -> tracing::Span {
    tracing::info_span!(
        "http.server",
        otel.name = %method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = %method,
        http.route = Empty,
        http.response.status_code = Empty,
        url.path = %path,
    )
}

/// Names an HTTP server span after its route template (`GET /v1/courses/{key}`): the router
/// matched it after the span started, so the name is changed on the started span.
pub fn record_http_route(span: &tracing::Span, method: &http::Method, route: &str) {
    // An unsampled request's span is not built: nothing to name.
    if span.is_disabled() {
        return;
    }
    let name = format!("{method} {route}");
    span.record("http.route", route);
    // The field renames the span in the logs (and an OpenTelemetry span not started yet).
    span.record("otel.name", name.as_str());
    span.context().span().update_name(name);
}

/// Records an HTTP answer's status on its server span (5xx marks the span as failed).
pub(crate) fn record_http_status(span: &tracing::Span, status: http::StatusCode) {
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// Adds `span`'s trace context to an outgoing request's headers (what
/// [`crate::client::ServiceChannel`] does for every call, with the call's client span). Inside a
/// request that is not sampled, where no span is built, the request's trace goes out, marked
/// not sampled.
pub fn inject_trace_context(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let mut context = span.context();
    if !context.span().span_context().is_valid()
        && let Ok(trace) = UNSAMPLED.try_with(SpanContext::clone)
    {
        context = opentelemetry::Context::new().with_remote_span_context(trace);
    }
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Adds the current span's trace context to an outgoing request's headers.
pub fn inject_trace_headers(headers: &mut http::HeaderMap) {
    inject_trace_context(&tracing::Span::current(), headers);
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use opentelemetry::Value;

    use super::*;

    #[test]
    fn every_sampler_name_parses() {
        let parse = |name: &str| Sampling::parse(Some(name), None);
        assert_eq!(
            Sampling::parse(None, None),
            Ok(Sampling::ParentBasedAlwaysOn)
        );
        assert_eq!(parse(""), Ok(Sampling::ParentBasedAlwaysOn));
        assert_eq!(parse("always_on"), Ok(Sampling::AlwaysOn));
        assert_eq!(parse(" ALWAYS_OFF "), Ok(Sampling::AlwaysOff));
        assert_eq!(parse("traceidratio"), Ok(Sampling::TraceIdRatio(1.0)));
        assert_eq!(
            parse("parentbased_always_on"),
            Ok(Sampling::ParentBasedAlwaysOn)
        );
        assert_eq!(
            parse("parentbased_always_off"),
            Ok(Sampling::ParentBasedAlwaysOff)
        );
        assert_eq!(
            Sampling::parse(Some("parentbased_traceidratio"), Some("0.25")),
            Ok(Sampling::ParentBasedTraceIdRatio(0.25))
        );
        assert_eq!(
            Sampling::parse(Some("traceidratio"), Some(" 0 ")),
            Ok(Sampling::TraceIdRatio(0.0))
        );
        // The argument only matters to the ratio samplers.
        assert_eq!(
            Sampling::parse(Some("always_on"), Some("junk")),
            Ok(Sampling::AlwaysOn)
        );
    }

    #[test]
    fn an_unknown_sampler_falls_back_to_parent_based_always_on_and_says_why() {
        let err = Sampling::parse(Some("sometimes"), None).unwrap_err();
        assert_eq!(err.fallback(), Sampling::ParentBasedAlwaysOn);
        let message = err.to_string();
        assert!(
            message.contains("\"sometimes\"") && message.contains("parentbased_traceidratio"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_ratio_falls_back_to_sampling_everything() {
        for bad in ["1.5", "-0.1", "half", "NaN"] {
            let err = Sampling::parse(Some("parentbased_traceidratio"), Some(bad)).unwrap_err();
            assert_eq!(
                err.fallback(),
                Sampling::ParentBasedTraceIdRatio(1.0),
                "{bad}"
            );
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    fn attribute(resource: &Resource, key: &'static str) -> Option<String> {
        resource
            .get(&opentelemetry::Key::from_static_str(key))
            .map(|value| match value {
                Value::String(text) => text.to_string(),
                other => other.to_string(),
            })
    }

    #[test]
    fn the_resource_names_the_service_and_its_version() {
        let resource = resource("gateway", "1.2.3", None, None);
        assert_eq!(
            attribute(&resource, "service.name").as_deref(),
            Some("gateway")
        );
        assert_eq!(
            attribute(&resource, "service.version").as_deref(),
            Some("1.2.3")
        );
        assert_eq!(
            attribute(&resource, "telemetry.sdk.language").as_deref(),
            Some("rust")
        );
    }

    #[test]
    fn the_environment_overrides_the_resource_in_the_specs_order() {
        let built = resource(
            "gateway",
            "1.2.3",
            None,
            Some("deployment.environment=prod, service.name=edge ,team=a%2Cb,broken,=x"),
        );
        assert_eq!(attribute(&built, "service.name").as_deref(), Some("edge"));
        assert_eq!(
            attribute(&built, "deployment.environment").as_deref(),
            Some("prod")
        );
        assert_eq!(attribute(&built, "team").as_deref(), Some("a,b"));
        assert_eq!(
            attribute(&built, "service.version").as_deref(),
            Some("1.2.3")
        );
        // OTEL_SERVICE_NAME wins over everything.
        let built = resource("gateway", "1", Some("front"), Some("service.name=edge"));
        assert_eq!(attribute(&built, "service.name").as_deref(), Some("front"));
        let built = resource("gateway", "1", Some("  "), None);
        assert_eq!(
            attribute(&built, "service.name").as_deref(),
            Some("gateway")
        );
    }

    /// Log lines captured in memory.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Captured {
        type Writer = Self;

        fn make_writer(&'w self) -> Self::Writer {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().unwrap().clone();
            String::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|line| {
                    serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"))
                })
                .collect()
        }
    }

    #[test]
    fn json_log_lines_inside_a_span_carry_its_trace_and_span_id() {
        let provider = SdkTracerProvider::builder().build();
        let logs = Captured::default();
        let subscriber = subscriber(EnvFilter::new("info"), true, logs.clone(), Some(&provider));
        let (trace_id, outer_id, inner_id) = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before any request");
            let request = rpc_server_span("/learnhub.catalog.v1.CatalogService/ListCourses");
            let _request = request.enter();
            tracing::info!(courses = 3, "listed");
            let query = tracing::info_span!("query");
            let ids = query.in_scope(|| {
                tracing::warn!("slow");
                let context = tracing::Span::current().context();
                context.span().span_context().span_id()
            });
            let context = request.context();
            let span_context = context.span().span_context().clone();
            (span_context.trace_id(), span_context.span_id(), ids)
        });
        let lines = logs.lines();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines[0].get("trace_id"),
            None,
            "outside any span: {}",
            lines[0]
        );
        assert_eq!(lines[0]["fields"]["message"], "before any request");

        assert_eq!(lines[1]["trace_id"], trace_id.to_string());
        assert_eq!(lines[1]["span_id"], outer_id.to_string());
        assert_eq!(lines[1]["fields"]["courses"], 3);
        assert_eq!(lines[1]["span"]["name"], "rpc.server");
        // The innermost span's id, in the same trace.
        assert_eq!(lines[2]["trace_id"], trace_id.to_string());
        assert_eq!(lines[2]["span_id"], inner_id.to_string());
        assert_eq!(lines[2]["level"], "WARN");

        let trace_id = lines[1]["trace_id"].as_str().unwrap();
        let span_id = lines[1]["span_id"].as_str().unwrap();
        assert_eq!(trace_id.len(), 32);
        assert_eq!(span_id.len(), 16);
        assert!(
            format!("{trace_id}{span_id}")
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        );
    }

    #[test]
    fn a_quiet_log_keeps_the_trace_ids_and_the_traces() {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(SpanNames(spans.clone()))
            .build();
        let logs = Captured::default();
        // RUST_LOG=warn: the INFO request span is not logged, but it is traced.
        let subscriber = subscriber(EnvFilter::new("warn"), true, logs.clone(), Some(&provider));
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            let request = rpc_server_span("/learnhub.catalog.v1.CatalogService/ListCourses");
            let _request = request.enter();
            tracing::info!("not logged");
            tracing::warn!("logged");
            request.context().span().span_context().trace_id()
        });
        let lines = logs.lines();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0]["fields"]["message"], "logged");
        assert_eq!(lines[0]["trace_id"], trace_id.to_string());
        assert_eq!(
            *spans.lock().unwrap(),
            ["learnhub.catalog.v1.CatalogService/ListCourses"]
        );
    }

    /// The names of the spans that ended.
    #[derive(Debug)]
    struct SpanNames(Arc<Mutex<Vec<String>>>);

    impl opentelemetry_sdk::trace::SpanExporter for SpanNames {
        fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> impl std::future::Future<Output = opentelemetry_sdk::error::OTelSdkResult> + Send
        {
            let names = batch.into_iter().map(|span| span.name.into_owned());
            self.0.lock().unwrap().extend(names);
            std::future::ready(Ok(()))
        }
    }

    /// Runs `body` on a runtime of this thread, under `subscriber`.
    fn block_on_under<T>(
        subscriber: impl Subscriber + Send + Sync + 'static,
        body: impl std::future::Future<Output = T>,
    ) -> T {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tracing::subscriber::with_default(subscriber, || runtime.block_on(body))
    }

    const PATH: &str = "/learnhub.catalog.v1.CatalogService/ListCourses";

    /// A caller's W3C trace context, `flags` `01` sampled or `00` not.
    fn caller_headers(flags: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        let value = format!("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}");
        headers.insert("traceparent", value.parse().unwrap());
        headers
    }

    #[test]
    fn a_request_the_sampler_leaves_out_builds_no_span_yet_passes_its_trace_on() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let decisions = Arc::new(Mutex::new(Vec::new()));
        let provider = SdkTracerProvider::builder()
            .with_sampler(CountingSampler {
                inner: Sampling::ParentBasedAlwaysOff.sampler(),
                names: decisions.clone(),
            })
            .with_simple_exporter(SpanNames(spans.clone()))
            .build();
        let logs = Captured::default();
        let subscriber = subscriber(EnvFilter::new("info"), true, logs.clone(), Some(&provider));
        let (outgoing, in_request, callee_spans_made) = block_on_under(subscriber, async {
            let trace = ServerTrace::start(&http::HeaderMap::new(), || rpc_server_span(PATH));
            assert!(trace.span().is_none(), "an unsampled request keeps no span");
            let outgoing = trace
                .run(|| async {
                    let in_request = in_unsampled_request();
                    let child = tracing::info_span!("child");
                    let _child = child.enter();
                    tracing::warn!("inside");
                    let mut headers = http::HeaderMap::new();
                    inject_trace_headers(&mut headers);
                    (headers, in_request)
                })
                .await;
            // The callee continues the caller's unsampled trace without making a span at all.
            let mut made = 0;
            let callee = ServerTrace::start(&outgoing.0, || {
                made += 1;
                rpc_server_span(PATH)
            });
            assert!(callee.unsampled.is_some());
            (outgoing.0, outgoing.1, made)
        });
        assert!(in_request);
        assert_eq!(callee_spans_made, 0);
        // One span was built, to take the decision; the request's child span never was.
        assert_eq!(
            *decisions.lock().unwrap(),
            ["learnhub.catalog.v1.CatalogService/ListCourses"]
        );
        provider.force_flush().unwrap();
        assert!(
            spans.lock().unwrap().is_empty(),
            "{:?}",
            spans.lock().unwrap()
        );
        let traceparent = outgoing["traceparent"].to_str().unwrap().to_owned();
        let parts: Vec<&str> = traceparent.split('-').collect();
        assert_eq!(parts.len(), 4, "{traceparent}");
        assert_eq!(parts[3], "00", "marked not sampled: {traceparent}");
        assert_ne!(parts[1], "0".repeat(32));
        let lines = logs.lines();
        let inside = lines
            .iter()
            .find(|line| line["fields"]["message"] == "inside")
            .expect("the line written inside the request");
        assert_eq!(inside["trace_id"], parts[1], "{inside}");
    }

    /// The subscriber as a deployment runs it: logs at warn, traces on, a new trace sampled only
    /// when its caller's is (the provider is returned to be kept while the subscriber is used).
    fn quiet_logs_with_traces() -> (impl Subscriber + Send + Sync + 'static, SdkTracerProvider) {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampling::ParentBasedAlwaysOff.sampler())
            .build();
        let subscriber = subscriber(
            EnvFilter::new("warn"),
            false,
            Captured::default(),
            Some(&provider),
        );
        (subscriber, provider)
    }

    /// With logs above info (a deployment's `RUST_LOG=warn`), nothing of an unsampled request is
    /// built: its spans are disabled, not merely left unexported.
    #[test]
    fn with_quiet_logs_an_unsampled_request_builds_no_span_at_all() {
        let (subscriber, _provider) = quiet_logs_with_traces();
        let disabled = block_on_under(subscriber, async {
            let request = ServerTrace::start(&caller_headers("00"), || rpc_server_span(PATH));
            let trace = request
                .run(|| async {
                    let direct = tracing::info_span!("child").is_disabled();
                    let client = rpc_client_span("cache-svc", PATH).is_disabled();
                    let nested = async { tracing::info_span!("nested").is_disabled() }.await;
                    (direct, client, nested)
                })
                .await;
            // Outside any request, what no layer wants is not built either (the transport's
            // debug spans are a few per frame).
            let noise = tracing::debug_span!(target: "h2", "frame").is_disabled()
                && tracing::trace_span!("poll").is_disabled()
                && tracing::info_span!(target: "hyper", "connection").is_disabled();
            (trace, noise)
        });
        assert_eq!(disabled, ((true, true, true), true));
    }

    /// A span callsite of `target` at `level`, for asking a subscriber directly what it thinks
    /// of it (the interest the macros cache is shared by every subscriber alive in the process,
    /// so in a test binary other tests' subscribers would answer too).
    macro_rules! span_site {
        ($target:literal, $level:expr) => {
            span_site!($target, $level, tracing::metadata::Kind::SPAN)
        };
        ($target:literal, $level:expr, $kind:expr) => {{
            struct Site;
            static SITE: Site = Site;
            static META: tracing::Metadata<'static> = tracing::Metadata::new(
                "site",
                $target,
                $level,
                None,
                None,
                None,
                tracing::field::FieldSet::new(&[], tracing::callsite::Identifier(&SITE)),
                $kind,
            );
            impl tracing::callsite::Callsite for Site {
                fn set_interest(&self, _: tracing::subscriber::Interest) {}
                fn metadata(&self) -> &tracing::Metadata<'_> {
                    &META
                }
            }
            &META
        }};
    }

    /// Without an OpenTelemetry provider (no OTLP endpoint) and logs at warn, no span is built:
    /// each span callsite of ours and of the transport is disabled for good when it registers.
    /// (The traces' slot once held `None` there, a plain layer that turned "never" into
    /// "sometimes" and built every span, h2's trace spans included.)
    #[test]
    fn without_traces_quiet_logs_disable_every_span_callsite() {
        let quiet = subscriber(EnvFilter::new("warn"), false, Captured::default(), None);
        for site in [
            span_site!("h2", tracing::Level::TRACE),
            span_site!("hyper", tracing::Level::INFO),
            span_site!("learnhub_kit", tracing::Level::INFO),
        ] {
            assert!(quiet.register_callsite(site).is_never(), "{site:?}");
        }
        let verbose = subscriber(EnvFilter::new("info"), false, Captured::default(), None);
        assert!(
            !verbose
                .register_callsite(span_site!("learnhub_kit", tracing::Level::INFO))
                .is_never(),
            "logs at info keep the spans their lines name"
        );
        assert!(
            verbose
                .register_callsite(span_site!("h2", tracing::Level::TRACE))
                .is_never()
        );
    }

    /// With logs at warn, an info event is built only where the traces keep it: inside a sampled
    /// span. Outside every span (the gateway's access line, written as the body ends) or inside
    /// an unsampled request nobody would read it.
    #[test]
    fn quiet_logs_build_an_info_event_only_inside_a_sampled_span() {
        let (subscriber, _provider) = quiet_logs_with_traces();
        let event = span_site!(
            "learnhub_kit",
            tracing::Level::INFO,
            tracing::metadata::Kind::EVENT
        );
        let warning = span_site!(
            "learnhub_kit",
            tracing::Level::WARN,
            tracing::metadata::Kind::EVENT
        );
        let enabled = |site| tracing::dispatcher::get_default(|d| d.enabled(site));
        let seen = block_on_under(subscriber, async {
            let outside = (enabled(event), enabled(warning));
            let sampled = ServerTrace::start(&caller_headers("01"), || rpc_server_span(PATH))
                .run(|| async { (enabled(event), enabled(warning)) })
                .await;
            let unsampled = ServerTrace::start(&caller_headers("00"), || rpc_server_span(PATH))
                .run(|| async { (enabled(event), enabled(warning)) })
                .await;
            (outside, sampled, unsampled)
        });
        assert_eq!(seen, ((false, true), (true, true), (false, true)));
    }

    #[test]
    fn a_new_traces_sampling_is_decided_as_the_sdk_decides_it() {
        use opentelemetry_sdk::trace::ShouldSample;
        let ids = RandomIdGenerator::default();
        for sampling in [
            Sampling::TraceIdRatio(0.3),
            Sampling::ParentBasedTraceIdRatio(0.01),
            Sampling::ParentBasedTraceIdRatio(0.0),
            Sampling::TraceIdRatio(1.0),
            Sampling::AlwaysOff,
            Sampling::ParentBasedAlwaysOn,
        ] {
            let sampler = sampling.sampler();
            let mut sampled = 0;
            for _ in 0..4000 {
                let id = ids.new_trace_id();
                let sdk = sampler.should_sample(
                    None,
                    id,
                    "root",
                    &opentelemetry::trace::SpanKind::Server,
                    &[],
                    &[],
                );
                let sdk =
                    sdk.decision == opentelemetry_sdk::trace::SamplingDecision::RecordAndSample;
                assert_eq!(sampling.samples_new_trace(id), sdk, "{sampling:?} {id}");
                sampled += usize::from(sdk);
            }
            if sampling == Sampling::TraceIdRatio(0.3) {
                assert!((1000..1400).contains(&sampled), "{sampled}");
            }
        }
    }

    #[test]
    fn a_new_trace_is_decided_before_any_span_is_built() {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let decisions = Arc::new(Mutex::new(Vec::new()));
        let provider = SdkTracerProvider::builder()
            .with_sampler(CountingSampler {
                inner: Sampling::ParentBasedTraceIdRatio(0.5).sampler(),
                names: decisions.clone(),
            })
            .with_id_generator(DecidedIds::default())
            .with_simple_exporter(SpanNames(spans.clone()))
            .build();
        let subscriber = subscriber(
            EnvFilter::new("warn"),
            false,
            std::io::sink,
            Some(&provider),
        );
        let sampling = Some(Sampling::ParentBasedTraceIdRatio(0.5));
        let (mut kept, mut made) = (0, 0);
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..200 {
                let trace = ServerTrace::start_with(&http::HeaderMap::new(), sampling, || {
                    made += 1;
                    rpc_server_span(PATH)
                });
                if trace.unsampled.is_none() {
                    kept += 1;
                    let context = trace.span().context();
                    assert!(context.span().span_context().is_sampled());
                }
            }
        });
        provider.force_flush().unwrap();
        // Spans were built for the sampled traces only, and the tracer agreed with every one.
        assert_eq!(made, kept);
        assert_eq!(decisions.lock().unwrap().len(), kept);
        assert_eq!(spans.lock().unwrap().len(), kept);
        assert!((60..140).contains(&kept), "{kept} of 200 at a ratio of 0.5");
    }

    #[test]
    fn a_sampler_that_ignores_the_parent_still_samples_an_unsampled_callers_trace() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampling::AlwaysOn.sampler())
            .build();
        let subscriber = subscriber(
            EnvFilter::new("warn"),
            false,
            std::io::sink,
            Some(&provider),
        );
        let headers = caller_headers("00");
        tracing::subscriber::with_default(subscriber, || {
            let trace = ServerTrace::start_with(&headers, Some(Sampling::AlwaysOn), || {
                rpc_server_span(PATH)
            });
            assert!(trace.unsampled.is_none());
            let context = trace.span().context();
            assert!(context.span().span_context().is_sampled());
            let unsampled =
                ServerTrace::start_with(&headers, Some(Sampling::ParentBasedAlwaysOn), || {
                    rpc_server_span(PATH)
                });
            assert!(unsampled.unsampled.is_some());
        });
    }

    /// A sampler that notes the name of every span it decides on.
    #[derive(Debug, Clone)]
    struct CountingSampler {
        inner: Sampler,
        names: Arc<Mutex<Vec<String>>>,
    }

    impl opentelemetry_sdk::trace::ShouldSample for CountingSampler {
        fn should_sample(
            &self,
            parent_context: Option<&opentelemetry::Context>,
            trace_id: TraceId,
            name: &str,
            span_kind: &opentelemetry::trace::SpanKind,
            attributes: &[KeyValue],
            links: &[opentelemetry::trace::Link],
        ) -> opentelemetry_sdk::trace::SamplingResult {
            self.names.lock().unwrap().push(name.to_owned());
            self.inner
                .should_sample(parent_context, trace_id, name, span_kind, attributes, links)
        }
    }

    #[test]
    fn a_sampled_caller_makes_every_span_of_the_request() {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampling::ParentBasedTraceIdRatio(0.0).sampler())
            .with_simple_exporter(SpanNames(spans.clone()))
            .build();
        let subscriber = subscriber(
            EnvFilter::new("warn"),
            false,
            std::io::sink,
            Some(&provider),
        );
        let headers = caller_headers("01");
        let outgoing = block_on_under(subscriber, async {
            let trace = ServerTrace::start(&headers, || rpc_server_span(PATH));
            assert!(trace.unsampled.is_none());
            trace
                .run(|| async {
                    let child = tracing::info_span!("child");
                    let _child = child.enter();
                    let mut headers = http::HeaderMap::new();
                    inject_trace_headers(&mut headers);
                    headers
                })
                .await
        });
        provider.force_flush().unwrap();
        let mut names = spans.lock().unwrap().clone();
        names.sort();
        assert_eq!(
            names,
            ["child", "learnhub.catalog.v1.CatalogService/ListCourses"]
        );
        let traceparent = outgoing["traceparent"].to_str().unwrap();
        assert!(
            traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-")
                && traceparent.ends_with("-01"),
            "{traceparent}"
        );
    }

    #[test]
    fn text_logs_stay_without_ids() {
        let provider = SdkTracerProvider::builder().build();
        let logs = Captured::default();
        let subscriber = subscriber(EnvFilter::new("info"), false, logs.clone(), Some(&provider));
        tracing::subscriber::with_default(subscriber, || {
            let span = rpc_server_span("/learnhub.catalog.v1.CatalogService/ListCourses");
            span.in_scope(|| tracing::info!("listed"));
        });
        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("listed"), "{text}");
        assert!(!text.contains("trace_id"), "{text}");
    }
}
