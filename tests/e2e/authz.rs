//! The authorization matrix: every gateway REST route and every GatewayService RPC, called by
//! every kind of caller, answers exactly the status its access class promises. Learner B can
//! neither read nor change learner A's enrollment, and refused calls write nothing.
use std::fmt::Write as _;

use gateway::auth::Role;
use learnhub_db::Backend;
use learnhub_proto::{
    cache::v1::{GetStatsRequest, InvalidatePatternRequest},
    catalog::v1::{
        ArchiveCourseRequest, CourseType, CreateCourseRequest, GetCourseRequest,
        ListCategoriesRequest, PublishCourseRequest, UpdateCourseRequest,
        get_course_request::Key as CourseKey,
    },
    common::v1::GetDbStatsRequest,
    enrollment::v1::{EnrollmentStatsRequest, GetProgressRequest, RecordLessonProgressRequest},
    gateway::v1::{
        EnrollRequest, GetCatalogPageRequest, GetMeRequest, GetUserRequest,
        ListMyEnrollmentsRequest, ListMySubmissionsRequest, SubmitExerciseRequest,
        gateway_service_client::GatewayServiceClient, get_user_request::Key as UserKey,
    },
};
use serde_json::{Value, json};
use tonic::{Code, Status, transport::Channel};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    helpers::{Person, Platform, expired, forged, spawn_platform, today},
    on_both_backends,
};

on_both_backends!(rest_authorization_matrix, grpc_authorization_matrix);

/// Who calls: the columns of the matrix.
#[derive(Debug, Clone, Copy)]
enum Who {
    NoToken,
    /// `authorization: Basic …` — not a bearer token at all.
    NotBearer,
    /// `Bearer` followed by something that is not a JWT.
    Garbage,
    /// Learner A's token, expired.
    Expired,
    /// An admin token signed with another secret.
    WrongSecret,
    LearnerA,
    LearnerB,
    Admin,
}

const CALLERS: [Who; 8] = [
    Who::NoToken,
    Who::NotBearer,
    Who::Garbage,
    Who::Expired,
    Who::WrongSecret,
    Who::LearnerA,
    Who::LearnerB,
    Who::Admin,
];

/// What a caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The route's success status (200, or 201 for creations).
    Ok,
    /// 401 / UNAUTHENTICATED
    Unauth,
    /// 403 / PERMISSION_DENIED
    Denied,
    /// 404 / NOT_FOUND
    Missing,
}

// The access classes: what each caller gets, in the order of `CALLERS`.
#[rustfmt::skip]
mod access {
    use super::Want::{self, Denied, Missing, Ok as Yes, Unauth};
    //                                  none     basic   garbage expired forged  A        B        admin
    /// Liveness and readiness: no token is even read.
    pub const PROBE:     [Want; 8] = [Yes,     Yes,    Yes,    Yes,    Yes,    Yes,     Yes,     Yes];
    /// Public reads: anyone, but a token that is sent must be good.
    pub const PUBLIC:    [Want; 8] = [Yes,     Unauth, Unauth, Unauth, Unauth, Yes,     Yes,     Yes];
    /// A draft course: it exists only for admins.
    pub const DRAFT:     [Want; 8] = [Missing, Unauth, Unauth, Unauth, Unauth, Missing, Missing, Yes];
    /// The caller's own data: any signed-in user.
    pub const SIGNED_IN: [Want; 8] = [Unauth,  Unauth, Unauth, Unauth, Unauth, Yes,     Yes,     Yes];
    /// Learner A's enrollment: A and admins only.
    pub const A_ONLY:    [Want; 8] = [Unauth,  Unauth, Unauth, Unauth, Unauth, Yes,     Denied,  Yes];
    /// An enrollment that does not exist.
    pub const NO_SUCH:   [Want; 8] = [Unauth,  Unauth, Unauth, Unauth, Unauth, Missing, Missing, Missing];
    /// Admin routes.
    pub const ADMIN:     [Want; 8] = [Unauth,  Unauth, Unauth, Unauth, Unauth, Denied,  Denied,  Yes];
}

use access::{A_ONLY, ADMIN, DRAFT, NO_SUCH, PROBE, PUBLIC, SIGNED_IN};

