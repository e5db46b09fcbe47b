//! Query profiler, always on: diesel instrumentation on every pooled connection counts and times
//! each statement per normalised SQL text and per RPC, logs slow statements, and flags N+1
//! patterns (one statement shape repeated within one RPC).
use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use hdrhistogram::Histogram;

tokio::task_local! {
    static CURRENT_RPC: Arc<RpcScope>;
}

/// Thresholds of the profiler.
#[derive(Debug, Clone, Copy)]
pub struct ProfilerSettings {
    /// Statements at least this slow are logged.
    pub slow_threshold: Duration,
    /// The same statement this many times within one RPC is an N+1 warning.
    pub n_plus_one_threshold: u64,
}

impl Default for ProfilerSettings {
    fn default() -> Self {
        Self {
            slow_threshold: Duration::from_millis(100),
            n_plus_one_threshold: 5,
        }
    }
}

/// Statistics of every statement run through one database pool.
#[derive(Debug)]
pub struct QueryProfiler {
    settings: ProfilerSettings,
    statements: AtomicU64,
    errors: AtomicU64,
    slow: AtomicU64,
    n_plus_one: AtomicU64,
    by_statement: Mutex<HashMap<String, StatementStats>>,
    by_rpc: Mutex<HashMap<String, RpcStats>>,
}

/// Timings of one normalised statement (microsecond histogram, so the median is real).
#[derive(Debug, Clone)]
pub struct StatementStats {
    pub count: u64,
    pub errors: u64,
    pub total: Duration,
    micros: Histogram<u64>,
}

impl StatementStats {
    fn new() -> Self {
        Self {
            count: 0,
            errors: 0,
            total: Duration::ZERO,
            // 1 µs .. 1 h at 2 significant figures: a few KiB per statement shape.
            micros: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .unwrap_or_else(|_| Histogram::new(2).unwrap_or_else(|_| unreachable!())),
        }
    }

    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.total / self.count as u32
        }
    }
    pub fn median(&self) -> Duration {
        Duration::from_micros(self.micros.value_at_quantile(0.5))
    }
    pub fn p99(&self) -> Duration {
        Duration::from_micros(self.micros.value_at_quantile(0.99))
    }
    pub fn min(&self) -> Duration {
        Duration::from_micros(self.micros.min())
    }
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.micros.max())
    }
}

/// What the RPCs of one method cost in SQL.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RpcStats {
    pub calls: u64,
    pub statements: u64,
    pub max_statements: u64,
    pub db_time: Duration,
    pub n_plus_one: u64,
}

/// One N+1 finding: `statement` ran `count` times within one call of `rpc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NPlusOne {
    pub rpc: String,
    pub statement: String,
    pub count: u64,
}

