//! What the always-on query profiler costs per statement. A benchmark that prints figures, not a
//! test.
//!
//! ```text
//! cargo run --release -p learnhub-db --example profiler_cost -- [STATEMENTS] [ROUNDS] [--observed]
//! ```
//!
//! Without `--observed` nothing listens: statement spans are not made and metrics go to the no-op
//! recorder. With it, as in a service exporting traces, a tracing subscriber with an
//! OpenTelemetry layer (an SDK tracer with no exporter: spans are built, then dropped) and the
//! Prometheus recorder are installed, and RPC scopes run inside a span, so every statement in
//! an RPC also makes its span and records its metrics.
//!
//! 1. Time spent inside the probe: the probe is wrapped in an instrumentation that times each
//!    call into it (the wrapper's own cost, measured around a probe that does nothing, is taken
//!    off). This is the figure that matters: it does not drown in a busy machine's noise.
//! 2. End to end: the same statements on a connection without the probe and on a pooled one with
//!    it (alone, then inside an RPC scope). On a shared machine this is noisy; the best round is
//!    the better guide.
//!
//! Two statements: a point lookup with one bind (`WHERE id = ?`), STATEMENTS times per round, and
//! a 100-id lookup (`IN (?, …)` on SQLite, `= ANY($1)` on Postgres), a tenth as many times, whose
//! bind values the probe must not spend time on. SQLite is a file; Postgres is
//! `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`), where a
//! throwaway database is created and dropped. Rounds alternate the configurations.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use diesel::{
    Connection,
    connection::{Instrumentation, InstrumentationEvent},
    prelude::*,
    sqlite::SqliteConnection,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use learnhub_db::{
    Backend, Db, DbOptions, SqliteConn, db_run,
    profiler::{ConnectionProbe, ProfilerSettings, QueryProfiler, RpcScope, profile_rpc},
    testing::TestDatabase,
};
use tracing::Instrument;

diesel::table! {
    bench_rows (id) {
        id -> BigInt,
        name -> Text,
    }
}

const ROWS: i64 = 1_000;
const WIDE: usize = 100;

type Row = (i64, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Statement {
    /// `WHERE id = ?`: one bind.
    Point,
    /// `WHERE id IN (100 ids)`.
    Wide,
}

impl Statement {
    fn name(self) -> &'static str {
        match self {
            Self::Point => "point lookup, 1 bind",
            Self::Wide => "100-id lookup",
        }
    }

    /// How many of this statement a round runs.
    fn count(self, statements: usize) -> usize {
        match self {
            Self::Point => statements,
            Self::Wide => (statements / 10).max(1),
        }
    }
}

fn key(i: usize) -> i64 {
    (i as i64 * 7919) % ROWS + 1
}

fn keys(i: usize) -> Vec<i64> {
    (0..WIDE).map(|n| key(i * WIDE + n)).collect()
}

/// Runs statement number `i` of kind `$statement` on `$conn` with the async or sync diesel API
/// (`$($await)?`), so every connection runs the very same query.
macro_rules! run {
    ($conn:expr, $statement:expr, $i:expr, $load:path, $($await:tt)?) => {{
        match $statement {
            Statement::Point => {
                let query = bench_rows::table
                    .filter(bench_rows::id.eq(key($i)))
                    .select((bench_rows::id, bench_rows::name))
                    .limit(1);
                let rows: Vec<Row> = $load(query, $conn)$(.$await)?.unwrap();
                std::hint::black_box(rows);
            }
            Statement::Wide => {
                let query = bench_rows::table
                    .filter(bench_rows::id.eq_any(keys($i)))
                    .select((bench_rows::id, bench_rows::name));
                let rows: Vec<Row> = $load(query, $conn)$(.$await)?.unwrap();
                std::hint::black_box(rows);
            }
        }
    }};
}

/// A counter's value (a function: diesel's `RunQueryDsl::load` would shadow the method).
fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Instrumentation that does nothing: what the timing wrapper costs by itself.
struct Nothing;

