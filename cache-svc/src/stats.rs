//! Exact request counters, in total and per namespace, and the Redis call latency histogram;
//! each per-namespace count also goes to the `learnhub_cache_*_total{namespace}` metrics.
use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use learnhub_proto::cache::v1::{CounterSet, NamespaceStats};

/// Distinct namespaces tracked one by one; further ones are counted together under [`OTHER`], so a
/// client inventing namespaces cannot grow the statistics without bound.
const MAX_NAMESPACES: usize = 1024;
pub const OTHER: &str = "_other";
/// Namespaces with a `namespace` label of their own in the metrics; later ones are labelled
/// [`OTHER`] (Prometheus series are costlier than entries of the statistics).
const MAX_METRIC_NAMESPACES: usize = 100;

#[derive(Debug, Default)]
pub struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    sets: AtomicU64,
    sets_refused: AtomicU64,
    deletes: AtomicU64,
    invalidations: AtomicU64,
    entries_removed: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> CounterSet {
        let hits = self.hits.load(Relaxed);
        let misses = self.misses.load(Relaxed);
        let lookups = hits + misses;
        CounterSet {
            hits,
            misses,
            hit_rate: if lookups == 0 {
                0.0
            } else {
                hits as f64 / lookups as f64
            },
            sets: self.sets.load(Relaxed),
            sets_refused: self.sets_refused.load(Relaxed),
            deletes: self.deletes.load(Relaxed),
            invalidations: self.invalidations.load(Relaxed),
            entries_removed: self.entries_removed.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }

    fn zero(&self) {
        for counter in [
            &self.hits,
            &self.misses,
            &self.sets,
            &self.sets_refused,
            &self.deletes,
            &self.invalidations,
            &self.entries_removed,
            &self.errors,
        ] {
            counter.store(0, Relaxed);
        }
    }
}

/// One namespace's counters and their metric handles (taken once, when the namespace is first
/// seen, so recording costs an atomic add).
#[derive(Debug)]
struct Namespace {
    counters: Counters,
    hits: metrics::Counter,
    misses: metrics::Counter,
    sets: metrics::Counter,
    refused_sets: metrics::Counter,
    invalidations: metrics::Counter,
    entries_removed: metrics::Counter,
    errors: metrics::Counter,
}

impl Namespace {
    fn new(label: String) -> Self {
        let counter = |name: &'static str| metrics::counter!(name, "namespace" => label.clone());
        Self {
            counters: Counters::default(),
            hits: counter("learnhub_cache_hits_total"),
            misses: counter("learnhub_cache_misses_total"),
            sets: counter("learnhub_cache_sets_total"),
            refused_sets: counter("learnhub_cache_refused_sets_total"),
            invalidations: counter("learnhub_cache_invalidations_total"),
            entries_removed: counter("learnhub_cache_entries_removed_total"),
            errors: counter("learnhub_cache_errors_total"),
        }
    }

    fn record(&self, event: Event) {
        apply(&self.counters, event);
        match event {
            Event::Hit => self.hits.increment(1),
            Event::Miss => self.misses.increment(1),
            Event::Stored => self.sets.increment(1),
            Event::Refused => self.refused_sets.increment(1),
            // Not a metric of the contract; the statistics keep it.
            Event::Deleted(_) => {}
            Event::Invalidated(removed) => {
                self.invalidations.increment(1);
                self.entries_removed.increment(removed);
            }
            Event::Error => self.errors.increment(1),
        }
    }
}

/// One request outcome, counted in the total and in its namespace.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    Hit,
    Miss,
    /// A Set that stored its value.
    Stored,
    /// A Set whose lease was outdated by an invalidation.
    Refused,
    /// Entries removed by Delete.
    Deleted(u64),
    /// One InvalidatePattern call and the entries it removed.
    Invalidated(u64),
    /// A failed Redis call (the request was then served by the in-process store).
    Error,
}

