//! Bad input on the learner and learner-admin routes: each is a JSON 4xx with the right code
//! naming the field (never a 500), and none of them writes anything.
use learnhub_db::Backend;
use learnhub_proto::{
    enrollment::v1::{EnrollmentStatsRequest, GetProgressRequest},
    gateway::v1::{ListMyEnrollmentsRequest, SubmitExerciseRequest},
};
use serde_json::{Value, json};
use tonic::Code;

use crate::{
    helpers::{Platform, admin, error_of, spawn_platform, with_token},
    on_both_backends,
};

on_both_backends!(learner_routes_reject_bad_input);

/// Serde reads a JSON array as a struct field by field (`[7]` as `{"course_id": 7}`): the
/// gateway must refuse anything but an object, and write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_bodies_are_refused() {
    let platform = spawn_platform(Backend::Sqlite).await;
    let ada = platform.learner("ada@example.com").await;
    let course = platform.course_with_exercise(0).await;
    let body = format!("[{}]", course.id);
    let (status, code, message) = send(
        &platform,
        &ada.token,
        &case("POST", "/v1/enrollments", 400, "JSON").raw(&body),
    )
    .await;
    assert_eq!(
        (status, code.as_str()),
        (400, "invalid_argument"),
        "{message}"
    );
    let mine = platform.get_json_as(&ada.token, "/v1/me/enrollments").await;
    assert_eq!(
        mine["enrollments"],
        json!([]),
        "a refused body wrote nothing"
    );
}

/// Largest accepted submission (enrollment-svc's default `--max-submission-bytes`).
const MAX_CODE: usize = 64 * 1024;

/// One bad request: what to send and what must come back.
struct Case {
    method: &'static str,
    path: String,
    /// Raw body, sent as `application/json`.
    body: Option<String>,
    status: u16,
    code: &'static str,
    /// Text the message must contain (the field, usually).
    names: &'static str,
}

fn case(method: &'static str, path: impl Into<String>, status: u16, names: &'static str) -> Case {
    Case {
        method,
        path: path.into(),
        body: None,
        status,
        code: match status {
            400 => "invalid_argument",
            404 => "not_found",
            409 => "failed_precondition",
            _ => unreachable!("no case expects {status}"),
        },
        names,
    }
}

impl Case {
    fn json(mut self, body: Value) -> Self {
        self.body = Some(body.to_string());
        self
    }

    fn raw(mut self, body: &str) -> Self {
        self.body = Some(body.to_owned());
        self
    }
}

/// Whether `message` names `word` as a word of its own (`id`, not the `id` in `invalid`).
fn names(message: &str, word: &str) -> bool {
    let part_of_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    message.match_indices(word).any(|(at, _)| {
        !part_of_word(message[..at].chars().next_back())
            && !part_of_word(message[at + word.len()..].chars().next())
    })
}

async fn send(platform: &Platform, token: &str, case: &Case) -> (u16, String, String) {
    let url = format!("{}{}", platform.url, case.path);
    let method = case.method.parse::<reqwest::Method>().unwrap();
    let mut request = platform.http.request(method, url).bearer_auth(token);
    if let Some(body) = &case.body {
        request = request
            .header("content-type", "application/json")
            .body(body.clone());
    }
    let (status, code, message) = error_of(request.send().await.unwrap()).await;
    (status.as_u16(), code, message)
}

