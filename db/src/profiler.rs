//! Query profiler, always on: diesel instrumentation on every pooled connection counts and times
//! each statement per normalised SQL text and per RPC, logs slow statements, and flags N+1
//! patterns (one statement shape repeated within one RPC).
//!
//! Cost per statement (measured by `examples/profiler_cost.rs`) is kept low by doing little on the
//! hot path: the SQL text is written into a buffer the connection reuses and bind values are
//! never formatted; each connection maps the text to its statement shape in a small cache of its
//! own; a statement's figures are updated under that shape's own lock, not a global one.
use std::{
    borrow::Cow,
    collections::HashMap,
    fmt::{self, Write as _},
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use diesel::connection::{Instrumentation, InstrumentationEvent};
use hdrhistogram::Histogram;
use learnhub_proto::common::v1 as pb;

use crate::Backend;

tokio::task_local! {
    static CURRENT_RPC: Arc<RpcScope>;
}

/// Distinct statement shapes kept per pool; later new shapes are counted under [`OVERFLOW`].
/// Bounds memory when code builds SQL of unbounded variety (SQLite `IN (?, ?, …)` lists).
pub const MAX_STATEMENT_SHAPES: usize = 1_000;
/// The statistics row of statements beyond [`MAX_STATEMENT_SHAPES`].
pub const OVERFLOW: &str = "(other statements: more distinct shapes than the profiler keeps)";
/// Logged statements are cut to this many characters (a 1,000-row INSERT is tens of KB).
pub const MAX_LOGGED_CHARS: usize = 1_000;
/// Shapes a connection remembers before it starts its cache afresh.
const PROBE_CACHE: usize = 256;
/// What diesel appends to a statement's text before its bind values.
const BINDS_MARKER: &str = " -- binds: ";

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
    since: Mutex<SystemTime>,
    /// Every shape seen, by text. Shapes live as long as the profiler (a reset zeroes their
    /// figures), so connections may keep handles to them.
    shapes: Mutex<HashMap<Arc<str>, Arc<Shape>>>,
    by_rpc: Mutex<HashMap<String, RpcStats>>,
}

/// One normalised statement and its figures.
#[derive(Debug)]
struct Shape {
    sql: Arc<str>,
    stats: Mutex<StatementStats>,
}

/// Timings of one normalised statement (microsecond histogram, so the median is real).
#[derive(Debug, Clone)]
pub struct StatementStats {
    pub count: u64,
    pub errors: u64,
    pub total: Duration,
    micros: Histogram<u32>,
}

impl StatementStats {
    fn new() -> Self {
        Self {
            count: 0,
            errors: 0,
            total: Duration::ZERO,
            // 1 µs .. 1 h at 2 significant figures, u32 counters: ≈13 KiB per statement shape.
            micros: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .unwrap_or_else(|_| Histogram::new(2).unwrap_or_else(|_| unreachable!())),
        }
    }

    fn clear(&mut self) {
        self.count = 0;
        self.errors = 0;
        self.total = Duration::ZERO;
        self.micros.reset();
    }

    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            let nanos = self.total.as_nanos() / u128::from(self.count);
            Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
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
    /// N+1 warnings raised by calls of this method.
    pub n_plus_one: u64,
    /// The statements those warnings named.
    pub n_plus_one_findings: Vec<NPlusOneFinding>,
}

impl RpcStats {
    pub fn mean_statements(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.statements as f64 / self.calls as f64
        }
    }
}

/// A statement that repeated at least the threshold within calls of one RPC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NPlusOneFinding {
    pub statement: String,
    /// Calls in which it repeated that often.
    pub calls: u64,
    /// The most times it ran within one call.
    pub max_repeats: u64,
}

