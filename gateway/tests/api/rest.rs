//! REST/JSON behaviour: shapes, validation, auth, error mapping, health.
use std::sync::{Arc, atomic::Ordering};

use learnhub_proto::catalog::v1::{CourseStatus, CourseType};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::{Options, admin, fakes::FakeCatalog, learner, spawn_gateway, token};
use gateway::auth::Role;

async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["code"].as_str().unwrap().to_owned(),
        body["message"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn catalog_page_fetches_summary_and_page_concurrently_once() {
    // Each fake RPC waits for the other one: only concurrent calls complete.
    let catalog = FakeCatalog {
        rendezvous: Some(Arc::new(Barrier::new(2))),
        ..FakeCatalog::new()
    };
    let gw = spawn_gateway(Options {
        catalog,
        ..Options::default()
    })
    .await;
    let response = gw
        .get("/v1/catalog?type=sql&category=basics&page_size=5")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    assert_eq!(gw.catalog.list_calls.load(Ordering::SeqCst), 1);
    assert_eq!(gw.catalog.summary_calls.load(Ordering::SeqCst), 1);
    let sent = gw.catalog.last_list.lock().unwrap().clone().unwrap();
    assert_eq!(sent.status, i32::from(CourseStatus::Published));
    assert_eq!(sent.course_type, i32::from(CourseType::Sql));
    assert_eq!(sent.category, "basics");
    assert_eq!(sent.page_size, 5);

    assert_eq!(
        page["summary"]["course_counts"],
        json!({"python": 1, "sql": 1})
    );
    assert_eq!(
        page["summary"]["categories"],
        json!([{"slug": "basics", "name": "Basics", "course_count": 2}])
    );
    assert_eq!(
        page["summary"]["featured"]["python"][0]["slug"],
        "py-basics"
    );
    assert_eq!(page["summary"]["featured"]["sql"], json!([]));
    let courses = page["courses"].as_array().unwrap();
    assert_eq!(courses.len(), 1);
    assert_eq!(
        courses[0],
        json!({
            "id": 2,
            "slug": "sql-joins",
            "title": "Course 2",
            "summary": "A course",
            "course_type": "sql",
            "category": {"slug": "basics", "name": "Basics"},
            "level": "beginner",
            "status": "published",
            "is_featured": false,
            "created_at": "2023-11-14T22:13:20Z",
            "updated_at": "2023-11-14T22:13:20Z",
            "published_at": "2023-11-14T22:15:00Z",
        })
    );
    assert!(page["next_page_token"].is_null());
}

#[tokio::test]
async fn catalog_query_errors_are_400_naming_the_field_without_upstream_calls() {
    let gw = spawn_gateway(Options::default()).await;
    for (query, field) in [
        ("page_size=0", "page_size"),
        ("page_size=101", "page_size"),
        ("page_size=ten", "page_size"),
        ("type=ruby", "type"),
        ("category=Not_A_Slug", "category"),
        ("typ=sql", "typ"),
        ("page_size=1&page_size=2", "page_size"),
    ] {
        let response = gw
            .get(&format!("/v1/catalog?{query}"))
            .send()
            .await
            .unwrap();
        let (status, code, message) = error_of(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(code, "invalid_argument", "{query}");
        assert!(message.contains(field), "{query}: {message}");
    }
    assert_eq!(gw.catalog.list_calls.load(Ordering::SeqCst), 0);
    // Validation the catalog owns passes through with its message.
    let response = gw
        .get("/v1/catalog?page_token=garbage")
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(response).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::BAD_REQUEST, "invalid_argument")
    );
    assert!(message.contains("page_token"), "{message}");
}

