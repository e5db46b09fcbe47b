//! Query profiler: diesel instrumentation on every pooled connection, counting statements and
//! timing them per normalised SQL text, with a slow-query log.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use diesel::connection::{Instrumentation, InstrumentationEvent};

/// Statistics of every statement run through one database pool.
#[derive(Debug)]
pub struct QueryProfiler {
    statements: AtomicU64,
    errors: AtomicU64,
    slow_threshold: Duration,
    by_statement: Mutex<HashMap<String, StatementStats>>,
}

/// Timings of one normalised statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatementStats {
    pub count: u64,
    pub total: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl QueryProfiler {
    pub fn new(slow_threshold: Duration) -> Arc<Self> {
        Arc::new(Self {
            statements: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            slow_threshold,
            by_statement: Mutex::new(HashMap::new()),
        })
    }

    /// Statements finished since start (errors included). Tests diff it around a call.
    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::SeqCst)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.load(Ordering::SeqCst)
    }

    /// A copy of the per-statement table.
    pub fn snapshot(&self) -> HashMap<String, StatementStats> {
        self.by_statement
            .lock()
            .map(|table| table.clone())
            .unwrap_or_default()
    }

    fn record(&self, sql: String, elapsed: Duration, failed: bool) {
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if elapsed >= self.slow_threshold {
            tracing::warn!(
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                statement = %sql,
                "slow query"
            );
        }
        if let Ok(mut table) = self.by_statement.lock() {
            let entry = table.entry(sql).or_default();
            if entry.count == 0 || elapsed < entry.min {
                entry.min = elapsed;
            }
            entry.max = entry.max.max(elapsed);
            entry.count += 1;
            entry.total += elapsed;
        }
        // Counted last, so a test that sees the count also sees the table.
        self.statements.fetch_add(1, Ordering::SeqCst);
    }

    /// The instrumentation to install on one connection.
    pub fn probe(self: &Arc<Self>) -> ConnectionProbe {
        ConnectionProbe {
            profiler: Arc::clone(self),
            in_flight: Vec::new(),
        }
    }
}

/// Per-connection instrumentation. Pipelined Postgres queries interleave their start and finish
/// events, so starts are kept in a small list and matched by text on finish.
pub struct ConnectionProbe {
    profiler: Arc<QueryProfiler>,
    in_flight: Vec<(String, Instant)>,
}

impl Instrumentation for ConnectionProbe {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                self.in_flight
                    .push((normalise(&query.to_string()), Instant::now()));
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let sql = normalise(&query.to_string());
                let started = self
                    .in_flight
                    .iter()
                    .position(|(text, _)| *text == sql)
                    .map(|at| self.in_flight.swap_remove(at).1);
                let elapsed = started.map(|at| at.elapsed()).unwrap_or_default();
                self.profiler.record(sql, elapsed, error.is_some());
            }
            _ => {}
        }
    }
}

/// The statement without its bind values, so one query shape is one row of statistics.
pub fn normalise(sql: &str) -> String {
    let text = match sql.find(" -- binds: ") {
        Some(at) => &sql[..at],
        None => sql,
    };
    text.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_binds() {
        assert_eq!(
            normalise(r#"SELECT "courses"."id" FROM "courses" WHERE "id" = $1 -- binds: [3]"#),
            r#"SELECT "courses"."id" FROM "courses" WHERE "id" = $1"#
        );
    }

    #[test]
    fn keeps_min_max_and_count() {
        let profiler = QueryProfiler::new(Duration::from_secs(1));
        profiler.record("a".into(), Duration::from_millis(3), false);
        profiler.record("a".into(), Duration::from_millis(1), true);
        let stats = &profiler.snapshot()["a"];
        assert_eq!(stats.count, 2);
        assert_eq!(stats.min, Duration::from_millis(1));
        assert_eq!(stats.max, Duration::from_millis(3));
        assert_eq!(profiler.statement_count(), 2);
        assert_eq!(profiler.error_count(), 1);
    }
}
