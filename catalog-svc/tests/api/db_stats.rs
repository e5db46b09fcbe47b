//! GetDbStats / ResetDbStats over real gRPC: after a reset and a known sequence of calls, the
//! statistics hold exactly those statements, per statement and per RPC, largest total first.
use catalog_svc::models::course::CourseRow;
use learnhub_db::{Backend, profiler::profile_rpc};
use learnhub_proto::{
    catalog::v1 as pb,
    common::v1::{DbStats, GetDbStatsRequest, ResetDbStatsRequest, StatementStats},
};

use crate::{
    helpers::{TestApp, spawn_app},
    on_both_backends,
};

on_both_backends!(
    stats_count_a_known_sequence_exactly,
    stats_show_n_plus_one_findings
);

const GET_COURSE: &str = "/learnhub.catalog.v1.CatalogService/GetCourse";
const LIST_COURSES: &str = "/learnhub.catalog.v1.CatalogService/ListCourses";
const LIST_EXERCISES: &str = "/learnhub.catalog.v1.CatalogService/ListExercises";

async fn db_stats(app: &TestApp) -> DbStats {
    app.client
        .clone()
        .get_db_stats(GetDbStatsRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The one statement whose text (with SQLite's backquotes read as Postgres's double quotes)
/// satisfies `is`.
fn statement(stats: &DbStats, is: impl Fn(&str) -> bool) -> &StatementStats {
    let found: Vec<_> = stats
        .statements
        .iter()
        .filter(|s| is(&s.statement.replace('`', "\"")))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{:#?}",
        stats
            .statements
            .iter()
            .map(|s| &s.statement)
            .collect::<Vec<_>>()
    );
    found[0]
}

async fn stats_count_a_known_sequence_exactly(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(20).await;
    let mut client = app.client.clone();
    client.reset_db_stats(ResetDbStatsRequest {}).await.unwrap();
    let empty = db_stats(&app).await;
    assert!(empty.statements.is_empty(), "{:#?}", empty.statements);
    assert!(empty.rpcs.is_empty());
    assert_eq!(empty.totals.unwrap().statements, 0);

    // 3 x GetCourse (2 statements each), 2 x ListCourses (1 each), 1 x ListExercises (2).
    for id in [1, 2, 3] {
        client
            .get_course(pb::GetCourseRequest {
                key: Some(pb::get_course_request::Key::Id(id)),
            })
            .await
            .unwrap();
    }
    for page_size in [5, 10] {
        client
            .list_courses(pb::ListCoursesRequest {
                page_size,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    client
        .list_exercises(pb::ListExercisesRequest { lesson_id: 1 })
        .await
        .unwrap();

    let stats = db_stats(&app).await;
    assert_eq!(stats.service, "catalog-svc");
    assert_eq!(
        stats.backend,
        match backend {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    );
    assert!(stats.since.is_some());
    let thresholds = stats.thresholds.unwrap();
    assert_eq!(
        (thresholds.slow_query_ms, thresholds.n_plus_one),
        (1000.0, 5)
    );
    let totals = stats.totals.unwrap();
    assert_eq!(
        (
            totals.statements,
            totals.errors,
            totals.slow,
            totals.n_plus_one,
            totals.rpc_calls
        ),
        (10, 0, 0, 0, 6)
    );

    // Per statement: course by id 3, lessons of a course 3, course page 2, lesson by id 1,
    // exercises of a lesson 1 — five shapes, ten statements.
    assert_eq!(stats.statements.len(), 5, "{:#?}", stats.statements);
    let counts: u64 = stats.statements.iter().map(|s| s.count).sum();
    assert_eq!(counts, 10);
    let by_id = statement(&stats, |sql| {
        sql.contains(r#"FROM ("courses" INNER JOIN "categories""#)
            && sql.contains(r#"WHERE ("courses"."id" = "#)
    });
    assert_eq!(by_id.count, 3);
    let lessons = statement(&stats, |sql| {
        sql.contains(r#"FROM "lessons" WHERE ("lessons"."course_id" = "#)
    });
    assert_eq!(lessons.count, 3);
    let page = statement(&stats, |sql| sql.contains(r#"ORDER BY "courses"."id" ASC"#));
    assert_eq!(page.count, 2);
    let exercises = statement(&stats, |sql| sql.contains(r#"FROM "exercises""#));
    assert_eq!(exercises.count, 1);
    for s in &stats.statements {
        assert_eq!(s.errors, 0);
        assert!(
            s.min_ms <= s.median_ms && s.median_ms <= s.p99_ms && s.p99_ms <= s.max_ms,
            "{s:?}"
        );
        // avg is whole nanoseconds.
        assert!(
            (s.avg_ms * s.count as f64 - s.total_ms).abs() < 1e-4,
            "{s:?}"
        );
        assert!(s.total_ms > 0.0);
        assert!(
            !s.statement.contains("-- binds"),
            "bind values are stripped"
        );
    }
    let totals: Vec<f64> = stats.statements.iter().map(|s| s.total_ms).collect();
    assert!(
        totals.windows(2).all(|pair| pair[0] >= pair[1]),
        "largest total first: {totals:?}"
    );

    // Per RPC.
    let rpc = |name: &str| {
        stats
            .rpcs
            .iter()
            .find(|r| r.rpc == name)
            .unwrap_or_else(|| panic!("{name} in {:#?}", stats.rpcs))
    };
    let get = rpc(GET_COURSE);
    assert_eq!(
        (
            get.calls,
            get.statements,
            get.avg_statements,
            get.max_statements
        ),
        (3, 6, 2.0, 2)
    );
    let list = rpc(LIST_COURSES);
    assert_eq!(
        (list.calls, list.statements, list.max_statements),
        (2, 2, 1)
    );
    let exercises = rpc(LIST_EXERCISES);
    assert_eq!((exercises.calls, exercises.statements), (1, 2));
    assert_eq!(
        stats.rpcs.len(),
        3,
        "GetDbStats and ResetDbStats run no SQL"
    );
    assert!(stats.rpcs.iter().all(|r| r.n_plus_one == 0));
    let db_times: Vec<f64> = stats.rpcs.iter().map(|r| r.db_time_ms).collect();
    assert!(db_times.windows(2).all(|pair| pair[0] >= pair[1]));
    let statement_time: f64 = stats.statements.iter().map(|s| s.total_ms).sum();
    let rpc_time: f64 = db_times.iter().sum();
    assert!((statement_time - rpc_time).abs() < 1e-6);

    // Reading the statistics again changes nothing; a reset empties them.
    let again = db_stats(&app).await;
    assert_eq!(again.totals.unwrap().statements, 10);
    client.reset_db_stats(ResetDbStatsRequest {}).await.unwrap();
    let reset = db_stats(&app).await;
    assert!(reset.statements.is_empty() && reset.rpcs.is_empty());
    assert_eq!(reset.totals.unwrap().statements, 0);
}

async fn stats_show_n_plus_one_findings(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(10).await;
    app.db.profiler().reset();
    let db = app.db.clone();
    profile_rpc("/test/CoursesOneByOne", async move {
        let mut conn = db.conn().await.unwrap();
        for id in 1..=7 {
            CourseRow::find(&mut conn, id).await.unwrap().unwrap();
        }
    })
    .await;
    let stats = db_stats(&app).await;
    let totals = stats.totals.unwrap();
    assert_eq!((totals.statements, totals.n_plus_one), (7, 1));
    let rpc = &stats.rpcs[0];
    assert_eq!(
        (rpc.rpc.as_str(), rpc.calls, rpc.statements, rpc.n_plus_one),
        ("/test/CoursesOneByOne", 1, 7, 1)
    );
    assert_eq!(rpc.n_plus_one_findings.len(), 1);
    let finding = &rpc.n_plus_one_findings[0];
    assert_eq!((finding.calls, finding.max_repeats), (1, 7));
    assert_eq!(finding.statement, stats.statements[0].statement);
}
