//! The same gateway over gRPC and gRPC-Web (HTTP/1), agreeing with REST.
use learnhub_db::Backend;
use learnhub_kit::testing::grpc_web;
use learnhub_proto::{
    catalog::v1::{
        CourseType, CreateCourseRequest, GetCourseRequest, ListCategoriesRequest,
        ListCategoriesResponse, get_course_request::Key,
    },
    gateway::v1::GetCatalogPageRequest,
};
use prost::Message;
use tonic::Code;

use crate::{
    helpers::{admin, learner, spawn_platform, with_token},
    on_both_backends,
};

on_both_backends!(grpc_matches_rest);

async fn grpc_matches_rest(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let mut client = platform.grpc().await;

    // Paginate python courses over gRPC; compare with REST.
    let mut grpc_ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .get_catalog_page(GetCatalogPageRequest {
                course_type: CourseType::Python.into(),
                category: String::new(),
                page_size: 9,
                page_token,
            })
            .await
            .unwrap()
            .into_inner();
        for entry in &page.courses {
            let course = entry.course.as_ref().unwrap();
            assert_eq!(course.course_type, i32::from(CourseType::Python));
            grpc_ids.push(course.id);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let (rest, _) = crate::helpers::all_pages(&platform, "type=python&page_size=100").await;
    let rest_ids: Vec<i64> = rest.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(grpc_ids, rest_ids);

    let slug = rest[0]["slug"].as_str().unwrap().to_owned();
    let course = client
        .get_course(GetCourseRequest {
            key: Some(Key::Slug(slug.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(course.course.unwrap().slug, slug);
    assert!(!course.lessons.is_empty());

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
            page_token: "garbage!".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_token"));

    let create = || CreateCourseRequest {
        slug: "grpc-made-course".into(),
        title: "Made over gRPC".into(),
        summary: String::new(),
        course_type: CourseType::Python.into(),
        category: "automation".into(),
        level: 0,
        is_featured: false,
    };
    assert_eq!(
        client.create_course(create()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        client
            .create_course(with_token(create(), &learner()))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let created = client
        .create_course(with_token(create(), &admin()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.slug, "grpc-made-course");
    let err = client
        .create_course(with_token(create(), &admin()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = client
        .get_course(GetCourseRequest {
            key: Some(Key::Id(created.id)),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "a draft is not public");
}

/// gRPC-Web framing does not depend on the database backend: once, on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_over_http1() {
    let platform = spawn_platform(Backend::Sqlite).await;
    let message = ListCategoriesRequest {}.encode_to_vec();
    let response = platform
        .post("/learnhub.gateway.v1.GatewayService/ListCategories")
        .header("content-type", grpc_web::CONTENT_TYPE)
        .header("x-grpc-web", "1")
        .body(grpc_web::frame(&message))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let body = response.bytes().await.unwrap();
    let response = grpc_web::split_unary(&body);
    let categories = ListCategoriesResponse::decode(response.message).unwrap();
    assert!(
        response.trailers.contains("grpc-status:0"),
        "{}",
        response.trailers
    );

    let rest = platform.get_json("/v1/categories").await;
    let rest_slugs: Vec<&str> = rest["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["slug"].as_str().unwrap())
        .collect();
    let web_slugs: Vec<&str> = categories
        .categories
        .iter()
        .map(|c| c.slug.as_str())
        .collect();
    assert_eq!(web_slugs, rest_slugs);
}