#[tokio::test]
async fn courses_by_id_and_slug_hide_drafts_from_the_public() {
    let gw = spawn_gateway(Options::default()).await;
    for key in ["1", "py-basics"] {
        let response = gw.get(&format!("/v1/courses/{key}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["course"]["id"], 1);
        assert_eq!(body["course"]["slug"], "py-basics");
        assert_eq!(body["lessons"][0]["position"], 1);
        assert_eq!(body["lessons"][0]["created_at"], Value::Null);
    }
    for key in ["3", "draft-one", "4", "404", "nope"] {
        let response = gw.get(&format!("/v1/courses/{key}")).send().await.unwrap();
        let (status, code, _) = error_of(response).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{key}"
        );
    }
    // A learner sees what the public sees; an admin sees drafts.
    let response = gw
        .get("/v1/courses/3")
        .bearer_auth(learner())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = gw
        .get("/v1/courses/3")
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["course"]["status"], "draft");
    assert_eq!(body["course"]["published_at"], Value::Null);

    for key in ["Bad_Slug", "UPPER", "a%20b"] {
        let response = gw.get(&format!("/v1/courses/{key}")).send().await.unwrap();
        let (status, _, message) = error_of(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}");
        assert!(message.starts_with("slug"), "{message}");
    }
    let response = gw.get("/v1/courses/0").send().await.unwrap();
    let (status, _, message) = error_of(response).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.starts_with("id"), "{message}");
}

#[tokio::test]
async fn categories_list() {
    let gw = spawn_gateway(Options::default()).await;
    let body: Value = gw
        .get("/v1/categories")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"categories": [
            {"slug": "basics", "name": "Basics", "course_count": 2},
            {"slug": "advanced", "name": "Advanced", "course_count": 0},
        ]})
    );
}

