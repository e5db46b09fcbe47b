//! What the database layer reports besides its statistics: a span per statement under the RPC's
//! span, slow-query and N+1 events on that span, and the `learnhub_sql_*` / `learnhub_db_pool_*`
//! metrics — on SQLite (statements on a blocking thread) and on the real Postgres.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use learnhub_db::{
    Backend, Db, DbConn, DbOptions, db_run, on_both_backends, profiler::profile_rpc,
    testing::TestDatabase,
};
use learnhub_kit::capture::{TestRecorder, capture};
use tracing::{Instrument, instrument::WithSubscriber};

diesel::table! {
    telemetry_rows (id) {
        id -> BigInt,
        name -> Text,
    }
}

/// A bind value that must never show up in a span, an event or a label.
const SECRET_ID: i64 = 987_654_321;

on_both_backends!(
    statements_are_spans_under_the_span_current_at_checkout,
    slow_queries_and_n_plus_one_are_events_on_the_rpc_span,
    sql_and_pool_metrics_are_labelled_with_the_service
);

async fn prepare(
    backend: Backend,
    service: &'static str,
    slow_query: Duration,
    pool_size: u32,
) -> (TestDatabase, Db) {
    let database = TestDatabase::create(backend).await;
    let db = Db::connect(&DbOptions {
        url: database.url().to_owned(),
        pool_size,
        slow_query,
        n_plus_one_threshold: 3,
        application_name: service,
    })
    .await
    .unwrap();
    let mut conn = db.conn().await.unwrap();
    let conn = &mut conn;
    db_run!(conn => conn.batch_execute(
        "CREATE TABLE telemetry_rows (id BIGINT PRIMARY KEY, name TEXT NOT NULL); \
         INSERT INTO telemetry_rows (id, name) VALUES (1, 'one'), (2, 'two'), (3, 'three');"
    ).await)
    .unwrap();
    (database, db)
}

async fn lookup(conn: &mut DbConn, id: i64) -> Vec<(i64, String)> {
    db_run!(conn => telemetry_rows::table
        .filter(telemetry_rows::id.eq(id))
        .select((telemetry_rows::id, telemetry_rows::name))
        .load(conn)
        .await)
    .unwrap()
}

async fn insert(conn: &mut DbConn, id: i64) -> QueryResult<usize> {
    db_run!(conn => diesel::insert_into(telemetry_rows::table)
        .values((telemetry_rows::id.eq(id), telemetry_rows::name.eq("duplicate")))
        .execute(conn)
        .await)
}

fn system(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => "postgresql",
        Backend::Sqlite => "sqlite",
    }
}

async fn statements_are_spans_under_the_span_current_at_checkout(backend: Backend) {
    let (_database, db) = prepare(backend, "telemetry-spans", Duration::from_secs(60), 2).await;
    let (subscriber, captured) = capture();
    async {
        // Outside any span: no statement span (start-up and seeding would flood the traces).
        let mut conn = db.conn().await.unwrap();
        lookup(&mut conn, 2).await;
        drop(conn);

        let rpc = tracing::info_span!("rpc");
        profile_rpc("/test/Spans", async {
            let mut conn = db.conn().await.unwrap();
            assert!(lookup(&mut conn, SECRET_ID).await.is_empty());
            assert!(insert(&mut conn, 1).await.is_err(), "a duplicate key");
            drop(conn);
            async {
                let mut conn = db.conn().await.unwrap();
                lookup(&mut conn, 3).await;
            }
            .instrument(tracing::info_span!("cache get"))
            .await;
        })
        .instrument(rpc)
        .await;
    }
    .with_subscriber(subscriber)
    .await;

    let rpc = &captured.named("rpc")[0];
    let cache_get = &captured.named("cache get")[0];
    let statements: Vec<_> = captured
        .spans()
        .into_iter()
        .filter(|s| s.name == "sql statement")
        .collect();
    assert_eq!(
        statements.len(),
        3,
        "one span per statement inside a span, none outside: {statements:#?}"
    );

    let select = &statements[0];
    assert_eq!(select.field("otel.name"), Some("SELECT telemetry_rows"));
    assert_eq!(select.parent, Some(rpc.index), "a child of the RPC's span");
    assert_eq!(select.field("otel.kind"), Some("client"));
    assert_eq!(select.field("db.system.name"), Some(system(backend)));
    assert_eq!(select.field("db.operation.name"), Some("SELECT"));
    assert_eq!(select.field("db.collection.name"), Some("telemetry_rows"));
    let summary = select.field("db.query.summary").unwrap();
    assert!(summary.contains("telemetry_rows"), "{summary}");
    assert!(
        !summary.contains(&SECRET_ID.to_string()),
        "no bind value: {summary}"
    );
    assert_eq!(select.field("otel.status_code"), None);
    assert!(select.closed, "ended when the statement finished");

    let failed = &statements[1];
    assert_eq!(failed.field("otel.name"), Some("INSERT telemetry_rows"));
    assert_eq!(failed.field("error.type"), Some("unique_violation"));
    assert_eq!(failed.field("otel.status_code"), Some("ERROR"));
    assert_eq!(failed.parent, Some(rpc.index));

    let nested = &statements[2];
    assert_eq!(nested.field("otel.name"), Some("SELECT telemetry_rows"));
    assert_eq!(
        nested.parent,
        Some(cache_get.index),
        "the span current when the connection was checked out"
    );
    assert_eq!(cache_get.parent, Some(rpc.index));
    assert!(
        rpc.closed && cache_get.closed,
        "the pooled connections keep no handle that would hold the RPC's span open: {:#?}",
        captured.spans()
    );
}

