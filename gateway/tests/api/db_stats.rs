//! `GET /v1/admin/db/stats` and its gRPC twin: admin only, both services' statistics in one
//! answer with statements largest total first, enrollment-svc null when not configured. (The
//! figures themselves are checked against real services in catalog-svc's and enrollment-svc's
//! own tests; here the upstreams are the fakes.)
use learnhub_proto::common::v1::GetDbStatsRequest;
use reqwest::StatusCode;
use serde_json::Value;
use tonic::{Code, Request};

use crate::{Options, admin, learner, spawn_gateway};

const PATH: &str = "/v1/admin/db/stats";

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn rest_is_admin_only() {
    let gw = spawn_gateway(Options::default()).await;
    for (bearer, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("not-a-jwt".to_owned()), StatusCode::UNAUTHORIZED),
        (Some(learner()), StatusCode::FORBIDDEN),
    ] {
        let mut request = gw.get(PATH);
        if let Some(bearer) = &bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), want, "{bearer:?}");
        let body: Value = response.json().await.unwrap();
        let code = if want == StatusCode::FORBIDDEN {
            "permission_denied"
        } else {
            "unauthenticated"
        };
        assert_eq!(body["code"], code, "{body}");
    }
}

#[tokio::test]
async fn rest_answers_both_services_largest_total_first() {
    let gw = spawn_gateway(Options {
        enrollment: true,
        ..Options::default()
    })
    .await;
    let response = gw.get(PATH).bearer_auth(admin()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    for (key, service) in [("catalog", "catalog-svc"), ("enrollment", "enrollment-svc")] {
        let stats = &body[key];
        assert_eq!(stats["service"], service, "{body:#}");
        assert_eq!(stats["backend"], "sqlite");
        assert_eq!(stats["since"], "2023-11-14T22:13:20Z");
        assert_eq!(stats["totals"]["statements"], 6);
        assert_eq!(stats["totals"]["rpc_calls"], 2);
        assert_eq!(stats["thresholds"]["slow_query_ms"], 100.0);
        assert_eq!(stats["thresholds"]["n_plus_one"], 5);
        let statements: Vec<(&str, u64, f64)> = stats["statements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["statement"].as_str().unwrap(),
                    s["count"].as_u64().unwrap(),
                    s["total_ms"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            statements,
            [("SELECT big", 2, 8.0), ("SELECT small", 4, 1.0)],
            "largest total first"
        );
        let rpc = &stats["rpcs"][0];
        assert_eq!(rpc["rpc"], format!("/{service}/Get"));
        assert_eq!(
            (&rpc["calls"], &rpc["statements"], &rpc["avg_statements"]),
            (&Value::from(2), &Value::from(6), &Value::from(3.0))
        );
        assert_eq!(rpc["n_plus_one_findings"], Value::Array(vec![]));
    }
}

#[tokio::test]
async fn an_unconfigured_enrollment_service_is_null() {
    let gw = spawn_gateway(Options::default()).await;
    let response = gw.get(PATH).bearer_auth(admin()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["catalog"]["service"], "catalog-svc");
    assert_eq!(body["enrollment"], Value::Null, "{body:#}");
}

#[tokio::test]
async fn a_down_catalog_is_unavailable() {
    let gw = spawn_gateway(Options {
        catalog_down: true,
        ..Options::default()
    })
    .await;
    let response = gw.get(PATH).bearer_auth(admin()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn grpc_twin_checks_the_role_and_answers_both() {
    let gw = spawn_gateway(Options {
        enrollment: true,
        ..Options::default()
    })
    .await;
    let mut client = gw.grpc().await;
    let err = client.get_db_stats(GetDbStatsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .get_db_stats(with_token(GetDbStatsRequest {}, "junk"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .get_db_stats(with_token(GetDbStatsRequest {}, &learner()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let stats = client
        .get_db_stats(with_token(GetDbStatsRequest {}, &admin()))
        .await
        .unwrap()
        .into_inner();
    let catalog = stats.catalog.unwrap();
    let enrollment = stats.enrollment.unwrap();
    assert_eq!(
        (catalog.service.as_str(), enrollment.service.as_str()),
        ("catalog-svc", "enrollment-svc")
    );
    let totals: Vec<f64> = catalog.statements.iter().map(|s| s.total_ms).collect();
    assert_eq!(totals, [8.0, 1.0]);

    // Without enrollment-svc the message leaves it unset.
    let gw = spawn_gateway(Options::default()).await;
    let stats = gw
        .grpc()
        .await
        .get_db_stats(with_token(GetDbStatsRequest {}, &admin()))
        .await
        .unwrap()
        .into_inner();
    assert!(stats.catalog.is_some());
    assert!(stats.enrollment.is_none());
}
