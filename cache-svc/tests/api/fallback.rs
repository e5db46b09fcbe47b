//! Redis down at start or later: the in-process store serves, errors are counted, the service
//! reconnects by itself, and nothing invalidated during the outage comes back.
use cache_svc::Config;

use crate::helpers::{RedisProcess, spawn_app_with, test_config};

fn config_for(redis: &RedisProcess) -> Config {
    Config {
        redis_url: Some(redis.url()),
        redis_timeout_ms: 300,
        ..test_config()
    }
}

#[tokio::test]
async fn outage_invalidations_are_replayed_before_redis_serves_again() {
    let mut redis = RedisProcess::start();
    let app = spawn_app_with(config_for(&redis)).await;
    assert_eq!(app.stats().await.store, "redis");
    for key in [
        "k:deleted",
        "ns2:a",
        "ns2:b",
        "pat:x:1",
        "pat:y:1",
        "k:rewritten",
        "k:kept",
    ] {
        assert!(app.set(key, b"old", 3600).await);
    }
    // The restarted Redis will load all of these again.
    redis.save().await;
    redis.kill();

    // Still answering: the first call finds Redis gone and switches to the in-process store.
    assert_eq!(app.get("k:kept").await, None);
    let stats = app.stats().await;
    assert_eq!(stats.store, "memory");
    assert!(!stats.redis_connected);
    assert!(stats.total.unwrap().errors >= 1);

    // Writes during the outage.
    let mut grpc = app.grpc.clone();
    use learnhub_proto::cache::v1::{DeleteRequest, InvalidatePatternRequest};
    grpc.delete(DeleteRequest {
        keys: vec!["k:deleted".into()],
    })
    .await
    .unwrap();
    for pattern in ["ns2:*", "pat:x:*"] {
        grpc.invalidate_pattern(InvalidatePatternRequest {
            pattern: pattern.into(),
        })
        .await
        .unwrap();
    }
    assert!(app.set("k:rewritten", b"new", 3600).await);
    assert_eq!(app.get("k:rewritten").await.as_deref(), Some(&b"new"[..]));
    assert!(app.set("mem:only", b"m", 3600).await);
    assert_eq!(app.get("mem:only").await.as_deref(), Some(&b"m"[..]));

    // Redis comes back with the old entries.
    redis.restart();
    app.wait_for_store("redis").await;

    for gone in ["k:deleted", "ns2:a", "ns2:b", "pat:x:1"] {
        assert_eq!(app.get(gone).await, None, "{gone} came back");
    }
    // Rewritten during the outage: the old copy in Redis was deleted, not served.
    assert_ne!(app.get("k:rewritten").await.as_deref(), Some(&b"old"[..]));
    // Not invalidated: still there.
    assert_eq!(app.get("pat:y:1").await.as_deref(), Some(&b"old"[..]));
    assert_eq!(app.get("k:kept").await.as_deref(), Some(&b"old"[..]));
    let stats = app.stats().await;
    assert!(stats.redis_connected);
    assert!(stats.total.unwrap().errors >= 1);
    app.stop().await;
}

#[tokio::test]
async fn redis_down_at_start_then_up() {
    let mut redis = RedisProcess::stopped();
    let app = spawn_app_with(config_for(&redis)).await;
    assert_eq!(app.stats().await.store, "memory");
    // Fully usable meanwhile.
    assert!(app.set("early:k", b"v", 60).await);
    assert_eq!(app.get("early:k").await.as_deref(), Some(&b"v"[..]));

    redis.restart();
    app.wait_for_store("redis").await;
    // Written to memory only, and a fresh write: replayed as a delete, so Redis holds nothing old.
    assert_eq!(app.get("early:k").await, None);
    assert!(app.set("late:k", b"w", 60).await);
    assert_eq!(app.get("late:k").await.as_deref(), Some(&b"w"[..]));
    app.stop().await;
}

#[tokio::test]
async fn redis_restarted_empty_is_picked_up_again() {
    let mut redis = RedisProcess::start();
    let app = spawn_app_with(config_for(&redis)).await;
    assert!(app.set("r:k", b"v", 60).await);
    redis.restart();
    // The pooled connection broke: this call fails over, the next ones recover on a fresh pool.
    let _ = app.get("r:k").await;
    app.wait_for_store("redis").await;
    // Generations restart above their old values; the scripts are loaded again.
    assert!(app.set("r:k", b"w", 60).await);
    assert_eq!(app.get("r:k").await.as_deref(), Some(&b"w"[..]));
    app.stop().await;
}