#[tokio::test]
async fn admin_writes_need_an_admin_token() {
    let gw = spawn_gateway(Options::default()).await;
    let body = json!({"slug": "new-course", "title": "New", "course_type": "python", "category": "basics"});
    let expired = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let claims = json!({"sub": "1000", "role": "admin", "exp": 1_000_000_000});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(crate::SECRET.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let forged = gateway::auth::issue_token(
        "other-secret",
        "1000",
        Role::Admin,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let cases: [(Option<String>, StatusCode, &str); 5] = [
        (None, StatusCode::UNAUTHORIZED, "unauthenticated"),
        (
            Some("not-a-jwt".into()),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
        (Some(expired), StatusCode::UNAUTHORIZED, "unauthenticated"),
        (Some(forged), StatusCode::UNAUTHORIZED, "unauthenticated"),
        (Some(learner()), StatusCode::FORBIDDEN, "permission_denied"),
    ];
    for (bearer, want_status, want_code) in cases {
        for (method, path) in [
            ("POST", "/v1/admin/courses"),
            ("PATCH", "/v1/admin/courses/1"),
            ("POST", "/v1/admin/courses/1/publish"),
            ("POST", "/v1/admin/courses/1/archive"),
        ] {
            let mut request = match method {
                "POST" => gw.post(path),
                _ => gw.patch(path),
            }
            .json(&body);
            if let Some(bearer) = &bearer {
                request = request.bearer_auth(bearer);
            }
            let (status, code, _) = error_of(request.send().await.unwrap()).await;
            assert_eq!(
                (status, code.as_str()),
                (want_status, want_code),
                "{method} {path} {bearer:?}"
            );
        }
    }
    // Authentication is checked before the body: an anonymous caller learns nothing from it.
    let response = gw
        .post("/v1/admin/courses")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let response = gw
        .post("/v1/admin/courses")
        .bearer_auth(admin())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["slug"], "new-course");
    assert_eq!(created["status"], "draft");

    let response = gw
        .patch("/v1/admin/courses/1")
        .bearer_auth(admin())
        .json(&json!({"title": "Renamed", "level": "advanced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let sent = gw.catalog.last_update.lock().unwrap().clone().unwrap();
    assert_eq!(sent.title.as_deref(), Some("Renamed"));
    assert_eq!(sent.summary, None);
    assert_eq!(sent.is_featured, None);
    assert_eq!(sent.course_type, 0);
    assert_eq!(sent.level, 3);

    let response = gw
        .post("/v1/admin/courses/3/publish")
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let published: Value = response.json().await.unwrap();
    assert_eq!(published["status"], "published");
    let response = gw
        .post("/v1/admin/courses/1/archive")
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    let archived: Value = response.json().await.unwrap();
    assert_eq!(archived["status"], "archived");
}

#[tokio::test]
async fn admin_write_errors_map_to_json_statuses() {
    let gw = spawn_gateway(Options::default()).await;
    let create = |body: Value| {
        gw.post("/v1/admin/courses")
            .bearer_auth(admin())
            .json(&body)
    };

    let cases = [
        (
            create(
                json!({"slug": "py-basics", "title": "Dup", "course_type": "python", "category": "basics"}),
            ),
            StatusCode::CONFLICT,
            "already_exists",
            "py-basics",
        ),
        (
            create(
                json!({"slug": "x", "title": "", "course_type": "python", "category": "basics"}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "title",
        ),
        (
            create(json!({"slug": "x", "title": "X", "course_type": "ruby", "category": "basics"})),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "course_type",
        ),
        (
            create(
                json!({"slug": "x", "title": "X", "course_type": "sql", "category": "basics", "status": "published"}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "status",
        ),
        (
            create(
                json!({"slug": "x", "title": "X", "course_type": "sql", "category": "basics", "level": "expert"}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "level",
        ),
        (
            create(json!({"title": "X", "course_type": "sql", "category": "basics"})),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "slug",
        ),
        (
            gw.post("/v1/admin/courses")
                .bearer_auth(admin())
                .header("content-type", "application/json")
                .body("{\"slug\": "),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "JSON",
        ),
        (
            gw.post("/v1/admin/courses")
                .bearer_auth(admin())
                .header("content-type", "text/plain")
                .body("{}"),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "Content-Type",
        ),
        (
            gw.post("/v1/admin/courses/4/publish").bearer_auth(admin()),
            StatusCode::CONFLICT,
            "failed_precondition",
            "archived",
        ),
        (
            gw.post("/v1/admin/courses/abc/publish")
                .bearer_auth(admin()),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "id",
        ),
        (
            gw.post("/v1/admin/courses/-1/archive").bearer_auth(admin()),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "id",
        ),
        (
            gw.patch("/v1/admin/courses/77")
                .bearer_auth(admin())
                .json(&json!({"title": "X"})),
            StatusCode::NOT_FOUND,
            "not_found",
            "77",
        ),
        (
            gw.patch("/v1/admin/courses/1")
                .bearer_auth(admin())
                .json(&json!({"titel": "X"})),
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "titel",
        ),
        (
            create(
                json!({"slug": "boom", "title": "X", "course_type": "sql", "category": "basics"}),
            ),
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        ),
    ];
    for (request, want_status, want_code, mention) in cases {
        let (status, code, message) = error_of(request.send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (want_status, want_code),
            "{message}"
        );
        assert!(message.contains(mention), "{mention}: {message}");
        assert!(!message.contains("relation"), "{message}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let gw = spawn_gateway(Options::default()).await;
    let (status, code, _) = error_of(gw.get("/v2/nothing").send().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let (status, code, _) = error_of(gw.post("/v1/categories").send().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    // A gRPC client asking for an unknown method gets UNIMPLEMENTED, not an HTML/JSON 404.
    use learnhub_kit::testing::grpc_web;
    let response = gw
        .post("/learnhub.nothing.v1.Nothing/Call")
        .header("content-type", grpc_web::CONTENT_TYPE)
        .body(grpc_web::frame(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "12");
}

#[tokio::test]
async fn health_and_readiness() {
    let gw = spawn_gateway(Options::default()).await;
    let response = gw.get("/healthz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let response = gw.get("/readyz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["dependencies"][0]["name"], "catalog-svc");
    assert_eq!(body["dependencies"][0]["state"], "serving");
}

#[tokio::test]
async fn a_down_catalog_is_503_but_the_gateway_stays_alive() {
    let gw = spawn_gateway(Options {
        catalog_down: true,
        timeout_ms: 1000,
        ..Options::default()
    })
    .await;
    assert_eq!(
        gw.get("/healthz").send().await.unwrap().status(),
        StatusCode::OK
    );
    // Still ready (no cascade: the down upstream is answered per request), saying what is down.
    let response = gw.get("/readyz").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(body["dependencies"][0]["name"], "catalog-svc");
    assert_eq!(body["dependencies"][0]["ready"], false);
    assert_ne!(body["dependencies"][0]["state"], "serving");
    for path in ["/v1/categories", "/v1/catalog", "/v1/courses/1"] {
        let (status, code, message) = error_of(gw.get(path).send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            "{path}"
        );
        assert!(message.contains("catalog-svc"), "{message}");
    }
}

#[tokio::test]
async fn a_hanging_catalog_times_out_as_503() {
    let catalog = FakeCatalog {
        hang_categories: true,
        ..FakeCatalog::new()
    };
    let gw = spawn_gateway(Options {
        catalog,
        timeout_ms: 200,
        ..Options::default()
    })
    .await;
    let (status, code, message) = error_of(gw.get("/v1/categories").send().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    );
    assert!(message.contains("catalog-svc"), "{message}");
}

#[tokio::test]
async fn a_bad_token_on_a_public_route_is_401() {
    let gw = spawn_gateway(Options::default()).await;
    for path in ["/v1/categories", "/v1/catalog", "/v1/courses/1"] {
        let response = gw.get(path).bearer_auth("junk").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        let response = gw
            .get(path)
            .bearer_auth(token(Role::Learner, "5"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn bad_course_fields_are_refused_at_the_gateway_as_catalog_svc_would() {
    let gw = spawn_gateway(Options::default()).await;
    // The fake catalog would create a course from any of these: a 400 means the gateway refused.
    let create = |change: Value| {
        let mut body = json!({"slug": "new-course", "title": "New", "course_type": "python", "category": "basics"});
        body.as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        gw.post("/v1/admin/courses")
            .bearer_auth(admin())
            .json(&body)
    };
    let update = |body: Value| {
        gw.patch("/v1/admin/courses/1")
            .bearer_auth(admin())
            .json(&body)
    };
    let long_slug = "a".repeat(200);
    let cases = [
        (
            create(json!({"slug": "-a"})),
            "slug: must not start or end with -",
        ),
        (
            create(json!({"slug": "123"})),
            "slug: must contain a letter (all digits reads as an id)",
        ),
        (
            create(json!({"slug": long_slug})),
            "slug: at most 100 characters",
        ),
        (
            create(json!({"slug": "Intro SQL"})),
            "slug: only a-z, 0-9 and - are allowed",
        ),
        (create(json!({"title": "   "})), "title: must not be empty"),
        (
            create(json!({"title": "x".repeat(201)})),
            "title: at most 200 characters",
        ),
        (
            create(json!({"summary": "x".repeat(2_001)})),
            "summary: at most 2000 characters",
        ),
        (
            create(json!({"category": "a-"})),
            "category: must not start or end with -",
        ),
        (
            update(json!({"slug": "-a"})),
            "slug: must not start or end with -",
        ),
        (update(json!({"title": ""})), "title: must not be empty"),
        (
            update(json!({"category": "42"})),
            "category: must contain a letter (all digits reads as an id)",
        ),
    ];
    for (request, want) in cases {
        let (status, code, message) = error_of(request.send().await.unwrap()).await;
        assert_eq!(
            (status, code.as_str(), message.as_str()),
            (StatusCode::BAD_REQUEST, "invalid_argument", want)
        );
    }
    assert!(
        gw.catalog.last_update.lock().unwrap().is_none(),
        "no refused PATCH reached catalog-svc"
    );

    // A title with spaces around it is valid (catalog-svc trims it) and goes through.
    let response = create(json!({"title": "  Spaced  "})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}
