//! Query budgets: each read RPC runs a fixed number of SQL statements whatever the data size,
//! so an N+1 regression fails here.
use learnhub_db::Backend;
use learnhub_proto::enrollment::v1 as pb;

use crate::{helpers::spawn_app, on_both_backends};

on_both_backends!(read_rpcs_stay_within_their_statement_budgets);

async fn read_rpcs_stay_within_their_statement_budgets(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.user().await;
    let mut courses = Vec::new();
    for _ in 0..12 {
        courses.push(app.course(true, 3).await);
    }
    let mut enrollments = Vec::new();
    for course in &courses {
        let enrollment = app.enroll(user.id, course.id).await;
        app.complete_lesson(enrollment.id, course.lessons[0]).await;
        app.complete_lesson(enrollment.id, course.lessons[1]).await;
        enrollments.push(enrollment);
    }
    for n in 0..5 {
        app.client()
            .submit_exercise(pb::SubmitExerciseRequest {
                user_id: user.id,
                exercise_id: courses[n % 2].exercises[0],
                code: "print(1)".into(),
                passed: true,
                score: 90,
            })
            .await
            .unwrap();
    }
    let mut c = app.client();

    let (found, statements) = app
        .statements(c.get_user_by_email(pb::GetUserByEmailRequest {
            email: user.email.to_uppercase(),
        }))
        .await;
    assert_eq!(found.unwrap().into_inner().id, user.id);
    assert_eq!(statements, 1, "GetUserByEmail");

    let mut token = String::new();
    for page_size in [5, 5, 5] {
        let (page, statements) = app
            .statements(c.list_enrollments(pb::ListEnrollmentsRequest {
                user_id: user.id,
                page_size,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await;
        token = page.unwrap().into_inner().next_page_token;
        assert_eq!(statements, 1, "ListEnrollments, one statement per page");
    }
    assert!(token.is_empty(), "12 enrollments in three pages of 5");
    let (_, statements) = app
        .statements(c.list_enrollments(pb::ListEnrollmentsRequest {
            user_id: user.id,
            status: pb::EnrollmentStatus::Active as i32,
            ..Default::default()
        }))
        .await;
    assert_eq!(statements, 1, "ListEnrollments with a status");

    let (progress, statements) = app
        .statements(c.get_progress(pb::GetProgressRequest {
            enrollment_id: enrollments[3].id,
        }))
        .await;
    assert_eq!(progress.unwrap().into_inner().completed_lessons, 2);
    assert!(statements <= 2, "GetProgress ran {statements} statements");

    for n in [1, 5, 12] {
        let course_ids: Vec<i64> = courses
            .iter()
            .take(n)
            .map(|c| c.id)
            .chain([99_999])
            .collect();
        let (states, statements) = app
            .statements(
                c.batch_get_enrollment_state(pb::BatchGetEnrollmentStateRequest {
                    user_id: user.id,
                    course_ids,
                }),
            )
            .await;
        let states = states.unwrap().into_inner().states;
        assert_eq!(states.len(), n);
        assert!(states.iter().all(|s| s.completed_lessons == 2));
        assert!(
            statements <= 2,
            "BatchGetEnrollmentState for {n} courses ran {statements} statements"
        );
    }

    let (page, statements) = app
        .statements(c.list_submissions(pb::ListSubmissionsRequest {
            user_id: user.id,
            page_size: 2,
            ..Default::default()
        }))
        .await;
    assert_eq!(page.unwrap().into_inner().submissions.len(), 2);
    assert_eq!(statements, 1, "ListSubmissions");

    let (_, statements) = app
        .statements(c.get_enrollment(pb::GetEnrollmentRequest {
            id: enrollments[0].id,
        }))
        .await;
    assert_eq!(statements, 1, "GetEnrollment");

    let now = learnhub_kit::time::now();
    let (_, statements) = app
        .statements(c.enrollment_stats(pb::EnrollmentStatsRequest {
            from: Some(learnhub_kit::time::to_timestamp(
                now - chrono::Duration::days(30),
            )),
            to: Some(learnhub_kit::time::to_timestamp(
                now + chrono::Duration::days(1),
            )),
        }))
        .await;
    assert_eq!(statements, 3, "EnrollmentStats");

    // The idempotent repeat of Enroll is one read.
    let (_, statements) = app
        .statements(c.enroll(pb::EnrollRequest {
            user_id: user.id,
            course_id: courses[0].id,
        }))
        .await;
    assert_eq!(statements, 1, "repeated Enroll");
}
