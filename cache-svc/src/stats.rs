//! Exact request counters, in total and per namespace, and the Redis call latency histogram.
use std::{
    collections::HashMap,
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
    namespaces: RwLock<HashMap<String, Arc<Counters>>>,
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
            latency: Mutex::new(new_histogram()),
        }
    }

    pub fn record(&self, namespace: &str, event: Event) {
        apply(&self.total, event);
        apply(&self.namespace(namespace), event);
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
            .map(|(namespace, counters)| NamespaceStats {
                namespace: namespace.clone(),
                counters: Some(counters.snapshot()),
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

    fn namespace(&self, namespace: &str) -> Arc<Counters> {
        if let Ok(map) = self.namespaces.read()
            && let Some(counters) = map.get(namespace)
        {
            return counters.clone();
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
        map.entry(name.to_owned()).or_default().clone()
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