/// A statement whose future is dropped (a cancelled RPC, a timeout) never finishes: its span
/// ends with the RPC, marked cancelled, rather than when the connection is next checked out
/// (Postgres: `pg_sleep` runs long enough to be given up on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_statement_ends_its_span_with_the_rpc() {
    let (_database, db) = prepare(
        Backend::Postgres,
        "telemetry-cancel",
        Duration::from_secs(60),
        2,
    )
    .await;
    let (subscriber, captured) = capture();
    async {
        profile_rpc("/test/Cancelled", async {
            let mut conn = db.conn().await.unwrap();
            let conn = &mut conn;
            let sleep = db_run!(conn => diesel::sql_query("SELECT pg_sleep(5)").execute(conn));
            let gave_up = tokio::time::timeout(Duration::from_millis(100), sleep).await;
            assert!(gave_up.is_err(), "the statement was still running");
        })
        .instrument(tracing::info_span!("rpc"))
        .await;
    }
    .with_subscriber(subscriber)
    .await;
    // Its text is only read when a statement finishes (reading it at the start costs a second
    // formatting of the query on Postgres): this one never did, so its span has no name of its
    // own, only the backend and the error.
    let sleep = &captured.named("sql statement")[0];
    assert_eq!(sleep.field("db.system.name"), Some("postgresql"));
    assert!(sleep.closed, "ended with the RPC");
    assert_eq!(sleep.field("error.type"), Some("cancelled"));
    assert_eq!(sleep.field("otel.status_code"), Some("ERROR"));
    assert!(captured.named("rpc")[0].closed);
}

async fn slow_queries_and_n_plus_one_are_events_on_the_rpc_span(backend: Backend) {
    // Every statement is slow at a zero threshold.
    let (_database, db) = prepare(backend, "telemetry-events", Duration::ZERO, 2).await;
    let (subscriber, captured) = capture();
    async {
        profile_rpc("/test/OneByOne", async {
            let mut conn = db.conn().await.unwrap();
            for id in [SECRET_ID, SECRET_ID + 1, SECRET_ID + 2] {
                lookup(&mut conn, id).await;
            }
        })
        .instrument(tracing::info_span!("rpc"))
        .await;
    }
    .with_subscriber(subscriber)
    .await;

    let rpc = &captured.named("rpc")[0];
    let events = captured.events();
    let slow: Vec<_> = events
        .iter()
        .filter(|e| e.field("message") == Some("slow query"))
        .collect();
    assert_eq!(slow.len(), 3, "{events:#?}");
    for event in &slow {
        assert_eq!(event.level, tracing::Level::WARN);
        assert_eq!(
            event.parent,
            Some(rpc.index),
            "on the RPC's span: {event:?}"
        );
        assert_eq!(event.field("rpc"), Some("/test/OneByOne"));
        assert_eq!(event.field("name"), Some("SELECT telemetry_rows"));
        assert!(event.field("elapsed_ms").is_some());
        let statement = event.field("statement").unwrap();
        assert!(statement.contains("telemetry_rows"));
        assert!(!statement.contains(&SECRET_ID.to_string()), "{statement}");
    }
    let n_plus_one: Vec<_> = events
        .iter()
        .filter(|e| e.field("message").is_some_and(|m| m.starts_with("N+1")))
        .collect();
    assert_eq!(n_plus_one.len(), 1, "{events:#?}");
    let finding = n_plus_one[0];
    assert_eq!(finding.parent, Some(rpc.index));
    assert_eq!(finding.field("rpc"), Some("/test/OneByOne"));
    assert_eq!(finding.field("count"), Some("3"));
    assert_eq!(finding.field("name"), Some("SELECT telemetry_rows"));
    assert!(finding.field("total_ms").is_some());
    assert!(
        !finding
            .field("statement")
            .unwrap()
            .contains(&SECRET_ID.to_string())
    );
}

