//! Enroll (idempotent, published courses only, under concurrency), listing with pagination and
//! status filter, batch state for the catalog page, status transitions, dependency failures.
use learnhub_db::{Backend, Db, db_run};
use learnhub_proto::enrollment::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{assert_status, spawn_app, spawn_app_with},
    on_both_backends,
};

on_both_backends!(
    enroll_is_idempotent,
    fifty_concurrent_enrolls_leave_one_row,
    enroll_checks_user_and_course,
    enroll_is_unavailable_when_the_catalog_is_down,
    enroll_is_unavailable_when_the_catalog_hangs,
    list_enrollments_pages_newest_first_and_filters,
    batch_state_answers_in_request_order_with_counts,
    only_legal_transitions,
    get_enrollment_by_id,
);

async fn enrollment_rows(db: &Db, user_id: i64, course_id: i64) -> i64 {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use enrollment_svc::schema::enrollments;
    let mut pooled = db.conn().await.unwrap();
    let conn = &mut pooled;
    db_run!(conn => enrollments::table
        .filter(enrollments::user_id.eq(user_id))
        .filter(enrollments::course_id.eq(course_id))
        .count()
        .get_result::<i64>(conn)
        .await)
    .unwrap()
}

fn list(
    user_id: i64,
    status: pb::EnrollmentStatus,
    page_size: i32,
    page_token: &str,
) -> pb::ListEnrollmentsRequest {
    pb::ListEnrollmentsRequest {
        user_id,
        status: status as i32,
        page_size,
        page_token: page_token.into(),
    }
}

