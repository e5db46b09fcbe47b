//! Two replicas (`--peers`) during a Redis outage: each serves from its own in-process store,
//! and an invalidation or delete sent to one reaches the other before it is acknowledged, so a
//! caller spread over both never reads what it removed. With Redis up a relay costs the peer
//! nothing; a peer that cannot be reached fails the call (`UNAVAILABLE`), so the caller retries.
use cache_svc::Config;
use learnhub_proto::cache::v1::{DeleteRequest, InvalidatePatternRequest};
use tonic::Code;

use crate::helpers::{RedisProcess, TestApp, free_port, spawn_app_with, test_config};

/// Two replicas on `redis`, one key prefix, each knowing both addresses.
async fn two_replicas(redis: &RedisProcess) -> (TestApp, TestApp) {
    let ports = [free_port(), free_port()];
    let peers = format!("127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1]);
    let shared = test_config();
    let config = |port: u16| Config {
        listen: format!("127.0.0.1:{port}"),
        redis_url: Some(redis.url()),
        redis_timeout_ms: 300,
        peers: Some(peers.clone()),
        key_prefix: shared.key_prefix.clone(),
        ..test_config()
    };
    let one = spawn_app_with(config(ports[0])).await;
    let two = spawn_app_with(config(ports[1])).await;
    (one, two)
}

fn delete(key: &str) -> DeleteRequest {
    DeleteRequest {
        keys: vec![key.into()],
        relay: None,
    }
}

fn invalidate(pattern: &str) -> InvalidatePatternRequest {
    InvalidatePatternRequest {
        pattern: pattern.into(),
        relay: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_sent_to_one_replica_reaches_the_other_during_a_redis_outage() {
    let mut redis = RedisProcess::start();
    let (one, two) = two_replicas(&redis).await;
    redis.kill();
    // Each finds Redis gone on its next call and serves from its own store, where each now
    // holds its own copy of the same entries.
    for app in [&one, &two] {
        assert_eq!(app.get("course:1").await, None);
        app.wait_for_store("memory").await;
        for key in ["course:1", "course:2", "catalog:page:1", "catalog:page:2"] {
            assert!(app.set(key, b"before the write", 3600).await);
        }
    }
    for app in [&one, &two] {
        assert_eq!(
            app.get("course:1").await.as_deref(),
            Some(&b"before the write"[..])
        );
    }

    // A data service's invalidation after its write lands on one replica only.
    let deleted = one.grpc.clone().delete(delete("course:1")).await.unwrap();
    assert_eq!(deleted.into_inner().deleted, 1, "removed where it landed");
    two.grpc
        .clone()
        .invalidate_pattern(invalidate("catalog:*"))
        .await
        .unwrap();

    // Acknowledged: neither replica serves what either removed; the rest is still there.
    for app in [&one, &two] {
        assert_eq!(app.get("course:1").await, None);
        assert_eq!(app.get("catalog:page:1").await, None);
        assert_eq!(app.get("catalog:page:2").await, None);
        assert_eq!(
            app.get("course:2").await.as_deref(),
            Some(&b"before the write"[..])
        );
    }
    // Redis is gone with its keys: nothing to clean up there.
    one.stop_keep_data().await;
    two.stop_keep_data().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_up_a_relay_costs_the_peer_nothing() {
    let redis = RedisProcess::start();
    let (one, two) = two_replicas(&redis).await;
    assert!(one.set("course:1", b"v1", 3600).await);
    assert_eq!(two.get("course:1").await.as_deref(), Some(&b"v1"[..]));
    let before = two.stats().await.total.unwrap();

    let removed = one
        .grpc
        .clone()
        .invalidate_pattern(invalidate("course:*"))
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 1);
    assert_eq!(two.get("course:1").await, None, "one Redis: gone for both");
    let after = two.stats().await.total.unwrap();
    assert_eq!(
        (after.invalidations, after.deletes),
        (before.invalidations, before.deletes),
        "the peer, on Redis too, applied nothing again"
    );
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_peer_fails_the_invalidation_so_the_caller_retries() {
    let mut redis = RedisProcess::start();
    let (one, two) = two_replicas(&redis).await;
    redis.kill();
    assert_eq!(one.get("course:1").await, None);
    one.wait_for_store("memory").await;
    assert!(one.set("course:1", b"before the write", 3600).await);
    // The other replica cannot be reached (stopped here; the same for a hung or partitioned one).
    two.stop_keep_data().await;

    let refused = one
        .grpc
        .clone()
        .delete(delete("course:1"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("peer"), "{}", refused.message());
    // Applied where it landed all the same.
    assert_eq!(one.get("course:1").await, None);
    one.stop_keep_data().await;
}
