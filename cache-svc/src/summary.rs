//! The periodic summary of invalidations and deletes: the data services invalidate after every
//! write, so a line per call floods the log under load (each call is logged at `debug` only).
//! Instead, [`Summary`] counts per (caller service, namespace) and [`run`] writes one INFO line
//! per pair that saw any work every `--log-summary-secs` (and once more at shutdown); an idle
//! period writes nothing.
//!
//! The counts are bounded: callers are the few service names (or `unknown` for an unauthenticated
//! caller), and each caller keeps at most [`MAX_NAMESPACES`] namespaces per period, the rest
//! counted under [`OTHER`].
use std::{
    collections::HashMap,
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use learnhub_kit::shutdown::CancellationToken;

/// Namespaces one caller may have counted per period before the rest are pooled.
pub const MAX_NAMESPACES: usize = 128;
/// The namespace the counts beyond [`MAX_NAMESPACES`] are pooled under (not a valid namespace,
/// so it never collides with one).
pub const OTHER: &str = "(other)";
/// The message of a summary line.
pub const MESSAGE: &str = "cache invalidation summary";

/// What one caller did to one namespace during a period.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// InvalidatePattern calls.
    pub invalidations: u64,
    /// Delete calls.
    pub deletes: u64,
    /// Values they removed (`removed` / `deleted` of the answers).
    pub entries_removed: u64,
}

struct Period {
    /// caller -> namespace -> counts.
    counts: HashMap<&'static str, HashMap<String, Counts>>,
    since: Instant,
}

/// The counts of the current period.
pub struct Summary(Mutex<Period>);

impl Default for Summary {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summary").finish_non_exhaustive()
    }
}

impl Summary {
    pub fn new() -> Self {
        Self(Mutex::new(Period {
            counts: HashMap::new(),
            since: Instant::now(),
        }))
    }

    /// An InvalidatePattern call of `caller` on `namespace` that removed `removed` values.
    pub fn invalidation(&self, caller: &'static str, namespace: &str, removed: u64) {
        self.add(caller, namespace, |counts| {
            counts.invalidations = counts.invalidations.saturating_add(1);
            counts.entries_removed = counts.entries_removed.saturating_add(removed);
        });
    }

    /// A Delete call of `caller` (its keys' namespace) that removed `removed` values.
    pub fn delete(&self, caller: &'static str, namespace: &str, removed: u64) {
        self.add(caller, namespace, |counts| {
            counts.deletes = counts.deletes.saturating_add(1);
            counts.entries_removed = counts.entries_removed.saturating_add(removed);
        });
    }

    fn add(&self, caller: &'static str, namespace: &str, count: impl FnOnce(&mut Counts)) {
        let mut period = self.lock();
        let namespaces = period.counts.entry(caller).or_default();
        // No allocation for a namespace already counted (the usual case).
        if let Some(counts) = namespaces.get_mut(namespace) {
            count(counts);
            return;
        }
        let namespace = if namespaces.len() < MAX_NAMESPACES {
            namespace
        } else {
            OTHER
        };
        count(namespaces.entry(namespace.to_owned()).or_default());
    }

    /// Ends the period: the counts so far (callers and namespaces in order, zero counts left
    /// out) and how long the period lasted; counting starts again from zero.
    pub fn take(&self) -> (Vec<(&'static str, String, Counts)>, Duration) {
        let mut period = self.lock();
        let counts = std::mem::take(&mut period.counts);
        let now = Instant::now();
        let lasted = now.saturating_duration_since(period.since);
        period.since = now;
        drop(period);
        let mut rows: Vec<_> = counts
            .into_iter()
            .flat_map(|(caller, namespaces)| {
                namespaces
                    .into_iter()
                    .map(move |(namespace, counts)| (caller, namespace, counts))
            })
            .filter(|(_, _, counts)| *counts != Counts::default())
            .collect();
        rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        (rows, lasted)
    }

    /// Ends the period and writes one INFO line per (caller, namespace) that saw any work;
    /// nothing when there was none. Returns the number of lines written.
    pub fn flush(&self) -> usize {
        let (rows, lasted) = self.take();
        for (caller, namespace, counts) in &rows {
            tracing::info!(
                caller,
                namespace = namespace.as_str(),
                invalidations = counts.invalidations,
                deletes = counts.deletes,
                entries_removed = counts.entries_removed,
                period_secs = lasted.as_secs(),
                "{MESSAGE}"
            );
        }
        rows.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Period> {
        // Every change under the lock is complete (a count or a swap), so a panic elsewhere
        // leaves nothing half done.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Flushes `summary` every `every` until `stop` is cancelled, then once more (what the last
/// partial period counted is not lost).
pub async fn run(summary: std::sync::Arc<Summary>, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {
                summary.flush();
            }
        }
    }
    summary.flush();
}

#[cfg(test)]
mod tests {
    use learnhub_kit::capture::capture;

    use super::*;

    #[test]
    fn counts_per_caller_and_namespace() {
        let summary = Summary::new();
        summary.invalidation("catalog-svc", "catalog", 3);
        summary.invalidation("catalog-svc", "catalog", 0);
        summary.delete("catalog-svc", "catalog", 1);
        summary.delete("enrollment-svc", "progress", 2);
        let (rows, _) = summary.take();
        assert_eq!(
            rows,
            vec![
                (
                    "catalog-svc",
                    "catalog".to_owned(),
                    Counts {
                        invalidations: 2,
                        deletes: 1,
                        entries_removed: 4
                    }
                ),
                (
                    "enrollment-svc",
                    "progress".to_owned(),
                    Counts {
                        invalidations: 0,
                        deletes: 1,
                        entries_removed: 2
                    }
                ),
            ]
        );
        assert!(summary.take().0.is_empty(), "a period starts from zero");
    }

    #[test]
    fn namespaces_beyond_the_bound_are_pooled() {
        let summary = Summary::new();
        for i in 0..MAX_NAMESPACES + 10 {
            summary.invalidation("catalog-svc", &format!("ns{i}"), 1);
        }
        // A namespace counted already keeps its own row.
        summary.invalidation("catalog-svc", "ns0", 1);
        let (rows, _) = summary.take();
        assert_eq!(rows.len(), MAX_NAMESPACES + 1);
        let other = rows.iter().find(|row| row.1 == OTHER).unwrap();
        assert_eq!(other.2.invalidations, 10);
        let first = rows.iter().find(|row| row.1 == "ns0").unwrap();
        assert_eq!(first.2.invalidations, 2);
    }

    #[test]
    fn a_flush_writes_a_line_per_pair_and_nothing_when_idle() {
        let (subscriber, captured) = capture();
        let _tracing = tracing::subscriber::set_default(subscriber);
        let summary = Summary::new();
        assert_eq!(summary.flush(), 0);
        summary.invalidation("catalog-svc", "catalog", 5);
        summary.delete("catalog-svc", "catalog", 1);
        assert_eq!(summary.flush(), 1);
        assert_eq!(summary.flush(), 0, "the next period is idle");

        let lines: Vec<_> = captured
            .events()
            .into_iter()
            .filter(|event| event.field("message") == Some(MESSAGE))
            .collect();
        assert_eq!(lines.len(), 1, "{lines:#?}");
        let line = &lines[0];
        assert_eq!(line.level, tracing::Level::INFO);
        assert_eq!(line.field("caller"), Some("catalog-svc"));
        assert_eq!(line.field("namespace"), Some("catalog"));
        assert_eq!(line.field("invalidations"), Some("1"));
        assert_eq!(line.field("deletes"), Some("1"));
        assert_eq!(line.field("entries_removed"), Some("6"));
    }
}
