//! Rate limits per caller and route class, the submission quota, and the server's load limits,
//! over REST, gRPC and one HTTP/2 connection flooded with streams.
use std::{net::SocketAddr, sync::Arc, sync::atomic::Ordering, time::Duration};

use gateway::{auth::Role, limits::LimitConfig};
use http::StatusCode;
use learnhub_kit::limits::ServerLimits;
use learnhub_proto::{catalog::v1::ListCategoriesRequest, gateway::v1::SubmitExerciseRequest};
use tokio::sync::Barrier;
use tonic::{Code, metadata::MetadataValue};

use crate::{Options, fakes::FakeCatalog, spawn_gateway, token};

/// Reads limited to `burst` at once, then one a minute: the next call in a test is refused.
fn reads(burst: u32) -> LimitConfig {
    LimitConfig {
        rate_limit_reads_per_minute: 1,
        rate_limit_reads_burst: burst,
        ..LimitConfig::default()
    }
}

async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["code"].as_str().unwrap_or_default().to_owned()
}

/// The status `request` is answered with.
async fn status_of(request: reqwest::RequestBuilder) -> StatusCode {
    request.send().await.unwrap().status()
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn public_reads_over_the_limit_get_429_with_retry_after_and_a_json_body() {
    let gw = spawn_gateway(Options {
        limits: reads(3),
        ..Default::default()
    })
    .await;
    for _ in 0..3 {
        let response = gw.get("/v1/categories").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let refused = gw.get("/v1/categories").send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&refused);
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    assert_eq!(error_code(refused).await, "rate_limited");
    // Liveness, readiness and metrics are never limited.
    let health = gw.get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
}

#[tokio::test]
async fn callers_are_counted_apart_by_token_subject_and_by_address() {
    let gw = spawn_gateway(Options {
        limits: reads(2),
        ..Default::default()
    })
    .await;
    let one = token(Role::Learner, "1");
    for expected in [
        StatusCode::OK,
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        assert_eq!(
            status_of(gw.get("/v1/categories").bearer_auth(&one)).await,
            expected
        );
    }
    // Another learner, and an anonymous caller (by address), still have their whole burst.
    let two = token(Role::Learner, "2");
    assert_eq!(
        status_of(gw.get("/v1/categories").bearer_auth(&two)).await,
        StatusCode::OK
    );
    assert_eq!(status_of(gw.get("/v1/categories")).await, StatusCode::OK);
}

#[tokio::test]
async fn route_classes_have_separate_limits() {
    let gw = spawn_gateway(Options {
        limits: LimitConfig {
            rate_limit_admin_per_minute: 1,
            rate_limit_admin_burst: 1,
            ..reads(1)
        },
        enrollment: true,
        ..Default::default()
    })
    .await;
    let admin = crate::admin();
    assert_eq!(
        status_of(gw.get("/v1/categories").bearer_auth(&admin)).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(gw.get("/v1/categories").bearer_auth(&admin)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The same caller's admin budget is its own.
    assert_eq!(
        status_of(gw.get("/v1/admin/users/7").bearer_auth(&admin)).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(gw.get("/v1/admin/users/7").bearer_auth(&admin)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn grpc_calls_over_the_limit_get_resource_exhausted_and_share_the_rest_budget() {
    let gw = spawn_gateway(Options {
        limits: reads(3),
        ..Default::default()
    })
    .await;
    let mut grpc = gw.grpc().await;
    for _ in 0..2 {
        grpc.list_categories(ListCategoriesRequest {})
            .await
            .unwrap();
    }
    // The third read of this address goes over REST: the budget is the caller's, not the
    // protocol's.
    let response = gw.get("/v1/categories").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let status = grpc
        .list_categories(ListCategoriesRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let wait: u64 = status
        .metadata()
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "retry-after: {wait}");
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let untrusted = spawn_gateway(Options {
        limits: reads(2),
        ..Default::default()
    })
    .await;
    let statuses = forwarded_reads(
        &untrusted.url,
        &["203.0.113.1", "203.0.113.2", "203.0.113.3"],
    )
    .await;
    // Each request claims another client, but the connection's address is what counts.
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );

    let trusted = spawn_gateway(Options {
        limits: LimitConfig {
            trusted_proxies: vec!["127.0.0.0/8".parse().unwrap()],
            ..reads(2)
        },
        ..Default::default()
    })
    .await;
    let statuses = forwarded_reads(
        &trusted.url,
        &["203.0.113.1", "203.0.113.1", "203.0.113.1", "203.0.113.2"],
    )
    .await;
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::OK
        ]
    );
    // A client cannot pick its key by writing its own X-Forwarded-For in front of the proxy's.
    let http = reqwest::Client::new();
    let spoofed = http
        .get(format!("{}/v1/categories", trusted.url))
        .header("x-forwarded-for", "198.51.100.9, 203.0.113.1")
        .send()
        .await
        .unwrap();
    assert_eq!(spoofed.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn forwarded_reads(url: &str, clients: &[&str]) -> Vec<StatusCode> {
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for client in clients {
        let response = http
            .get(format!("{url}/v1/categories"))
            .header("x-forwarded-for", *client)
            .send()
            .await
            .unwrap();
        statuses.push(response.status());
    }
    statuses
}

/// A submission's JSON body of `code_bytes` bytes of code.
fn submission(code_bytes: usize) -> String {
    serde_json::json!({"code": "x".repeat(code_bytes), "passed": true, "score": 90}).to_string()
}

#[tokio::test]
async fn a_learner_over_the_submission_quota_gets_429_and_other_learners_are_unaffected() {
    const QUOTA: u32 = 64 * 1024;
    let gw = spawn_gateway(Options {
        enrollment: true,
        limits: LimitConfig {
            submission_quota_bytes_per_hour: QUOTA,
            ..LimitConfig::default()
        },
        ..Default::default()
    })
    .await;
    let body = submission(16_000);
    let fits = QUOTA as usize / body.len();
    let one = token(Role::Learner, "1");
    let post = |token: &str| {
        gw.post("/v1/exercises/5/submissions")
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    for _ in 0..fits {
        let response = post(&one).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let refused = post(&one).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&refused) >= 1);
    assert_eq!(error_code(refused).await, "quota_exceeded");

    let two = token(Role::Learner, "2");
    let response = post(&two).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    // Over gRPC the same learner's quota is spent too.
    let mut grpc = gw.grpc().await;
    let mut request = tonic::Request::new(SubmitExerciseRequest {
        exercise_id: 5,
        code: "x".repeat(16_000),
        passed: true,
        score: 90,
    });
    let bearer: MetadataValue<_> = format!("Bearer {one}").parse().unwrap();
    request.metadata_mut().insert("authorization", bearer);
    let status = grpc.submit_exercise(request).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

#[tokio::test]
async fn a_submission_larger_than_the_whole_quota_is_refused_as_too_large() {
    let gw = spawn_gateway(Options {
        enrollment: true,
        limits: LimitConfig {
            submission_quota_bytes_per_hour: 1024,
            ..LimitConfig::default()
        },
        ..Default::default()
    })
    .await;
    let response = gw
        .post("/v1/exercises/5/submissions")
        .bearer_auth(crate::learner())
        .header("content-type", "application/json")
        .body(submission(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(response).await, "payload_too_large");
}

/// Rate limits off: what is left is the server's own load limits.
fn server_limits_only(server: ServerLimits) -> LimitConfig {
    LimitConfig {
        server,
        ..LimitConfig::off()
    }
}

/// What one HTTP/2 connection flooded with `n` concurrent `GET path` streams got back.
#[derive(Debug, Default)]
struct Flood {
    advertised_streams: usize,
    ok: usize,
    shed: usize,
    other: Vec<u16>,
    stream_errors: usize,
}

/// Opens one HTTP/2 connection and sends `n` requests on it at once, as
/// `h2load -c 1 -m n` does.
async fn flood(addr: SocketAddr, path: &str, n: usize) -> Flood {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let uri = format!("http://{addr}{path}");
    let send = |mut client: h2::client::SendRequest<_>, uri: String| async move {
        let request = http::Request::get(uri).body(()).unwrap();
        client = client.ready().await?;
        let (response, _) = client.send_request(request, true)?;
        let (head, mut body) = response.await?.into_parts();
        // Read to the end: unread DATA frames would count against the client's frame budget.
        while let Some(chunk) = body.data().await {
            body.flow_control().release_capacity(chunk?.len())?;
        }
        Ok::<_, h2::Error>(head.status.as_u16())
    };
    // One request first: the server's SETTINGS have arrived once it is answered.
    let first = send(client.clone(), uri.clone()).await.unwrap();
    let mut outcome = Flood {
        advertised_streams: client.current_max_send_streams(),
        ..Flood::default()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        tasks.spawn(send(client.clone(), uri.clone()));
    }
    let mut record = |status: Result<u16, h2::Error>| match status {
        Ok(200) => outcome.ok += 1,
        Ok(503) => outcome.shed += 1,
        Ok(other) => outcome.other.push(other),
        Err(_) => outcome.stream_errors += 1,
    };
    record(Ok(first));
    while let Some(joined) = tasks.join_next().await {
        record(joined.unwrap());
    }
    outcome
}

#[tokio::test]
async fn one_connection_flooding_thousands_of_streams_gets_no_500_and_a_stream_cap() {
    const STREAMS: usize = 3000;
    let gw = spawn_gateway(Options {
        limits: server_limits_only(ServerLimits::default()),
        ..Default::default()
    })
    .await;
    let flood = flood(gw.addr, "/v1/categories", STREAMS).await;
    assert_eq!(flood.advertised_streams, 256, "{flood:?}");
    assert!(flood.other.is_empty(), "{flood:?}");
    assert_eq!(flood.stream_errors, 0, "{flood:?}");
    assert_eq!(flood.ok + flood.shed, STREAMS + 1, "{flood:?}");
    assert!(flood.ok > 0, "{flood:?}");
    // A second client is served meanwhile and after.
    let response = gw.get("/v1/categories").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn requests_beyond_the_in_flight_cap_are_shed_with_503_json_and_unavailable() {
    let barrier = Arc::new(Barrier::new(3));
    let gw = spawn_gateway(Options {
        catalog: FakeCatalog {
            rendezvous: Some(barrier.clone()),
            ..FakeCatalog::new()
        },
        limits: server_limits_only(ServerLimits {
            max_in_flight_requests: 1,
            ..ServerLimits::default()
        }),
        ..Default::default()
    })
    .await;
    // The catalog page holds the one permit until the test joins the fake's rendezvous.
    let held = tokio::spawn(gw.get("/v1/catalog").send());
    while gw.catalog.list_calls.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shed = gw.get("/v1/categories").send().await.unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry_after(&shed), 1);
    assert_eq!(error_code(shed).await, "unavailable");
    let status = gw
        .grpc()
        .await
        .list_categories(ListCategoriesRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    // Probes are never shed.
    let health = gw.get("/healthz").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    barrier.wait().await;
    let held = held.await.unwrap().unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let after = gw.get("/v1/categories").send().await.unwrap();
    assert_eq!(after.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_request_past_the_server_deadline_gets_503_json_or_deadline_exceeded() {
    let gw = spawn_gateway(Options {
        catalog: FakeCatalog {
            hang_categories: true,
            ..FakeCatalog::new()
        },
        // The gateway's own upstream timeout would answer first otherwise.
        timeout_ms: 600_000,
        limits: server_limits_only(ServerLimits {
            request_timeout_secs: 1,
            ..ServerLimits::default()
        }),
        ..Default::default()
    })
    .await;
    let response = gw.get("/v1/categories").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(response).await, "timeout");
    let status = gw
        .grpc()
        .await
        .list_categories(ListCategoriesRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
}
