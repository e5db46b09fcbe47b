//! What one client can make cache-svc hold: requests no larger than the value limit plus a
//! little, and settings that could never hold a value refused at start.
use cache_svc::{Application, Config, MESSAGE_OVERHEAD_BYTES};
use learnhub_proto::cache::v1::{SetManyRequest, SetRequest};
use tonic::Code;

use crate::helpers::{spawn_app_with, spawn_memory_app, test_config};

fn set(key: &str, bytes: usize) -> SetRequest {
    SetRequest {
        key: key.into(),
        value: vec![1; bytes],
        ttl_seconds: 60,
        lease: 0,
    }
}

#[tokio::test]
async fn a_request_larger_than_the_value_limit_plus_overhead_is_not_decoded() {
    let app = spawn_app_with(Config {
        max_value_bytes: 1024,
        ..test_config()
    })
    .await;
    let mut grpc = app.grpc.clone();
    // A batch of values each within the limit, together far beyond one value's worth.
    let entries = (0..4)
        .map(|i| set(&format!("ns:{i}"), 1000))
        .collect::<Vec<_>>();
    let mut batch = SetManyRequest { entries };
    grpc.set_many(batch.clone()).await.unwrap();
    batch.entries = (0..2000)
        .map(|i| set(&format!("ns:{i}"), 1000))
        .collect::<Vec<_>>();
    let status = grpc.set_many(batch).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    // One value over the limit but within the message bound is read and refused by name.
    let status = grpc.set(set("ns:big", 1025)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn the_default_message_bound_fits_the_default_value_limit() {
    let config = Config::default();
    let app = spawn_memory_app().await;
    let mut grpc = app.grpc.clone();
    grpc.set(set("ns:largest", config.max_value_bytes))
        .await
        .unwrap();
    let status = grpc
        .set(set(
            "ns:too-large",
            config.max_value_bytes + MESSAGE_OVERHEAD_BYTES + 1,
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_value_limit_above_the_memory_bound_is_refused_at_start() {
    let err = Application::build(&Config {
        max_value_bytes: 2 << 20,
        memory_max_bytes: 1 << 20,
        ..test_config()
    })
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("max_value_bytes"), "{err}");
    let err = Application::build(&Config {
        memory_max_bytes: 0,
        ..test_config()
    })
    .await
    .err()
    .unwrap();
    assert!(err.to_string().contains("memory_max_bytes"), "{err}");
}
