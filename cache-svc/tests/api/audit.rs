//! Every invalidation and clear is an audit event (target `learnhub::audit`): who asked, what, and
//! how it went.
use learnhub_kit::capture::capture;
use learnhub_proto::cache::v1::{ClearRequest, InvalidatePatternRequest};

use crate::helpers::spawn_app;

#[tokio::test]
async fn invalidations_and_clears_are_audit_events() {
    let (subscriber, captured) = capture();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let app = spawn_app().await;
    assert!(app.set("audited:1", b"v", 60).await);
    let mut grpc = app.grpc.clone();
    let removed = grpc
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: "audited:*".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 1);
    grpc.clear(ClearRequest {}).await.unwrap();

    let audits: Vec<_> = captured
        .events()
        .into_iter()
        .filter(|event| event.field("message") == Some("audit"))
        .collect();
    assert_eq!(audits.len(), 2, "{audits:#?}");
    let invalidation = &audits[0];
    assert_eq!(invalidation.field("action"), Some("cache.invalidate"));
    assert_eq!(
        invalidation.field("resource"),
        Some("Namespace(\"audited\")")
    );
    assert_eq!(invalidation.field("removed"), Some("1"));
    assert_eq!(invalidation.field("outcome"), Some("ok"));
    assert!(
        invalidation
            .field("caller")
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{invalidation:?}"
    );
    assert_eq!(audits[1].field("action"), Some("cache.clear"));
}
