//! Roles and statuses read back from the tables: a text the service does not know (written
//! behind its back) makes the read INTERNAL, never an answer with UNSPECIFIED in it, and the
//! stored text is not shown to the caller.
use diesel_async::SimpleAsyncConnection;
use learnhub_db::{Backend, Db, db_run};
use learnhub_proto::enrollment::v1 as pb;
use tonic::{Code, Status};

use crate::{
    helpers::{assert_status, spawn_app},
    on_both_backends,
};

on_both_backends!(
    an_unknown_stored_role_is_internal,
    an_unknown_stored_status_is_internal,
);

/// Sets `column` of row `id` to `text` past the CHECK constraint that keeps such values out:
/// dropped on Postgres, ignored for the one statement on SQLite.
async fn write_unknown(db: &Db, table: &str, column: &str, id: i64, text: &str) {
    let update = format!("UPDATE {table} SET {column} = '{text}' WHERE id = {id}");
    let sql = match db.backend() {
        Backend::Postgres => {
            format!("ALTER TABLE {table} DROP CONSTRAINT {table}_{column}_check; {update}")
        }
        Backend::Sqlite => format!(
            "PRAGMA ignore_check_constraints = ON; {update}; PRAGMA ignore_check_constraints = OFF"
        ),
    };
    let mut pooled = db.conn().await.unwrap();
    let conn = &mut pooled;
    db_run!(conn => conn.batch_execute(&sql).await).unwrap();
}

fn assert_internal<T: std::fmt::Debug>(result: Result<T, Status>, stored: &str) {
    if let Err(status) = &result {
        assert!(
            !status.message().contains(stored),
            "the stored value is not shown: {status:?}"
        );
    }
    assert_status(result, Code::Internal, "internal error");
}

async fn an_unknown_stored_role_is_internal(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user().await;
    let mut c = app.client();
    write_unknown(&app.db, "users", "role", user.id, "superuser").await;

    assert_internal(
        c.get_user(pb::GetUserRequest { id: user.id }).await,
        "superuser",
    );
    assert_internal(
        c.get_user_by_email(pb::GetUserByEmailRequest {
            email: user.email.clone(),
        })
        .await,
        "superuser",
    );
    // Other learners read as before.
    let other = app.user().await;
    let read = c
        .get_user(pb::GetUserRequest { id: other.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.role, pb::Role::Learner as i32);
}

async fn an_unknown_stored_status_is_internal(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 2).await;
    let user = app.user().await;
    let enrollment = app.enroll(user.id, course.id).await;
    let mut c = app.client();
    write_unknown(&app.db, "enrollments", "status", enrollment.id, "paused").await;

    assert_internal(
        c.get_enrollment(pb::GetEnrollmentRequest { id: enrollment.id })
            .await,
        "paused",
    );
    assert_internal(
        c.list_enrollments(pb::ListEnrollmentsRequest {
            user_id: user.id,
            ..Default::default()
        })
        .await,
        "paused",
    );
    assert_internal(
        c.batch_get_enrollment_state(pb::BatchGetEnrollmentStateRequest {
            user_id: user.id,
            course_ids: vec![course.id],
        })
        .await,
        "paused",
    );
    assert_internal(
        c.get_progress(pb::GetProgressRequest {
            enrollment_id: enrollment.id,
        })
        .await,
        "paused",
    );
    // Enroll finds the existing row and cannot say what it is either.
    assert_internal(
        c.enroll(pb::EnrollRequest {
            user_id: user.id,
            course_id: course.id,
        })
        .await,
        "paused",
    );
}
