//! Statistics are exact for a known workload, in total and per namespace, in both stores.
use learnhub_proto::cache::v1::{
    CounterSet, DeleteRequest, GetRequest, InvalidatePatternRequest, ResetStatsRequest, SetRequest,
};

use crate::helpers::{TestApp, spawn_app, spawn_memory_app};

async fn workload(app: TestApp, store: &str) {
    let mut grpc = app.grpc.clone();
    for key in ["a:1", "a:2", "a:3", "b:1", "b:2"] {
        assert!(app.set(key, key.as_bytes(), 600).await);
    }
    assert!(app.get("a:1").await.is_some());
    assert!(app.get("a:2").await.is_some());
    let miss = grpc
        .get(GetRequest { key: "a:9".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!miss.found && miss.lease != 0);
    assert!(app.get("b:1").await.is_some());
    let fill = |lease| SetRequest {
        key: "a:9".into(),
        value: b"filled".to_vec(),
        ttl_seconds: 600,
        lease,
    };
    let wrong = grpc
        .set(fill(miss.lease.wrapping_add(1)))
        .await
        .unwrap()
        .into_inner();
    assert!(!wrong.stored);
    assert!(
        grpc.set(fill(miss.lease))
            .await
            .unwrap()
            .into_inner()
            .stored
    );
    let deleted = grpc
        .delete(DeleteRequest {
            keys: vec!["a:1".into(), "a:404".into()],
            relay: None,
        })
        .await
        .unwrap()
        .into_inner()
        .deleted;
    assert_eq!(deleted, 1);
    let invalidate = |pattern: &str| InvalidatePatternRequest {
        pattern: pattern.into(),
        relay: None,
    };
    let removed = grpc
        .invalidate_pattern(invalidate("b:*"))
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 2);
    let removed = grpc
        .invalidate_pattern(invalidate("a:[23]"))
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 2);
    assert!(app.get("b:1").await.is_none());

    let stats = app.stats().await;
    assert_eq!(stats.store, store);
    assert_eq!(stats.redis_connected, store == "redis");
    let a = CounterSet {
        hits: 2,
        misses: 1,
        hit_rate: 2.0 / 3.0,
        sets: 4,
        sets_refused: 1,
        deletes: 1,
        invalidations: 1,
        entries_removed: 2,
        errors: 0,
    };
    let b = CounterSet {
        hits: 1,
        misses: 1,
        hit_rate: 0.5,
        sets: 2,
        sets_refused: 0,
        deletes: 0,
        invalidations: 1,
        entries_removed: 2,
        errors: 0,
    };
    let total = CounterSet {
        hits: 3,
        misses: 2,
        hit_rate: 0.6,
        sets: 6,
        sets_refused: 1,
        deletes: 1,
        invalidations: 2,
        entries_removed: 4,
        errors: 0,
    };
    assert_counters(stats.total.as_ref().unwrap(), &total);
    let names: Vec<&str> = stats
        .namespaces
        .iter()
        .map(|n| n.namespace.as_str())
        .collect();
    assert_eq!(names, ["a", "b"]);
    assert_counters(stats.namespaces[0].counters.as_ref().unwrap(), &a);
    assert_counters(stats.namespaces[1].counters.as_ref().unwrap(), &b);
    // Only a:9 is left.
    assert_eq!(stats.key_count, 1);
    if store == "redis" {
        assert!(stats.redis_used_memory_bytes > 0);
        assert!(stats.redis_latency_p50_ms > 0.0);
        assert!(stats.redis_latency_p99_ms >= stats.redis_latency_p50_ms);
    }

    grpc.reset_stats(ResetStatsRequest {}).await.unwrap();
    let stats = app.stats().await;
    assert_counters(stats.total.as_ref().unwrap(), &CounterSet::default());
    assert!(stats.namespaces.is_empty());
    assert_eq!(stats.key_count, 1, "ResetStats keeps the entries");
    app.stop().await;
}

fn assert_counters(got: &CounterSet, want: &CounterSet) {
    let CounterSet { hit_rate, .. } = got;
    assert!(
        (hit_rate - want.hit_rate).abs() < 1e-9,
        "hit rate {got:?} vs {want:?}"
    );
    assert_eq!(
        CounterSet {
            hit_rate: 0.0,
            ..*got
        },
        CounterSet {
            hit_rate: 0.0,
            ..*want
        }
    );
}

#[tokio::test]
async fn stats_are_exact_on_redis() {
    workload(spawn_app().await, "redis").await;
}

#[tokio::test]
async fn stats_are_exact_in_memory() {
    workload(spawn_memory_app().await, "memory").await;
}