impl Instrumentation for Nothing {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        std::hint::black_box(&event);
    }
}

/// Times every call into `inner`.
struct Timed<I> {
    inner: I,
    spent: Arc<AtomicU64>,
}

impl<I: Instrumentation> Instrumentation for Timed<I> {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        let started = Instant::now();
        self.inner.on_connection_event(event);
        let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.spent.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Rounds of one configuration, as ns per statement.
#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn push_ns(&mut self, nanos: u64, statements: usize) {
        self.0.push(nanos as f64 / statements as f64);
    }
    fn push(&mut self, elapsed: Duration, statements: usize) {
        self.push_ns(
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
            statements,
        );
    }
    fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }
    fn best(&self) -> f64 {
        self.0.iter().copied().fold(f64::INFINITY, f64::min)
    }
}

fn report(title: &str, lines: &[(&str, &Samples)]) {
    println!("\n{title}");
    println!(
        "  {:<44} {:>10} {:>9} {:>10} {:>9}",
        "", "median ns", "delta", "best ns", "delta"
    );
    let (base_median, base_best) = (lines[0].1.median(), lines[0].1.best());
    for (name, samples) in lines {
        let (median, best) = (samples.median(), samples.best());
        println!(
            "  {name:<44} {median:>10.0} {:>+9.0} {best:>10.0} {:>+9.0}",
            median - base_median,
            best - base_best,
        );
    }
}

/// Attaches the current RPC scope to the probe inside a `Timed` wrapper.
fn attach(instrumentation: &mut dyn Instrumentation) {
    let timed = instrumentation
        .downcast_mut::<Timed<ConnectionProbe>>()
        .expect("the timed probe");
    timed.inner.attach(RpcScope::current());
}

