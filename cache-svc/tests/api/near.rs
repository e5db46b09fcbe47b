//! The callers' near-cache (L1) and cache-svc's Subscribe: an L1 hit asks cache-svc nothing;
//! another process's invalidation or delete reaches the L1 by push (the L1's lifetime is a
//! minute here, so nothing else could remove the entry in time); a restarted cache-svc empties
//! it; invalidations made while Redis is down are pushed too.
use std::time::Duration;

use cache_svc::Config;
use learnhub_cache_client::{
    CacheClient, CacheClientOptions, CacheKey, CachePattern, NearCacheOptions,
};
// Any message will do as a cached value.
use learnhub_proto::cache::v1::GetResponse as Value;

use crate::helpers::{RedisProcess, TestApp, spawn_app, spawn_app_with, test_config};

const LONG: Duration = Duration::from_secs(60);

fn near_client(app: &TestApp) -> CacheClient {
    near_client_at(&app.addr.to_string())
}

fn near_client_at(addr: &str) -> CacheClient {
    CacheClient::connect_lazy(
        addr,
        CacheClientOptions {
            call_timeout: Duration::from_secs(5),
            near: Some(NearCacheOptions {
                ttl: LONG,
                max_entries: 100,
                max_bytes: 1 << 20,
                namespaces: vec!["catalog", "course"],
            }),
            ..CacheClientOptions::default()
        },
    )
    .expect("valid address")
}

fn value(text: &str) -> Value {
    Value {
        found: true,
        value: text.as_bytes().to_vec(),
        lease: 0,
    }
}

fn text(value: &Value) -> String {
    String::from_utf8_lossy(&value.value).into_owned()
}

async fn eventually(what: &str, done: impl AsyncFnMut() -> bool) {
    learnhub_kit::testing::eventually(what, Duration::from_secs(20), done).await;
}

async fn live(client: &CacheClient) {
    eventually("the subscription is live", async || {
        client.near().expect("an L1").stats().live
    })
    .await;
}

/// The value read through `client`, loading `fresh` on a miss.
async fn read(client: &CacheClient, key: &CacheKey, fresh: &str) -> String {
    let fresh = value(fresh);
    let found: Result<Value, tonic::Status> =
        client.get_or_load(key, LONG, || async { Ok(fresh) }).await;
    text(&found.expect("loads"))
}

#[tokio::test]
async fn a_near_hit_asks_cache_svc_nothing() {
    let app = spawn_app().await;
    let client = near_client(&app);
    live(&client).await;
    let key = CacheKey::new("catalog").push("page");
    assert_eq!(read(&client, &key, "v1").await, "v1");
    let calls = client.counters().calls;
    for _ in 0..5 {
        assert_eq!(read(&client, &key, "other").await, "v1");
    }
    assert_eq!(client.counters().calls, calls, "L1 hits call nothing");
    let stats = client.near().unwrap().stats();
    let catalog = &stats.namespaces[0];
    assert_eq!(
        (catalog.namespace, catalog.hits, catalog.misses),
        ("catalog", 5, 1)
    );
    assert_eq!(stats.entries, 1);

    // A namespace the L1 does not hold goes to cache-svc every time.
    let user = CacheKey::new("user").push(1);
    read(&client, &user, "u").await;
    let calls = client.counters().calls;
    read(&client, &user, "u").await;
    assert_eq!(client.counters().calls, calls + 1);
    app.stop().await;
}

#[tokio::test]
async fn another_process_s_invalidation_and_delete_reach_the_l1_by_push() {
    let app = spawn_app().await;
    let (writer, reader) = (near_client(&app), near_client(&app));
    live(&reader).await;
    let page = CacheKey::new("catalog").push("page");
    let course = CacheKey::new("course").push(7);
    assert_eq!(read(&reader, &page, "page v1").await, "page v1");
    assert_eq!(read(&reader, &course, "course v1").await, "course v1");
    assert_eq!(read(&reader, &page, "page v2").await, "page v1", "held");

    writer
        .invalidate(&CachePattern::namespace("catalog"))
        .await
        .unwrap();
    eventually("the pushed pattern removes the page", async || {
        read(&reader, &page, "page v2").await == "page v2"
    })
    .await;
    assert_eq!(read(&reader, &course, "course v2").await, "course v1");

    writer.delete(std::slice::from_ref(&course)).await.unwrap();
    eventually("the pushed delete removes the course", async || {
        read(&reader, &course, "course v2").await == "course v2"
    })
    .await;
    let stats = reader.near().unwrap().stats();
    assert!(stats.pushed >= 2, "{stats:?}");
    assert_eq!(stats.drops, 0);
    app.stop().await;
}

#[tokio::test]
async fn the_writer_s_own_invalidation_is_seen_at_once() {
    let app = spawn_app().await;
    let client = near_client(&app);
    live(&client).await;
    let page = CacheKey::new("catalog").push("page");
    read(&client, &page, "v1").await;
    client
        .invalidate(&CachePattern::namespace("catalog"))
        .await
        .unwrap();
    // No waiting for the push: applied here before it was sent.
    assert_eq!(read(&client, &page, "v2").await, "v2");
    app.stop().await;
}

#[tokio::test]
async fn a_restarted_cache_svc_empties_the_l1_and_it_serves_again_once_subscribed() {
    let app = spawn_app().await;
    let addr = app.addr;
    let client = near_client(&app);
    live(&client).await;
    let page = CacheKey::new("catalog").push("page");
    read(&client, &page, "v1").await;
    assert_eq!(client.near().unwrap().stats().entries, 1);

    let config = app.stop_keep_data().await;
    eventually("the L1 is dropped when the stream ends", async || {
        let stats = client.near().unwrap().stats();
        !stats.live && stats.entries == 0
    })
    .await;
    assert_eq!(client.near().unwrap().stats().drops, 1);

    let app = spawn_app_with(Config {
        listen: addr.to_string(),
        ..config
    })
    .await;
    live(&client).await;
    // cache-svc cleared Redis as it started: the value is loaded again and held again.
    assert_eq!(read(&client, &page, "v2").await, "v2");
    assert_eq!(read(&client, &page, "v3").await, "v2");
    app.stop().await;
}

#[tokio::test]
async fn invalidations_made_while_redis_is_down_are_pushed() {
    let mut redis = RedisProcess::start();
    let app = spawn_app_with(Config {
        redis_url: Some(redis.url()),
        redis_timeout_ms: 300,
        ..test_config()
    })
    .await;
    let (writer, reader) = (near_client(&app), near_client(&app));
    live(&reader).await;
    let page = CacheKey::new("catalog").push("page");
    read(&reader, &page, "v1").await;
    redis.kill();
    app.wait_for_store("memory").await;
    writer
        .invalidate(&CachePattern::namespace("catalog"))
        .await
        .unwrap();
    eventually("the outage's invalidation is pushed", async || {
        read(&reader, &page, "v2").await == "v2"
    })
    .await;
    app.stop_keep_data().await;
}
