//! What the always-on query profiler costs per statement: the same small indexed SELECTs run N
//! times on a connection with the profiler's probe and on one without it, on a SQLite file and on
//! Postgres. A benchmark that prints figures, not a test.
//!
//! ```text
//! cargo run --release -p learnhub-kit --example profiler_cost -- [STATEMENTS] [ROUNDS]
//! ```
//!
//! Two statements: a point lookup with one bind (`WHERE id = ?`) and a 100-id lookup (`IN (?, …)`
//! on SQLite, `= ANY($1)` on Postgres), whose bind values the probe must not spend time on.
//! Postgres is `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`); a
//! throwaway database is created there and dropped. Rounds alternate the configurations, so drift
//! on a busy machine hits all of them alike; the median and the best round are reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::{Duration, Instant};

use diesel::{Connection, prelude::*, sqlite::SqliteConnection};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use learnhub_kit::{
    Backend, Db,
    db::{DbOptions, SqliteConn},
    db_run,
    profiler::{ProfilerSettings, QueryProfiler, profile_rpc},
    testing::TestDatabase,
};

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
}

fn key(i: usize) -> i64 {
    (i as i64 * 7919) % ROWS + 1
}

fn keys(i: usize) -> Vec<i64> {
    (0..WIDE).map(|n| key(i * WIDE + n)).collect()
}

/// Runs statement number `i` of kind `$statement` on `$conn` with the async or sync diesel API
/// (`$($await)?`), so the bare connections and the pooled ones run the very same query.
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

/// Rounds of one configuration, as ns per statement.
#[derive(Default)]
struct Samples(Vec<f64>);

impl Samples {
    fn push(&mut self, elapsed: Duration, statements: usize) {
        self.0.push(elapsed.as_nanos() as f64 / statements as f64);
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
        "  {:<42} {:>12} {:>10} {:>12} {:>10}",
        "", "median ns", "delta", "best ns", "delta"
    );
    let (base_median, base_best) = (lines[0].1.median(), lines[0].1.best());
    for (name, samples) in lines {
        let (median, best) = (samples.median(), samples.best());
        println!(
            "  {name:<42} {median:>12.0} {:>+10.0} {best:>12.0} {:>+10.0}",
            median - base_median,
            best - base_best,
        );
    }
}

fn sync_sqlite(path: &str, statement: Statement, statements: usize, rounds: usize) {
    let open = || {
        let mut conn = SqliteConnection::establish(path).unwrap();
        diesel::connection::SimpleConnection::batch_execute(
            &mut conn,
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
        )
        .unwrap();
        conn
    };
    let mut bare = open();
    let profiler = QueryProfiler::new(ProfilerSettings::default());
    let mut probed = open();
    probed.set_instrumentation(profiler.probe());
    let run = |conn: &mut SqliteConnection| {
        let started = Instant::now();
        for i in 0..statements {
            run!(conn, statement, i, diesel::RunQueryDsl::load,);
        }
        started.elapsed()
    };
    let (mut without, mut with) = (Samples::default(), Samples::default());
    for _ in 0..rounds {
        without.push(run(&mut bare), statements);
        with.push(run(&mut probed), statements);
    }
    assert_eq!(profiler.statement_count(), (statements * rounds) as u64);
    report(
        &format!(
            "SQLite file, synchronous diesel connection, {}: the probe's own cost",
            statement.name()
        ),
        &[("without probe", &without), ("with probe", &with)],
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
        profile_rpc("/bench/Loop", work).await
    } else {
        work.await
    }
}

async fn async_backend(backend: Backend, statements: usize, rounds: usize) {
    let database = TestDatabase::create(backend).await;
    let db = Db::connect(&DbOptions {
        url: database.url().to_owned(),
        pool_size: 1,
        slow_query: Duration::from_secs(10),
        application_name: "profiler-cost",
    })
    .await
    .unwrap();
    {
        let mut conn = db.conn().await.unwrap();
        let conn = &mut conn;
        let values: Vec<String> = (1..=ROWS).map(|i| format!("({i}, 'row {i}')")).collect();
        let sql = format!(
            "CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, name TEXT NOT NULL); \
             INSERT INTO bench_rows (id, name) VALUES {};",
            values.join(", ")
        );
        db_run!(conn => conn.batch_execute(&sql).await).unwrap();
    }
    for statement in [Statement::Point, Statement::Wide] {
        if backend == Backend::Sqlite {
            let path = learnhub_kit::db::sqlite_path(database.url()).unwrap();
            sync_sqlite(&path, statement, statements, rounds);
        }
        let (mut without, mut with, mut scoped) =
            (Samples::default(), Samples::default(), Samples::default());
        let before = db.profiler().statement_count();
        match backend {
            Backend::Sqlite => {
                let path = learnhub_kit::db::sqlite_path(database.url()).unwrap();
                let mut conn = SqliteConn::establish(&path).await.unwrap();
                for _ in 0..rounds {
                    let started = Instant::now();
                    for i in 0..statements {
                        run!(&mut conn, statement, i, RunQueryDsl::load, await);
                    }
                    without.push(started.elapsed(), statements);
                    with.push(pooled(&db, statement, statements, false).await, statements);
                    scoped.push(pooled(&db, statement, statements, true).await, statements);
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
                    with.push(pooled(&db, statement, statements, false).await, statements);
                    scoped.push(pooled(&db, statement, statements, true).await, statements);
                }
            }
        }
        assert_eq!(
            db.profiler().statement_count() - before,
            (2 * statements * rounds) as u64
        );
        let title = match backend {
            Backend::Sqlite => "SQLite file through the async pool (SyncConnectionWrapper)",
            Backend::Postgres => "Postgres on 127.0.0.1 through the async pool (AsyncPgConnection)",
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
    // The pool goes before its database.
    drop(db);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let statements: usize = args.next().map_or(20_000, |a| a.parse().expect("STATEMENTS"));
    let rounds: usize = args.next().map_or(7, |a| a.parse().expect("ROUNDS"));
    println!(
        "profiler cost: {statements} statements per round, {rounds} rounds per configuration, \
         on a {ROWS}-row table; ns per statement"
    );
    async_backend(Backend::Sqlite, statements, rounds).await;
    async_backend(Backend::Postgres, statements, rounds).await;
}
