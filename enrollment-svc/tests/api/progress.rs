//! Lesson progress: idempotent per lesson, un-completing, completion of the enrollment (also
//! when the last lessons are completed concurrently), lessons of other courses, GetProgress.
use learnhub_db::Backend;
use learnhub_proto::enrollment::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{assert_status, spawn_app},
    on_both_backends,
};

on_both_backends!(
    progress_is_idempotent_and_completing_every_lesson_completes,
    concurrent_last_lessons_still_complete_the_enrollment,
    progress_refuses_foreign_unknown_and_dropped,
);

fn record(enrollment_id: i64, lesson_id: i64, completed: bool) -> pb::RecordLessonProgressRequest {
    pb::RecordLessonProgressRequest {
        enrollment_id,
        lesson_id,
        completed,
    }
}

async fn progress_is_idempotent_and_completing_every_lesson_completes(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 3).await;
    let user = app.user().await;
    let enrollment = app.enroll(user.id, course.id).await;
    let mut c = app.client();
    let get = |c: &mut crate::helpers::Client| {
        let mut c = c.clone();
        async move {
            c.get_progress(pb::GetProgressRequest {
                enrollment_id: enrollment.id,
            })
            .await
            .unwrap()
            .into_inner()
        }
    };

    let fresh = get(&mut c).await;
    assert_eq!(
        (fresh.completed_lessons, fresh.total_lessons, fresh.percent),
        (0, 3, 0.0)
    );
    assert_eq!(
        fresh
            .lessons
            .iter()
            .map(|l| l.lesson_id)
            .collect::<Vec<_>>(),
        course.lessons
    );
    assert!(
        fresh
            .lessons
            .iter()
            .all(|l| !l.completed && l.completed_at.is_none())
    );

    let once = app.complete_lesson(enrollment.id, course.lessons[0]).await;
    assert_eq!(once.completed_lessons, 1);
    assert!((once.percent - 100.0 / 3.0).abs() < 1e-9);
    let first_at = once.lessons[0].completed_at;
    assert!(first_at.is_some());
    let twice = app.complete_lesson(enrollment.id, course.lessons[0]).await;
    assert_eq!(
        twice.completed_lessons, 1,
        "recording a lesson again changes nothing"
    );
    assert_eq!(
        twice.lessons[0].completed_at, first_at,
        "the first completion time is kept"
    );
    // Read after write: GetProgress sees the write.
    assert_eq!(get(&mut c).await, twice);

    let undone = c
        .record_lesson_progress(record(enrollment.id, course.lessons[0], false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(undone.completed_lessons, 0);
    assert!(!undone.lessons[0].completed);
    assert!(undone.lessons[0].completed_at.is_none());
    // Un-completing a lesson never seen before is recorded as not completed.
    let untouched = c
        .record_lesson_progress(record(enrollment.id, course.lessons[1], false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(untouched.completed_lessons, 0);
    assert_eq!(
        untouched.enrollment.as_ref().unwrap().status,
        pb::EnrollmentStatus::Active as i32
    );

    app.complete_lesson(enrollment.id, course.lessons[2]).await;
    let two = app.complete_lesson(enrollment.id, course.lessons[1]).await;
    assert_eq!(two.completed_lessons, 2);
    assert_eq!(
        two.enrollment.as_ref().unwrap().status,
        pb::EnrollmentStatus::Active as i32
    );
    let all = app.complete_lesson(enrollment.id, course.lessons[0]).await;
    assert_eq!(
        (all.completed_lessons, all.total_lessons, all.percent),
        (3, 3, 100.0)
    );
    let done = all.enrollment.unwrap();
    assert_eq!(done.status, pb::EnrollmentStatus::Completed as i32);
    assert!(done.completed_at.is_some());
    let stored = c
        .get_enrollment(pb::GetEnrollmentRequest { id: enrollment.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored, done);
    assert_eq!(get(&mut c).await, all);

    // Un-completing a lesson later keeps the course completed (the completion happened).
    let after = c
        .record_lesson_progress(record(enrollment.id, course.lessons[1], false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.completed_lessons, 2);
    assert_eq!(
        after.enrollment.unwrap().status,
        pb::EnrollmentStatus::Completed as i32
    );
}

async fn concurrent_last_lessons_still_complete_the_enrollment(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 6).await;
    let user = app.user().await;
    let enrollment = app.enroll(user.id, course.id).await;
    let calls: Vec<_> = course
        .lessons
        .iter()
        .map(|lesson| {
            let mut c = app.client();
            let lesson = *lesson;
            tokio::spawn(async move {
                c.record_lesson_progress(record(enrollment.id, lesson, true))
                    .await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().expect("every lesson is recorded");
    }
    let progress = app
        .client()
        .get_progress(pb::GetProgressRequest {
            enrollment_id: enrollment.id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(progress.completed_lessons, 6);
    assert_eq!(
        progress.enrollment.unwrap().status,
        pb::EnrollmentStatus::Completed as i32,
        "no two transactions may each miss the other's lesson"
    );
}

async fn progress_refuses_foreign_unknown_and_dropped(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 2).await;
    let other = app.course(true, 2).await;
    let user = app.user().await;
    let enrollment = app.enroll(user.id, course.id).await;
    let mut c = app.client();

    let foreign = c
        .record_lesson_progress(record(enrollment.id, other.lessons[0], true))
        .await;
    assert_status(foreign, Code::FailedPrecondition, "lesson_id");
    let foreign = c
        .record_lesson_progress(record(enrollment.id, other.lessons[0], true))
        .await;
    assert_status(
        foreign,
        Code::FailedPrecondition,
        &format!("course {}", other.id),
    );
    assert_status(
        c.record_lesson_progress(record(enrollment.id, 99_999, true))
            .await,
        Code::NotFound,
        "lesson 99999",
    );
    assert_status(
        c.record_lesson_progress(record(9_999, course.lessons[0], true))
            .await,
        Code::NotFound,
        "enrollment 9999",
    );
    assert_status(
        c.record_lesson_progress(record(0, course.lessons[0], true))
            .await,
        Code::InvalidArgument,
        "enrollment_id",
    );
    assert_status(
        c.record_lesson_progress(record(enrollment.id, 0, true))
            .await,
        Code::InvalidArgument,
        "lesson_id",
    );
    assert_status(
        c.get_progress(pb::GetProgressRequest {
            enrollment_id: 9_999,
        })
        .await,
        Code::NotFound,
        "enrollment 9999",
    );
    assert_status(
        c.get_progress(pb::GetProgressRequest { enrollment_id: -1 })
            .await,
        Code::InvalidArgument,
        "enrollment_id",
    );

    c.update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
        id: enrollment.id,
        status: pb::EnrollmentStatus::Dropped as i32,
    })
    .await
    .unwrap();
    assert_status(
        c.record_lesson_progress(record(enrollment.id, course.lessons[0], true))
            .await,
        Code::FailedPrecondition,
        "dropped",
    );
    // None of the refusals wrote anything.
    let progress = c
        .get_progress(pb::GetProgressRequest {
            enrollment_id: enrollment.id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(progress.completed_lessons, 0);
    assert!(progress.lessons.iter().all(|l| !l.completed));
}
