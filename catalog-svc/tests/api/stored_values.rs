//! Typed columns: a course type, level or status no variant names (written by a newer release or
//! by hand, past the CHECK constraints) fails the read as INTERNAL, with the cause logged and not
//! shown; it never comes back as UNSPECIFIED.
use diesel_async::SimpleAsyncConnection;
use learnhub_db::{Backend, Db, db_run};
use learnhub_proto::catalog::v1 as pb;
use tonic::Code;

use crate::{helpers::spawn_app, on_both_backends};

on_both_backends!(unknown_stored_enum_values_are_internal_errors_not_unspecified);

/// Runs `updates` with the table's CHECK constraints out of the way.
async fn write_unchecked(db: &Db, backend: Backend, updates: &[&str]) {
    let sql = match backend {
        Backend::Postgres => format!(
            "ALTER TABLE courses DROP CONSTRAINT courses_status_check, \
             DROP CONSTRAINT courses_course_type_check, DROP CONSTRAINT courses_level_check; {}",
            updates.join("; ")
        ),
        // A per-connection switch: turned off again before the connection goes back to the pool.
        Backend::Sqlite => format!(
            "PRAGMA ignore_check_constraints = ON; {}; PRAGMA ignore_check_constraints = OFF",
            updates.join("; ")
        ),
    };
    let mut conn = db.conn().await.unwrap();
    let conn = &mut conn;
    db_run!(conn => conn.batch_execute(&sql).await).unwrap_or_else(|err| panic!("{sql}: {err}"));
}

fn by_id(id: i64) -> pb::GetCourseRequest {
    pb::GetCourseRequest {
        key: Some(pb::get_course_request::Key::Id(id)),
    }
}

fn assert_internal<T: std::fmt::Debug>(result: Result<tonic::Response<T>, tonic::Status>) {
    let status = result.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(
        status.message(),
        "internal error",
        "the cause is logged, not shown"
    );
}

async fn unknown_stored_enum_values_are_internal_errors_not_unspecified(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(4).await;
    write_unchecked(
        &app.db,
        backend,
        &[
            "UPDATE courses SET status = 'retired' WHERE id = 1",
            "UPDATE courses SET course_type = 'ruby' WHERE id = 2",
            "UPDATE courses SET level = 'expert' WHERE id = 3",
        ],
    )
    .await;
    let mut client = app.client.clone();

    for id in [1, 2, 3] {
        assert_internal(client.get_course(by_id(id)).await);
        assert_internal(
            client
                .batch_get_courses(pb::BatchGetCoursesRequest { ids: vec![id] })
                .await,
        );
    }
    assert_internal(client.list_courses(pb::ListCoursesRequest::default()).await);

    // The rows that hold known values still read whole.
    let intact = client
        .get_course(by_id(4))
        .await
        .unwrap()
        .into_inner()
        .course
        .unwrap();
    assert_ne!(intact.course_type, pb::CourseType::Unspecified as i32);
    assert_ne!(intact.level, pb::CourseLevel::Unspecified as i32);
    assert_ne!(intact.status, pb::CourseStatus::Unspecified as i32);
}
