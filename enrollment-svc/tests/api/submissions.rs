//! Exercise submissions: stored as sent, listed newest first (by id) with pagination and an
//! exercise filter; size limit, score range, unknown exercise or user.
use learnhub_db::Backend;
use learnhub_proto::enrollment::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{assert_status, spawn_app, spawn_app_with},
    on_both_backends,
};

on_both_backends!(
    submissions_list_newest_first,
    bad_submissions_name_the_field,
    the_size_limit_is_configurable,
);

fn submit(user_id: i64, exercise_id: i64, code: &str, score: i32) -> pb::SubmitExerciseRequest {
    pb::SubmitExerciseRequest {
        user_id,
        exercise_id,
        code: code.into(),
        passed: score >= 60,
        score,
    }
}

fn list(
    user_id: i64,
    exercise_id: i64,
    page_size: i32,
    page_token: &str,
) -> pb::ListSubmissionsRequest {
    pb::ListSubmissionsRequest {
        user_id,
        exercise_id,
        page_size,
        page_token: page_token.into(),
    }
}

async fn submissions_list_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 2).await;
    let (a, b) = (course.exercises[0], course.exercises[1]);
    let user = app.user().await;
    let other = app.user().await;
    let mut c = app.client();
    let mut sent = Vec::new();
    for (n, exercise) in [a, b, a, a, b].into_iter().enumerate() {
        let s = c
            .submit_exercise(submit(
                user.id,
                exercise,
                &format!("print({n})"),
                50 + n as i32 * 10,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (s.user_id, s.exercise_id, s.code.as_str()),
            (user.id, exercise, format!("print({n})").as_str())
        );
        assert_eq!(s.score, 50 + n as i32 * 10);
        assert_eq!(s.passed, s.score >= 60);
        assert!(s.submitted_at.is_some());
        sent.push(s);
    }
    c.submit_exercise(submit(other.id, a, "print('other')", 100))
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_submissions(list(user.id, 0, 2, &token))
            .await
            .unwrap()
            .into_inner();
        assert!(page.submissions.len() <= 2);
        seen.extend(page.submissions);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let newest_first: Vec<_> = sent.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let only_a = c
        .list_submissions(list(user.id, a, 2, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        only_a.submissions.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![sent[3].id, sent[2].id]
    );
    let rest = c
        .list_submissions(list(user.id, a, 2, &only_a.next_page_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rest.submissions.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![sent[0].id]
    );
    assert!(rest.next_page_token.is_empty());
}

async fn bad_submissions_name_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 1).await;
    let exercise = course.exercises[0];
    let user = app.user().await;
    let mut c = app.client();
    let limit = enrollment_svc::service::DEFAULT_MAX_SUBMISSION_BYTES;
    assert_eq!(limit, 64 * 1024);
    c.submit_exercise(submit(user.id, exercise, &"x".repeat(limit), 10))
        .await
        .expect("exactly the limit is fine");
    for (request, code, field) in [
        (
            submit(user.id, exercise, &"x".repeat(limit + 1), 10),
            Code::InvalidArgument,
            "code",
        ),
        (
            submit(user.id, exercise, "  \n", 10),
            Code::InvalidArgument,
            "code",
        ),
        (
            submit(user.id, exercise, "print(1)", 101),
            Code::InvalidArgument,
            "score",
        ),
        (
            submit(user.id, exercise, "print(1)", -1),
            Code::InvalidArgument,
            "score",
        ),
        (
            submit(0, exercise, "print(1)", 10),
            Code::InvalidArgument,
            "user_id",
        ),
        (
            submit(user.id, 0, "print(1)", 10),
            Code::InvalidArgument,
            "exercise_id",
        ),
        (
            submit(user.id, 99_999, "print(1)", 10),
            Code::NotFound,
            "exercise 99999",
        ),
        (
            submit(9_999, exercise, "print(1)", 10),
            Code::NotFound,
            "user 9999",
        ),
    ] {
        assert_status(c.submit_exercise(request).await, code, field);
    }
    for (request, field) in [
        (list(user.id, -1, 0, ""), "exercise_id"),
        (list(0, 0, 0, ""), "user_id"),
        (list(user.id, 0, 500, ""), "page_size"),
        (list(user.id, 0, 0, "bm90LWEtdG9rZW4"), "page_token"),
    ] {
        assert_status(
            c.list_submissions(request).await,
            Code::InvalidArgument,
            field,
        );
    }
    // Only the one accepted submission was stored.
    let all = c
        .list_submissions(list(user.id, 0, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.submissions.len(), 1);
}

async fn the_size_limit_is_configurable(backend: Backend) {
    let app = spawn_app_with(backend, |config| config.max_submission_bytes = 16).await;
    let course = app.course(true, 1).await;
    let user = app.user().await;
    let mut c = app.client();
    c.submit_exercise(submit(user.id, course.exercises[0], "print('hi')", 100))
        .await
        .unwrap();
    assert_status(
        c.submit_exercise(submit(
            user.id,
            course.exercises[0],
            "print('hello, world')",
            100,
        ))
        .await,
        Code::InvalidArgument,
        "code",
    );
}
