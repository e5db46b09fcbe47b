//! Redis down at start or later: the in-process store serves, errors are counted, the service
//! reconnects by itself, and nothing invalidated during the outage comes back.
use cache_svc::Config;
use learnhub_proto::cache::v1::{DeleteRequest, InvalidatePatternRequest};

use crate::helpers::{RedisProcess, TestApp, redis_conn, spawn_app_with, test_config};

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
    grpc.delete(DeleteRequest {
        keys: vec!["k:deleted".into()],
        relay: None,
    })
    .await
    .unwrap();
    for pattern in ["ns2:*", "pat:x:*"] {
        grpc.invalidate_pattern(InvalidatePatternRequest {
            pattern: pattern.into(),
            relay: None,
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

/// `calls` of each command the redis-server ran (scripts' own calls included), from INFO
/// commandstats.
async fn command_calls(redis: &RedisProcess) -> std::collections::HashMap<String, u64> {
    let mut conn = redis_conn(&redis.url()).await;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (command, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            Some((command.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

async fn epoch_marker_exists(redis: &RedisProcess, app: &TestApp) -> bool {
    let mut conn = redis_conn(&redis.url()).await;
    redis::cmd("EXISTS")
        .arg(format!("{}#epoch", app.config.key_prefix))
        .query_async::<u64>(&mut conn)
        .await
        .unwrap()
        == 1
}

/// Fails the service over (Redis is down), then journals hundreds of invalidations: patterns one
/// by one, deletes, a namespace and a fresh write.
async fn journal_hundreds(app: &TestApp) {
    assert_eq!(app.get("k:1").await, None);
    assert_eq!(app.stats().await.store, "memory");
    let mut grpc = app.grpc.clone();
    for i in 0..200 {
        grpc.invalidate_pattern(InvalidatePatternRequest {
            pattern: format!("p{i}:x:*"),
            relay: None,
        })
        .await
        .unwrap();
    }
    grpc.delete(DeleteRequest {
        keys: (0..300).map(|i| format!("d{}:{i}", i % 7)).collect(),
        relay: None,
    })
    .await
    .unwrap();
    grpc.invalidate_pattern(InvalidatePatternRequest {
        pattern: "ns:*".into(),
        relay: None,
    })
    .await
    .unwrap();
    assert!(app.set("k:2", b"outage", 3600).await);
}

#[tokio::test]
async fn redis_back_empty_gets_no_replay() {
    let mut redis = RedisProcess::start();
    let app = spawn_app_with(config_for(&redis)).await;
    assert_eq!(app.stats().await.store, "redis");
    for key in ["k:1", "k:2", "ns:a", "p1:x:1", "d1:1"] {
        assert!(app.set(key, b"old", 3600).await);
    }
    assert!(epoch_marker_exists(&redis, &app).await);
    // Killed without a SAVE: it comes back empty.
    redis.kill();
    journal_hundreds(&app).await;

    redis.restart();
    app.wait_for_store("redis").await;

    // No replay: no SCAN, no generation read (each pattern's first step), no delete script
    // (which reads, and creates, the generation), nothing deleted or bumped.
    let calls = command_calls(&redis).await;
    for command in ["scan", "get", "unlink", "incr", "zrem"] {
        assert_eq!(calls.get(command), None, "{command} ran: {calls:?}");
    }
    // No key at all: no generation was created (nor the marker that comes with the first one).
    let mut conn = redis_conn(&redis.url()).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys, Vec::<String>::new());

    // Nothing stale is served, and the cache works.
    for key in ["k:1", "k:2", "ns:a", "p1:x:1", "d1:1"] {
        assert_eq!(app.get(key).await, None, "{key} came back");
    }
    assert!(app.set("k:1", b"new", 3600).await);
    assert_eq!(app.get("k:1").await.as_deref(), Some(&b"new"[..]));
    assert!(epoch_marker_exists(&redis, &app).await);
    app.stop().await;
}

/// Redis came back without the marker but holding generations (another replica, or a cache-svc
/// without the marker, wrote into it first; or the marker was evicted): not empty, so the journal
/// is replayed.
#[tokio::test]
async fn redis_back_with_generations_but_no_marker_is_replayed() {
    let mut redis = RedisProcess::start();
    let app = spawn_app_with(config_for(&redis)).await;
    for key in ["o:gone", "o:kept", "p:x:1", "p:y:1"] {
        assert!(app.set(key, b"old", 3600).await);
    }
    let prefix = &app.config.key_prefix;
    let mut conn = redis_conn(&redis.url()).await;
    let _: () = redis::cmd("DEL")
        .arg(format!("{prefix}#epoch"))
        .arg(format!("{prefix}#namespaces"))
        .query_async(&mut conn)
        .await
        .unwrap();
    drop(conn);
    redis.save().await;
    redis.kill();

    assert_eq!(app.get("o:kept").await, None);
    assert_eq!(app.stats().await.store, "memory");
    let mut grpc = app.grpc.clone();
    grpc.delete(DeleteRequest {
        keys: vec!["o:gone".into()],
        relay: None,
    })
    .await
    .unwrap();
    grpc.invalidate_pattern(InvalidatePatternRequest {
        pattern: "p:x:*".into(),
        relay: None,
    })
    .await
    .unwrap();

    redis.restart();
    app.wait_for_store("redis").await;
    assert!(epoch_marker_exists(&redis, &app).await);
    assert_eq!(app.get("o:gone").await, None, "o:gone came back");
    assert_eq!(app.get("p:x:1").await, None, "p:x:1 came back");
    // Replayed, not cleared.
    assert_eq!(app.get("o:kept").await.as_deref(), Some(&b"old"[..]));
    assert_eq!(app.get("p:y:1").await.as_deref(), Some(&b"old"[..]));
    app.stop().await;
}