async fn sql_and_pool_metrics_are_labelled_with_the_service(backend: Backend) {
    let service = match backend {
        Backend::Sqlite => "telemetry-metrics-sqlite",
        Backend::Postgres => "telemetry-metrics-postgres",
    };
    let recorder = TestRecorder::global();
    let (_database, db) = prepare(backend, service, Duration::ZERO, 2).await;
    profile_rpc("/test/Metrics", async {
        let mut conn = db.conn().await.unwrap();
        for id in [SECRET_ID, 1, 2] {
            lookup(&mut conn, id).await;
        }
    })
    .await;

    let selects: Vec<_> = recorder
        .label_sets("learnhub_sql_statements_total", &[("service", service)])
        .into_iter()
        .filter(|labels| labels["statement"].starts_with("SELECT telemetry_rows "))
        .collect();
    assert_eq!(selects.len(), 1, "one fingerprint for the three lookups");
    let statement = selects[0]["statement"].as_str();
    assert!(!statement.contains(&SECRET_ID.to_string()));
    let labels = [("service", service), ("statement", statement)];
    assert_eq!(
        recorder.counter("learnhub_sql_statements_total", &labels),
        3
    );
    let durations = recorder.histogram("learnhub_sql_duration_seconds", &labels);
    assert_eq!(durations.len(), 3);
    assert!(
        durations.iter().all(|s| *s > 0.0 && *s < 30.0),
        "{durations:?}"
    );
    assert_eq!(
        recorder.counter("learnhub_sql_slow_queries_total", &[("service", service)]),
        db.profiler().slow_count()
    );
    assert_eq!(
        recorder.counter(
            "learnhub_sql_n_plus_one_total",
            &[("service", service), ("rpc", "/test/Metrics")]
        ),
        1
    );

    // The pool, as seen at each checkout.
    let in_use = || {
        recorder.gauge(
            "learnhub_db_pool_connections",
            &[("service", service), ("state", "in_use")],
        )
    };
    let first = db.conn().await.unwrap();
    assert_eq!(in_use(), Some(1.0));
    assert_eq!(
        recorder.gauge("learnhub_db_pool_max_connections", &[("service", service)]),
        Some(2.0)
    );
    let second = db.conn().await.unwrap();
    assert_eq!(in_use(), Some(2.0));
    assert_eq!(
        recorder.gauge(
            "learnhub_db_pool_connections",
            &[("service", service), ("state", "idle")]
        ),
        Some(0.0)
    );
    // A third caller waits for a connection until one is returned: polled once, it is queued.
    // (A checkout that had to open a connection counted as a wait too: compare with before.)
    let waits = || recorder.counter("learnhub_db_pool_waits_total", &[("service", service)]);
    let waits_before = waits();
    let mut third = std::pin::pin!(db.conn());
    std::future::poll_fn(|cx| {
        assert!(
            third.as_mut().poll(cx).is_pending(),
            "both connections are out"
        );
        std::task::Poll::Ready(())
    })
    .await;
    drop(first);
    drop(third.await.unwrap());
    assert_eq!(waits(), waits_before + 1);
    let waited = recorder
        .gauge(
            "learnhub_db_pool_wait_seconds_total",
            &[("service", service)],
        )
        .unwrap();
    assert!(waited > 0.0, "{waited}");
    drop(second);
    db.record_pool_metrics();
    assert_eq!(in_use(), Some(0.0));
}
