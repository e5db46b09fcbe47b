//! Namespace and pattern invalidation over 100k keys; Clear; nothing outside the prefix touched.
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use learnhub_proto::cache::v1::{
    ClearRequest, GetManyRequest, InvalidatePatternRequest, SetManyRequest, SetRequest,
};
use redis::AsyncCommands;

use cache_svc::Config;

use crate::helpers::{
    REDIS_URL, TestApp, count_keys, redis_conn, spawn_app, spawn_app_with, spawn_memory_app,
    test_config,
};

const KEYS: usize = 100_000;
const BATCH: usize = 1_000;

/// On the shared Redis with a generous call bound: a 1000-script pipeline on a busy 2-core box
/// must not be mistaken for an outage (that path has its own tests).
async fn spawn_bulk_app() -> TestApp {
    spawn_app_with(Config {
        redis_url: Some(REDIS_URL.into()),
        redis_timeout_ms: 10_000,
        ..test_config()
    })
    .await
}

/// Loads `keys` through SetMany (one Redis pipeline per batch), a few batches at a time.
async fn load(app: &TestApp, keys: Vec<String>) {
    let batches: Vec<Vec<String>> = keys.chunks(BATCH).map(<[String]>::to_vec).collect();
    stream::iter(batches)
        .for_each_concurrent(4, |batch| async move {
            let entries = batch
                .into_iter()
                .map(|key| SetRequest {
                    value: key.as_bytes().to_vec(),
                    key,
                    ttl_seconds: 3600,
                    lease: 0,
                })
                .collect();
            let stored = app
                .grpc
                .clone()
                .set_many(SetManyRequest { entries })
                .await
                .unwrap()
                .into_inner()
                .stored;
            assert!(stored.iter().all(|s| *s));
        })
        .await;
}

async fn found(app: &TestApp, keys: &[String]) -> usize {
    let entries = app
        .grpc
        .clone()
        .get_many(GetManyRequest {
            keys: keys.to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    entries.iter().filter(|e| e.found).count()
}

async fn invalidate(app: &TestApp, pattern: &str) -> u64 {
    app.grpc
        .clone()
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: pattern.into(),
            relay: None,
        })
        .await
        .unwrap()
        .into_inner()
        .removed
}

