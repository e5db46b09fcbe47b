//! When cache-svc is down or silent, loads go straight to the loader, the breaker stops paying the
//! timeout, and invalidations that could not be delivered are retried — with reads bypassing the
//! cache until they are.
use std::{
    net::TcpListener,
    time::{Duration, Instant},
};

use cache_svc::Config;
use learnhub_cache_client::{CacheClient, CacheClientOptions, CacheKey, CachePattern};

use crate::helpers::{Row, spawn_app, spawn_app_with};

async fn load_n(cache: &CacheClient, n: u64) {
    for i in 0..n {
        let row = cache
            .get_or_load(
                &CacheKey::new("catalog").push(i),
                Duration::from_secs(60),
                || async move {
                    Ok::<_, tonic::Status>(Row {
                        title: "from db".into(),
                        version: i,
                    })
                },
            )
            .await
            .unwrap();
        assert_eq!(row.version, i);
    }
}

fn options(call_timeout: Duration) -> CacheClientOptions {
    CacheClientOptions {
        call_timeout,
        breaker_failures: 3,
        breaker_cooldown: Duration::from_secs(3600),
        ..CacheClientOptions::default()
    }
}

/// An address that accepts connections and never answers.
fn silent_cache_svc() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    addr
}

#[tokio::test]
async fn dead_cache_svc_opens_the_breaker() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Nothing listens there any more.
    let cache =
        CacheClient::connect_lazy(&addr.to_string(), options(Duration::from_secs(5))).unwrap();
    load_n(&cache, 10).await;
    let counters = cache.counters();
    assert_eq!(counters.loader_runs, 10);
    assert_eq!(counters.bypasses, 10);
    // Three failed reads opened the breaker; the other seven never called.
    assert_eq!((counters.calls, counters.errors), (3, 3));
    assert!(cache.breaker_open());
}

#[tokio::test]
async fn silent_cache_svc_costs_one_timeout_per_call_until_the_breaker_opens() {
    let addr = silent_cache_svc();
    let cache =
        CacheClient::connect_lazy(&addr.to_string(), options(Duration::from_millis(50))).unwrap();
    load_n(&cache, 10).await;
    let counters = cache.counters();
    assert_eq!((counters.loader_runs, counters.bypasses), (10, 10));
    assert_eq!((counters.calls, counters.errors), (3, 3));
}

/// A read queued behind a call to a silent cache-svc is bounded by `call_timeout` in all, its wait
/// for the call slot included: without that bound the queued reads would wait for the first call
/// to time out and then for their own (twice the bound).
#[tokio::test]
async fn a_read_queued_behind_a_silent_call_gives_up_within_its_own_bound() {
    let addr = silent_cache_svc();
    let bound = Duration::from_secs(1);
    let cache = CacheClient::connect_lazy(
        &addr.to_string(),
        CacheClientOptions {
            reads_in_flight: 1,
            ..options(bound)
        },
    )
    .unwrap();
    let started = Instant::now();
    let readers: Vec<_> = (0..8)
        .map(|i| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let result = cache.get(&CacheKey::new("catalog").push(i)).await;
                (result, started.elapsed())
            })
        })
        .collect();
    for reader in readers {
        let (result, elapsed) = reader.await.unwrap();
        // The first read's own call times out (the channel's deadline); the queued ones give
        // up waiting.
        assert!(
            result.as_ref().is_err_and(|err| err.is_outage()),
            "{result:?}"
        );
        assert!(elapsed < bound * 3 / 2, "gave up after {elapsed:?}");
    }
}

#[tokio::test]
async fn undelivered_invalidation_is_retried_and_reads_bypass_meanwhile() {
    let app = spawn_app().await;
    let addr = app.addr;
    let cache = CacheClient::connect_lazy(
        &addr.to_string(),
        CacheClientOptions {
            call_timeout: Duration::from_secs(5),
            invalidate_timeout: Duration::from_millis(500),
            breaker_failures: 3,
            breaker_cooldown: Duration::ZERO,
            ..CacheClientOptions::default()
        },
    )
    .unwrap();
    let key = CacheKey::new("catalog").push("course").push(1);
    let load = |version: u64| {
        let (cache, key) = (cache.clone(), key.clone());
        async move {
            cache
                .get_or_load(&key, Duration::from_secs(600), || async move {
                    Ok::<_, tonic::Status>(Row {
                        title: "course".into(),
                        version,
                    })
                })
                .await
                .unwrap()
                .version
        }
    };
    assert_eq!(load(1).await, 1);
    assert_eq!(load(99).await, 1, "cached");

    // cache-svc goes away; Redis keeps version 1.
    let config = app.stop_keep_data().await;
    // The writer commits version 2; its invalidation cannot be delivered.
    assert!(
        cache
            .invalidate(&CachePattern::namespace("catalog"))
            .await
            .is_err()
    );
    assert_eq!(cache.pending_invalidations(), 1);
    assert_eq!(
        load(2).await,
        2,
        "reads bypass while an invalidation is pending"
    );

    // cache-svc is back on the same address and Redis prefix: the invalidation is delivered.
    let app = spawn_app_with(Config {
        listen: addr.to_string(),
        ..config
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while cache.pending_invalidations() > 0 {
        assert!(Instant::now() < deadline, "invalidation never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(load(2).await, 2, "the stale version 1 never comes back");
    assert_eq!(load(3).await, 2, "and the fresh one is cached");
    app.stop().await;
}