async fn learner_routes_reject_bad_input(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let ada = platform.learner("ada@example.com").await;
    let course = platform.course_with_exercise(0).await;
    let other = platform.course_with_exercise(1).await;
    let (status, enrollment) = platform
        .post_json_as(
            &ada.token,
            "/v1/enrollments",
            &json!({"course_id": course.id}),
        )
        .await;
    assert_eq!(status, 200);
    let enrollment = enrollment["id"].as_i64().unwrap();
    let progress = format!("/v1/enrollments/{enrollment}/progress");
    let submissions = format!("/v1/exercises/{}/submissions", course.exercise);

    let learner_cases = [
        // Bodies that are not the JSON the route takes.
        case("POST", "/v1/enrollments", 400, "JSON").raw("{\"course_id\": "),
        case("POST", "/v1/enrollments", 400, "JSON").raw("[]"),
        case("POST", "/v1/enrollments", 400, "JSON").raw(""),
        case("POST", &progress, 400, "JSON").raw("{lesson_id: 1}"),
        case("POST", &submissions, 400, "JSON").raw("not json"),
        case("POST", "/v1/enrollments", 400, "course_id").json(json!({})),
        case("POST", "/v1/enrollments", 400, "course_id").json(json!({"course_id": "seven"})),
        case("POST", "/v1/enrollments", 400, "colour")
            .json(json!({"course_id": course.id, "colour": "red"})),
        case("POST", &progress, 400, "completd")
            .json(json!({"lesson_id": course.lessons[0], "completd": true})),
        case("POST", &progress, 400, "completed")
            .json(json!({"lesson_id": course.lessons[0], "completed": "yes"})),
        case("POST", &submissions, 400, "author").json(json!({"code": "x", "author": "me"})),
        case("POST", &submissions, 400, "score").json(json!({"code": "x", "score": "high"})),
        // Ids in paths.
        case("GET", "/v1/enrollments/abc/progress", 400, "id"),
        case("POST", "/v1/enrollments/abc/progress", 400, "id")
            .json(json!({"lesson_id": course.lessons[0]})),
        case("GET", "/v1/enrollments/0/progress", 400, "id"),
        case("GET", "/v1/enrollments/-4/progress", 400, "id"),
        case(
            "GET",
            "/v1/enrollments/99999999999999999999/progress",
            400,
            "id",
        ),
        case("GET", "/v1/exercises/abc/submissions", 400, "id"),
        case("POST", "/v1/exercises/1.5/submissions", 400, "id").json(json!({"code": "x"})),
        // Ids in bodies.
        case("POST", "/v1/enrollments", 400, "course_id").json(json!({"course_id": 0})),
        case("POST", "/v1/enrollments", 400, "course_id").json(json!({"course_id": -3})),
        case("POST", &progress, 400, "lesson_id").json(json!({"lesson_id": 0})),
        // Query strings.
        case("GET", "/v1/me/enrollments?page_size=0", 400, "page_size"),
        case("GET", "/v1/me/enrollments?page_size=101", 400, "page_size"),
        case("GET", "/v1/me/enrollments?page_size=many", 400, "page_size"),
        case("GET", "/v1/me/enrollments?status=paused", 400, "status"),
        case(
            "GET",
            "/v1/me/enrollments?page_token=bogus",
            400,
            "page_token",
        ),
        case("GET", "/v1/me/enrollments?colour=red", 400, "colour"),
        case(
            "GET",
            format!("{submissions}?page_size=0"),
            400,
            "page_size",
        ),
        case(
            "GET",
            format!("{submissions}?page_size=101"),
            400,
            "page_size",
        ),
        // Things that do not exist.
        case("POST", "/v1/enrollments", 404, "course").json(json!({"course_id": 99_999_999})),
        case(
            "GET",
            "/v1/enrollments/99999999/progress",
            404,
            "enrollment",
        ),
        case("POST", &progress, 404, "lesson").json(json!({"lesson_id": 99_999_999})),
        case(
            "POST",
            "/v1/exercises/99999999/submissions",
            404,
            "exercise",
        )
        .json(json!({"code": "print(1)"})),
        // A lesson of another course.
        case("POST", &progress, 409, "lesson_id").json(json!({"lesson_id": other.lessons[0]})),
        // Submissions: empty, too big, score out of range.
        case("POST", &submissions, 400, "code").json(json!({"code": ""})),
        case("POST", &submissions, 400, "code").json(json!({"code": "   "})),
        case("POST", &submissions, 400, "code").json(json!({"code": "x".repeat(MAX_CODE + 1)})),
        case("POST", &submissions, 400, "score").json(json!({"code": "x", "score": 101})),
        case("POST", &submissions, 400, "score").json(json!({"code": "x", "score": -1})),
    ];
    let admin_cases = [
        case("GET", "/v1/admin/users/abc", 400, "id"),
        case("GET", "/v1/admin/users/0", 400, "id"),
        case("GET", "/v1/admin/users/99999999", 404, "user"),
        case("GET", "/v1/admin/users/nobody@example.com", 404, "user"),
        case("GET", "/v1/admin/users/ada@", 400, "email"),
        case("GET", "/v1/admin/users/@example.com", 400, "email"),
        case("GET", "/v1/admin/stats/enrollments", 400, "from"),
        case(
            "GET",
            "/v1/admin/stats/enrollments?from=2026-01-10",
            400,
            "to",
        ),
        case(
            "GET",
            "/v1/admin/stats/enrollments?from=2026-01-10&to=2026-01-01",
            400,
            "to",
        ),
        case(
            "GET",
            "/v1/admin/stats/enrollments?from=2026-01-10&to=2026-01-10",
            400,
            "to",
        ),
        case(
            "GET",
            "/v1/admin/stats/enrollments?from=2024-01-01&to=2026-01-01",
            400,
            "to",
        ),
        case(
            "GET",
            "/v1/admin/stats/enrollments?from=yesterday&to=2026-01-01",
            400,
            "from",
        ),
        case(
            "GET",
            "/v1/admin/stats/enrollments?from=2026-02-30&to=2026-03-10",
            400,
            "from",
        ),
        case(
            "GET",
            "/v1/admin/stats/enrollments?from=2026-01-01&to=2026-01-02&tz=utc",
            400,
            "tz",
        ),
    ];

    let mut failures = Vec::new();
    for (token, cases) in [
        (ada.token.clone(), &learner_cases[..]),
        (admin(), &admin_cases[..]),
    ] {
        for case in cases {
            let (status, code, message) = send(&platform, &token, case).await;
            if (status, code.as_str()) != (case.status, case.code) || !names(&message, case.names) {
                let body = case.body.as_deref().unwrap_or_default();
                let body: String = body.chars().take(80).collect();
                failures.push(format!(
                    "{} {} {body}: want {} {} naming {:?}, got {status} {code}: {message}",
                    case.method, case.path, case.status, case.code, case.names
                ));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    // The limit itself is accepted.
    let (status, body) = platform
        .post_json_as(
            &ada.token,
            &submissions,
            &json!({"code": "x".repeat(MAX_CODE)}),
        )
        .await;
    assert_eq!(status, 201, "{}", body["message"]);

    // Nothing above was written: one enrollment, no progress, only the one good submission.
    let mine = platform.get_json_as(&ada.token, "/v1/me/enrollments").await;
    assert_eq!(mine["enrollments"].as_array().unwrap().len(), 1, "{mine}");
    let seen = platform.get_json_as(&ada.token, &progress).await;
    assert_eq!(seen["completed_lessons"], 0, "{seen}");
    let listed = platform.get_json_as(&ada.token, &submissions).await;
    assert_eq!(listed["submissions"].as_array().unwrap().len(), 1);
    let ghost = platform
        .get_json_as(&ada.token, "/v1/exercises/99999999/submissions")
        .await;
    assert_eq!(ghost["submissions"], json!([]));

    // The gRPC twins validate the same way.
    let mut client = platform.grpc().await;
    let err = client
        .list_my_enrollments(with_token(
            ListMyEnrollmentsRequest {
                page_size: 101,
                ..Default::default()
            },
            &ada.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("page_size:"), "{err:?}");
    let err = client
        .get_progress(with_token(
            GetProgressRequest { enrollment_id: -1 },
            &ada.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("enrollment_id:"), "{err:?}");
    let err = client
        .submit_exercise(with_token(
            SubmitExerciseRequest {
                exercise_id: course.exercise,
                code: "x".repeat(MAX_CODE + 1),
                passed: false,
                score: 0,
            },
            &ada.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("code:"), "{err:?}");
    let day = 86_400;
    let err = client
        .get_enrollment_stats(with_token(
            EnrollmentStatsRequest {
                from: Some(learnhub_proto::Timestamp {
                    seconds: 20_000 * day,
                    nanos: 0,
                }),
                to: Some(learnhub_proto::Timestamp {
                    seconds: 19_990 * day,
                    nanos: 0,
                }),
            },
            &admin(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("to:"), "{err:?}");
}
