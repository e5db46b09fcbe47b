//! `GET /metrics` on the gateway's port: Prometheus text for anyone (no token, never cached),
//! with HTTP durations labelled by route template, gRPC and gRPC-Web calls by method and code,
//! and upstream calls by callee.
use learnhub_kit::testing::grpc_web;
use learnhub_proto::catalog::v1::ListCategoriesRequest;
use prost::Message;
use reqwest::StatusCode;

use crate::{Options, spawn_gateway};

fn has_line(text: &str, prefix: &str) -> bool {
    text.lines().any(|line| line.starts_with(prefix))
}

#[tokio::test]
async fn metrics_are_served_to_anyone_never_cached_and_labelled_by_route_template() {
    let gw = spawn_gateway(Options::default()).await;
    for (path, status) in [
        ("/v1/courses/py-basics", StatusCode::OK),
        ("/v1/courses/no-such-course", StatusCode::NOT_FOUND),
        ("/v1/no/such/route", StatusCode::NOT_FOUND),
    ] {
        let response = gw.get(path).send().await.unwrap();
        assert_eq!(response.status(), status, "{path}");
    }
    let message = ListCategoriesRequest {}.encode_to_vec();
    let response = gw
        .post("/learnhub.gateway.v1.GatewayService/ListCategories")
        .header("content-type", grpc_web::CONTENT_TYPE)
        .body(grpc_web::frame(&message))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.bytes().await.unwrap();

    // A token that would be refused anywhere else does not matter here.
    let response = gw
        .get("/metrics")
        .header("authorization", "Bearer not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.unwrap();
    for prefix in [
        r#"learnhub_build_info{service="gateway",version="0.1.0"} 1"#,
        r#"learnhub_http_server_duration_seconds_count{method="GET",route="/v1/courses/{key}",status="200"}"#,
        r#"learnhub_http_server_duration_seconds_count{method="GET",route="/v1/courses/{key}",status="404"}"#,
        r#"learnhub_http_server_duration_seconds_count{method="GET",route="unmatched",status="404"}"#,
        r#"learnhub_http_server_duration_seconds_bucket{method="GET",route="/v1/courses/{key}",status="200",le="0.0005"}"#,
        r#"learnhub_rpc_server_duration_seconds_count{rpc_service="learnhub.gateway.v1.GatewayService",rpc_method="ListCategories",grpc_code="OK"}"#,
        r#"learnhub_rpc_client_duration_seconds_count{peer="catalog-svc",rpc_service="learnhub.catalog.v1.CatalogService",rpc_method="GetCourse",grpc_code="OK"}"#,
        r#"learnhub_rpc_client_duration_seconds_count{peer="catalog-svc",rpc_service="learnhub.catalog.v1.CatalogService",rpc_method="GetCourse",grpc_code="NOT_FOUND"}"#,
        "process_resident_memory_bytes",
    ] {
        assert!(has_line(&text, prefix), "{prefix} in\n{text}");
    }
    // Labels are templates: no slug or made-up path becomes a series.
    for leaked in ["py-basics", "no-such-course", "/v1/no/such/route"] {
        assert!(!text.contains(leaked), "{leaked} in\n{text}");
    }
}
