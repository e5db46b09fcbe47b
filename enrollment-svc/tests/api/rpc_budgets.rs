//! Query budgets, as exact statement counts, for every enrollment RPC `budgets.rs` leaves out or
//! bounds only from above: the writes (a transaction's BEGIN and COMMIT count as statements),
//! first enrollments, progress and enrollment-state reads, and the refusals.
use learnhub_db::Backend;
use learnhub_proto::{
    common::v1::{GetDbStatsRequest, ResetDbStatsRequest},
    enrollment::v1 as pb,
};
use tonic::Code;

use crate::{helpers::spawn_app, on_both_backends};

on_both_backends!(every_rpc_has_an_exact_budget);

/// Runs `$call`, asserts it ran exactly `$budget` statements, and gives its result.
macro_rules! costs {
    ($app:expr, $budget:expr, $what:expr, $call:expr) => {{
        let (result, statements) = $app.statements($call).await;
        assert_eq!(statements, $budget, "{}", $what);
        result
    }};
}

async fn every_rpc_has_an_exact_budget(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 3).await;
    let draft = app.course(false, 1).await;
    let mut c = app.client();

    let user = costs!(
        app,
        1,
        "CreateUser: INSERT … RETURNING",
        c.create_user(pb::CreateUserRequest {
            email: "budget@example.com".into(),
            display_name: "Budget".into(),
            role: pb::Role::Unspecified as i32,
        })
    )
    .unwrap()
    .into_inner();
    let taken = costs!(
        app,
        1,
        "CreateUser with a taken email: the refused INSERT",
        c.create_user(pb::CreateUserRequest {
            email: "BUDGET@example.com".into(),
            display_name: "Again".into(),
            role: pb::Role::Unspecified as i32,
        })
    );
    assert_eq!(taken.unwrap_err().code(), Code::AlreadyExists);
    costs!(
        app,
        1,
        "GetUser",
        c.get_user(pb::GetUserRequest { id: user.id })
    )
    .unwrap();
    let missing = costs!(
        app,
        1,
        "GetUser of an unknown id",
        c.get_user(pb::GetUserRequest { id: 999_999 })
    );
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);

    let enrollment = costs!(
        app,
        3,
        "Enroll, first time: existing? + INSERT … ON CONFLICT DO NOTHING + read back \
         (the course check is a catalog-svc call, not SQL)",
        c.enroll(pb::EnrollRequest {
            user_id: user.id,
            course_id: course.id,
        })
    )
    .unwrap()
    .into_inner();
    let unpublished = costs!(
        app,
        1,
        "Enroll in a draft: existing? then the catalog refuses",
        c.enroll(pb::EnrollRequest {
            user_id: user.id,
            course_id: draft.id,
        })
    );
    assert_eq!(unpublished.unwrap_err().code(), Code::FailedPrecondition);

    costs!(
        app,
        6,
        "RecordLessonProgress: enrollment read + BEGIN + UPDATE enrollment + upsert progress + \
         progress rows + COMMIT",
        c.record_lesson_progress(pb::RecordLessonProgressRequest {
            enrollment_id: enrollment.id,
            lesson_id: course.lessons[0],
            completed: true,
        })
    )
    .unwrap();
    costs!(
        app,
        6,
        "RecordLessonProgress again (idempotent): the same statements",
        c.record_lesson_progress(pb::RecordLessonProgressRequest {
            enrollment_id: enrollment.id,
            lesson_id: course.lessons[0],
            completed: true,
        })
    )
    .unwrap();
    costs!(
        app,
        6,
        "RecordLessonProgress, second lesson",
        c.record_lesson_progress(pb::RecordLessonProgressRequest {
            enrollment_id: enrollment.id,
            lesson_id: course.lessons[1],
            completed: true,
        })
    )
    .unwrap();
    let completed = costs!(
        app,
        7,
        "RecordLessonProgress of the last lesson: + UPDATE completing the enrollment",
        c.record_lesson_progress(pb::RecordLessonProgressRequest {
            enrollment_id: enrollment.id,
            lesson_id: course.lessons[2],
            completed: true,
        })
    )
    .unwrap()
    .into_inner();
    assert_eq!(
        completed.enrollment.unwrap().status,
        pb::EnrollmentStatus::Completed as i32
    );
    let foreign = costs!(
        app,
        1,
        "RecordLessonProgress of another course's lesson: the enrollment read only",
        c.record_lesson_progress(pb::RecordLessonProgressRequest {
            enrollment_id: enrollment.id,
            lesson_id: draft.lessons[0],
            completed: true,
        })
    );
    assert_eq!(foreign.unwrap_err().code(), Code::FailedPrecondition);

    let progress = costs!(
        app,
        2,
        "GetProgress: enrollment + its progress rows",
        c.get_progress(pb::GetProgressRequest {
            enrollment_id: enrollment.id,
        })
    )
    .unwrap()
    .into_inner();
    assert_eq!(progress.completed_lessons, 3);
    let states = costs!(
        app,
        2,
        "BatchGetEnrollmentState: enrollments + completed counts",
        c.batch_get_enrollment_state(pb::BatchGetEnrollmentStateRequest {
            user_id: user.id,
            course_ids: vec![course.id, draft.id, 99_999],
        })
    )
    .unwrap()
    .into_inner();
    assert_eq!(states.states.len(), 1);
    assert_eq!(states.states[0].completed_lessons, 3);

    let refused = costs!(
        app,
        2,
        "UpdateEnrollmentStatus completed -> dropped, refused: the UPDATE that matched nothing + \
         the read that says why",
        c.update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
            id: enrollment.id,
            status: pb::EnrollmentStatus::Dropped as i32,
        })
    );
    assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);
    let second = app.enroll(user.id, app.course(true, 1).await.id).await;
    costs!(
        app,
        1,
        "UpdateEnrollmentStatus active -> dropped: one conditional UPDATE",
        c.update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
            id: second.id,
            status: pb::EnrollmentStatus::Dropped as i32,
        })
    )
    .unwrap();
    let refused = costs!(
        app,
        2,
        "UpdateEnrollmentStatus dropped -> completed, refused",
        c.update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
            id: second.id,
            status: pb::EnrollmentStatus::Completed as i32,
        })
    );
    assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);

    costs!(
        app,
        1,
        "SubmitExercise: INSERT … RETURNING (the exercise check is a catalog-svc call)",
        c.submit_exercise(pb::SubmitExerciseRequest {
            user_id: user.id,
            exercise_id: course.exercises[0],
            code: "print(1)".into(),
            passed: true,
            score: 90,
        })
    )
    .unwrap();
    let unknown = costs!(
        app,
        1,
        "SubmitExercise by an unknown user: the refused INSERT",
        c.submit_exercise(pb::SubmitExerciseRequest {
            user_id: 999_999,
            exercise_id: course.exercises[0],
            code: "print(1)".into(),
            passed: true,
            score: 90,
        })
    );
    assert_eq!(unknown.unwrap_err().code(), Code::NotFound);
    let invalid = costs!(
        app,
        0,
        "SubmitExercise refused by validation",
        c.submit_exercise(pb::SubmitExerciseRequest {
            user_id: user.id,
            exercise_id: course.exercises[0],
            code: "print(1)".into(),
            passed: true,
            score: 101,
        })
    );
    assert_eq!(invalid.unwrap_err().code(), Code::InvalidArgument);

    costs!(
        app,
        0,
        "GetDbStats reads the profiler, not the database",
        c.get_db_stats(GetDbStatsRequest {})
    )
    .unwrap();
    assert_eq!(
        app.db.profiler().n_plus_one_count(),
        0,
        "no RPC repeats a statement 5 times"
    );
    c.reset_db_stats(ResetDbStatsRequest {}).await.unwrap();
    assert_eq!(app.db.profiler().statement_count(), 0, "ResetDbStats");
}