#[tokio::test]
async fn namespace_invalidation_over_100k_keys_is_one_bump() {
    let app = spawn_bulk_app().await;
    let bulk: Vec<String> = (0..KEYS).map(|i| format!("bulk:item:{i}")).collect();
    load(&app, bulk.clone()).await;
    assert_eq!(app.stats().await.store, "redis");
    assert!(app.set("other:kept", b"kept", 3600).await);
    assert_eq!(app.stats().await.key_count, KEYS as u64 + 1);
    let sample: Vec<String> = bulk.iter().step_by(997).cloned().collect();
    assert_eq!(found(&app, &sample).await, sample.len());

    assert_eq!(invalidate(&app, "bulk:*").await, KEYS as u64);
    assert_eq!(found(&app, &sample).await, 0);
    assert_eq!(app.get("other:kept").await.as_deref(), Some(&b"kept"[..]));
    assert_eq!(app.stats().await.key_count, 1);
    // A second bump finds nothing left to remove.
    assert_eq!(invalidate(&app, "bulk:*").await, 0);

    // The old generation's entries are deleted in the background (memory is given back).
    let prefix = app.config.key_prefix.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_keys(REDIS_URL, &prefix, "bulk@").await > 0 {
        assert!(Instant::now() < deadline, "old generation never swept");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn pattern_invalidation_over_100k_keys_removes_exactly_the_matches() {
    let app = spawn_bulk_app().await;
    // 100 users × 1000 items: `user:7:*` is 1000 keys, `user:1?:*` is 10 users.
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("user:{}:item:{i}", i % 100))
        .collect();
    load(&app, keys.clone()).await;

    assert_eq!(invalidate(&app, "user:7:*").await, 1_000);
    assert_eq!(invalidate(&app, "user:1?:*").await, 10_000);
    assert_eq!(invalidate(&app, "user:7:*").await, 0);
    let user = |u: usize| -> Vec<String> {
        keys.iter()
            .filter(|k| k.starts_with(&format!("user:{u}:")))
            .take(50)
            .cloned()
            .collect()
    };
    assert_eq!(found(&app, &user(7)).await, 0);
    assert_eq!(found(&app, &user(13)).await, 0);
    assert_eq!(found(&app, &user(1)).await, 50);
    assert_eq!(found(&app, &user(70)).await, 50);
    assert_eq!(found(&app, &user(77)).await, 50);
    let stats = app.stats().await;
    assert_eq!(stats.key_count, (KEYS - 11_000) as u64);
    let user_stats = stats
        .namespaces
        .iter()
        .find(|n| n.namespace == "user")
        .unwrap();
    let counters = user_stats.counters.as_ref().unwrap();
    assert_eq!(counters.invalidations, 3);
    assert_eq!(counters.entries_removed, 11_000);
    app.stop().await;
}

#[tokio::test]
async fn memory_store_invalidates_the_same_way() {
    let app = spawn_memory_app().await;
    let keys: Vec<String> = (0..2_000)
        .map(|i| format!("user:{}:item:{i}", i % 20))
        .collect();
    load(&app, keys.clone()).await;
    assert_eq!(invalidate(&app, "user:7:*").await, 100);
    assert_eq!(invalidate(&app, "user:1?:*").await, 1_000);
    assert_eq!(app.stats().await.key_count, 900);
    assert_eq!(invalidate(&app, "user:*").await, 900);
    assert_eq!(found(&app, &keys[..100]).await, 0);
    assert_eq!(app.stats().await.key_count, 0);
    app.stop().await;
}

#[tokio::test]
async fn clear_removes_every_entry_and_nothing_outside_the_prefix() {
    let app = spawn_app().await;
    let mut conn = redis_conn(REDIS_URL).await;
    let outsider = format!("not-{}", app.config.key_prefix);
    let _: () = conn.set(&outsider, "untouched").await.unwrap();
    load(
        &app,
        (0..3_000).map(|i| format!("ns{}:k:{i}", i % 3)).collect(),
    )
    .await;
    // A lease issued before Clear must not let its fill land after it.
    let miss = app
        .grpc
        .clone()
        .get(learnhub_proto::cache::v1::GetRequest {
            key: "ns0:late".into(),
        })
        .await
        .unwrap()
        .into_inner();
    app.grpc.clone().clear(ClearRequest {}).await.unwrap();
    let late = app
        .grpc
        .clone()
        .set(SetRequest {
            key: "ns0:late".into(),
            value: b"stale".to_vec(),
            ttl_seconds: 60,
            lease: miss.lease,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!late.stored);
    assert_eq!(app.stats().await.key_count, 0);
    // All that is left is the unreachable lease marker of the old generation, expiring by itself.
    assert_eq!(count_keys(REDIS_URL, &app.config.key_prefix, "@").await, 1);
    let value: Option<String> = conn.get(&outsider).await.unwrap();
    assert_eq!(value.as_deref(), Some("untouched"));
    let _: () = redis::cmd("DEL")
        .arg(&outsider)
        .query_async(&mut conn)
        .await
        .unwrap();
    app.stop().await;
}

#[tokio::test]
async fn invalidating_a_namespace_nobody_wrote_leaves_no_key_behind() {
    let app = spawn_app().await;
    assert_eq!(app.stats().await.store, "redis");
    for made_up in ["ghost", "never-written", "x1"] {
        assert_eq!(invalidate(&app, &format!("{made_up}:*")).await, 0);
        assert_eq!(invalidate(&app, &format!("{made_up}:a*")).await, 0);
    }
    let prefix = app.config.key_prefix.clone();
    assert_eq!(count_keys(REDIS_URL, &prefix, "").await, 0);

    // A namespace in use is still invalidated: its value goes, and a new one is served after.
    assert!(app.set("real:1", b"old", 3600).await);
    assert_eq!(invalidate(&app, "real:*").await, 1);
    assert_eq!(app.get("real:1").await, None);
    assert!(app.set("real:1", b"new", 3600).await);
    assert_eq!(app.get("real:1").await.as_deref(), Some(&b"new"[..]));
    app.stop().await;
}

#[tokio::test]
async fn the_memory_store_finds_nothing_to_invalidate_in_a_made_up_namespace() {
    let app = spawn_memory_app().await;
    for i in 0..50 {
        assert_eq!(invalidate(&app, &format!("ghost{i}:*")).await, 0);
    }
    assert!(app.set("real:1", b"old", 3600).await);
    assert_eq!(invalidate(&app, "real:*").await, 1);
    assert_eq!(app.get("real:1").await, None);
    assert_eq!(app.stats().await.key_count, 0);
    app.stop().await;
}

/// A cache-svc that starts has missed every invalidation made while it was not running (its
/// callers had nowhere to send them, and a dead process's journal is gone): what Redis holds
/// under its prefix is not served again.
#[tokio::test]
async fn entries_from_before_a_start_are_not_served_after_it() {
    let app = spawn_app().await;
    assert!(
        app.set("catalog:course:7", b"before the restart", 300)
            .await
    );
    assert_eq!(
        app.get("catalog:course:7").await.as_deref(),
        Some(&b"before the restart"[..])
    );
    let config = app.stop_keep_data().await;

    let restarted = spawn_app_with(config).await;
    assert_eq!(restarted.get("catalog:course:7").await, None);
    // The cache works as before for what is stored after the start.
    assert!(restarted.set("catalog:course:7", b"after", 300).await);
    assert_eq!(
        restarted.get("catalog:course:7").await.as_deref(),
        Some(&b"after"[..])
    );
    restarted.stop().await;
}
