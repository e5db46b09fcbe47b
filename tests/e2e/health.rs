//! Liveness, readiness and the gRPC health service, with catalog-svc up and then down.
use learnhub_kit::Backend;
use serde_json::Value;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::{
    helpers::{error_of, spawn_platform},
    on_both_backends,
};

on_both_backends!(health_follows_catalog_svc);

async fn health_follows_catalog_svc(backend: Backend) {
    let mut platform = spawn_platform(backend).await;
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
    // Alive, but not ready, and reads say why.
    assert_eq!(platform.get_json("/healthz").await["status"], "ok");
    let (status, code, message) = error_of(platform.get("/readyz").send().await.unwrap()).await;
    assert_eq!((status.as_u16(), code.as_str()), (503, "unavailable"));
    assert!(message.contains("catalog-svc"), "{message}");
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
