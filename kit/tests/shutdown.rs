//! Graceful shutdown: health flips to NOT_SERVING for callers already connected, then the
//! server stops.
#![allow(clippy::unwrap_used)]
use learnhub_kit::{server, shutdown::CancellationToken};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn health_flips_to_not_serving_then_the_server_stops() {
    let listener = server::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(server::serve(
        listener,
        tonic::service::Routes::default(),
        &["learnhub.test.v1.Probe"],
        shutdown.clone(),
    ));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "learnhub.test.v1.Probe".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, i32::from(ServingStatus::Serving));

    shutdown.cancel();
    let next = watch.message().await.unwrap().unwrap();
    assert_eq!(next.status, i32::from(ServingStatus::NotServing));

    // The open watch is the last call in flight; once it goes, the server is done.
    drop(watch);
    drop(health);
    running.await.unwrap().unwrap();
}