/// Part 1 on a synchronous SQLite connection (SyncConnectionWrapper runs the same code on a
/// blocking thread).
fn probe_time_sqlite(path: &str, statement: Statement, statements: usize, rounds: usize) {
    let open = || {
        let mut conn = SqliteConnection::establish(path).unwrap();
        diesel::connection::SimpleConnection::batch_execute(
            &mut conn,
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
        )
        .unwrap();
        conn
    };
    let profiler = QueryProfiler::new(ProfilerSettings::default());
    let (empty_spent, probe_spent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut empty = open();
    empty.set_instrumentation(Timed {
        inner: Nothing,
        spent: Arc::clone(&empty_spent),
    });
    let mut probed = open();
    probed.set_instrumentation(Timed {
        inner: profiler.probe(Backend::Sqlite),
        spent: Arc::clone(&probe_spent),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (mut wrapper, mut probe, mut scoped) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..rounds {
        let run = |conn: &mut SqliteConnection, spent: &AtomicU64| {
            let before = read(spent);
            for i in 0..statements {
                run!(conn, statement, i, diesel::RunQueryDsl::load,);
            }
            read(spent) - before
        };
        wrapper.push_ns(run(&mut empty, &empty_spent), statements);
        probe.push_ns(run(&mut probed, &probe_spent), statements);
        let in_rpc = runtime.block_on(
            profile_rpc("/bench/Loop", async {
                attach(probed.instrumentation());
                run(&mut probed, &probe_spent)
            })
            .instrument(rpc_span()),
        );
        attach_none(probed.instrumentation());
        scoped.push_ns(in_rpc, statements);
    }
    assert_eq!(profiler.statement_count(), (2 * statements * rounds) as u64);
    report_probe(
        &format!("SQLite file, {}", statement.name()),
        &wrapper,
        &probe,
        &scoped,
    );
}

fn attach_none(instrumentation: &mut dyn Instrumentation) {
    if let Some(timed) = instrumentation.downcast_mut::<Timed<ConnectionProbe>>() {
        timed.inner.attach(None);
    }
}

fn report_probe(title: &str, wrapper: &Samples, probe: &Samples, scoped: &Samples) {
    let net =
        |samples: &Samples| Samples(samples.0.iter().map(|ns| ns - wrapper.median()).collect());
    let (probe, scoped) = (net(probe), net(scoped));
    println!(
        "  {title:<48} {:>7.0} ns {:>7.0} ns {:>9.0} ns {:>7.0} ns",
        probe.median(),
        probe.best(),
        scoped.median(),
        scoped.best()
    );
}

async fn probe_time_postgres(url: &str, statement: Statement, statements: usize, rounds: usize) {
    let profiler = QueryProfiler::new(ProfilerSettings::default());
    let (empty_spent, probe_spent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut empty = AsyncPgConnection::establish(url).await.unwrap();
    empty.set_instrumentation(Timed {
        inner: Nothing,
        spent: Arc::clone(&empty_spent),
    });
    let mut probed = AsyncPgConnection::establish(url).await.unwrap();
    probed.set_instrumentation(Timed {
        inner: profiler.probe(Backend::Postgres),
        spent: Arc::clone(&probe_spent),
    });
    let (mut wrapper, mut probe, mut scoped) =
        (Samples::default(), Samples::default(), Samples::default());
    for _ in 0..rounds {
        let before = read(&empty_spent);
        for i in 0..statements {
            run!(&mut empty, statement, i, RunQueryDsl::load, await);
        }
        wrapper.push_ns(read(&empty_spent) - before, statements);
        let before = read(&probe_spent);
        for i in 0..statements {
            run!(&mut probed, statement, i, RunQueryDsl::load, await);
        }
        probe.push_ns(read(&probe_spent) - before, statements);
        let in_rpc = profile_rpc("/bench/Loop", async {
            attach(probed.instrumentation());
            let before = read(&probe_spent);
            for i in 0..statements {
                run!(&mut probed, statement, i, RunQueryDsl::load, await);
            }
            read(&probe_spent) - before
        })
        .instrument(rpc_span())
        .await;
        attach_none(probed.instrumentation());
        scoped.push_ns(in_rpc, statements);
    }
    assert_eq!(profiler.statement_count(), (2 * statements * rounds) as u64);
    report_probe(
        &format!("Postgres, {}", statement.name()),
        &wrapper,
        &probe,
        &scoped,
    );
}

/// N statements on one checked-out pooled connection (probe installed), optionally inside an
/// RPC scope so the per-RPC accounting runs too.
async fn pooled(db: &Db, statement: Statement, statements: usize, in_rpc: bool) -> Duration {
    let work = async {
        let mut conn = db.conn().await.unwrap();
        let started = Instant::now();
        for i in 0..statements {
            let conn = &mut conn;
            db_run!(conn => run!(conn, statement, i, RunQueryDsl::load, await));
        }
        started.elapsed()
    };
    if in_rpc {
        profile_rpc("/bench/Loop", work)
            .instrument(rpc_span())
            .await
    } else {
        work.await
    }
}

/// A throwaway database with the benchmark table, and a pool (with the probe) on it.
async fn prepare(backend: Backend) -> (TestDatabase, Db) {
    let database = TestDatabase::create(backend).await;
    let db = Db::connect(&DbOptions {
        url: database.url().to_owned(),
        pool_size: 1,
        slow_query: Duration::from_secs(10),
        n_plus_one_threshold: 5,
        application_name: "profiler-cost",
    })
    .await
    .unwrap();
    let mut conn = db.conn().await.unwrap();
    let conn = &mut conn;
    let values: Vec<String> = (1..=ROWS).map(|i| format!("({i}, 'row {i}')")).collect();
    let sql = format!(
        "CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, name TEXT NOT NULL); \
         INSERT INTO bench_rows (id, name) VALUES {};",
        values.join(", ")
    );
    db_run!(conn => conn.batch_execute(&sql).await).unwrap();
    (database, db)
}

async fn end_to_end(backend: Backend, database: &TestDatabase, db: &Db, rounds: usize, n: usize) {
    for statement in [Statement::Point, Statement::Wide] {
        let statements = statement.count(n);
        let (mut without, mut with, mut scoped) =
            (Samples::default(), Samples::default(), Samples::default());
        match backend {
            Backend::Sqlite => {
                let path = learnhub_db::sqlite_path(database.url()).unwrap();
                let mut conn = SqliteConn::establish(&path).await.unwrap();
                for _ in 0..rounds {
                    let started = Instant::now();
                    for i in 0..statements {
                        run!(&mut conn, statement, i, RunQueryDsl::load, await);
                    }
                    without.push(started.elapsed(), statements);
                    with.push(pooled(db, statement, statements, false).await, statements);
                    scoped.push(pooled(db, statement, statements, true).await, statements);
                }
            }
            Backend::Postgres => {
                let mut conn = AsyncPgConnection::establish(database.url()).await.unwrap();
                for _ in 0..rounds {
                    let started = Instant::now();
                    for i in 0..statements {
                        run!(&mut conn, statement, i, RunQueryDsl::load, await);
                    }
                    without.push(started.elapsed(), statements);
                    with.push(pooled(db, statement, statements, false).await, statements);
                    scoped.push(pooled(db, statement, statements, true).await, statements);
                }
            }
        }
        let title = match backend {
            Backend::Sqlite => "SQLite file, async pool (SyncConnectionWrapper)",
            Backend::Postgres => "Postgres on 127.0.0.1, async pool (AsyncPgConnection)",
        };
        report(
            &format!("{title}, {}", statement.name()),
            &[
                ("connection without probe", &without),
                ("pooled connection with probe", &with),
                ("pooled, with probe, inside an RPC scope", &scoped),
            ],
        );
    }
}

/// The span an RPC scope runs in (the server's span in a service); a no-op when nothing listens.
fn rpc_span() -> tracing::Span {
    tracing::info_span!("bench rpc")
}

/// What a service exporting traces and serving metrics has installed.
fn observe() -> opentelemetry_sdk::trace::SdkTracerProvider {
    use opentelemetry::trace::TracerProvider as _;
    use tracing_subscriber::prelude::*;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("profiler-cost")))
        .init();
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder");
    provider
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let observed = std::env::args().any(|a| a == "--observed");
    let mut args = std::env::args().skip(1).filter(|a| a != "--observed");
    let n: usize = args
        .next()
        .map_or(20_000, |a| a.parse().expect("STATEMENTS"));
    let rounds: usize = args.next().map_or(7, |a| a.parse().expect("ROUNDS"));
    println!(
        "profiler cost: {n} point lookups and {} 100-id lookups per round, {rounds} rounds, \
         on a {ROWS}-row table; {}",
        Statement::Wide.count(n),
        if observed {
            "observed (tracing + OpenTelemetry layer, Prometheus recorder)"
        } else {
            "nothing listening (no subscriber, no recorder)"
        }
    );
    let _provider = observed.then(observe);
    let (sqlite_database, sqlite_db) = prepare(Backend::Sqlite).await;
    let (pg_database, pg_db) = prepare(Backend::Postgres).await;

    println!(
        "\n1. Time spent inside the probe, per statement (timing wrapper's own cost taken off)"
    );
    println!(
        "  {:<48} {:>10} {:>10} {:>12} {:>10}",
        "", "median", "best", "in RPC: med", "best"
    );
    let path = learnhub_db::sqlite_path(sqlite_database.url()).unwrap();
    for statement in [Statement::Point, Statement::Wide] {
        let statements = statement.count(n);
        let path = path.clone();
        tokio::task::spawn_blocking(move || {
            probe_time_sqlite(&path, statement, statements, rounds)
        })
        .await
        .unwrap();
        probe_time_postgres(pg_database.url(), statement, statements, rounds).await;
    }

    println!("\n2. End to end, ns per statement");
    end_to_end(Backend::Sqlite, &sqlite_database, &sqlite_db, rounds, n).await;
    end_to_end(Backend::Postgres, &pg_database, &pg_db, rounds, n).await;
    // The pools go before their databases.
    drop((sqlite_db, pg_db));
}
