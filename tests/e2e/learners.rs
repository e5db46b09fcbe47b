//! The learner flow through the gateway, over REST and over gRPC: enroll (idempotently, only in
//! published courses) → progress on every lesson → the enrollment completes → the catalog page
//! shows it to that learner only; submissions newest first; the admin views of users and stats.
use learnhub_db::Backend;
use learnhub_proto::{
    catalog::v1::CourseType,
    enrollment::v1::{
        EnrollmentStatsRequest, EnrollmentStatus, GetProgressRequest, RecordLessonProgressRequest,
        Role as UserRole,
    },
    gateway::v1::{
        EnrollRequest, GetCatalogPageRequest, GetMeRequest, GetUserRequest,
        ListMyEnrollmentsRequest, ListMySubmissionsRequest, SubmitExerciseRequest,
        get_user_request::Key as UserKey,
    },
};
use serde_json::{Value, json};
use tonic::Code;

use crate::{
    helpers::{Platform, admin, error_of, spawn_platform, today, with_token},
    on_both_backends,
};

on_both_backends!(learner_flow_over_rest, learner_flow_over_grpc);

/// The catalog page entries (REST) for the first `page_size` published courses.
async fn page_entries(platform: &Platform, token: Option<&str>, page_size: u32) -> Vec<Value> {
    let path = format!("/v1/catalog?page_size={page_size}");
    let page = match token {
        Some(token) => platform.get_json_as(token, &path).await,
        None => platform.get_json(&path).await,
    };
    page["courses"].as_array().unwrap().clone()
}

/// The `YYYY-MM-DD` range `[start, end + 1 day)` the stats of this test fall in, even across
/// midnight.
fn stats_range(start: chrono::NaiveDate) -> (String, String) {
    let end = today() + chrono::Days::new(1);
    (start.to_string(), end.to_string())
}