impl QueryProfiler {
    pub fn new(settings: ProfilerSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            statements: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            n_plus_one: AtomicU64::new(0),
            by_statement: Mutex::new(HashMap::new()),
            by_rpc: Mutex::new(HashMap::new()),
        })
    }

    pub fn settings(&self) -> ProfilerSettings {
        self.settings
    }

    /// Statements finished since start (errors included). Tests diff it around a call.
    pub fn statement_count(&self) -> u64 {
        self.statements.load(Ordering::SeqCst)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.load(Ordering::SeqCst)
    }

    pub fn slow_count(&self) -> u64 {
        self.slow.load(Ordering::SeqCst)
    }

    /// N+1 warnings raised since start.
    pub fn n_plus_one_count(&self) -> u64 {
        self.n_plus_one.load(Ordering::SeqCst)
    }

    /// A copy of the per-statement table.
    pub fn statements(&self) -> HashMap<String, StatementStats> {
        self.by_statement
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// A copy of the per-RPC table.
    pub fn rpcs(&self) -> HashMap<String, RpcStats> {
        self.by_rpc.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Forgets every statistic (counters included).
    pub fn reset(&self) {
        if let Ok(mut table) = self.by_statement.lock() {
            table.clear();
        }
        if let Ok(mut table) = self.by_rpc.lock() {
            table.clear();
        }
        for counter in [&self.statements, &self.errors, &self.slow, &self.n_plus_one] {
            counter.store(0, Ordering::SeqCst);
        }
    }

    fn record(&self, sql: String, elapsed: Duration, failed: bool, rpc: Option<&Arc<RpcScope>>) {
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let rpc_name = rpc.map_or("-", |scope| scope.rpc.as_str());
        if elapsed >= self.settings.slow_threshold {
            self.slow.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                rpc = rpc_name,
                statement = %sql,
                "slow query"
            );
        }
        if let Some(scope) = rpc {
            scope.record(&sql, elapsed);
        }
        if let Ok(mut table) = self.by_statement.lock() {
            let entry = table.entry(sql).or_insert_with(StatementStats::new);
            entry.count += 1;
            entry.errors += u64::from(failed);
            entry.total += elapsed;
            let micros = u64::try_from(elapsed.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            entry.micros.saturating_record(micros);
        }
        // Counted last, so a test that sees the count also sees the tables.
        self.statements.fetch_add(1, Ordering::SeqCst);
    }

    fn finish_rpc(&self, scope: &RpcScope) {
        let Ok(seen) = scope.seen.lock() else { return };
        let statements: u64 = seen.values().map(|(count, _)| count).sum();
        let db_time: Duration = seen.values().map(|(_, time)| *time).sum();
        let repeated: Vec<NPlusOne> = seen
            .iter()
            .filter(|(_, (count, _))| *count >= self.settings.n_plus_one_threshold)
            .map(|(sql, (count, _))| NPlusOne {
                rpc: scope.rpc.clone(),
                statement: sql.clone(),
                count: *count,
            })
            .collect();
        for finding in &repeated {
            self.n_plus_one.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(
                rpc = %finding.rpc,
                count = finding.count,
                statement = %finding.statement,
                "N+1 query pattern: one statement repeated within one call"
            );
        }
        if let Ok(mut table) = self.by_rpc.lock() {
            let entry = table.entry(scope.rpc.clone()).or_default();
            entry.calls += 1;
            entry.statements += statements;
            entry.max_statements = entry.max_statements.max(statements);
            entry.db_time += db_time;
            entry.n_plus_one += repeated.len() as u64;
        }
    }

    /// The instrumentation to install on one connection.
    pub fn probe(self: &Arc<Self>) -> ConnectionProbe {
        ConnectionProbe {
            profiler: Arc::clone(self),
            rpc: None,
            in_flight: Vec::new(),
        }
    }
}

/// The statements of one RPC call, gathered by every connection it checks out.
#[derive(Debug)]
pub struct RpcScope {
    rpc: String,
    profiler: Mutex<Option<Arc<QueryProfiler>>>,
    seen: Mutex<HashMap<String, (u64, Duration)>>,
}

impl RpcScope {
    fn record(&self, sql: &str, elapsed: Duration) {
        if let Ok(mut seen) = self.seen.lock() {
            let entry = seen.entry(sql.to_owned()).or_default();
            entry.0 += 1;
            entry.1 += elapsed;
        }
    }

    /// The scope of the task that is running, if it runs inside [`profile_rpc`].
    pub fn current() -> Option<Arc<Self>> {
        CURRENT_RPC.try_with(Arc::clone).ok()
    }

    /// Statements this call ran so far.
    pub fn statement_count(&self) -> u64 {
        self.seen
            .lock()
            .map(|seen| seen.values().map(|(count, _)| count).sum())
            .unwrap_or_default()
    }
}

/// Runs `call` as one RPC named `rpc`: statements on connections it checks out are attributed
/// to it; when it ends, its cost is recorded and repeated statements are reported as N+1.
pub async fn profile_rpc<F: Future>(rpc: impl Into<String>, call: F) -> F::Output {
    let scope = Arc::new(RpcScope {
        rpc: rpc.into(),
        profiler: Mutex::new(None),
        seen: Mutex::new(HashMap::new()),
    });
    let output = CURRENT_RPC.scope(Arc::clone(&scope), call).await;
    let profiler = scope.profiler.lock().ok().and_then(|p| p.clone());
    if let Some(profiler) = profiler {
        profiler.finish_rpc(&scope);
    }
    output
}

/// Per-connection instrumentation. Pipelined Postgres queries interleave their start and finish
/// events, so starts are kept in a small list and matched by text on finish.
pub struct ConnectionProbe {
    profiler: Arc<QueryProfiler>,
    rpc: Option<Arc<RpcScope>>,
    in_flight: Vec<(String, Instant)>,
}

impl ConnectionProbe {
    /// Attributes the connection's next statements to `scope` (set on every checkout).
    pub fn attach(&mut self, scope: Option<Arc<RpcScope>>) {
        if let Some(scope) = &scope
            && let Ok(mut profiler) = scope.profiler.lock()
            && profiler.is_none()
        {
            *profiler = Some(Arc::clone(&self.profiler));
        }
        self.rpc = scope;
    }
}

impl Instrumentation for ConnectionProbe {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                self.in_flight
                    .push((normalise(&query.to_string()), Instant::now()));
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                // The common case, one statement at a time, needs no second formatting.
                let started = if self.in_flight.len() == 1 {
                    self.in_flight.pop()
                } else {
                    let sql = normalise(&query.to_string());
                    self.in_flight
                        .iter()
                        .position(|(text, _)| *text == sql)
                        .map(|at| self.in_flight.swap_remove(at))
                };
                if let Some((sql, at)) = started {
                    self.profiler
                        .record(sql, at.elapsed(), error.is_some(), self.rpc.as_ref());
                }
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

    fn profiler() -> Arc<QueryProfiler> {
        QueryProfiler::new(ProfilerSettings {
            slow_threshold: Duration::from_secs(1),
            n_plus_one_threshold: 3,
        })
    }

    #[test]
    fn strips_binds() {
        assert_eq!(
            normalise(r#"SELECT "courses"."id" FROM "courses" WHERE "id" = $1 -- binds: [3]"#),
            r#"SELECT "courses"."id" FROM "courses" WHERE "id" = $1"#
        );
    }

    #[test]
    fn keeps_count_min_median_max() {
        let profiler = profiler();
        for ms in [3, 1, 2] {
            profiler.record("a".into(), Duration::from_millis(ms), ms == 1, None);
        }
        let stats = &profiler.statements()["a"];
        assert_eq!((stats.count, stats.errors), (3, 1));
        assert_eq!(stats.total, Duration::from_millis(6));
        assert_eq!(stats.min().as_millis(), 1);
        assert_eq!(stats.median().as_millis(), 2);
        assert_eq!(stats.max().as_millis(), 3);
        assert_eq!(profiler.statement_count(), 3);
        assert_eq!(profiler.error_count(), 1);
    }

    #[tokio::test]
    async fn flags_a_statement_repeated_within_one_rpc() {
        let profiler = profiler();
        let mut probe = profiler.probe();
        profile_rpc("/svc/Loop", async {
            probe.attach(RpcScope::current());
            for _ in 0..3 {
                profiler.record(
                    "SELECT one".into(),
                    Duration::from_micros(5),
                    false,
                    probe.rpc.as_ref(),
                );
            }
            profiler.record(
                "SELECT other".into(),
                Duration::from_micros(5),
                false,
                probe.rpc.as_ref(),
            );
        })
        .await;
        assert_eq!(profiler.n_plus_one_count(), 1);
        let rpc = &profiler.rpcs()["/svc/Loop"];
        assert_eq!((rpc.calls, rpc.statements, rpc.n_plus_one), (1, 4, 1));

        profile_rpc("/svc/Fine", async {
            probe.attach(RpcScope::current());
            for sql in ["a", "b"] {
                profiler.record(
                    sql.into(),
                    Duration::from_micros(5),
                    false,
                    probe.rpc.as_ref(),
                );
            }
        })
        .await;
        assert_eq!(
            profiler.n_plus_one_count(),
            1,
            "two different statements are not N+1"
        );
        assert_eq!(profiler.rpcs()["/svc/Fine"].statements, 2);
    }
}
