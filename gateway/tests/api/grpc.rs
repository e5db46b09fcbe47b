//! gRPC and gRPC-Web behaviour, including the enrollment/cache forwarding rules.
use learnhub_kit::testing::grpc_web;
use learnhub_proto::{
    cache::v1::{GetStatsRequest, InvalidatePatternRequest},
    catalog::v1::{
        CourseType, CreateCourseRequest, GetCourseRequest, ListCategoriesRequest,
        ListCategoriesResponse, PublishCourseRequest, get_course_request::Key,
    },
    enrollment::v1::{GetProgressRequest, RecordLessonProgressRequest},
    gateway::v1::{EnrollRequest, GetCatalogPageRequest, GetMeRequest},
};
use prost::Message;
use tonic::{Code, Request};

use crate::{Options, admin, learner, spawn_gateway, token};
use gateway::auth::Role;

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn catalog_reads_over_grpc() {
    let gw = spawn_gateway(Options::default()).await;
    let mut client = gw.grpc().await;
    let page = client
        .get_catalog_page(GetCatalogPageRequest {
            course_type: CourseType::Python.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let slugs: Vec<_> = page
        .courses
        .iter()
        .map(|entry| entry.course.as_ref().unwrap().slug.as_str())
        .collect();
    assert_eq!(slugs, ["py-basics"]);
    assert_eq!(page.summary.unwrap().categories.len(), 1);

    let err = client
        .get_catalog_page(GetCatalogPageRequest {
            page_size: 101,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_size"));
    let err = client
        .get_catalog_page(GetCatalogPageRequest {
            course_type: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let course = client
        .get_course(GetCourseRequest {
            key: Some(Key::Slug("sql-joins".into())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(course.course.unwrap().id, 2);
    let err = client
        .get_course(GetCourseRequest {
            key: Some(Key::Id(3)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client
        .get_course(GetCourseRequest { key: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let categories = client
        .list_categories(ListCategoriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(categories.categories.len(), 2);
}

#[tokio::test]
async fn admin_rpcs_check_the_role() {
    let gw = spawn_gateway(Options::default()).await;
    let mut client = gw.grpc().await;
    let create = || CreateCourseRequest {
        slug: "grpc-course".into(),
        title: "Over gRPC".into(),
        summary: String::new(),
        course_type: CourseType::Sql.into(),
        category: "basics".into(),
        level: 0,
        is_featured: false,
    };
    let err = client.create_course(create()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .create_course(with_token(create(), "junk"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .create_course(with_token(create(), &learner()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let course = client
        .create_course(with_token(create(), &admin()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(course.slug, "grpc-course");
    let err = client
        .publish_course(with_token(PublishCourseRequest { id: 4 }, &admin()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn unconfigured_upstreams_are_unavailable_after_auth() {
    let gw = spawn_gateway(Options::default()).await;
    let mut client = gw.grpc().await;
    let err = client.get_me(GetMeRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .get_me(with_token(GetMeRequest {}, &learner()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(err.message(), "enrollment-svc is not configured");
    let err = client
        .get_cache_stats(with_token(GetStatsRequest {}, &learner()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .get_cache_stats(with_token(GetStatsRequest {}, &admin()))
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unavailable, "cache-svc is not configured")
    );
    let err = client
        .invalidate_cache(with_token(
            InvalidatePatternRequest {
                pattern: "catalog:*".into(),
                relay: None,
            },
            &admin(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn learners_touch_only_their_own_enrollments() {
    let gw = spawn_gateway(Options {
        enrollment: true,
        ..Options::default()
    })
    .await;
    let mut client = gw.grpc().await;
    // User 1 owns enrollment 10; enrollment 20 is user 2's.
    let progress = client
        .get_progress(with_token(
            GetProgressRequest { enrollment_id: 10 },
            &learner(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(progress.enrollment.unwrap().user_id, 1);
    let err = client
        .get_progress(with_token(
            GetProgressRequest { enrollment_id: 20 },
            &learner(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .record_progress(with_token(
            RecordLessonProgressRequest {
                enrollment_id: 20,
                lesson_id: 1,
                completed: true,
            },
            &learner(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .get_progress(with_token(
            GetProgressRequest { enrollment_id: 99 },
            &learner(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // An admin may read anybody's progress.
    client
        .get_progress(with_token(
            GetProgressRequest { enrollment_id: 20 },
            &admin(),
        ))
        .await
        .unwrap();
    // The user id comes from the token, never from the request.
    let enrollment = client
        .enroll(with_token(
            EnrollRequest { course_id: 2 },
            &token(Role::Learner, "2"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((enrollment.user_id, enrollment.course_id), (2, 2));
    let me = client
        .get_me(with_token(GetMeRequest {}, &learner()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.id, 1);
    // A token whose subject is not a user id cannot act as a learner.
    let err = client
        .get_me(with_token(GetMeRequest {}, &token(Role::Learner, "ops")))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // The catalog page carries the caller's enrollment state for its courses.
    let page = client
        .get_catalog_page(with_token(GetCatalogPageRequest::default(), &learner()))
        .await
        .unwrap()
        .into_inner();
    let enrolled: Vec<_> = page
        .courses
        .iter()
        .filter(|entry| entry.enrollment.is_some())
        .map(|entry| (entry.course.as_ref().unwrap().id, entry.completed_lessons))
        .collect();
    assert_eq!(enrolled, [(1, 1)]);
    let body: serde_json::Value = gw
        .get("/v1/catalog")
        .bearer_auth(learner())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["courses"][0]["enrollment"]["status"], "active");
    assert_eq!(body["courses"][0]["completed_lessons"], 1);
    assert!(body["courses"][1].get("enrollment").is_none());
}

#[tokio::test]
async fn grpc_web_over_http1() {
    let gw = spawn_gateway(Options::default()).await;
    let message = ListCategoriesRequest {}.encode_to_vec();
    let response = gw
        .post("/learnhub.gateway.v1.GatewayService/ListCategories")
        .header("content-type", grpc_web::CONTENT_TYPE)
        .header("x-grpc-web", "1")
        .body(grpc_web::frame(&message))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web")
    );
    let body = response.bytes().await.unwrap();
    let response = grpc_web::split_unary(&body);
    let categories = ListCategoriesResponse::decode(response.message).unwrap();
    assert_eq!(categories.categories[0].slug, "basics");
    assert!(
        response.trailers.contains("grpc-status:0"),
        "{}",
        response.trailers
    );
}

#[tokio::test]
async fn grpc_health_is_served() {
    let gw = spawn_gateway(Options::default()).await;
    let channel = tonic::transport::Endpoint::from_shared(gw.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "learnhub.gateway.v1.GatewayService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.status,
        i32::from(tonic_health::pb::health_check_response::ServingStatus::Serving)
    );
}