impl QueryProfiler {
    pub fn new(settings: ProfilerSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            statements: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            slow: AtomicU64::new(0),
            n_plus_one: AtomicU64::new(0),
            since: Mutex::new(SystemTime::now()),
            shapes: Mutex::new(HashMap::new()),
            by_rpc: Mutex::new(HashMap::new()),
        })
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

    /// When counting started: creation or the last [`reset`](Self::reset).
    pub fn since(&self) -> SystemTime {
        self.since
            .lock()
            .map(|since| *since)
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// A copy of the per-statement table (statements that ran since the last reset).
    pub fn statements(&self) -> HashMap<String, StatementStats> {
        let shapes: Vec<Arc<Shape>> = self
            .shapes
            .lock()
            .map(|shapes| shapes.values().cloned().collect())
            .unwrap_or_default();
        shapes
            .iter()
            .filter_map(|shape| {
                let stats = shape.stats.lock().ok()?;
                (stats.count > 0).then(|| (shape.sql.to_string(), stats.clone()))
            })
            .collect()
    }

    /// A copy of the per-RPC table.
    pub fn rpcs(&self) -> HashMap<String, RpcStats> {
        self.by_rpc.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Forgets every statistic (counters included).
    pub fn reset(&self) {
        if let Ok(shapes) = self.shapes.lock() {
            for shape in shapes.values() {
                if let Ok(mut stats) = shape.stats.lock() {
                    stats.clear();
                }
            }
        }
        if let Ok(mut table) = self.by_rpc.lock() {
            table.clear();
        }
        for counter in [&self.statements, &self.errors, &self.slow, &self.n_plus_one] {
            counter.store(0, Ordering::SeqCst);
        }
        if let Ok(mut since) = self.since.lock() {
            *since = SystemTime::now();
        }
    }

    /// The shape of `sql` (already normalised), created on first sight.
    fn shape(&self, sql: &str) -> Option<Arc<Shape>> {
        let mut shapes = self.shapes.lock().ok()?;
        if let Some(shape) = shapes.get(sql) {
            return Some(Arc::clone(shape));
        }
        let sql = if shapes.len() >= MAX_STATEMENT_SHAPES {
            if let Some(shape) = shapes.get(OVERFLOW) {
                return Some(Arc::clone(shape));
            }
            OVERFLOW
        } else {
            sql
        };
        let sql: Arc<str> = Arc::from(sql);
        let shape = Arc::new(Shape {
            sql: Arc::clone(&sql),
            stats: Mutex::new(StatementStats::new()),
        });
        shapes.insert(sql, Arc::clone(&shape));
        Some(shape)
    }

    fn record(
        &self,
        shape: &Arc<Shape>,
        elapsed: Duration,
        failed: bool,
        rpc: Option<&Arc<RpcScope>>,
    ) {
        if failed {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if elapsed >= self.settings.slow_threshold {
            self.slow.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                elapsed_ms = elapsed.as_secs_f64() * 1e3,
                rpc = rpc.map_or("-", |scope| scope.rpc.as_str()),
                statement = %for_log(&shape.sql),
                "slow query"
            );
        }
        if let Some(scope) = rpc {
            scope.record(shape, elapsed);
        }
        if let Ok(mut stats) = shape.stats.lock() {
            stats.count += 1;
            stats.errors += u64::from(failed);
            stats.total += elapsed;
            let micros = u64::try_from(elapsed.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            stats.micros.saturating_record(micros);
        }
        // Counted last, so a test that sees the count also sees the tables.
        self.statements.fetch_add(1, Ordering::SeqCst);
    }

    fn finish_rpc(&self, scope: &RpcScope) {
        let Ok(seen) = scope.seen.lock() else { return };
        let statements: u64 = seen.iter().map(|s| s.count).sum();
        let db_time: Duration = seen.iter().map(|s| s.time).sum();
        let repeated: Vec<(&str, u64)> = seen
            .iter()
            .filter(|s| s.count >= self.settings.n_plus_one_threshold)
            .map(|s| (&*s.shape.sql, s.count))
            .collect();
        for (statement, count) in &repeated {
            self.n_plus_one.fetch_add(1, Ordering::SeqCst);
            tracing::warn!(
                rpc = %scope.rpc,
                count,
                statement = %for_log(statement),
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
            for (statement, count) in repeated {
                match entry
                    .n_plus_one_findings
                    .iter_mut()
                    .find(|f| f.statement == statement)
                {
                    Some(finding) => {
                        finding.calls += 1;
                        finding.max_repeats = finding.max_repeats.max(count);
                    }
                    None => entry.n_plus_one_findings.push(NPlusOneFinding {
                        statement: statement.to_owned(),
                        calls: 1,
                        max_repeats: count,
                    }),
                }
            }
        }
    }

    /// The instrumentation to install on one connection.
    pub fn probe(self: &Arc<Self>) -> ConnectionProbe {
        ConnectionProbe {
            profiler: Arc::clone(self),
            rpc: None,
            in_flight: Vec::new(),
            text: String::new(),
            shapes: HashMap::new(),
        }
    }

    /// Everything the profiler holds, as the `GetDbStats` answer of `service`: statements by
    /// total time and RPCs by database time, largest first.
    pub fn to_proto(&self, service: &str, backend: Backend) -> pb::DbStats {
        let mut statements: Vec<(String, StatementStats)> = self.statements().into_iter().collect();
        statements.sort_by(|(a_sql, a), (b_sql, b)| b.total.cmp(&a.total).then(a_sql.cmp(b_sql)));
        let mut rpcs: Vec<(String, RpcStats)> = self.rpcs().into_iter().collect();
        rpcs.sort_by(|(a_rpc, a), (b_rpc, b)| b.db_time.cmp(&a.db_time).then(a_rpc.cmp(b_rpc)));
        let rpc_calls = rpcs.iter().map(|(_, rpc)| rpc.calls).sum();
        pb::DbStats {
            service: service.to_owned(),
            backend: match backend {
                Backend::Postgres => "postgres",
                Backend::Sqlite => "sqlite",
            }
            .to_owned(),
            since: Some(self.since().into()),
            totals: Some(pb::DbTotals {
                statements: self.statement_count(),
                errors: self.error_count(),
                slow: self.slow_count(),
                n_plus_one: self.n_plus_one_count(),
                rpc_calls,
            }),
            thresholds: Some(pb::DbThresholds {
                slow_query_ms: ms(self.settings.slow_threshold),
                n_plus_one: self.settings.n_plus_one_threshold,
            }),
            statements: statements
                .into_iter()
                .map(|(statement, s)| pb::StatementStats {
                    statement,
                    count: s.count,
                    errors: s.errors,
                    total_ms: ms(s.total),
                    avg_ms: ms(s.mean()),
                    median_ms: ms(s.median()),
                    p99_ms: ms(s.p99()),
                    min_ms: ms(s.min()),
                    max_ms: ms(s.max()),
                })
                .collect(),
            rpcs: rpcs
                .into_iter()
                .map(|(rpc, r)| {
                    let mut findings = r.n_plus_one_findings.clone();
                    findings
                        .sort_by(|a, b| b.calls.cmp(&a.calls).then(a.statement.cmp(&b.statement)));
                    pb::RpcDbStats {
                        avg_statements: r.mean_statements(),
                        rpc,
                        calls: r.calls,
                        statements: r.statements,
                        max_statements: r.max_statements,
                        db_time_ms: ms(r.db_time),
                        n_plus_one: r.n_plus_one,
                        n_plus_one_findings: findings
                            .into_iter()
                            .map(|f| pb::NPlusOneFinding {
                                statement: f.statement,
                                calls: f.calls,
                                max_repeats: f.max_repeats,
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// One statement's share of an RPC call.
#[derive(Debug)]
struct Seen {
    shape: Arc<Shape>,
    count: u64,
    time: Duration,
}

/// The statements of one RPC call, gathered by every connection it checks out.
#[derive(Debug)]
pub struct RpcScope {
    rpc: String,
    profiler: Mutex<Option<Arc<QueryProfiler>>>,
    /// A call runs a handful of distinct statements: a list compared by pointer beats a map.
    seen: Mutex<Vec<Seen>>,
}

impl RpcScope {
    fn record(&self, shape: &Arc<Shape>, elapsed: Duration) {
        if let Ok(mut seen) = self.seen.lock() {
            match seen.iter_mut().find(|s| Arc::ptr_eq(&s.shape, shape)) {
                Some(entry) => {
                    entry.count += 1;
                    entry.time += elapsed;
                }
                None => seen.push(Seen {
                    shape: Arc::clone(shape),
                    count: 1,
                    time: elapsed,
                }),
            }
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
            .map(|seen| seen.iter().map(|s| s.count).sum())
            .unwrap_or_default()
    }
}

/// Runs `call` as one RPC named `rpc`: statements on connections it checks out are attributed
/// to it; when it ends, its cost is recorded and repeated statements are reported as N+1.
pub async fn profile_rpc<F: Future>(rpc: impl Into<String>, call: F) -> F::Output {
    let scope = Arc::new(RpcScope {
        rpc: rpc.into(),
        profiler: Mutex::new(None),
        seen: Mutex::new(Vec::new()),
    });
    let output = CURRENT_RPC.scope(Arc::clone(&scope), call).await;
    let profiler = scope.profiler.lock().ok().and_then(|p| p.clone());
    if let Some(profiler) = profiler {
        profiler.finish_rpc(&scope);
    }
    output
}

/// A statement that started and has not finished. Its shape is only worked out when another
/// statement starts before it finishes (pipelining): alone, the finish event says what it was.
struct InFlight {
    shape: Option<Arc<Shape>>,
    started: Instant,
}

/// Per-connection instrumentation.
pub struct ConnectionProbe {
    profiler: Arc<QueryProfiler>,
    rpc: Option<Arc<RpcScope>>,
    in_flight: Vec<InFlight>,
    /// Reused for every statement's text, so reading it allocates nothing.
    text: String,
    /// Text → shape for the statements this connection ran (shapes outlive resets).
    shapes: HashMap<Box<str>, Arc<Shape>>,
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
        // A checked-out connection runs nothing; a start left over was a statement whose future
        // was dropped mid-flight and will never finish.
        self.in_flight.clear();
    }

    /// The shape of the statement `query` describes.
    fn shape_of(&mut self, query: &dyn diesel::connection::DebugQuery) -> Option<Arc<Shape>> {
        sql_text(query, &mut self.text);
        let sql = self.text.trim();
        if let Some(shape) = self.shapes.get(sql) {
            return Some(Arc::clone(shape));
        }
        let shape = self.profiler.shape(sql)?;
        if self.shapes.len() >= PROBE_CACHE {
            self.shapes.clear();
        }
        self.shapes.insert(sql.into(), Arc::clone(&shape));
        Some(shape)
    }
}

impl Instrumentation for ConnectionProbe {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => {
                let shape = if self.in_flight.is_empty() {
                    None
                } else {
                    self.shape_of(query)
                };
                self.in_flight.push(InFlight {
                    shape,
                    started: Instant::now(),
                });
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let finished = Instant::now();
                let Some(shape) = self.shape_of(query) else {
                    return;
                };
                let at = if self.in_flight.len() <= 1 {
                    0
                } else {
                    // Pipelined: the start with this shape, else the one whose shape is unknown.
                    self.in_flight
                        .iter()
                        .position(|f| f.shape.as_ref().is_some_and(|s| Arc::ptr_eq(s, &shape)))
                        .or_else(|| self.in_flight.iter().position(|f| f.shape.is_none()))
                        .unwrap_or(0)
                };
                if at < self.in_flight.len() {
                    let start = self.in_flight.swap_remove(at);
                    self.profiler.record(
                        &shape,
                        finished.saturating_duration_since(start.started),
                        error.is_some(),
                        self.rpc.as_ref(),
                    );
                }
            }
            _ => {}
        }
    }
}

/// Collects a statement's text and stops at diesel's ` -- binds: ` suffix, so bind values (a
/// multi-row INSERT has thousands) are never formatted.
struct SqlOnly<'a>(&'a mut String);

impl fmt::Write for SqlOnly<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match s.find(BINDS_MARKER) {
            Some(at) => {
                self.0.push_str(&s[..at]);
                // Ends the formatting early; the text so far is all we want.
                Err(fmt::Error)
            }
            None => {
                self.0.push_str(s);
                Ok(())
            }
        }
    }
}

/// `query`'s SQL without its bind values, into `buffer`.
fn sql_text(query: &dyn diesel::connection::DebugQuery, buffer: &mut String) {
    buffer.clear();
    // An error only means the writer stopped at the binds.
    let _ = write!(SqlOnly(buffer), "{query}");
    // Had the marker been split across writes, it would still be in the text.
    if let Some(at) = buffer.find(BINDS_MARKER) {
        buffer.truncate(at);
    }
}

/// The statement without its bind values, so one query shape is one row of statistics.
pub fn normalise(sql: &str) -> String {
    let text = match sql.find(BINDS_MARKER) {
        Some(at) => &sql[..at],
        None => sql,
    };
    text.trim().to_owned()
}

/// `sql` cut to [`MAX_LOGGED_CHARS`] characters, saying how long it was, for log lines.
pub fn for_log(sql: &str) -> Cow<'_, str> {
    match sql.char_indices().nth(MAX_LOGGED_CHARS) {
        None => Cow::Borrowed(sql),
        Some((cut, _)) => Cow::Owned(format!(
            "{}… [truncated: {} characters in all]",
            &sql[..cut],
            sql.chars().count()
        )),
    }
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

    fn record(profiler: &QueryProfiler, sql: &str, elapsed: Duration, failed: bool) {
        let shape = profiler.shape(sql).unwrap();
        profiler.record(&shape, elapsed, failed, RpcScope::current().as_ref());
    }

    #[test]
    fn strips_binds() {
        assert_eq!(
            normalise(r#"SELECT "courses"."id" FROM "courses" WHERE "id" = $1 -- binds: [3]"#),
            r#"SELECT "courses"."id" FROM "courses" WHERE "id" = $1"#
        );
    }

    #[test]
    fn reads_the_text_without_formatting_binds() {
        struct Query;
        impl fmt::Display for Query {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // diesel's shape: the SQL, then the binds; formatting the binds here panics.
                struct Binds;
                impl fmt::Debug for Binds {
                    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                        panic!("bind values were formatted")
                    }
                }
                let sql = String::from("SELECT 1 WHERE x = $1");
                write!(f, "{sql} -- binds: {:?}", Binds)
            }
        }
        impl fmt::Debug for Query {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
        impl diesel::connection::DebugQuery for Query {}
        let mut buffer = String::from("left over");
        sql_text(&Query, &mut buffer);
        assert_eq!(buffer, "SELECT 1 WHERE x = $1");
    }

    #[test]
    fn keeps_count_min_median_max() {
        let profiler = profiler();
        for ms in [3, 1, 2] {
            record(&profiler, "a", Duration::from_millis(ms), ms == 1);
        }
        let stats = &profiler.statements()["a"];
        assert_eq!((stats.count, stats.errors), (3, 1));
        assert_eq!(stats.total, Duration::from_millis(6));
        assert_eq!(stats.mean(), Duration::from_millis(2));
        assert_eq!(stats.min().as_millis(), 1);
        assert_eq!(stats.median().as_millis(), 2);
        assert_eq!(stats.max().as_millis(), 3);
        assert_eq!(profiler.statement_count(), 3);
        assert_eq!(profiler.error_count(), 1);
    }

    #[test]
    fn reset_forgets_figures_and_keeps_counting() {
        let profiler = profiler();
        record(&profiler, "a", Duration::from_millis(2), false);
        record(&profiler, "b", Duration::from_secs(2), true);
        assert_eq!(profiler.slow_count(), 1);
        profiler.reset();
        assert!(profiler.statements().is_empty());
        assert_eq!(
            (
                profiler.statement_count(),
                profiler.error_count(),
                profiler.slow_count()
            ),
            (0, 0, 0)
        );
        record(&profiler, "a", Duration::from_millis(4), false);
        let stats = profiler.statements();
        assert_eq!(stats.len(), 1);
        assert_eq!(stats["a"].count, 1);
        assert_eq!(stats["a"].max().as_millis(), 4);
    }

    #[test]
    fn shapes_beyond_the_limit_share_one_row() {
        let profiler = profiler();
        for n in 0..MAX_STATEMENT_SHAPES + 10 {
            record(
                &profiler,
                &format!("SELECT {n}"),
                Duration::from_micros(5),
                false,
            );
        }
        let stats = profiler.statements();
        assert_eq!(stats.len(), MAX_STATEMENT_SHAPES + 1);
        assert_eq!(stats[OVERFLOW].count, 10);
        assert_eq!(profiler.statement_count(), MAX_STATEMENT_SHAPES as u64 + 10);
    }

    #[test]
    fn logged_statements_are_truncated() {
        let short = "SELECT 1";
        assert_eq!(for_log(short), short);
        let long = format!("INSERT INTO t VALUES {}", "(?, ?), ".repeat(5_000));
        let logged = for_log(&long);
        assert!(logged.chars().count() < MAX_LOGGED_CHARS + 60, "{logged}");
        assert!(logged.starts_with("INSERT INTO t VALUES (?, ?)"));
        assert!(logged.ends_with(&format!("[truncated: {} characters in all]", long.len())));
        // Never cut inside a character.
        let wide = "é".repeat(MAX_LOGGED_CHARS * 2);
        assert!(for_log(&wide).starts_with(&"é".repeat(MAX_LOGGED_CHARS)));
    }

    #[tokio::test]
    async fn flags_a_statement_repeated_within_one_rpc() {
        let profiler = profiler();
        let mut probe = profiler.probe();
        profile_rpc("/svc/Loop", async {
            probe.attach(RpcScope::current());
            for _ in 0..3 {
                record(&profiler, "SELECT one", Duration::from_micros(5), false);
            }
            record(&profiler, "SELECT other", Duration::from_micros(5), false);
        })
        .await;
        assert_eq!(profiler.n_plus_one_count(), 1);
        let rpc = &profiler.rpcs()["/svc/Loop"];
        assert_eq!((rpc.calls, rpc.statements, rpc.n_plus_one), (1, 4, 1));
        assert_eq!(
            rpc.n_plus_one_findings,
            vec![NPlusOneFinding {
                statement: "SELECT one".into(),
                calls: 1,
                max_repeats: 3
            }]
        );

        profile_rpc("/svc/Fine", async {
            probe.attach(RpcScope::current());
            for sql in ["a", "b"] {
                record(&profiler, sql, Duration::from_micros(5), false);
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

    #[tokio::test]
    async fn converts_to_the_common_message_largest_first() {
        let profiler = profiler();
        let mut probe = profiler.probe();
        profile_rpc("/svc/Get", async {
            probe.attach(RpcScope::current());
            record(&profiler, "small", Duration::from_millis(1), false);
            record(&profiler, "big", Duration::from_millis(3), false);
            record(&profiler, "big", Duration::from_millis(5), true);
        })
        .await;
        let stats = profiler.to_proto("test-svc", Backend::Sqlite);
        assert_eq!(
            (stats.service.as_str(), stats.backend.as_str()),
            ("test-svc", "sqlite")
        );
        let totals = stats.totals.unwrap();
        assert_eq!(
            (totals.statements, totals.errors, totals.rpc_calls),
            (3, 1, 1)
        );
        let thresholds = stats.thresholds.unwrap();
        assert_eq!(
            (thresholds.slow_query_ms, thresholds.n_plus_one),
            (1000.0, 3)
        );
        let names: Vec<&str> = stats
            .statements
            .iter()
            .map(|s| s.statement.as_str())
            .collect();
        assert_eq!(names, ["big", "small"]);
        let big = &stats.statements[0];
        assert_eq!((big.count, big.errors), (2, 1));
        assert_eq!((big.total_ms, big.avg_ms), (8.0, 4.0));
        // The histogram keeps two significant figures.
        for (value, expected) in [(big.min_ms, 3.0), (big.median_ms, 3.0), (big.max_ms, 5.0)] {
            assert!(
                (value - expected).abs() <= expected / 100.0,
                "{value} vs {expected}"
            );
        }
        let rpc = &stats.rpcs[0];
        assert_eq!(
            (
                rpc.rpc.as_str(),
                rpc.calls,
                rpc.statements,
                rpc.max_statements
            ),
            ("/svc/Get", 1, 3, 3)
        );
        assert_eq!((rpc.avg_statements, rpc.db_time_ms), (3.0, 9.0));
    }
}