/// The callers' credentials and the ids the routes act on.
struct World {
    a: Person,
    b: Person,
    root: Person,
    course: i64,
    lesson: i64,
    other_lesson: i64,
    exercise: i64,
    enrollment: i64,
    /// Stays a draft (the hidden-course rows).
    draft: i64,
    /// Published by the admin's call.
    to_publish: i64,
    /// Archived by the admin's call.
    to_archive: i64,
}

impl World {
    async fn build(platform: &Platform, tag: &str) -> Self {
        let a = platform.learner(&format!("a-{tag}@example.com")).await;
        let b = platform.learner(&format!("b-{tag}@example.com")).await;
        let root = platform
            .admin_user(&format!("root-{tag}@example.com"))
            .await;
        let course = platform.course_with_exercise(0).await;
        let (status, enrollment) = platform
            .post_json_as(
                &a.token,
                "/v1/enrollments",
                &json!({"course_id": course.id}),
            )
            .await;
        assert_eq!(status, 200, "{enrollment}");
        Self {
            enrollment: enrollment["id"].as_i64().unwrap(),
            course: course.id,
            lesson: course.lessons[0],
            other_lesson: course.lessons[1],
            exercise: course.exercise,
            draft: platform.draft_course(&format!("hidden-{tag}")).await,
            to_publish: platform.draft_course(&format!("to-publish-{tag}")).await,
            to_archive: platform.draft_course(&format!("to-archive-{tag}")).await,
            a,
            b,
            root,
        }
    }

    /// The `authorization` value `who` sends, if any.
    fn authorization(&self, who: Who) -> Option<String> {
        match who {
            Who::NoToken => None,
            Who::NotBearer => Some("Basic YWRtaW46YWRtaW4=".into()),
            Who::Garbage => Some("Bearer not.a.jwt".into()),
            Who::Expired => Some(format!(
                "Bearer {}",
                expired(Role::Learner, &self.a.id.to_string())
            )),
            Who::WrongSecret => Some(format!(
                "Bearer {}",
                forged(Role::Admin, &self.root.id.to_string())
            )),
            Who::LearnerA => Some(format!("Bearer {}", self.a.token)),
            Who::LearnerB => Some(format!("Bearer {}", self.b.token)),
            Who::Admin => Some(format!("Bearer {}", self.root.token)),
        }
    }
}

/// One REST route of the matrix.
struct Route {
    method: &'static str,
    path: String,
    body: Option<Value>,
    /// Status of a successful call.
    ok: u16,
    want: [Want; 8],
}

fn route(method: &'static str, path: impl Into<String>, want: [Want; 8]) -> Route {
    Route {
        method,
        path: path.into(),
        body: None,
        ok: 200,
        want,
    }
}

impl Route {
    fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn created(mut self) -> Self {
        self.ok = 201;
        self
    }
}

fn rest_routes(w: &World) -> Vec<Route> {
    let (from, to) = (today(), today() + chrono::Days::new(1));
    let progress = format!("/v1/enrollments/{}/progress", w.enrollment);
    let submissions = format!("/v1/exercises/{}/submissions", w.exercise);
    vec![
        route("GET", "/healthz", PROBE),
        route("GET", "/readyz", PROBE),
        route("GET", "/v1/catalog?page_size=5", PUBLIC),
        route("GET", format!("/v1/courses/{}", w.course), PUBLIC),
        route("GET", "/v1/categories", PUBLIC),
        route("GET", format!("/v1/courses/{}", w.draft), DRAFT),
        route("GET", "/v1/me", SIGNED_IN),
        route("GET", "/v1/me/enrollments", SIGNED_IN),
        route("POST", "/v1/enrollments", SIGNED_IN).body(json!({"course_id": w.course})),
        route("POST", &submissions, SIGNED_IN)
            .body(json!({"code": "print(1)", "passed": true, "score": 100}))
            .created(),
        route("GET", &submissions, SIGNED_IN),
        route("GET", &progress, A_ONLY),
        route("POST", &progress, A_ONLY).body(json!({"lesson_id": w.lesson})),
        route("GET", "/v1/enrollments/987654321/progress", NO_SUCH),
        route("POST", "/v1/enrollments/987654321/progress", NO_SUCH)
            .body(json!({"lesson_id": w.lesson})),
        route("POST", "/v1/admin/courses", ADMIN)
            .body(json!({
                "slug": "matrix-rest-course",
                "title": "Made by the matrix",
                "course_type": "sql",
                "category": "analytics",
            }))
            .created(),
        route("PATCH", format!("/v1/admin/courses/{}", w.draft), ADMIN)
            .body(json!({"title": "Renamed by an admin"})),
        route(
            "POST",
            format!("/v1/admin/courses/{}/publish", w.to_publish),
            ADMIN,
        ),
        route(
            "POST",
            format!("/v1/admin/courses/{}/archive", w.to_archive),
            ADMIN,
        ),
        route("GET", format!("/v1/admin/users/{}", w.a.id), ADMIN),
        route("GET", format!("/v1/admin/users/{}", w.a.email), ADMIN),
        route(
            "GET",
            format!("/v1/admin/stats/enrollments?from={from}&to={to}"),
            ADMIN,
        ),
        route("GET", "/v1/admin/cache/stats", ADMIN),
        route("POST", "/v1/admin/cache/invalidate", ADMIN).body(json!({"pattern": "catalog:*"})),
        route("GET", "/v1/admin/db/stats", ADMIN),
        route("POST", "/v1/admin/db/stats/reset", ADMIN),
        route("GET", "/v1/admin/courses?status=draft", ADMIN),
        // The console's files hold no data and read no token: anyone may load them (as the
        // probes); every number they show comes from the ADMIN routes above.
        route("GET", "/admin", PROBE),
        route("GET", "/admin/assets/app.js", PROBE),
    ]
}

