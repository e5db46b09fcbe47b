//! Single flight: 1,000 concurrent callers of one missing key run the loader once (each reads
//! the cache; those that missed under one lease share one load).
use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use learnhub_cache_client::CacheKey;
use tokio::sync::Notify;

use crate::helpers::{Row, spawn_app};

const CALLERS: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_thousand_callers_one_load() {
    let app = spawn_app().await;
    let cache = app.cache_client();
    let key = CacheKey::new("catalog").push("summary");
    let started = Arc::new(AtomicUsize::new(0));
    let loads = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(Notify::new());

    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let (cache, key, started, loads, release) = (
            cache.clone(),
            key.clone(),
            started.clone(),
            loads.clone(),
            release.clone(),
        );
        callers.push(tokio::spawn(async move {
            // Joining the flight happens in the same poll as this increment.
            started.fetch_add(1, Ordering::SeqCst);
            cache
                .get_or_load(&key, Duration::from_secs(600), || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    Ok::<_, tonic::Status>(Row {
                        title: "summary".into(),
                        version: 7,
                    })
                })
                .await
        }));
    }
    // Hold the loader until every caller has read the cache (a caller joins the flight in the
    // same poll as its read returns).
    let deadline = Instant::now() + Duration::from_secs(30);
    while started.load(Ordering::SeqCst) < CALLERS
        || loads.load(Ordering::SeqCst) == 0
        || cache.counters().misses < CALLERS as u64
    {
        assert!(Instant::now() < deadline, "callers never all started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    release.notify_one();
    for caller in callers {
        let row = caller.await.unwrap().unwrap();
        assert_eq!(row.version, 7);
    }

    assert_eq!(loads.load(Ordering::SeqCst), 1);
    let counters = cache.counters();
    assert_eq!(counters.loader_runs, 1);
    assert_eq!(counters.coalesced, (CALLERS - 1) as u64);
    // A read per caller (reads made together may share a GetMany), one fill.
    assert_eq!(
        (counters.reads, counters.misses, counters.stored),
        (CALLERS as u64, CALLERS as u64, 1)
    );
    assert!(counters.calls <= CALLERS as u64 + 1, "{counters:?}");
    let total = app.stats().await.total.unwrap();
    assert_eq!(
        (total.misses, total.hits, total.sets),
        (CALLERS as u64, 0, 1)
    );

    // The next caller is served from the cache.
    let row = cache
        .get_or_load(&key, Duration::from_secs(600), || async {
            Ok::<Row, tonic::Status>(Row::default())
        })
        .await
        .unwrap();
    assert_eq!(row.version, 7);
    assert_eq!(cache.counters().hits, 1);
    assert_eq!(cache.counters().loader_runs, 1);
    app.stop().await;
}

/// A caller that comes after an invalidation does not share a load that began before it: that
/// load may have read the database before the write, and the writer's own read-back must see the
/// write (the fault suite caught one such stale read-back under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_begun_before_an_invalidation_is_not_shared_after_it() {
    let app = spawn_app().await;
    let cache = app.cache_client();
    let key = CacheKey::new("course").push(5);
    let ttl = Duration::from_secs(600);
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let before = {
        let (cache, key, entered, release) =
            (cache.clone(), key.clone(), entered.clone(), release.clone());
        tokio::spawn(async move {
            cache
                .get_or_load(&key, ttl, || async move {
                    entered.notify_one();
                    release.notified().await;
                    Ok::<_, tonic::Status>(Row {
                        title: "before the write".into(),
                        version: 1,
                    })
                })
                .await
        })
    };
    entered.notified().await;
    // The write commits, then invalidates.
    cache.delete(std::slice::from_ref(&key)).await.unwrap();

    let after = tokio::time::timeout(
        Duration::from_secs(10),
        cache.get_or_load(&key, ttl, || async {
            Ok::<_, tonic::Status>(Row {
                title: "after the write".into(),
                version: 2,
            })
        }),
    )
    .await
    .expect("a caller after the invalidation runs its own load instead of waiting for the old one")
    .unwrap();
    assert_eq!(after.version, 2);

    release.notify_one();
    assert_eq!(before.await.unwrap().unwrap().version, 1);
    // The old load's fill carried a lease the invalidation removed: the cache keeps the new value.
    let cached = cache
        .get_or_load(&key, ttl, || async {
            Ok::<Row, tonic::Status>(Row::default())
        })
        .await
        .unwrap();
    assert_eq!(cached.version, 2);
    app.stop().await;
}
