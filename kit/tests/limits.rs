//! The server's connection cap: a connection beyond it is closed at once, the open ones keep
//! being served.
#![allow(clippy::unwrap_used)]
use learnhub_kit::{limits::ServerLimits, server, shutdown::CancellationToken};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test]
async fn a_connection_beyond_the_cap_is_closed_and_the_open_one_is_still_served() {
    let listener = server::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let limits = ServerLimits {
        max_connections: 1,
        ..ServerLimits::default()
    };
    let stop = shutdown.clone();
    let running = tokio::spawn(async move {
        server::serve_with_limits(
            listener,
            tonic::service::Routes::default(),
            &["learnhub.test.v1.Probe"],
            stop,
            &limits,
            &server::Transport::Plaintext,
        )
        .await
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let check = || HealthCheckRequest {
        service: String::new(),
    };
    health.check(check()).await.unwrap();

    // The second connection is accepted by the kernel, then closed by the server unread.
    let mut second = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buffer = [0u8; 64];
    // Without the cap the server would wait for the client's preface: the guard turns that hang
    // into a failure.
    let read = tokio::time::timeout(Duration::from_secs(30), second.read(&mut buffer))
        .await
        .expect("the connection over the cap is closed, not left open");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection over the cap was answered: {read:?}"
    );

    health.check(check()).await.unwrap();
    drop(health);
    shutdown.cancel();
    running.await.unwrap().unwrap();
}