/// What one call gave, as the matrix names it (an unexpected status is shown as it is).
fn rest_outcome(route: &Route, status: u16, code: &str) -> Result<Want, String> {
    match (status, code) {
        (s, _) if s == route.ok => Ok(Want::Ok),
        (401, "unauthenticated") => Ok(Want::Unauth),
        (403, "permission_denied") => Ok(Want::Denied),
        (404, "not_found") => Ok(Want::Missing),
        _ => Err(format!("{status} {code}")),
    }
}

async fn rest_authorization_matrix(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let w = World::build(&platform, "rest").await;
    let routes = rest_routes(&w);
    let mut failures = String::new();
    let mut calls = 0;
    for route in &routes {
        for (who, want) in CALLERS.iter().zip(route.want) {
            let url = format!("{}{}", platform.url, route.path);
            let method = route.method.parse::<reqwest::Method>().unwrap();
            let mut request = platform.http.request(method, url);
            if let Some(header) = w.authorization(*who) {
                request = request.header("authorization", header);
            }
            if let Some(body) = &route.body {
                request = request.json(body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let code = body["code"].as_str().unwrap_or_default();
            calls += 1;
            let got = rest_outcome(route, status, code);
            if got != Ok(want) {
                writeln!(
                    failures,
                    "{} {} as {who:?}: want {want:?}, got {got:?}: {body}",
                    route.method, route.path
                )
                .unwrap();
            }
        }
    }
    assert!(failures.is_empty(), "authorization matrix:\n{failures}");
    assert_eq!(calls, routes.len() * CALLERS.len());

    // B's refused write left no trace on A's enrollment; B's own views hold only B's data.
    let progress = format!("/v1/enrollments/{}/progress", w.enrollment);
    let (status, _) = platform
        .post_json_as(&w.b.token, &progress, &json!({"lesson_id": w.other_lesson}))
        .await;
    assert_eq!(status, 403);
    let seen = platform.get_json_as(&w.a.token, &progress).await;
    let done: Vec<i64> = seen["lessons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["completed"] == true)
        .map(|l| l["lesson_id"].as_i64().unwrap())
        .collect();
    assert_eq!(done, vec![w.lesson], "{seen}");
    let mine = platform.get_json_as(&w.b.token, "/v1/me/enrollments").await;
    let mine = mine["enrollments"].as_array().unwrap();
    assert!(!mine.is_empty() && mine.iter().all(|e| e["user_id"] == w.b.id));
    let me = platform.get_json_as(&w.b.token, "/v1/me").await;
    assert_eq!(me["id"], w.b.id);
    let page = platform
        .get_json_as(&w.b.token, "/v1/catalog?page_size=100")
        .await;
    for entry in page["courses"].as_array().unwrap() {
        if let Some(enrollment) = entry.get("enrollment") {
            assert_eq!(enrollment["user_id"], w.b.id, "{entry}");
        }
    }
    let theirs = platform
        .get_json_as(
            &w.b.token,
            &format!("/v1/exercises/{}/submissions", w.exercise),
        )
        .await;
    let theirs = theirs["submissions"].as_array().unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0]["user_id"], w.b.id);
}

/// The GatewayService twins of the REST routes.
#[derive(Debug, Clone, Copy)]
enum Rpc {
    HealthCheck,
    GetCatalogPage,
    GetCourse,
    ListCategories,
    GetDraftCourse,
    GetMe,
    ListMyEnrollments,
    Enroll,
    SubmitExercise,
    ListMySubmissions,
    GetProgress,
    RecordProgress,
    GetMissingProgress,
    RecordMissingProgress,
    CreateCourse,
    UpdateCourse,
    PublishCourse,
    ArchiveCourse,
    GetUserById,
    GetUserByEmail,
    GetEnrollmentStats,
    GetCacheStats,
    InvalidateCache,
    GetDbStats,
}

const RPCS: [(Rpc, [Want; 8]); 24] = [
    (Rpc::HealthCheck, PROBE),
    (Rpc::GetCatalogPage, PUBLIC),
    (Rpc::GetCourse, PUBLIC),
    (Rpc::ListCategories, PUBLIC),
    (Rpc::GetDraftCourse, DRAFT),
    (Rpc::GetMe, SIGNED_IN),
    (Rpc::ListMyEnrollments, SIGNED_IN),
    (Rpc::Enroll, SIGNED_IN),
    (Rpc::SubmitExercise, SIGNED_IN),
    (Rpc::ListMySubmissions, SIGNED_IN),
    (Rpc::GetProgress, A_ONLY),
    (Rpc::RecordProgress, A_ONLY),
    (Rpc::GetMissingProgress, NO_SUCH),
    (Rpc::RecordMissingProgress, NO_SUCH),
    (Rpc::CreateCourse, ADMIN),
    (Rpc::UpdateCourse, ADMIN),
    (Rpc::PublishCourse, ADMIN),
    (Rpc::ArchiveCourse, ADMIN),
    (Rpc::GetUserById, ADMIN),
    (Rpc::GetUserByEmail, ADMIN),
    (Rpc::GetEnrollmentStats, ADMIN),
    (Rpc::GetCacheStats, ADMIN),
    (Rpc::InvalidateCache, ADMIN),
    (Rpc::GetDbStats, ADMIN),
];

/// `message` with `who`'s `authorization` metadata.
fn request<T>(w: &World, who: Who, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(value) = w.authorization(who) {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    request
}

async fn call(
    client: &mut GatewayServiceClient<Channel>,
    health: &mut HealthClient<Channel>,
    w: &World,
    rpc: Rpc,
    who: Who,
) -> Result<(), Status> {
    let day = |date: chrono::NaiveDate| learnhub_proto::Timestamp {
        seconds: date.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp(),
        nanos: 0,
    };
    match rpc {
        Rpc::HealthCheck => health
            .check(request(w, who, HealthCheckRequest::default()))
            .await
            .map(drop),
        Rpc::GetCatalogPage => client
            .get_catalog_page(request(
                w,
                who,
                GetCatalogPageRequest {
                    course_type: CourseType::Unspecified.into(),
                    page_size: 5,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::GetCourse | Rpc::GetDraftCourse => {
            let id = if matches!(rpc, Rpc::GetCourse) {
                w.course
            } else {
                w.draft
            };
            client
                .get_course(request(
                    w,
                    who,
                    GetCourseRequest {
                        key: Some(CourseKey::Id(id)),
                    },
                ))
                .await
                .map(drop)
        }
        Rpc::ListCategories => client
            .list_categories(request(w, who, ListCategoriesRequest {}))
            .await
            .map(drop),
        Rpc::GetMe => client
            .get_me(request(w, who, GetMeRequest {}))
            .await
            .map(drop),
        Rpc::ListMyEnrollments => client
            .list_my_enrollments(request(w, who, ListMyEnrollmentsRequest::default()))
            .await
            .map(drop),
        Rpc::Enroll => client
            .enroll(request(
                w,
                who,
                EnrollRequest {
                    course_id: w.course,
                },
            ))
            .await
            .map(drop),
        Rpc::SubmitExercise => client
            .submit_exercise(request(
                w,
                who,
                SubmitExerciseRequest {
                    exercise_id: w.exercise,
                    code: "print(1)".into(),
                    passed: true,
                    score: 100,
                },
            ))
            .await
            .map(drop),
        Rpc::ListMySubmissions => client
            .list_my_submissions(request(
                w,
                who,
                ListMySubmissionsRequest {
                    exercise_id: w.exercise,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::GetProgress | Rpc::GetMissingProgress => {
            let enrollment_id = if matches!(rpc, Rpc::GetProgress) {
                w.enrollment
            } else {
                987_654_321
            };
            client
                .get_progress(request(w, who, GetProgressRequest { enrollment_id }))
                .await
                .map(drop)
        }
        Rpc::RecordProgress | Rpc::RecordMissingProgress => {
            let enrollment_id = if matches!(rpc, Rpc::RecordProgress) {
                w.enrollment
            } else {
                987_654_321
            };
            client
                .record_progress(request(
                    w,
                    who,
                    RecordLessonProgressRequest {
                        enrollment_id,
                        lesson_id: w.lesson,
                        completed: true,
                    },
                ))
                .await
                .map(drop)
        }
        Rpc::CreateCourse => client
            .create_course(request(
                w,
                who,
                CreateCourseRequest {
                    slug: "matrix-grpc-course".into(),
                    title: "Made by the matrix".into(),
                    course_type: CourseType::Sql.into(),
                    category: "analytics".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::UpdateCourse => client
            .update_course(request(
                w,
                who,
                UpdateCourseRequest {
                    id: w.draft,
                    title: Some("Renamed by an admin".into()),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::PublishCourse => client
            .publish_course(request(w, who, PublishCourseRequest { id: w.to_publish }))
            .await
            .map(drop),
        Rpc::ArchiveCourse => client
            .archive_course(request(w, who, ArchiveCourseRequest { id: w.to_archive }))
            .await
            .map(drop),
        Rpc::GetUserById | Rpc::GetUserByEmail => {
            let key = if matches!(rpc, Rpc::GetUserById) {
                UserKey::Id(w.a.id)
            } else {
                UserKey::Email(w.a.email.clone())
            };
            client
                .get_user(request(w, who, GetUserRequest { key: Some(key) }))
                .await
                .map(drop)
        }
        Rpc::GetEnrollmentStats => client
            .get_enrollment_stats(request(
                w,
                who,
                EnrollmentStatsRequest {
                    from: Some(day(today())),
                    to: Some(day(today() + chrono::Days::new(1))),
                },
            ))
            .await
            .map(drop),
        Rpc::GetCacheStats => client
            .get_cache_stats(request(w, who, GetStatsRequest {}))
            .await
            .map(drop),
        Rpc::InvalidateCache => client
            .invalidate_cache(request(
                w,
                who,
                InvalidatePatternRequest {
                    pattern: "catalog:*".into(),
                    relay: None,
                },
            ))
            .await
            .map(drop),
        Rpc::GetDbStats => client
            .get_db_stats(request(w, who, GetDbStatsRequest {}))
            .await
            .map(drop),
    }
}

async fn grpc_authorization_matrix(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let w = World::build(&platform, "grpc").await;
    let mut client = platform.grpc().await;
    let mut health = HealthClient::new(
        tonic::transport::Endpoint::from_shared(platform.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let mut failures = String::new();
    for (rpc, wants) in RPCS {
        for (who, want) in CALLERS.iter().zip(wants) {
            let got = match call(&mut client, &mut health, &w, rpc, *who).await {
                Ok(()) => Ok(Want::Ok),
                Err(status) => match status.code() {
                    Code::Unauthenticated => Ok(Want::Unauth),
                    Code::PermissionDenied => Ok(Want::Denied),
                    Code::NotFound => Ok(Want::Missing),
                    code => Err(format!("{code:?}: {}", status.message())),
                },
            };
            if got != Ok(want) {
                writeln!(failures, "{rpc:?} as {who:?}: want {want:?}, got {got:?}").unwrap();
            }
        }
    }
    assert!(failures.is_empty(), "authorization matrix:\n{failures}");

    // B's refused write left no trace on A's enrollment.
    let err = client
        .record_progress(request(
            &w,
            Who::LearnerB,
            RecordLessonProgressRequest {
                enrollment_id: w.enrollment,
                lesson_id: w.other_lesson,
                completed: true,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let progress = client
        .get_progress(request(
            &w,
            Who::LearnerA,
            GetProgressRequest {
                enrollment_id: w.enrollment,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let done: Vec<i64> = progress
        .lessons
        .iter()
        .filter(|l| l.completed)
        .map(|l| l.lesson_id)
        .collect();
    assert_eq!(done, vec![w.lesson]);
}
