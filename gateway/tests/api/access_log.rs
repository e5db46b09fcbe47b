//! Audit (issue 10 §5): request ids on every answer, one access line per request, an audit event
//! per admin write and cache invalidation. Logs are captured with `learnhub_kit::capture` (the
//! tests run on one thread, so the gateway's tasks log to the test's subscriber).
use learnhub_kit::capture::{Captured, EventRecord, capture};
use learnhub_proto::{
    cache::v1::InvalidatePatternRequest,
    catalog::v1::{ListCategoriesRequest, PublishCourseRequest},
};
use reqwest::StatusCode;
use serde_json::json;
use tonic::Request;

use crate::{Options, admin, learner, spawn_gateway};

/// The events whose `message` is `message`, once the server has written them: an access line is
/// written when the server drops the response body, which may come just after the client has
/// read it, so the server's task is given turns (no clock) until it has.
async fn events(captured: &Captured, message: &str, wanted: usize) -> Vec<EventRecord> {
    for _ in 0..10_000 {
        let found: Vec<_> = captured
            .events()
            .into_iter()
            .filter(|event| event.field("message") == Some(message))
            .collect();
        if found.len() >= wanted {
            return found;
        }
        tokio::task::yield_now().await;
    }
    panic!(
        "fewer than {wanted} {message:?} events: {:#?}",
        captured.events()
    );
}

fn the_one<'a>(events: &'a [EventRecord], request_id: &str) -> &'a EventRecord {
    let matching: Vec<_> = events
        .iter()
        .filter(|event| event.field("request_id") == Some(request_id))
        .collect();
    assert_eq!(matching.len(), 1, "{request_id}: {events:#?}");
    matching[0]
}

#[tokio::test]
async fn every_rest_request_gets_a_request_id_and_one_access_line() {
    let (subscriber, captured) = capture();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let gw = spawn_gateway(Options::default()).await;

    let response = gw
        .get("/v1/courses/sql-joins")
        .bearer_auth(learner())
        .header("x-request-id", "client-chosen-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], "client-chosen-42");

    // An id that is not sane (a space, too long) is replaced by a fresh UUID.
    let replaced = gw
        .get("/no/such/route")
        .header("x-request-id", "has a space")
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::NOT_FOUND);
    let fresh = replaced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(uuid::Uuid::parse_str(&fresh).is_ok(), "{fresh}");

    let lines = events(&captured, "request", 2).await;
    let line = the_one(&lines, "client-chosen-42");
    assert_eq!(line.level, tracing::Level::INFO);
    assert_eq!(line.field("method"), Some("GET"));
    assert_eq!(line.field("route"), Some("/v1/courses/{key}"));
    assert_eq!(line.field("status"), Some("200"));
    assert_eq!(line.field("caller"), Some("1"));
    let duration: f64 = line.field("duration_ms").unwrap().parse().unwrap();
    assert!(duration >= 0.0);

    let line = the_one(&lines, &fresh);
    assert_eq!(line.field("route"), Some("unmatched"));
    assert_eq!(line.field("status"), Some("404"));
    assert_eq!(line.field("caller"), Some("anonymous"));
}

#[tokio::test]
async fn grpc_calls_get_request_ids_and_access_lines_with_their_grpc_status() {
    let (subscriber, captured) = capture();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let gw = spawn_gateway(Options::default()).await;
    let mut client = gw.grpc().await;

    let mut request = Request::new(ListCategoriesRequest {});
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-ok-1".parse().unwrap());
    let response = client.list_categories(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "grpc-ok-1"
    );

    let mut request = Request::new(PublishCourseRequest { id: 2 });
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-denied-1".parse().unwrap());
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", learner()).parse().unwrap(),
    );
    let status = client.publish_course(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert_eq!(
        status.metadata().get("x-request-id").unwrap(),
        "grpc-denied-1"
    );

    let lines = events(&captured, "request", 2).await;
    let ok = the_one(&lines, "grpc-ok-1");
    assert_eq!(
        ok.field("route"),
        Some("/learnhub.gateway.v1.GatewayService/ListCategories")
    );
    assert_eq!(ok.field("grpc_status"), Some("0"));
    assert_eq!(ok.field("caller"), Some("anonymous"));
    let denied = the_one(&lines, "grpc-denied-1");
    assert_eq!(denied.field("grpc_status"), Some("7"));
    assert_eq!(denied.field("caller"), Some("1"));
}

#[tokio::test]
async fn admin_writes_are_audited_with_who_what_when_and_outcome() {
    let (subscriber, captured) = capture();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let gw = spawn_gateway(Options::default()).await;

    let created = gw
        .post("/v1/admin/courses")
        .bearer_auth(admin())
        .header("x-request-id", "create-1")
        .json(&json!({"slug": "new-course", "title": "New", "course_type": "sql", "category": "basics"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let denied = gw
        .post("/v1/admin/courses/2/archive")
        .bearer_auth(learner())
        .header("x-request-id", "archive-1")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let mut publish = Request::new(PublishCourseRequest { id: 999 });
    publish.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", admin()).parse().unwrap(),
    );
    publish
        .metadata_mut()
        .insert("x-request-id", "publish-1".parse().unwrap());
    let status = gw.grpc().await.publish_course(publish).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let mut request = Request::new(InvalidatePatternRequest {
        pattern: "catalog:*".into(),
        relay: None,
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", admin()).parse().unwrap(),
    );
    request
        .metadata_mut()
        .insert("x-request-id", "invalidate-1".parse().unwrap());
    // No cache-svc is configured: the attempt is audited with what the caller got.
    let status = gw.grpc().await.invalidate_cache(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);

    let audits = events(&captured, "audit", 3).await;
    assert_eq!(audits.len(), 3, "{audits:#?}");
    let create = the_one(&audits, "create-1");
    assert_eq!(create.field("action"), Some("course.create"));
    assert_eq!(create.field("resource"), Some("course slug \"new-course\""));
    assert_eq!(create.field("caller"), Some("1000"));
    assert_eq!(create.field("role"), Some("admin"));
    assert_eq!(create.field("outcome"), Some("ok"));
    let at = create.field("at").unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at}");

    let publish = the_one(&audits, "publish-1");
    assert_eq!(publish.field("action"), Some("course.publish"));
    assert_eq!(publish.field("resource"), Some("course 999"));
    assert_eq!(publish.field("caller"), Some("1000"));
    assert_eq!(publish.field("outcome"), Some("not_found"));
    assert_eq!(publish.level, tracing::Level::WARN);

    // A learner is no admin: the refusal is in the access log, not an audit event.
    let lines = events(&captured, "request", 4).await;
    let archive = the_one(&lines, "archive-1");
    assert_eq!(archive.field("status"), Some("403"));
    assert_eq!(archive.field("caller"), Some("1"));
    assert!(
        audits
            .iter()
            .all(|event| event.field("request_id") != Some("archive-1"))
    );

    let invalidate = the_one(&audits, "invalidate-1");
    assert_eq!(invalidate.field("action"), Some("cache.invalidate"));
    assert_eq!(
        invalidate.field("resource"),
        Some("cache pattern \"catalog:*\"")
    );
    assert_eq!(invalidate.field("outcome"), Some("unavailable"));

    // Reads are not audited.
    gw.get("/v1/categories").send().await.unwrap();
    events(&captured, "request", 5).await;
    assert_eq!(events(&captured, "audit", 3).await.len(), 3);
}
