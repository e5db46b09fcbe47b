//! Stale-if-error: with catalog-svc down, public reads are answered from their last good copy,
//! marked `x-learnhub-stale-seconds`; what was never read, or is not public, is a 503.
use std::sync::atomic::Ordering;

use learnhub_proto::catalog::v1::{GetCourseRequest, get_course_request::Key};
use serde_json::Value;

use crate::{Options, admin, spawn_gateway};

const STALE: &str = "x-learnhub-stale-seconds";

#[tokio::test]
async fn public_reads_outlive_catalog_svc_marked_stale() {
    let gateway = spawn_gateway(Options::default()).await;
    let mut fresh = Vec::new();
    for path in [
        "/v1/catalog?page_size=10",
        "/v1/courses/1",
        "/v1/categories",
    ] {
        let response = gateway.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.headers().get(STALE).is_none(), "{path}");
        fresh.push(response.json::<Value>().await.unwrap());
    }
    // A draft, read by an admin: not anyone's to see, so never kept.
    let draft = gateway
        .get("/v1/courses/3")
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(draft.status(), 200);

    gateway.catalog.down.store(true, Ordering::SeqCst);
    for (path, before) in [
        "/v1/catalog?page_size=10",
        "/v1/courses/1",
        "/v1/categories",
    ]
    .into_iter()
    .zip(&fresh)
    {
        let response = gateway.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let age: u64 = response.headers()[STALE].to_str().unwrap().parse().unwrap();
        assert!(age < 60, "{path}: {age}");
        assert_eq!(&response.json::<Value>().await.unwrap(), before, "{path}");
    }
    for path in ["/v1/courses/2", "/v1/catalog?page_size=5"] {
        let response = gateway.get(path).send().await.unwrap();
        assert_eq!(
            response.status(),
            503,
            "{path}: never read, nothing to stand in"
        );
    }
    let draft = gateway
        .get("/v1/courses/3")
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(draft.status(), 503);

    // gRPC says it in the metadata.
    let mut grpc = gateway.grpc().await;
    let answer = grpc
        .get_course(GetCourseRequest {
            key: Some(Key::Id(1)),
        })
        .await
        .unwrap();
    assert!(answer.metadata().get(STALE).is_some());
    assert_eq!(answer.into_inner().course.unwrap().id, 1);

    // Back up: fresh answers again, unmarked.
    gateway.catalog.down.store(false, Ordering::SeqCst);
    let response = gateway.get("/v1/courses/1").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().get(STALE).is_none());
}
