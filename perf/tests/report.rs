//! perf-report against the real Postgres and Redis: a tiny scale end to end (three
//! configurations, files written, databases reused, then dropped), and the refusals that must
//! happen before anything is written.
// Set-up failures are test failures.
#![allow(clippy::unwrap_used)]
use std::time::Duration;

use perf_report::{
    pg::{DbState, PgAdmin},
    prepare::{Target, drop_databases, prepare},
    run::{RunSettings, run},
    scale::Scale,
};

const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn target(scale: f64) -> Target {
    Target {
        scale: Scale::new(scale).unwrap(),
        postgres: std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES.into()),
        redis_url: std::env::var("TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        redis_prefix: format!("lh-test-perf-{}:", std::process::id()),
        reuse_existing: false,
    }
}

async fn state(target: &Target, name: &str) -> DbState {
    PgAdmin::connect(&target.postgres)
        .await
        .unwrap()
        .state(name)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_scale_runs_all_three_configurations_and_is_reused() {
    let target = target(0.001);
    drop_databases(&target).await.unwrap();
    let out = std::env::temp_dir().join(format!("perf-report-test-{}", std::process::id()));
    let settings = RunSettings {
        concurrency: 2,
        connections: 1,
        requests: 30,
        warmup: 10,
        max_duration: Duration::from_secs(20),
        out_dir: out.clone(),
        command_line: "perf-report run --scale 0.001".into(),
    };
    run(&target, &settings).await.unwrap();

    let markdown = std::fs::read_to_string(out.join("scale-0.001.md")).unwrap();
    for expected in [
        "(a) no performance indexes, no cache",
        "(b) performance indexes",
        "(c) performance indexes + cache",
        "Catalog page (anonymous)",
        "User by email (admin)",
        "Enrollment query (learner)",
        "Featured courses",
        "Category list",
        "Average SQL statement",
        "CPUs (nproc)",
    ] {
        assert!(
            markdown.contains(expected),
            "missing {expected:?}:\n{markdown}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("scale-0.001.json")).unwrap())
            .unwrap();
    for config in ["a", "b", "c"] {
        let scenarios = json["configurations"][config]["scenarios"]
            .as_object()
            .unwrap();
        assert_eq!(scenarios.len(), 6, "{config}");
        for (name, s) in scenarios {
            assert_eq!(s["errors"], 0, "{config} {name}");
            assert!(s["requests"].as_u64().unwrap() > 0, "{config} {name}");
        }
    }
    // Without indexes and cache every catalog page reads the database; with the cache the
    // categories come from it.
    let sql = |config: &str, scenario: &str| {
        json["configurations"][config]["scenarios"][scenario]["sql_per_call"]
            .as_f64()
            .unwrap()
    };
    assert!(sql("a", "categories") >= 1.0);
    assert_eq!(sql("c", "categories"), 0.0);
    // From cache-svc at a high hit rate, or (the near-caches on, as by default) from the
    // gateway's near-cache without asking cache-svc at all.
    let categories = &json["configurations"]["c"]["scenarios"]["categories"];
    match categories["cache_hit_rate"].as_f64() {
        Some(rate) => assert!(rate > 0.9, "{categories}"),
        None => assert_eq!(
            categories["cache_lookups_per_call"].as_f64(),
            Some(0.0),
            "{categories}"
        ),
    }

    // Marked as seeded: the next run reuses the data instead of seeding again.
    assert!(matches!(
        state(&target, &target.catalog_db()).await,
        DbState::Ours { seeded: true, .. }
    ));
    let again = prepare(&target).await.unwrap();
    assert!(again.seed_summary.is_none(), "reused, not reseeded");

    drop_databases(&target).await.unwrap();
    assert_eq!(state(&target, &target.catalog_db()).await, DbState::Missing);
    std::fs::remove_dir_all(out).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_perf_report_did_not_create_is_refused_and_nothing_is_written() {
    let target = target(0.002);
    let mut admin = PgAdmin::connect(&target.postgres).await.unwrap();
    admin.drop_database(&target.catalog_db()).await.unwrap();
    admin.drop_database(&target.enrollment_db()).await.unwrap();
    // Someone else's database under perf-report's name (no mark).
    use diesel_async::SimpleAsyncConnection;
    let mut conn = <diesel_async::AsyncPgConnection as diesel_async::AsyncConnection>::establish(
        &target.postgres,
    )
    .await
    .unwrap();
    conn.batch_execute(&format!("CREATE DATABASE {}", target.catalog_db()))
        .await
        .unwrap();

    let err = prepare(&target).await.unwrap_err().to_string();
    assert!(err.contains("not created by perf-report"), "{err}");
    assert!(err.contains("--reuse-existing"), "{err}");
    assert_eq!(
        state(&target, &target.enrollment_db()).await,
        DbState::Missing,
        "nothing is created when refusing"
    );
    let err = drop_databases(&target).await.unwrap_err().to_string();
    assert!(err.contains("not created by perf-report"), "{err}");
    assert_eq!(state(&target, &target.catalog_db()).await, DbState::Foreign);

    conn.batch_execute(&format!("DROP DATABASE {}", target.catalog_db()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_the_disk_cannot_hold_is_refused_before_anything_is_written() {
    // Scale 100 needs ~200 GiB of disk (and ~25 GiB of memory): more than this box has.
    let target = target(100.0);
    let err = prepare(&target).await.unwrap_err().to_string();
    assert!(
        err.contains("not enough disk") || err.contains("not enough memory"),
        "{err}"
    );
    assert!(err.contains("smaller --scale"), "{err}");
    assert_eq!(state(&target, &target.catalog_db()).await, DbState::Missing);
    assert_eq!(
        state(&target, &target.enrollment_db()).await,
        DbState::Missing
    );
}
