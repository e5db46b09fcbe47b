//! Every hot query is served by an index, and every index of the performance migration serves
//! some query: the statements each RPC really ran (read back from the query profiler) are
//! EXPLAINed on the test database. Postgres plans the generic (parameterised) plan with
//! sequential scans disabled, so a query no index can serve still shows a Seq Scan.
use std::collections::BTreeSet;

use diesel::{QueryableByName, sql_types::Text};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use learnhub_db::{Backend, DbConn};
use learnhub_proto::enrollment::v1 as pb;

use crate::{
    helpers::{TestApp, spawn_app},
    on_both_backends,
};

on_both_backends!(hot_queries_use_indexes_and_every_index_is_used);

const INDEX_MIGRATION: &str =
    include_str!("../../migrations/postgres/2026-12-01-000002_performance_indexes/up.sql");

/// Tables and the aliases the statements give them.
const TABLES: &[&str] = &[
    "users",
    "enrollments",
    "lesson_progress",
    "exercise_submissions",
    "e",
    "p",
];

#[derive(QueryableByName)]
struct SqlitePlanRow {
    #[diesel(sql_type = Text)]
    detail: String,
}

#[derive(QueryableByName)]
struct PgPlanRow {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    plan: String,
}

/// Calls every RPC that reads, so the profiler holds every query shape.
async fn exercise_every_query(app: &TestApp) {
    let user = app.user().await;
    let course = app.course(true, 2).await;
    let enrollment = app.enroll(user.id, course.id).await;
    app.complete_lesson(enrollment.id, course.lessons[0]).await;
    let mut c = app.client();
    c.get_user(pb::GetUserRequest { id: user.id })
        .await
        .unwrap();
    c.get_user_by_email(pb::GetUserByEmailRequest {
        email: user.email.clone(),
    })
    .await
    .unwrap();
    let first = c
        .list_enrollments(pb::ListEnrollmentsRequest {
            user_id: user.id,
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    c.list_enrollments(pb::ListEnrollmentsRequest {
        user_id: user.id,
        status: pb::EnrollmentStatus::Active as i32,
        page_size: 1,
        page_token: first.next_page_token.clone(),
    })
    .await
    .unwrap();
    c.batch_get_enrollment_state(pb::BatchGetEnrollmentStateRequest {
        user_id: user.id,
        course_ids: vec![course.id, 5],
    })
    .await
    .unwrap();
    c.get_progress(pb::GetProgressRequest {
        enrollment_id: enrollment.id,
    })
    .await
    .unwrap();
    for _ in 0..2 {
        c.submit_exercise(pb::SubmitExerciseRequest {
            user_id: user.id,
            exercise_id: course.exercises[0],
            code: "print(1)".into(),
            passed: true,
            score: 80,
        })
        .await
        .unwrap();
    }
    for exercise_id in [0, course.exercises[0]] {
        let page = c
            .list_submissions(pb::ListSubmissionsRequest {
                user_id: user.id,
                exercise_id,
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        c.list_submissions(pb::ListSubmissionsRequest {
            user_id: user.id,
            exercise_id,
            page_size: 1,
            page_token: page.next_page_token,
        })
        .await
        .unwrap();
    }
    c.update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
        id: enrollment.id,
        status: pb::EnrollmentStatus::Dropped as i32,
    })
    .await
    .unwrap();
    let now = learnhub_kit::time::now();
    c.enrollment_stats(pb::EnrollmentStatsRequest {
        from: Some(learnhub_kit::time::to_timestamp(
            now - chrono::Duration::days(300),
        )),
        to: Some(learnhub_kit::time::to_timestamp(
            now + chrono::Duration::days(1),
        )),
    })
    .await
    .unwrap();
}

async fn hot_queries_use_indexes_and_every_index_is_used(backend: Backend) {
    let app = spawn_app(backend).await;
    exercise_every_query(&app).await;
    let statements: Vec<String> = app
        .db
        .profiler()
        .statements()
        .into_keys()
        .filter(|sql| sql.starts_with("SELECT") || sql.starts_with("UPDATE"))
        .collect();
    assert!(statements.len() >= 12, "{statements:#?}");

    let mut used = BTreeSet::new();
    let mut conn = app.db.conn().await.unwrap();
    for sql in &statements {
        let indexes = match &mut conn {
            DbConn::Sqlite(conn) => {
                let plan: Vec<SqlitePlanRow> =
                    diesel::sql_query(format!("EXPLAIN QUERY PLAN {sql}"))
                        .load(&mut **conn)
                        .await
                        .unwrap();
                let lines: Vec<String> = plan.into_iter().map(|row| row.detail).collect();
                sqlite_indexes(sql, &lines)
            }
            DbConn::Postgres(conn) => {
                let params = (1..=99)
                    .take_while(|n| sql.contains(&format!("${n}")))
                    .count();
                let nulls = vec!["NULL"; params].join(", ");
                conn.batch_execute(&format!(
                    "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; \
                     DEALLOCATE ALL; PREPARE explained AS {sql}"
                ))
                .await
                .unwrap_or_else(|err| panic!("PREPARE {sql}: {err}"));
                let plan: Vec<PgPlanRow> =
                    diesel::sql_query(format!("EXPLAIN (FORMAT JSON) EXECUTE explained({nulls})"))
                        .load(&mut **conn)
                        .await
                        .unwrap();
                let json: serde_json::Value = serde_json::from_str(&plan[0].plan).unwrap();
                let mut indexes = Vec::new();
                pg_indexes(sql, &json[0]["Plan"], &mut indexes);
                indexes
            }
        };
        assert!(
            !indexes.is_empty() || !touches_a_table(sql),
            "no index serves {sql}"
        );
        used.extend(indexes);
    }
    let created: BTreeSet<String> = INDEX_MIGRATION
        .lines()
        .filter_map(|line| line.strip_prefix("CREATE INDEX "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert_eq!(created.len(), 8);
    let unused: Vec<_> = created.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "indexes no query uses: {unused:?} (used: {used:?}, backend {:?})",
        app.backend
    );
}

fn touches_a_table(sql: &str) -> bool {
    sql.contains(" FROM ") || sql.starts_with("UPDATE")
}

/// The indexes a SQLite plan uses; panics on a full scan of a table.
fn sqlite_indexes(sql: &str, plan: &[String]) -> Vec<String> {
    let mut indexes = Vec::new();
    for line in plan {
        if let Some(rest) = line.strip_prefix("SCAN ") {
            let table = rest.split_whitespace().next().unwrap_or_default();
            assert!(
                !TABLES.contains(&table),
                "full scan `{line}` in {sql}\nplan: {plan:#?}"
            );
        }
        if let Some(at) = line.find(" INDEX ") {
            let name = line[at + 7..].split_whitespace().next().unwrap_or_default();
            indexes.push(name.to_owned());
        }
        if line.contains("USING INTEGER PRIMARY KEY") {
            indexes.push("primary key".to_owned());
        }
    }
    indexes
}

/// The indexes a Postgres plan uses; panics on a sequential scan or an index scanned whole.
fn pg_indexes(sql: &str, node: &serde_json::Value, indexes: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    assert_ne!(kind, "Seq Scan", "sequential scan in {sql}\nplan: {node:#}");
    if let Some(name) = node["Index Name"].as_str() {
        assert!(
            node.get("Index Cond").is_some(),
            "{kind} of all of {name} in {sql}\nplan: {node:#}"
        );
        indexes.push(name.to_owned());
    }
    if let Some(children) = node["Plans"].as_array() {
        for child in children {
            pg_indexes(sql, child, indexes);
        }
    }
}
