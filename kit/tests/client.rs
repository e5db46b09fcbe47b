//! What a caller sees when the callee's process dies under it.
#![allow(clippy::unwrap_used)]
use std::time::Duration;

use learnhub_kit::client::{ClientOptions, connect};
use tokio::io::AsyncReadExt;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A peer that takes the connection, reads what the caller sends, then drops it as a killed
/// process would: the call fails UNAVAILABLE (tonic alone says UNKNOWN "transport error", which
/// a gateway would have to answer with a 500).
#[tokio::test]
async fn a_callee_that_dies_mid_call_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buffer = [0u8; 1024];
            let _ = socket.read(&mut buffer).await;
            drop(socket);
        }
    });
    let channel = connect(
        "catalog-svc",
        "--catalog-addr",
        &format!("http://{addr}"),
        &ClientOptions::new(Duration::from_secs(5)),
    )
    .unwrap();
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("catalog-svc"), "{status:?}");
}
