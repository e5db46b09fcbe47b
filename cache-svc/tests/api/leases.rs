//! Safe fills: a value loaded before an invalidation is never stored after it.
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use learnhub_cache_client::{CacheClient, CacheKey, CachePattern};
use learnhub_proto::cache::v1::{DeleteRequest, GetRequest, InvalidatePatternRequest, SetRequest};
use tokio::sync::{Notify, oneshot};

use crate::helpers::{Row, TestApp, spawn_app, spawn_memory_app};

#[derive(Debug, Clone, Copy)]
enum Writer {
    Delete,
    Namespace,
    Pattern,
    FreshSet,
}

/// The classic race, forced: the reader misses and reads the old row, then the writer commits and
/// invalidates, then the reader tries to store the old row — and must be refused.
async fn stale_fill_is_refused(app: &TestApp, writer: Writer) {
    let cache = app.cache_client();
    let key = CacheKey::new("catalog")
        .push("course")
        .push_str(&format!("{writer:?}"));
    let db = Arc::new(Mutex::new(Row {
        title: "old".into(),
        version: 1,
    }));
    let (read_tx, read_rx) = oneshot::channel();
    let release = Arc::new(Notify::new());

    let reader = {
        let (cache, key, db, release) = (cache.clone(), key.clone(), db.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, Duration::from_secs(600), || async move {
                    let row = db.lock().unwrap().clone();
                    read_tx.send(()).unwrap();
                    // Paused between the database read and the cache fill.
                    release.notified().await;
                    Ok::<_, tonic::Status>(row)
                })
                .await
        })
    };
    read_rx.await.unwrap();

    // The writer commits, then invalidates.
    let fresh = Row {
        title: "new".into(),
        version: 2,
    };
    *db.lock().unwrap() = fresh.clone();
    let mut grpc = app.grpc.clone();
    match writer {
        Writer::Delete => {
            assert_eq!(cache.delete(std::slice::from_ref(&key)).await.unwrap(), 0);
        }
        Writer::Namespace => {
            cache
                .invalidate(&CachePattern::namespace("catalog"))
                .await
                .unwrap();
        }
        Writer::Pattern => {
            grpc.invalidate_pattern(InvalidatePatternRequest {
                pattern: "catalog:course:*".into(),
                relay: None,
            })
            .await
            .unwrap();
        }
        Writer::FreshSet => {
            use prost::Message;
            let stored = grpc
                .set(SetRequest {
                    key: key.as_str().into(),
                    value: fresh.encode_to_vec(),
                    ttl_seconds: 600,
                    lease: 0,
                })
                .await
                .unwrap()
                .into_inner()
                .stored;
            assert!(stored);
        }
    }
    release.notify_one();

    // The paused request answers with what it read (right for its own moment)...
    let served = reader.await.unwrap().unwrap();
    assert_eq!(served.title, "old");
    // ...but its fill was refused.
    let counters = cache.counters();
    assert_eq!((counters.stored, counters.refused), (0, 1), "{writer:?}");
    assert_eq!(app.stats().await.total.unwrap().sets_refused, 1);

    // Every later read sees the new row.
    for _ in 0..3 {
        let row = cache
            .get_or_load(&key, Duration::from_secs(600), || async {
                Ok::<_, tonic::Status>(db.lock().unwrap().clone())
            })
            .await
            .unwrap();
        assert_eq!(row, fresh, "{writer:?}");
    }
}

async fn all_writers(spawn: impl AsyncFn() -> TestApp) {
    for writer in [
        Writer::Delete,
        Writer::Namespace,
        Writer::Pattern,
        Writer::FreshSet,
    ] {
        let app = spawn().await;
        stale_fill_is_refused(&app, writer).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn stale_fill_is_refused_on_redis() {
    all_writers(spawn_app).await;
}

#[tokio::test]
async fn stale_fill_is_refused_in_memory() {
    all_writers(spawn_memory_app).await;
}

/// The lease contract at the gRPC level.
async fn lease_rules(app: TestApp) {
    let mut grpc = app.grpc.clone();
    let get = |key: &str| GetRequest { key: key.into() };
    let set = |key: &str, lease| SetRequest {
        key: key.into(),
        value: b"v".to_vec(),
        ttl_seconds: 60,
        lease,
    };
    // Two misses before any fill share the lease; the first fill wins, the second is refused.
    let first = grpc.get(get("l:a")).await.unwrap().into_inner();
    let second = grpc.get(get("l:a")).await.unwrap().into_inner();
    assert!(!first.found && first.lease != 0);
    assert_eq!(first.lease, second.lease);
    assert!(
        grpc.set(set("l:a", first.lease))
            .await
            .unwrap()
            .into_inner()
            .stored
    );
    assert!(
        !grpc
            .set(set("l:a", second.lease))
            .await
            .unwrap()
            .into_inner()
            .stored
    );
    // A delete in between voids the lease; a new miss gets a new one.
    let miss = grpc.get(get("l:b")).await.unwrap().into_inner();
    grpc.delete(DeleteRequest {
        keys: vec!["l:b".into()],
        relay: None,
    })
    .await
    .unwrap();
    assert!(
        !grpc
            .set(set("l:b", miss.lease))
            .await
            .unwrap()
            .into_inner()
            .stored
    );
    let again = grpc.get(get("l:b")).await.unwrap().into_inner();
    assert_ne!(again.lease, miss.lease);
    assert!(
        grpc.set(set("l:b", again.lease))
            .await
            .unwrap()
            .into_inner()
            .stored
    );
    // A lease never issued is refused; lease 0 always stores.
    assert!(
        !grpc
            .set(set("l:c", 12345))
            .await
            .unwrap()
            .into_inner()
            .stored
    );
    assert!(grpc.set(set("l:c", 0)).await.unwrap().into_inner().stored);
    app.stop().await;
}

#[tokio::test]
async fn lease_rules_on_redis() {
    lease_rules(spawn_app().await).await;
}

#[tokio::test]
async fn lease_rules_in_memory() {
    lease_rules(spawn_memory_app().await).await;
}

#[allow(dead_code)]
fn _client_is_send(c: CacheClient) -> impl Send {
    async move {
        c.get_or_load(&CacheKey::new("x"), Duration::from_secs(1), || async {
            Ok::<Row, tonic::Status>(Row::default())
        })
        .await
    }
}
