//! For tests: what the code under test reports, captured in the test: a `metrics` recorder that keeps every
//! series (reading never resets it, unlike metrics-util's DebuggingRecorder, so parallel tests can
//! share it) and a `tracing` layer that keeps spans with their fields and parents, and events.
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{Layer, layer::Context, prelude::*, registry::LookupSpan};

type Labels = BTreeMap<String, String>;

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(value);
    }
}

#[derive(Default)]
struct Series {
    counters: HashMap<(String, Labels), Arc<AtomicU64>>,
    gauges: HashMap<(String, Labels), Arc<AtomicU64>>,
    histograms: HashMap<(String, Labels), Arc<Samples>>,
}

/// Every series recorded, by name and labels.
#[derive(Clone, Default)]
pub struct TestRecorder(Arc<Mutex<Series>>);

fn split(key: &Key) -> (String, Labels) {
    let labels = key
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    (key.name().to_owned(), labels)
}

fn matches(labels: &Labels, wanted: &[(&str, &str)]) -> bool {
    wanted
        .iter()
        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
}

impl TestRecorder {
    /// The process-wide recorder of this test binary (statements on SQLite are recorded on
    /// blocking threads, where a thread-local recorder is not seen). Tests keep apart by label.
    pub fn global() -> &'static TestRecorder {
        static GLOBAL: OnceLock<TestRecorder> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let recorder = TestRecorder::default();
            metrics::set_global_recorder(recorder.clone())
                .unwrap_or_else(|_| panic!("another recorder is installed"));
            recorder
        })
    }

    /// Sum of the counters `name` whose labels include `labels`.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        series
            .counters
            .iter()
            .filter(|((n, l), _)| n == name && matches(l, labels))
            .map(|(_, c)| c.load(Ordering::SeqCst))
            .sum()
    }

    /// The gauge `name` whose labels include `labels` (the first found).
    pub fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        series
            .gauges
            .iter()
            .find(|((n, l), _)| n == name && matches(l, labels))
            .map(|(_, g)| f64::from_bits(g.load(Ordering::SeqCst)))
    }

    /// Every value recorded by the histograms `name` whose labels include `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        series
            .histograms
            .iter()
            .filter(|((n, l), _)| n == name && matches(l, labels))
            .flat_map(|(_, h)| h.0.lock().unwrap_or_else(PoisonError::into_inner).clone())
            .collect()
    }

    /// The label sets of the series `name` (any kind) whose labels include `labels`.
    pub fn label_sets(&self, name: &str, labels: &[(&str, &str)]) -> Vec<Labels> {
        let series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let keys = series
            .counters
            .keys()
            .chain(series.gauges.keys())
            .chain(series.histograms.keys());
        keys.filter(|(n, l)| n == name && matches(l, labels))
            .map(|(_, l)| l.clone())
            .collect()
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Counter::from_arc(series.counters.entry(split(key)).or_default().clone())
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Gauge::from_arc(series.gauges.entry(split(key)).or_default().clone())
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut series = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        Histogram::from_arc(series.histograms.entry(split(key)).or_default().clone())
    }
}

/// A span as the subscriber saw it.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// Index in [`Captured::spans`] (span ids are reused once closed; indexes are not).
    pub index: usize,
    pub name: String,
    pub fields: HashMap<String, String>,
    pub parent: Option<usize>,
    pub closed: bool,
}

impl SpanRecord {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// An event and the span it belongs to.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub level: tracing::Level,
    pub fields: HashMap<String, String>,
    pub parent: Option<usize>,
}

impl EventRecord {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct State {
    spans: Vec<SpanRecord>,
    events: Vec<EventRecord>,
    live: HashMap<u64, usize>,
}

/// What a [`capture`] subscriber saw.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<State>>);

impl Captured {
    pub fn spans(&self) -> Vec<SpanRecord> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spans
            .clone()
    }

    pub fn events(&self) -> Vec<EventRecord> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .clone()
    }

    /// Spans whose `otel.name` (else name) is `name`.
    pub fn named(&self, name: &str) -> Vec<SpanRecord> {
        self.spans()
            .into_iter()
            .filter(|s| s.field("otel.name").unwrap_or(&s.name) == name)
            .collect()
    }
}

/// A subscriber that records into the returned [`Captured`]; use it with
/// `tracing::subscriber::set_default` or `WithSubscriber::with_subscriber`.
pub fn capture() -> (impl Subscriber + Send + Sync, Captured) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry().with(CaptureLayer(captured.clone()));
    (subscriber, captured)
}

struct CaptureLayer(Captured);

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for CaptureLayer {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let parent_id = ctx
            .span(id)
            .and_then(|span| span.parent())
            .map(|parent| parent.id().into_u64());
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut state = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        let parent = parent_id.and_then(|p| state.live.get(&p).copied());
        let index = state.spans.len();
        state.spans.push(SpanRecord {
            index,
            name: attrs.metadata().name().to_owned(),
            fields,
            parent,
            closed: false,
        });
        state.live.insert(id.into_u64(), index);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, _: Context<'_, S>) {
        let mut state = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = state.live.get(&id.into_u64()).copied() {
            values.record(&mut Fields(&mut state.spans[index].fields));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let parent_id = ctx.event_span(event).map(|span| span.id().into_u64());
        let mut fields = HashMap::new();
        event.record(&mut Fields(&mut fields));
        let mut state = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        let parent = parent_id.and_then(|p| state.live.get(&p).copied());
        state.events.push(EventRecord {
            level: *event.metadata().level(),
            fields,
            parent,
        });
    }

    fn on_close(&self, id: span::Id, _: Context<'_, S>) {
        let mut state = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(index) = state.live.remove(&id.into_u64()) {
            state.spans[index].closed = true;
        }
    }
}
