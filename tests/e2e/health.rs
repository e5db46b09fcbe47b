//! Liveness, readiness and the gRPC health service, with catalog-svc up and then down; server
//! reflection. None of it depends on the database backend: each test runs once, on SQLite.
use learnhub_db::Backend;
use serde_json::Value;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::helpers::{error_of, spawn_platform};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_the_gateways_own_and_reads_follow_catalog_svc() {
    let mut platform = spawn_platform(Backend::Sqlite).await;
    assert_eq!(platform.get_json("/healthz").await["status"], "ok");
    let ready: Value = platform.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["dependencies"][0]["name"], "catalog-svc");

    let channel = tonic::transport::Endpoint::from_shared(platform.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", "learnhub.gateway.v1.GatewayService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, i32::from(ServingStatus::Serving), "{service:?}");
    }

    platform.stop_catalog().await;
    // Alive and ready (readiness is the gateway's own: no cascade), saying what is down; reads
    // say why they fail.
    assert_eq!(platform.get_json("/healthz").await["status"], "ok");
    let ready: Value = platform.get_json("/readyz").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["dependencies"][0]["name"], "catalog-svc");
    assert_eq!(ready["dependencies"][0]["ready"], false);
    for path in ["/v1/catalog", "/v1/categories", "/v1/courses/1"] {
        let (status, code, message) = error_of(platform.get(path).send().await.unwrap()).await;
        assert_eq!(
            (status.as_u16(), code.as_str()),
            (503, "unavailable"),
            "{path}"
        );
        assert!(message.contains("catalog-svc"), "{message}");
    }
}

/// What `grpcurl -plaintext HOST:PORT list` and `describe` ask, on both reflection versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_and_describes_services() {
    use tonic_reflection::pb::{v1, v1alpha};

    let platform = spawn_platform(Backend::Sqlite).await;
    let channel = tonic::transport::Endpoint::from_shared(platform.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();

    let mut client = v1::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let requests = [
        v1::server_reflection_request::MessageRequest::ListServices(String::new()),
        v1::server_reflection_request::MessageRequest::FileContainingSymbol(
            "learnhub.gateway.v1.GatewayService".into(),
        ),
    ]
    .map(|message| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    });
    let mut answers = client
        .server_reflection_info(futures::stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "learnhub.gateway.v1.GatewayService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let Some(v1::server_reflection_response::MessageResponse::FileDescriptorResponse(files)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());

    let mut alpha = v1alpha::server_reflection_client::ServerReflectionClient::new(channel);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = alpha
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "learnhub.gateway.v1.GatewayService")
    );
}
