//! Query profiler, always on: diesel instrumentation on every pooled connection counts and times
//! each statement per normalised SQL text and per RPC, logs slow statements, and flags N+1
//! patterns (one statement shape repeated within one RPC). It also makes each statement a
//! tracing span (child of the RPC's span) and feeds the `learnhub_sql_*` metrics.
//!
//! Cost per statement (measured by `examples/profiler_cost.rs`) is kept low by doing little on the
//! hot path: the SQL text is written into a buffer the connection reuses and bind values are
//! never formatted; each connection maps the text to its statement shape in a small cache of its
//! own; a statement's figures are updated under that shape's own lock, not a global one; a
//! shape's span name, summary and metric handles are worked out once, when it is first seen.
//!
//! Spans: a statement's span is created when diesel reports its start and closed when diesel
//! reports its end, so its start and end times are the statement's on both backends; it is never
//! entered (with SQLite the events fire on a blocking thread, where nothing of the request is
//! current), and its parent is given explicitly: the span current when the connection was
//! checked out, else the RPC's (captured when [`profile_rpc`] starts). The RPC scope holds every
//! handle and drops them when the call ends, so an idle pooled connection never keeps a span
//! open. Statements outside an RPC scope (start-up, seeding) get no span.
mod summary;

use std::{
    borrow::Cow,
    collections::{HashMap, HashSet},
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
use tracing::field::Empty;

use crate::Backend;
use summary::StatementSummary;

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
/// Statement fingerprints labelled one by one in the `learnhub_sql_*` metrics of one pool; later
/// ones share the label [`OTHER_STATEMENTS`], so a service's series stay bounded.
pub const MAX_METRIC_STATEMENTS: usize = 100;
/// The `statement` label of fingerprints beyond [`MAX_METRIC_STATEMENTS`].
pub const OTHER_STATEMENTS: &str = "other";

/// Thresholds of the profiler, and the service its metrics are labelled with.
#[derive(Debug, Clone, Copy)]
pub struct ProfilerSettings {
    /// Statements at least this slow are logged.
    pub slow_threshold: Duration,
    /// The same statement this many times within one RPC is an N+1 warning.
    pub n_plus_one_threshold: u64,
    /// The `service` label of the metrics (the pool's application name).
    pub service: &'static str,
}

impl Default for ProfilerSettings {
    fn default() -> Self {
        Self {
            slow_threshold: Duration::from_millis(100),
            n_plus_one_threshold: 5,
            service: "unknown",
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
    /// Fingerprints with a `statement` label of their own (at most [`MAX_METRIC_STATEMENTS`]).
    labelled: Mutex<HashSet<Arc<str>>>,
    by_rpc: Mutex<HashMap<String, RpcStats>>,
    /// Until when (ms after `born`) checkouts verify their connection: set by a statement that
    /// found its connection lost (see [`QueryProfiler::verify_checkouts`]).
    verify_until_ms: AtomicU64,
    born: Instant,
}

/// How long after a statement lost its connection pooled connections are verified on checkout.
pub const VERIFY_AFTER_LOSS: Duration = Duration::from_secs(10);

/// One normalised statement, its names and its figures.
#[derive(Debug)]
struct Shape {
    sql: Arc<str>,
    summary: StatementSummary,
    /// `sql` cut for span attributes and log lines.
    logged: Arc<str>,
    /// The `statement` label: the fingerprint, or [`OTHER_STATEMENTS`].
    label: Arc<str>,
    stats: Mutex<ShapeFigures>,
}

/// What one statement's record updates, under one lock.
#[derive(Debug)]
struct ShapeFigures {
    stats: StatementStats,
    metrics: Option<ShapeMetrics>,
}

/// The shape's metric handles and the recorder they belong to: looked up once, not per statement,
/// and again if another recorder is installed later (a statement may run before the service
/// installs its recorder).
#[derive(Debug)]
struct ShapeMetrics {
    recorder: usize,
    statements: metrics::Counter,
    duration: metrics::Histogram,
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
            labelled: Mutex::new(HashSet::new()),
            by_rpc: Mutex::new(HashMap::new()),
            verify_until_ms: AtomicU64::new(0),
            born: Instant::now(),
        })
    }

    /// A statement found its connection lost (the server restarted, or ended the session): the
    /// pool's other idle connections are likely dead too, so checkouts verify theirs for
    /// [`VERIFY_AFTER_LOSS`].
    pub fn note_connection_lost(&self) {
        let until = self.born.elapsed() + VERIFY_AFTER_LOSS;
        self.verify_until_ms.fetch_max(
            u64::try_from(until.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Whether a checkout should verify its connection with a round trip: only for a while after
    /// a connection was found lost. Otherwise checkouts trust the pool (a round trip per
    /// checkout, and a statement in the profile, for nothing).
    pub fn verify_checkouts(&self) -> bool {
        let now = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        now < self.verify_until_ms.load(Ordering::Relaxed)
    }

    /// The `service` label of this profiler's metrics.
    pub fn service(&self) -> &'static str {
        self.settings.service
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
                let figures = shape.stats.lock().ok()?;
                (figures.stats.count > 0).then(|| (shape.sql.to_string(), figures.stats.clone()))
            })
            .collect()
    }

    /// A copy of the per-RPC table.
    pub fn rpcs(&self) -> HashMap<String, RpcStats> {
        self.by_rpc.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Forgets every statistic (counters included). Metrics are not reset: Prometheus counters
    /// only grow.
    pub fn reset(&self) {
        if let Ok(shapes) = self.shapes.lock() {
            for shape in shapes.values() {
                if let Ok(mut figures) = shape.stats.lock() {
                    figures.stats.clear();
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
        let summary = StatementSummary::of(sql);
        let label = self.label(&summary.fingerprint);
        let sql: Arc<str> = Arc::from(sql);
        let shape = Arc::new(Shape {
            logged: Arc::from(for_log(&sql)),
            sql: Arc::clone(&sql),
            summary,
            label,
            stats: Mutex::new(ShapeFigures {
                stats: StatementStats::new(),
                metrics: None,
            }),
        });
        shapes.insert(sql, Arc::clone(&shape));
        Some(shape)
    }

    /// The `statement` label of `fingerprint`: itself while fewer than
    /// [`MAX_METRIC_STATEMENTS`] have one, else [`OTHER_STATEMENTS`].
    fn label(&self, fingerprint: &Arc<str>) -> Arc<str> {
        let Ok(mut labelled) = self.labelled.lock() else {
            return Arc::from(OTHER_STATEMENTS);
        };
        if labelled.contains(fingerprint) {
            return Arc::clone(fingerprint);
        }
        if labelled.len() < MAX_METRIC_STATEMENTS {
            labelled.insert(Arc::clone(fingerprint));
            return Arc::clone(fingerprint);
        }
        Arc::from(OTHER_STATEMENTS)
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
            metrics::counter!("learnhub_sql_slow_queries_total", "service" => self.settings.service)
                .increment(1);
            let elapsed_ms = elapsed.as_secs_f64() * 1e3;
            let rpc_name = rpc.map_or("-", |scope| scope.rpc.as_str());
            // One event: the log line, and (with a parent) an event on the RPC's span.
            let slow = |parent: Option<&tracing::Span>| match parent {
                Some(parent) => tracing::warn!(
                    parent: parent,
                    elapsed_ms,
                    rpc = rpc_name,
                    name = &*shape.summary.name,
                    statement = &*shape.logged,
                    "slow query"
                ),
                None => tracing::warn!(
                    elapsed_ms,
                    rpc = rpc_name,
                    name = &*shape.summary.name,
                    statement = &*shape.logged,
                    "slow query"
                ),
            };
            match rpc.and_then(|scope| scope.rpc_span()) {
                Some(span) => in_dispatch_of(&span, || slow(Some(&span))),
                None => slow(None),
            }
        }
        if let Some(scope) = rpc {
            scope.record(shape, elapsed);
        }
        if let Ok(mut figures) = shape.stats.lock() {
            let stats = &mut figures.stats;
            stats.count += 1;
            stats.errors += u64::from(failed);
            stats.total += elapsed;
            let micros = u64::try_from(elapsed.as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            stats.micros.saturating_record(micros);
            let recorder = current_recorder();
            let metrics = match &mut figures.metrics {
                Some(metrics) if metrics.recorder == recorder => metrics,
                slot => slot.insert(self.metrics_of(shape, recorder)),
            };
            metrics.statements.increment(1);
            metrics.duration.record(elapsed.as_secs_f64());
        }
        // Counted last, so a test that sees the count also sees the tables.
        self.statements.fetch_add(1, Ordering::SeqCst);
    }

    fn metrics_of(&self, shape: &Shape, recorder: usize) -> ShapeMetrics {
        let labels = [
            ("service", self.settings.service.to_owned()),
            ("statement", shape.label.to_string()),
        ];
        ShapeMetrics {
            recorder,
            statements: metrics::counter!("learnhub_sql_statements_total", &labels),
            duration: metrics::histogram!("learnhub_sql_duration_seconds", &labels),
        }
    }

    fn finish_rpc(&self, scope: &RpcScope) {
        let Ok(seen) = scope.seen.lock() else { return };
        let statements: u64 = seen.iter().map(|s| s.count).sum();
        let db_time: Duration = seen.iter().map(|s| s.time).sum();
        let repeated: Vec<&Seen> = seen
            .iter()
            .filter(|s| s.count >= self.settings.n_plus_one_threshold)
            .collect();
        for finding in &repeated {
            self.n_plus_one.fetch_add(1, Ordering::SeqCst);
            metrics::counter!(
                "learnhub_sql_n_plus_one_total",
                "service" => self.settings.service,
                "rpc" => scope.rpc.clone()
            )
            .increment(1);
            let (count, total_ms) = (finding.count, finding.time.as_secs_f64() * 1e3);
            let shape = &finding.shape;
            // Runs on the RPC's task, its span still open: one event, the log line and an event
            // on that span.
            // Outside a request span the event's parent is whatever is current, as a plain
            // `warn!` would have it.
            let span = scope.rpc_span().unwrap_or_else(tracing::Span::current);
            tracing::warn!(
                parent: &span,
                rpc = %scope.rpc,
                count,
                total_ms,
                name = &*shape.summary.name,
                statement = &*shape.logged,
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
            for finding in repeated {
                let (statement, count) = (&*finding.shape.sql, finding.count);
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

    /// The instrumentation to install on one connection to a `backend` database.
    pub fn probe(self: &Arc<Self>, backend: Backend) -> ConnectionProbe {
        ConnectionProbe {
            profiler: Arc::clone(self),
            system: match backend {
                Backend::Postgres => "postgresql",
                Backend::Sqlite => "sqlite",
            },
            rpc: None,
            parent: 0,
            traced: false,
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
    /// Every span handle the call's statements need, dropped when the call ends: a pooled
    /// connection outlives the call (its probe keeps this scope until the next checkout), and a
    /// span stays open for as long as any handle to it, or to a child of it, exists.
    spans: Mutex<CallSpans>,
}

#[derive(Debug, Default)]
struct CallSpans {
    /// `[0]`: the span current when the call started (the server's span of the RPC), where N+1
    /// and slow-query events land; then the spans current at each checkout, which parent the
    /// statements on that connection.
    parents: Vec<tracing::Span>,
    /// Statements started and not finished, by key.
    open: Vec<(u64, tracing::Span)>,
    next_key: u64,
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

    /// The RPC's span while the call runs (none before, after, or when no span was current).
    fn rpc_span(&self) -> Option<tracing::Span> {
        let spans = self.spans.lock().ok()?;
        spans.parents.first().filter(|s| !s.is_none()).cloned()
    }

    /// Which parent the statements of a connection checked out now get — the span current
    /// here, or the RPC's when none is — and whether there is one.
    fn checkout_parent(&self) -> (usize, bool) {
        if learnhub_kit::telemetry::in_unsampled_request() {
            return (0, false);
        }
        let current = tracing::Span::current();
        let Ok(mut spans) = self.spans.lock() else {
            return (0, false);
        };
        let Some(id) = current.id() else {
            return (0, spans.parents.first().is_some_and(|p| !p.is_none()));
        };
        if let Some(at) = spans
            .parents
            .iter()
            .position(|p| p.id() == Some(id.clone()))
        {
            return (at, true);
        }
        if spans.parents.is_empty() {
            // The call has ended: nothing may be kept for it any more.
            return (0, false);
        }
        spans.parents.push(current);
        (spans.parents.len() - 1, true)
    }

    /// Opens a statement's span (made by `make` from its parent); its key, or none when the
    /// statement gets no span (no parent, or the call has ended).
    fn open_statement(
        &self,
        parent: usize,
        make: impl FnOnce(&tracing::Span) -> tracing::Span,
    ) -> Option<u64> {
        let mut spans = self.spans.lock().ok()?;
        let parent = spans.parents.get(parent).filter(|p| !p.is_none())?;
        let span = make(parent);
        let key = spans.next_key;
        spans.next_key += 1;
        spans.open.push((key, span));
        Some(key)
    }

    /// Closes a statement's span, which makes its end the statement's, once it says what the
    /// statement was (known only now: see [`InFlight`]).
    fn close_statement(&self, key: u64, shape: Option<&Shape>, error: Option<&'static str>) {
        let span = {
            let Ok(mut spans) = self.spans.lock() else {
                return;
            };
            let Some(at) = spans.open.iter().position(|(k, _)| *k == key) else {
                return;
            };
            spans.open.swap_remove(at).1
        };
        if let Some(shape) = shape {
            span.record("otel.name", &*shape.summary.name);
            span.record("db.operation.name", shape.summary.operation);
            if let Some(table) = &shape.summary.table {
                span.record("db.collection.name", &**table);
            }
            span.record("db.query.summary", &*shape.logged);
        }
        if let Some(error) = error {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error);
        }
        close(span);
    }

    /// Drops every span handle of the call: statements still open never finished (their future
    /// was dropped) and say so.
    fn end(&self) {
        let spans = match self.spans.lock() {
            Ok(mut spans) => std::mem::take(&mut *spans),
            Err(_) => return,
        };
        for (_, span) in spans.open {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", "cancelled");
            close(span);
        }
        for parent in spans.parents {
            close(parent);
        }
    }
}

/// Runs `call` as one RPC named `rpc`: statements on connections it checks out are attributed
/// to it; when it ends, its cost is recorded and repeated statements are reported as N+1 (a log
/// line that is also an event on the span current when the call started).
pub async fn profile_rpc<F: Future>(rpc: impl Into<String>, call: F) -> F::Output {
    let scope = Arc::new(RpcScope {
        rpc: rpc.into(),
        profiler: Mutex::new(None),
        seen: Mutex::new(Vec::new()),
        spans: Mutex::new(CallSpans {
            // Read on the first poll, inside the server's instrumented future: the RPC's span.
            // A request that is not sampled has none (a span that only the logs see may be
            // current), and its statements get none either.
            parents: vec![if learnhub_kit::telemetry::in_unsampled_request() {
                tracing::Span::none()
            } else {
                tracing::Span::current()
            }],
            ..CallSpans::default()
        }),
    });
    // Ends the call's spans however the call ends, cancelled included.
    struct Ending<'a>(&'a RpcScope);
    impl Drop for Ending<'_> {
        fn drop(&mut self) {
            self.0.end();
        }
    }
    let ending = Ending(&scope);
    let output = CURRENT_RPC.scope(Arc::clone(&scope), call).await;
    let profiler = scope.profiler.lock().ok().and_then(|p| p.clone());
    if let Some(profiler) = profiler {
        profiler.finish_rpc(&scope);
    }
    drop(ending);
    output
}

/// A statement that started and has not finished (its span, if any, is kept by its RPC scope).
/// Its shape is only worked out when another statement starts before it finishes (pipelining):
/// alone, the finish event says what it was — and more cheaply, as diesel-async's Postgres
/// start event formats the query from its syntax tree while the finish event carries the SQL
/// already built.
struct InFlight {
    shape: Option<Arc<Shape>>,
    started: Instant,
    span: Option<u64>,
}

/// Per-connection instrumentation.
pub struct ConnectionProbe {
    profiler: Arc<QueryProfiler>,
    /// `db.system.name` of the statements' spans.
    system: &'static str,
    rpc: Option<Arc<RpcScope>>,
    /// Which of the RPC scope's spans parents the statements' spans.
    parent: usize,
    /// Whether that parent exists (statements get spans), known at checkout: without it, a
    /// statement costs no lock of the scope's spans.
    traced: bool,
    in_flight: Vec<InFlight>,
    /// Reused for every statement's text, so reading it allocates nothing.
    text: String,
    /// Text → shape for the statements this connection ran (shapes outlive resets).
    shapes: HashMap<Box<str>, Arc<Shape>>,
}

impl ConnectionProbe {
    /// Attributes the connection's next statements to `scope` (set on every checkout, on the
    /// task that checks out: the span current there becomes their spans' parent). Outside an
    /// RPC scope statements get no span (start-up, seeding: no trace to join).
    pub fn attach(&mut self, scope: Option<Arc<RpcScope>>) {
        if let Some(scope) = &scope
            && let Ok(mut profiler) = scope.profiler.lock()
            && profiler.is_none()
        {
            *profiler = Some(Arc::clone(&self.profiler));
        }
        // A checked-out connection runs nothing; a start left over was a statement whose future
        // was dropped mid-flight and will never finish.
        for cancelled in self.in_flight.drain(..) {
            if let (Some(key), Some(previous)) = (cancelled.span, &self.rpc) {
                previous.close_statement(key, cancelled.shape.as_deref(), Some("cancelled"));
            }
        }
        (self.parent, self.traced) = scope
            .as_ref()
            .map_or((0, false), |scope| scope.checkout_parent());
        self.rpc = scope;
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

    /// Opens a statement's span in the RPC scope, made in the parent's subscriber (on a
    /// blocking thread, where no subscriber may be the default). What the statement was is
    /// recorded when it finishes.
    fn open_span(&self) -> Option<u64> {
        if !self.traced {
            return None;
        }
        let scope = self.rpc.as_ref()?;
        scope.open_statement(self.parent, |parent| {
            // No row count: diesel's instrumentation reports none (FinishQuery carries the query
            // and its error only), so the span has no `db.response.returned_rows`.
            in_dispatch_of(parent, || {
                tracing::info_span!(
                    parent: parent,
                    "sql statement",
                    otel.name = Empty,
                    otel.kind = "client",
                    db.system.name = self.system,
                    db.operation.name = Empty,
                    db.collection.name = Empty,
                    db.query.summary = Empty,
                    error.type = Empty,
                    otel.status_code = Empty,
                )
            })
        })
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
                let span = self.open_span();
                self.in_flight.push(InFlight {
                    shape,
                    started: Instant::now(),
                    span,
                });
            }
            InstrumentationEvent::FinishQuery { query, error, .. } => {
                let finished = Instant::now();
                if error.is_some_and(crate::error::query_error_is_unavailable) {
                    self.profiler.note_connection_lost();
                }
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
                    if let (Some(key), Some(scope)) = (start.span, &self.rpc) {
                        scope.close_statement(key, Some(&shape), error.map(error_type));
                    }
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

/// A bounded `error.type` for a failed statement (never the message: it may quote values).
fn error_type(error: &diesel::result::Error) -> &'static str {
    use diesel::result::{DatabaseErrorKind as Kind, Error};
    match error {
        Error::DatabaseError(kind, _) => match kind {
            Kind::UniqueViolation => "unique_violation",
            Kind::ForeignKeyViolation => "foreign_key_violation",
            Kind::NotNullViolation => "not_null_violation",
            Kind::CheckViolation => "check_violation",
            Kind::SerializationFailure => "serialization_failure",
            Kind::ReadOnlyTransaction => "read_only_transaction",
            Kind::ClosedConnection => "closed_connection",
            _ => "database_error",
        },
        Error::NotFound => "not_found",
        Error::DeserializationError(_) => "deserialization_error",
        Error::SerializationError(_) => "serialization_error",
        _ => "other",
    }
}

/// Runs `f` with `span`'s subscriber as the default: events and spans made for an RPC go to the
/// subscriber that holds its span even on a thread where another (or none) is the default.
fn in_dispatch_of<T>(span: &tracing::Span, f: impl FnOnce() -> T) -> T {
    match span.with_subscriber(|(_, dispatch)| dispatch.clone()) {
        Some(dispatch) => tracing::dispatcher::with_default(&dispatch, f),
        None => f(),
    }
}

/// Drops a span handle in its own subscriber: closing a span also releases its parent, through
/// the thread's default subscriber (tracing-subscriber's registry), which on a blocking thread
/// is not the span's — the parent would then never close.
fn close(span: tracing::Span) {
    match span.with_subscriber(|(_, dispatch)| dispatch.clone()) {
        Some(dispatch) => tracing::dispatcher::with_default(&dispatch, move || drop(span)),
        None => drop(span),
    }
}

/// Identifies the metrics recorder in use here (local, global or none), so handles taken from
/// one are not kept once another is installed.
fn current_recorder() -> usize {
    metrics::with_recorder(|recorder| std::ptr::from_ref(recorder).cast::<()>().addr())
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
            service: "profiler-unit-test",
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

    /// Counts `learnhub_sql_statements_total` by `statement` label.
    #[derive(Default)]
    struct StatementCounter(Mutex<HashMap<String, Arc<AtomicU64>>>);

    impl metrics::Recorder for StatementCounter {
        fn describe_counter(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_gauge(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn describe_histogram(
            &self,
            _: metrics::KeyName,
            _: Option<metrics::Unit>,
            _: metrics::SharedString,
        ) {
        }
        fn register_counter(
            &self,
            key: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Counter {
            if key.name() != "learnhub_sql_statements_total" {
                return metrics::Counter::noop();
            }
            let label = key.labels().find(|l| l.key() == "statement").unwrap();
            let mut counters = self.0.lock().unwrap();
            metrics::Counter::from_arc(
                counters
                    .entry(label.value().to_owned())
                    .or_default()
                    .clone(),
            )
        }
        fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
            metrics::Gauge::noop()
        }
        fn register_histogram(
            &self,
            _: &metrics::Key,
            _: &metrics::Metadata<'_>,
        ) -> metrics::Histogram {
            metrics::Histogram::noop()
        }
    }

    #[test]
    fn metric_labels_are_bounded_and_follow_the_recorder_installed_later() {
        let profiler = profiler();
        // Before any recorder: the shape's handles come from the no-op recorder...
        record(
            &profiler,
            "SELECT 0 FROM t0",
            Duration::from_micros(5),
            false,
        );
        let recorder = StatementCounter::default();
        metrics::with_local_recorder(&recorder, || {
            for n in 0..MAX_METRIC_STATEMENTS + 10 {
                let sql = format!("SELECT {n} FROM t{n}");
                record(&profiler, &sql, Duration::from_micros(5), false);
            }
        });
        let counters = recorder.0.lock().unwrap();
        // ...and are taken again from the recorder installed since.
        let first = counters
            .iter()
            .find(|(label, _)| label.starts_with("SELECT t0 "))
            .unwrap();
        assert_eq!(first.1.load(Ordering::SeqCst), 1);
        assert_eq!(
            counters.len(),
            MAX_METRIC_STATEMENTS + 1,
            "100 fingerprints and other"
        );
        assert_eq!(counters[OTHER_STATEMENTS].load(Ordering::SeqCst), 10);
        assert!(
            counters
                .keys()
                .all(|label| label == OTHER_STATEMENTS || label.len() <= "SELECT t100 ".len() + 8)
        );
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
        let mut probe = profiler.probe(Backend::Sqlite);
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
        let mut probe = profiler.probe(Backend::Sqlite);
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
