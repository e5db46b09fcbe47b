//! What a caller sees when the callee's process dies under it: alone, or one of two replicas.
#![allow(clippy::unwrap_used)]
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use learnhub_kit::client::{ClientOptions, Resolver, ServiceChannel, connect};
use tokio::io::AsyncReadExt;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A peer that takes each connection, reads what the caller sends, then drops it, as a process
/// killed under the call would; with the number of connections it took.
async fn dropping_peer() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let mut buffer = [0u8; 1024];
            let _ = socket.read(&mut buffer).await;
            drop(socket);
        }
    });
    (addr, accepted)
}

/// A peer that takes the connection, reads what the caller sends, then drops it as a killed
/// process would: the call fails UNAVAILABLE (tonic alone says UNKNOWN "transport error", which
/// a gateway would have to answer with a 500).
#[tokio::test]
async fn a_callee_that_dies_mid_call_is_unavailable() {
    let (addr, _) = dropping_peer().await;
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

/// A health server on its own runtime, so killing it closes its listener and every connection
/// at once, as a killed process does.
struct Replica {
    addr: std::net::SocketAddr,
    calls: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Replica {
    fn start(port: u16) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let counted = calls.clone();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let counting = tonic_health::pb::health_server::HealthServer::new(Counting(counted));
            tonic::transport::Server::builder()
                .add_service(counting)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        Self {
            addr,
            calls,
            runtime: Some(runtime),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A health service that answers every check SERVING, counting them.
struct Counting(Arc<AtomicUsize>);

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for Counting {
    type WatchStream = futures::stream::BoxStream<
        'static,
        Result<tonic_health::pb::HealthCheckResponse, tonic::Status>,
    >;

    async fn check(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(tonic::Response::new(
            tonic_health::pb::HealthCheckResponse {
                status: tonic_health::pb::health_check_response::ServingStatus::Serving.into(),
            },
        ))
    }

    async fn watch(
        &self,
        _request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("watch"))
    }
}

/// `count` checks, `parallel` at a time; the failures (code and message).
async fn checks(channel: &ServiceChannel, count: usize, parallel: usize) -> Vec<String> {
    futures::stream::iter(0..count)
        .map(|_| {
            let mut client = HealthClient::new(channel.clone());
            async move {
                let answered = client.check(HealthCheckRequest::default()).await;
                answered
                    .err()
                    .map(|status| format!("{:?}: {}", status.code(), status.message()))
            }
        })
        .buffer_unordered(parallel)
        .filter_map(|failed| async move { failed })
        .collect::<Vec<_>>()
        .await
}

fn two_replicas(a: &Replica, b: &Replica, service: &'static str) -> ServiceChannel {
    let resolver = Resolver::fixed(HashMap::from([(
        "replicas.test".to_owned(),
        vec![a.addr, b.addr],
    )]));
    connect(
        service,
        "--catalog-addr",
        "http://replicas.test:1",
        &ClientOptions {
            resolver,
            ..ClientOptions::new(Duration::from_secs(2))
        },
    )
    .unwrap()
}

/// Two replicas behind one name, one killed under load: no call fails (calls in flight on it
/// are retried on the other, later ones do not go to it), it is ejected, and once it is back it
/// is re-admitted and called again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_of_two_killed_no_call_fails_and_it_comes_back() {
    let mut a = Replica::start(0);
    let b = Replica::start(0);
    let channel = two_replicas(&a, &b, "catalog-svc");
    assert_eq!(checks(&channel, 200, 8).await, Vec::<String>::new());
    assert!(
        a.calls() > 20 && b.calls() > 20,
        "{} / {}",
        a.calls(),
        b.calls()
    );

    let load = {
        let channel = channel.clone();
        tokio::spawn(async move { checks(&channel, 3000, 8).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let port = a.addr.port();
    a.kill();
    let failures = load.await.unwrap();
    assert_eq!(failures, Vec::<String>::new());
    let states = channel.replicas();
    assert!(
        states.contains(&(Some(a.addr), true)) && states.contains(&(Some(b.addr), false)),
        "{states:?}"
    );

    let a = Replica::start(port);
    let started = std::time::Instant::now();
    while channel.replicas().contains(&(Some(a.addr), true)) {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "not re-admitted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(checks(&channel, 200, 8).await, Vec::<String>::new());
    assert!(
        a.calls() > 20,
        "the restarted replica got {} calls",
        a.calls()
    );
}

/// A connection that breaks under a call: an idempotent call is tried again (three
/// connections in all), a call that is not (creating a course) is not: it may have been
/// served.
#[tokio::test]
async fn only_idempotent_calls_are_retried_once_sent() {
    let (addr, accepted) = dropping_peer().await;
    let channel = connect(
        "catalog-svc",
        "--catalog-addr",
        &format!("http://{addr}"),
        &ClientOptions::new(Duration::from_secs(5)),
    )
    .unwrap();
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);

    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let status = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            "/learnhub.catalog.v1.CatalogService/CreateCourse"
                .parse()
                .unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

/// Both replicas gone: each call could be sent three times, the retry budget lets through only
/// its reserve and a fifth of the calls.
#[tokio::test]
async fn retries_stop_at_the_budget() {
    learnhub_kit::metrics::install("client-test", "0");
    let mut a = Replica::start(0);
    let mut b = Replica::start(0);
    let channel = two_replicas(&a, &b, "budget-svc");
    assert_eq!(checks(&channel, 10, 2).await, Vec::<String>::new());
    a.kill();
    b.kill();
    let calls = 300;
    let failures = checks(&channel, calls, 4).await;
    assert_eq!(failures.len(), calls);
    assert!(
        failures
            .iter()
            .all(|failure| failure.starts_with("Unavailable")),
        "{failures:?}"
    );
    let retries: f64 = learnhub_kit::metrics::render()
        .lines()
        .filter(|line| {
            line.starts_with(learnhub_kit::client::RETRIES) && line.contains("peer=\"budget-svc\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    // Without the budget: 600 (two retries each). With it: the reserve (10/s × 10 s) and 20 %
    // of the 310 calls.
    assert!(
        retries > 0.0 && retries <= 100.0 + 0.2 * 310.0 + 1.0,
        "{retries} retries"
    );
}