pub struct Stats {
    started: Instant,
    total: Counters,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    /// Namespaces labelled as themselves in the metrics; kept across resets, so a namespace
    /// keeps its series.
    labelled: Mutex<HashSet<String>>,
    /// Redis call latency in microseconds.
    latency: Mutex<Histogram<u64>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            total: Counters::default(),
            namespaces: RwLock::new(HashMap::new()),
            labelled: Mutex::new(HashSet::new()),
            latency: Mutex::new(new_histogram()),
        }
    }

    pub fn record(&self, namespace: &str, event: Event) {
        apply(&self.total, event);
        self.namespace(namespace).record(event);
    }

    /// An error that belongs to no namespace (e.g. reading Redis's INFO for the statistics).
    pub fn record_unattributed_error(&self) {
        apply(&self.total, Event::Error);
    }

    pub fn record_redis_latency(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        if let Ok(mut histogram) = self.latency.lock() {
            histogram.saturating_record(micros);
        }
    }

    /// p50 and p99 of Redis call latency, in milliseconds (0 before the first call).
    pub fn redis_latency_ms(&self) -> (f64, f64) {
        match self.latency.lock() {
            Ok(h) if !h.is_empty() => (
                h.value_at_quantile(0.50) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
            ),
            _ => (0.0, 0.0),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn total(&self) -> CounterSet {
        self.total.snapshot()
    }

    /// Per-namespace counters, sorted by namespace.
    pub fn namespaces(&self) -> Vec<NamespaceStats> {
        let map = match self.namespaces.read() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out: Vec<NamespaceStats> = map
            .iter()
            .map(|(namespace, entry)| NamespaceStats {
                namespace: namespace.clone(),
                counters: Some(entry.counters.snapshot()),
            })
            .collect();
        out.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        out
    }

    /// Zeroes every counter and the latency histogram (uptime keeps counting).
    pub fn reset(&self) {
        self.total.zero();
        match self.namespaces.write() {
            Ok(mut map) => map.clear(),
            Err(poisoned) => poisoned.into_inner().clear(),
        }
        if let Ok(mut histogram) = self.latency.lock() {
            histogram.reset();
        }
    }

    fn namespace(&self, namespace: &str) -> Arc<Namespace> {
        if let Ok(map) = self.namespaces.read()
            && let Some(entry) = map.get(namespace)
        {
            return entry.clone();
        }
        let mut map = match self.namespaces.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        let name = if map.len() >= MAX_NAMESPACES && !map.contains_key(namespace) {
            OTHER
        } else {
            namespace
        };
        if let Some(entry) = map.get(name) {
            return entry.clone();
        }
        let entry = Arc::new(Namespace::new(self.metric_label(name)));
        map.insert(name.to_owned(), entry.clone());
        entry
    }

    /// `namespace` while fewer than [`MAX_METRIC_NAMESPACES`] have a label, else [`OTHER`].
    fn metric_label(&self, namespace: &str) -> String {
        let mut labelled = match self.labelled.lock() {
            Ok(labelled) => labelled,
            Err(poisoned) => poisoned.into_inner(),
        };
        if labelled.contains(namespace) {
            return namespace.to_owned();
        }
        if labelled.len() < MAX_METRIC_NAMESPACES {
            labelled.insert(namespace.to_owned());
            return namespace.to_owned();
        }
        OTHER.to_owned()
    }
}

fn apply(counters: &Counters, event: Event) {
    match event {
        Event::Hit => counters.hits.fetch_add(1, Relaxed),
        Event::Miss => counters.misses.fetch_add(1, Relaxed),
        Event::Stored => counters.sets.fetch_add(1, Relaxed),
        Event::Refused => counters.sets_refused.fetch_add(1, Relaxed),
        Event::Deleted(n) => counters.deletes.fetch_add(n, Relaxed),
        Event::Invalidated(removed) => {
            counters.entries_removed.fetch_add(removed, Relaxed);
            counters.invalidations.fetch_add(1, Relaxed)
        }
        Event::Error => counters.errors.fetch_add(1, Relaxed),
    };
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits; `saturating_record` clamps outliers.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant histogram bounds are valid")
}