async fn enroll_is_idempotent(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 2).await;
    let user = app.user().await;
    let mut c = app.client();

    // Read, write, read: the listing shows the write at once (what a cache must keep true).
    let before = c
        .list_enrollments(list(user.id, pb::EnrollmentStatus::Unspecified, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(before.enrollments.is_empty());

    let first = app.enroll(user.id, course.id).await;
    assert_eq!(first.user_id, user.id);
    assert_eq!(first.course_id, course.id);
    assert_eq!(first.status, pb::EnrollmentStatus::Active as i32);
    assert!(first.enrolled_at.is_some());
    assert!(first.completed_at.is_none());
    let second = app.enroll(user.id, course.id).await;
    assert_eq!(
        second, first,
        "enrolling twice returns the first enrollment"
    );
    assert_eq!(enrollment_rows(&app.db, user.id, course.id).await, 1);

    let after = c
        .list_enrollments(list(user.id, pb::EnrollmentStatus::Unspecified, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.enrollments, vec![first]);

    // Already enrolled: returned as it is, even after the course is archived.
    let mut catalog = app.catalog.client.clone();
    catalog
        .archive_course(learnhub_proto::catalog::v1::ArchiveCourseRequest { id: course.id })
        .await
        .unwrap();
    assert_eq!(app.enroll(user.id, course.id).await, first);
}

async fn fifty_concurrent_enrolls_leave_one_row(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 1).await;
    let user = app.user().await;
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let mut c = app.client();
            tokio::spawn(async move {
                c.enroll(pb::EnrollRequest {
                    user_id: user.id,
                    course_id: course.id,
                })
                .await
            })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for call in calls {
        let enrollment = call
            .await
            .unwrap()
            .expect("every concurrent Enroll succeeds")
            .into_inner();
        ids.insert(enrollment.id);
    }
    assert_eq!(ids.len(), 1, "all 50 calls return the same enrollment");
    assert_eq!(enrollment_rows(&app.db, user.id, course.id).await, 1);
}

async fn enroll_checks_user_and_course(backend: Backend) {
    let app = spawn_app(backend).await;
    let published = app.course(true, 1).await;
    let draft = app.course(false, 1).await;
    let user = app.user().await;
    let mut c = app.client();
    assert_status(
        c.enroll(pb::EnrollRequest {
            user_id: 9_999,
            course_id: published.id,
        })
        .await,
        Code::NotFound,
        "user 9999",
    );
    assert_status(
        c.enroll(pb::EnrollRequest {
            user_id: user.id,
            course_id: 9_999,
        })
        .await,
        Code::NotFound,
        "course 9999",
    );
    assert_status(
        c.enroll(pb::EnrollRequest {
            user_id: user.id,
            course_id: draft.id,
        })
        .await,
        Code::FailedPrecondition,
        "course_id",
    );
    assert_status(
        c.enroll(pb::EnrollRequest {
            user_id: 0,
            course_id: published.id,
        })
        .await,
        Code::InvalidArgument,
        "user_id",
    );
    assert_status(
        c.enroll(pb::EnrollRequest {
            user_id: user.id,
            course_id: -1,
        })
        .await,
        Code::InvalidArgument,
        "course_id",
    );
    // No partial writes from the refusals.
    let page = c
        .list_enrollments(list(user.id, pb::EnrollmentStatus::Unspecified, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(page.enrollments.is_empty());
}

async fn enroll_is_unavailable_when_the_catalog_is_down(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let course = app.course(true, 1).await;
    let user = app.user().await;
    let enrolled = app.enroll(user.id, course.id).await;
    app.catalog.stop().await;
    let other = 777;
    let mut c = app.client();
    assert_status(
        c.enroll(pb::EnrollRequest {
            user_id: user.id,
            course_id: other,
        })
        .await,
        Code::Unavailable,
        "catalog-svc",
    );
    // What needs no catalog still works, including the idempotent repeat.
    assert_eq!(app.enroll(user.id, course.id).await, enrolled);
    assert_status(
        c.get_progress(pb::GetProgressRequest {
            enrollment_id: enrolled.id,
        })
        .await,
        Code::Unavailable,
        "catalog-svc",
    );
}

async fn enroll_is_unavailable_when_the_catalog_hangs(backend: Backend) {
    // A listener that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", silent.local_addr().unwrap());
    let app = spawn_app_with(backend, |config| {
        config.catalog_addr = addr;
        config.catalog_timeout_ms = 300;
    })
    .await;
    let user = app.user().await;
    assert_status(
        app.client()
            .enroll(pb::EnrollRequest {
                user_id: user.id,
                course_id: 1,
            })
            .await,
        Code::Unavailable,
        "catalog-svc",
    );
    drop(silent);
}

async fn list_enrollments_pages_newest_first_and_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user().await;
    let other = app.user().await;
    let mut enrolled = Vec::new();
    for _ in 0..5 {
        let course = app.course(true, 1).await;
        enrolled.push(app.enroll(user.id, course.id).await);
        app.enroll(other.id, course.id).await;
    }
    let mut c = app.client();
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_enrollments(list(user.id, pb::EnrollmentStatus::Unspecified, 2, &token))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.enrollments.len() <= 2);
        seen.extend(page.enrollments);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    let newest_first: Vec<_> = enrolled.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    c.update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
        id: enrolled[1].id,
        status: pb::EnrollmentStatus::Dropped as i32,
    })
    .await
    .unwrap();
    let dropped = c
        .list_enrollments(list(user.id, pb::EnrollmentStatus::Dropped, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        dropped.enrollments.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![enrolled[1].id]
    );
    assert!(dropped.next_page_token.is_empty());
    let active = c
        .list_enrollments(list(user.id, pb::EnrollmentStatus::Active, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(active.enrollments.len(), 4);
    assert!(active.enrollments.iter().all(|e| e.user_id == user.id));

    let nobody = c
        .list_enrollments(list(9_999, pb::EnrollmentStatus::Unspecified, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(nobody.enrollments.is_empty());

    for (request, field) in [
        (
            list(user.id, pb::EnrollmentStatus::Unspecified, 101, ""),
            "page_size",
        ),
        (
            list(user.id, pb::EnrollmentStatus::Unspecified, -1, ""),
            "page_size",
        ),
        (
            list(user.id, pb::EnrollmentStatus::Unspecified, 0, "garbage"),
            "page_token",
        ),
        (list(0, pb::EnrollmentStatus::Unspecified, 0, ""), "user_id"),
        (
            pb::ListEnrollmentsRequest {
                user_id: user.id,
                status: 9,
                ..Default::default()
            },
            "status",
        ),
    ] {
        assert_status(
            c.list_enrollments(request).await,
            Code::InvalidArgument,
            field,
        );
    }
}

async fn batch_state_answers_in_request_order_with_counts(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user().await;
    let mut courses = Vec::new();
    for _ in 0..5 {
        courses.push(app.course(true, 3).await);
    }
    // Enrolled in courses 0, 2 and 4; two lessons done in course 2, one (then undone) in 4.
    let e0 = app.enroll(user.id, courses[0].id).await;
    let e2 = app.enroll(user.id, courses[2].id).await;
    let e4 = app.enroll(user.id, courses[4].id).await;
    app.complete_lesson(e2.id, courses[2].lessons[0]).await;
    app.complete_lesson(e2.id, courses[2].lessons[1]).await;
    app.complete_lesson(e4.id, courses[4].lessons[2]).await;
    app.client()
        .record_lesson_progress(pb::RecordLessonProgressRequest {
            enrollment_id: e4.id,
            lesson_id: courses[4].lessons[2],
            completed: false,
        })
        .await
        .unwrap();

    let ids = vec![
        courses[4].id,
        courses[1].id,
        courses[0].id,
        courses[2].id,
        courses[4].id,
        9_999,
    ];
    let states = app
        .client()
        .batch_get_enrollment_state(pb::BatchGetEnrollmentStateRequest {
            user_id: user.id,
            course_ids: ids,
        })
        .await
        .unwrap()
        .into_inner()
        .states;
    let got: Vec<(i64, i64)> = states
        .iter()
        .map(|s| (s.enrollment.as_ref().unwrap().id, s.completed_lessons))
        .collect();
    assert_eq!(got, vec![(e4.id, 0), (e0.id, 0), (e2.id, 2)]);

    let empty = app
        .client()
        .batch_get_enrollment_state(pb::BatchGetEnrollmentStateRequest {
            user_id: user.id,
            course_ids: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert!(empty.states.is_empty());
    assert_status(
        app.client()
            .batch_get_enrollment_state(pb::BatchGetEnrollmentStateRequest {
                user_id: user.id,
                course_ids: (1..=1_001).collect(),
            })
            .await,
        Code::InvalidArgument,
        "course_ids",
    );
    assert_status(
        app.client()
            .batch_get_enrollment_state(pb::BatchGetEnrollmentStateRequest {
                user_id: user.id,
                course_ids: vec![3, 0],
            })
            .await,
        Code::InvalidArgument,
        "course_ids",
    );
}

async fn only_legal_transitions(backend: Backend) {
    use pb::EnrollmentStatus::{Active, Completed, Dropped, Unspecified};
    let app = spawn_app(backend).await;
    let course = app.course(true, 2).await;
    let user = app.user().await;
    let enrollment = app.enroll(user.id, course.id).await;
    let mut c = app.client();
    let to = |status: pb::EnrollmentStatus| {
        let mut c = c.clone();
        async move {
            c.update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
                id: enrollment.id,
                status: status as i32,
            })
            .await
            .map(|r| r.into_inner())
        }
    };
    assert_status(to(Active).await, Code::FailedPrecondition, "status");
    let dropped = to(Dropped).await.unwrap();
    assert_eq!(dropped.status, Dropped as i32);
    assert!(dropped.completed_at.is_none());
    assert_status(to(Dropped).await, Code::FailedPrecondition, "status");
    assert_status(to(Completed).await, Code::FailedPrecondition, "dropped");
    let active = to(Active).await.unwrap();
    assert_eq!(active.status, Active as i32);
    let completed = to(Completed).await.unwrap();
    assert_eq!(completed.status, Completed as i32);
    assert!(completed.completed_at.is_some());
    for status in [Active, Dropped, Completed] {
        assert_status(to(status).await, Code::FailedPrecondition, "completed");
    }
    assert_status(to(Unspecified).await, Code::InvalidArgument, "status");
    assert_status(
        c.update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
            id: enrollment.id,
            status: 42,
        })
        .await,
        Code::InvalidArgument,
        "status",
    );
    assert_status(
        c.update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
            id: 9_999,
            status: Dropped as i32,
        })
        .await,
        Code::NotFound,
        "enrollment 9999",
    );
    assert_status(
        c.update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
            id: 0,
            status: Dropped as i32,
        })
        .await,
        Code::InvalidArgument,
        "id",
    );
    let stored = c
        .get_enrollment(pb::GetEnrollmentRequest { id: enrollment.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored, completed);
}

async fn get_enrollment_by_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 1).await;
    let user = app.user().await;
    let enrollment = app.enroll(user.id, course.id).await;
    let mut c = app.client();
    let found = c
        .get_enrollment(pb::GetEnrollmentRequest { id: enrollment.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found, enrollment);
    assert_status(
        c.get_enrollment(pb::GetEnrollmentRequest { id: 9_999 })
            .await,
        Code::NotFound,
        "enrollment 9999",
    );
    assert_status(
        c.get_enrollment(pb::GetEnrollmentRequest { id: 0 }).await,
        Code::InvalidArgument,
        "id",
    );
}