async fn learner_flow_over_rest(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let started = today();
    let ada = platform.learner("Ada.Lovelace@Example.com").await;
    let bob = platform.learner("bob@example.com").await;
    let course = platform.course_with_exercise(0).await;
    let total = course.lessons.len() as i64;

    let me = platform.get_json_as(&ada.token, "/v1/me").await;
    assert_eq!(me["id"], ada.id);
    assert_eq!(me["email"], "Ada.Lovelace@Example.com");
    assert_eq!(me["role"], "learner");
    assert!(me["created_at"].is_string(), "{me}");

    // Enroll twice: one enrollment.
    let (status, first) = platform
        .post_json_as(
            &ada.token,
            "/v1/enrollments",
            &json!({"course_id": course.id}),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["user_id"], ada.id);
    assert_eq!(first["course_id"], course.id);
    assert_eq!(first["status"], "active");
    assert!(first["enrolled_at"].is_string());
    assert_eq!(first["completed_at"], Value::Null);
    let enrollment = first["id"].as_i64().unwrap();
    let (status, again) = platform
        .post_json_as(
            &ada.token,
            "/v1/enrollments",
            &json!({"course_id": course.id}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(again, first, "enrolling again returns the same enrollment");

    // A draft course cannot be enrolled in.
    let draft = platform.draft_course("draft-for-enrollment").await;
    let response = platform
        .post("/v1/enrollments")
        .bearer_auth(&ada.token)
        .json(&json!({"course_id": draft}))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!(
        (status.as_u16(), code.as_str()),
        (409, "failed_precondition"),
        "{message}"
    );
    assert!(message.contains("course_id"), "{message}");

    let mine = platform.get_json_as(&ada.token, "/v1/me/enrollments").await;
    assert_eq!(mine["enrollments"], json!([first]), "{mine}");
    assert_eq!(mine["next_page_token"], Value::Null);

    let progress_path = format!("/v1/enrollments/{enrollment}/progress");
    let progress = platform.get_json_as(&ada.token, &progress_path).await;
    assert_eq!(progress["completed_lessons"], 0);
    assert_eq!(progress["total_lessons"], total);
    assert_eq!(progress["percent"], 0.0);

    // Enrolled, nothing done yet: the learner's catalog page says so.
    let entries = page_entries(&platform, Some(&ada.token), 100).await;
    let entry = entries.iter().find(|e| e["id"] == course.id).unwrap();
    assert_eq!(entry["enrollment"]["id"], enrollment);
    assert_eq!(entry["enrollment"]["status"], "active");
    assert_eq!(entry["completed_lessons"], 0);

    // Every lesson, in order; the last one completes the enrollment.
    for (done, lesson) in course.lessons.iter().enumerate() {
        let (status, progress) = platform
            .post_json_as(
                &ada.token,
                &progress_path,
                &json!({"lesson_id": lesson, "completed": true}),
            )
            .await;
        assert_eq!(status, 200, "{progress}");
        let done = done as i64 + 1;
        assert_eq!(progress["completed_lessons"], done);
        assert_eq!(progress["total_lessons"], total);
        let expected = if done == total { "completed" } else { "active" };
        assert_eq!(progress["enrollment"]["status"], expected, "{progress}");
    }
    // Recording a lesson again changes nothing.
    let (status, progress) = platform
        .post_json_as(
            &ada.token,
            &progress_path,
            &json!({"lesson_id": course.lessons[0]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(progress["completed_lessons"], total);

    let progress = platform.get_json_as(&ada.token, &progress_path).await;
    assert_eq!(progress["completed_lessons"], total);
    assert_eq!(progress["percent"], 100.0);
    assert_eq!(progress["enrollment"]["status"], "completed");
    assert!(progress["enrollment"]["completed_at"].is_string());
    let lessons = progress["lessons"].as_array().unwrap();
    let ids: Vec<i64> = lessons
        .iter()
        .map(|l| l["lesson_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, course.lessons);
    assert!(
        lessons
            .iter()
            .all(|l| l["completed"] == true && l["completed_at"].is_string()),
        "{progress}"
    );

    let completed = platform
        .get_json_as(&ada.token, "/v1/me/enrollments?status=completed")
        .await;
    assert_eq!(completed["enrollments"][0]["id"], enrollment);
    let active = platform
        .get_json_as(&ada.token, "/v1/me/enrollments?status=active")
        .await;
    assert_eq!(active["enrollments"], json!([]));

    // The catalog page: Ada sees her completed course; Bob and the public see no enrollment.
    let entries = page_entries(&platform, Some(&ada.token), 100).await;
    let entry = entries.iter().find(|e| e["id"] == course.id).unwrap();
    assert_eq!(entry["enrollment"]["id"], enrollment);
    assert_eq!(entry["enrollment"]["status"], "completed");
    assert_eq!(entry["completed_lessons"], total);
    let others: Vec<&Value> = entries
        .iter()
        .filter(|e| e["id"] != course.id && e.get("enrollment").is_some())
        .collect();
    assert!(others.is_empty(), "only the enrolled course: {others:?}");
    for token in [None, Some(bob.token.as_str())] {
        let entries = page_entries(&platform, token, 100).await;
        assert!(entries.iter().any(|e| e["id"] == course.id));
        for entry in &entries {
            assert!(
                entry.get("enrollment").is_none() && entry.get("completed_lessons").is_none(),
                "{token:?}: {entry}"
            );
        }
    }

    // Submissions: 201 each, listed newest first, paginated.
    let submissions_path = format!("/v1/exercises/{}/submissions", course.exercise);
    let mut submitted = Vec::new();
    for (attempt, (passed, score)) in [(false, 10), (false, 60), (true, 100)].iter().enumerate() {
        let code = format!("print({attempt})");
        let (status, submission) = platform
            .post_json_as(
                &ada.token,
                &submissions_path,
                &json!({"code": code, "passed": passed, "score": score}),
            )
            .await;
        assert_eq!(status, 201, "{submission}");
        assert_eq!(submission["user_id"], ada.id);
        assert_eq!(submission["exercise_id"], course.exercise);
        assert_eq!(submission["code"], code);
        assert_eq!(submission["passed"], *passed);
        assert_eq!(submission["score"], *score);
        assert!(submission["submitted_at"].is_string());
        submitted.push(submission);
    }
    let listed = platform.get_json_as(&ada.token, &submissions_path).await;
    let newest_first: Vec<Value> = submitted.iter().rev().cloned().collect();
    assert_eq!(listed["submissions"], json!(newest_first));
    let first_page = platform
        .get_json_as(&ada.token, &format!("{submissions_path}?page_size=2"))
        .await;
    assert_eq!(first_page["submissions"], json!(newest_first[..2]));
    let next = first_page["next_page_token"].as_str().unwrap();
    let second_page = platform
        .get_json_as(
            &ada.token,
            &format!("{submissions_path}?page_size=2&page_token={next}"),
        )
        .await;
    assert_eq!(second_page["submissions"], json!(newest_first[2..]));
    assert_eq!(second_page["next_page_token"], Value::Null);
    // Bob's list of the same exercise is his own: empty.
    let bobs = platform.get_json_as(&bob.token, &submissions_path).await;
    assert_eq!(bobs["submissions"], json!([]));

    // Admin: the user by id and by email in another case.
    let by_id = platform
        .get_json_as(&admin(), &format!("/v1/admin/users/{}", ada.id))
        .await;
    assert_eq!(by_id, me);
    let by_email = platform
        .get_json_as(&admin(), "/v1/admin/users/ADA.LOVELACE@example.COM")
        .await;
    assert_eq!(by_email, me);

    // Admin: today's enrollment and completion.
    let (from, to) = stats_range(started);
    let stats = platform
        .get_json_as(
            &admin(),
            &format!("/v1/admin/stats/enrollments?from={from}&to={to}"),
        )
        .await;
    assert_eq!(stats["total_enrollments"], 1, "{stats}");
    assert_eq!(stats["total_completions"], 1, "{stats}");
    assert_eq!(stats["active_learners"], 1, "{stats}");
    let days = stats["days"].as_array().unwrap();
    let enrollments: i64 = days
        .iter()
        .map(|d| d["enrollments"].as_i64().unwrap())
        .sum();
    let completions: i64 = days
        .iter()
        .map(|d| d["completions"].as_i64().unwrap())
        .sum();
    assert_eq!((enrollments, completions), (1, 1), "{stats}");
    let day = days.iter().find(|d| d["enrollments"] == 1).unwrap()["day"]
        .as_str()
        .unwrap();
    assert!(day >= from.as_str() && day < to.as_str(), "{day}");
}

async fn learner_flow_over_grpc(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let started = today();
    let ada = platform.learner("Ada@Example.com").await;
    let bob = platform.learner("bob@example.com").await;
    let admin = platform.admin_user("root@example.com").await;
    let course = platform.course_with_exercise(1).await;
    let total = course.lessons.len() as i64;
    let mut client = platform.grpc().await;

    let me = client
        .get_me(with_token(GetMeRequest {}, &ada.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((me.id, me.email.as_str()), (ada.id, "Ada@Example.com"));
    assert_eq!(me.role, i32::from(UserRole::Learner));

    let enroll = |course_id| with_token(EnrollRequest { course_id }, &ada.token);
    let first = client.enroll(enroll(course.id)).await.unwrap().into_inner();
    let again = client.enroll(enroll(course.id)).await.unwrap().into_inner();
    assert_eq!(first, again, "enrolling again returns the same enrollment");
    assert_eq!((first.user_id, first.course_id), (ada.id, course.id));
    assert_eq!(first.status, i32::from(EnrollmentStatus::Active));

    let draft = platform.draft_course("draft-for-grpc").await;
    let err = client.enroll(enroll(draft)).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("course_id"), "{err:?}");

    let mine = client
        .list_my_enrollments(with_token(ListMyEnrollmentsRequest::default(), &ada.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.enrollments, vec![first]);

    for (done, lesson_id) in course.lessons.iter().enumerate() {
        let progress = client
            .record_progress(with_token(
                RecordLessonProgressRequest {
                    enrollment_id: first.id,
                    lesson_id: *lesson_id,
                    completed: true,
                },
                &ada.token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(progress.completed_lessons, done as i64 + 1);
    }
    let progress = client
        .get_progress(with_token(
            GetProgressRequest {
                enrollment_id: first.id,
            },
            &ada.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (progress.completed_lessons, progress.total_lessons),
        (total, total)
    );
    assert_eq!(progress.percent, 100.0);
    let enrollment = progress.enrollment.unwrap();
    assert_eq!(enrollment.status, i32::from(EnrollmentStatus::Completed));
    assert!(enrollment.completed_at.is_some());

    // The catalog page over gRPC: enrollment state for Ada only.
    let page_request = || GetCatalogPageRequest {
        course_type: CourseType::Unspecified.into(),
        page_size: 100,
        ..Default::default()
    };
    let page = client
        .get_catalog_page(with_token(page_request(), &ada.token))
        .await
        .unwrap()
        .into_inner();
    let entry = page
        .courses
        .iter()
        .find(|e| e.course.as_ref().unwrap().id == course.id)
        .unwrap();
    assert_eq!(entry.enrollment.as_ref().unwrap().id, first.id);
    assert_eq!(
        entry.enrollment.as_ref().unwrap().status,
        i32::from(EnrollmentStatus::Completed)
    );
    assert_eq!(entry.completed_lessons, total);
    assert_eq!(
        page.courses
            .iter()
            .filter(|e| e.enrollment.is_some())
            .count(),
        1
    );
    for request in [
        tonic::Request::new(page_request()),
        with_token(page_request(), &bob.token),
    ] {
        let page = client.get_catalog_page(request).await.unwrap().into_inner();
        assert!(
            page.courses
                .iter()
                .all(|e| e.enrollment.is_none() && e.completed_lessons == 0)
        );
    }

    let mut ids = Vec::new();
    for score in [20, 90] {
        let submission = client
            .submit_exercise(with_token(
                SubmitExerciseRequest {
                    exercise_id: course.exercise,
                    code: format!("SELECT {score};"),
                    passed: score > 50,
                    score,
                },
                &ada.token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (submission.user_id, submission.exercise_id),
            (ada.id, course.exercise)
        );
        ids.push(submission.id);
    }
    let listed = client
        .list_my_submissions(with_token(
            ListMySubmissionsRequest {
                exercise_id: course.exercise,
                ..Default::default()
            },
            &ada.token,
        ))
        .await
        .unwrap()
        .into_inner();
    let listed: Vec<i64> = listed.submissions.iter().map(|s| s.id).collect();
    ids.reverse();
    assert_eq!(listed, ids, "newest first");

    for key in [
        UserKey::Id(ada.id),
        UserKey::Email("ada@EXAMPLE.com".into()),
    ] {
        let user = client
            .get_user(with_token(GetUserRequest { key: Some(key) }, &admin.token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(user, me);
    }
    // The admin's own identity through GetMe.
    let root = client
        .get_me(with_token(GetMeRequest {}, &admin.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((root.id, root.role), (admin.id, i32::from(UserRole::Admin)));

    let day = |date: chrono::NaiveDate| learnhub_proto::Timestamp {
        seconds: date.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp(),
        nanos: 0,
    };
    let stats = client
        .get_enrollment_stats(with_token(
            EnrollmentStatsRequest {
                from: Some(day(started)),
                to: Some(day(today() + chrono::Days::new(1))),
            },
            &admin.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            stats.total_enrollments,
            stats.total_completions,
            stats.active_learners
        ),
        (1, 1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.days.iter().map(|d| d.enrollments).sum::<i64>(), 1);
    assert_eq!(stats.days.iter().map(|d| d.completions).sum::<i64>(), 1);
}
