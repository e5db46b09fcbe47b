//! Typed keys: user-supplied segments never collide and never widen a pattern.
use std::time::Duration;

use learnhub_cache_client::CacheKey;

use crate::helpers::{Row, spawn_app};

const TRICKY: [&str; 12] = [
    "a", "a*", "a?", "[a]", "a\\", "a:b", "a%3Ab", "*", "", "abc", "a:", "%",
];

#[tokio::test]
async fn tricky_segments_never_collide_or_widen() {
    let app = spawn_app().await;
    let cache = app.cache_client();
    let key = |segment: &str| CacheKey::new("user").push_str(segment).push("profile");
    for (i, segment) in TRICKY.iter().enumerate() {
        let row = cache
            .get_or_load(&key(segment), Duration::from_secs(600), || async move {
                Ok::<_, tonic::Status>(Row {
                    title: (*segment).to_owned(),
                    version: i as u64,
                })
            })
            .await
            .unwrap();
        assert_eq!(row.title, *segment);
    }
    // Twelve distinct entries: no two segments landed on the same key.
    assert_eq!(cache.counters().stored, TRICKY.len() as u64);
    assert_eq!(app.stats().await.key_count, TRICKY.len() as u64);

    // Invalidating the user called `a*` removes that user only, not `a`, `abc`, `a?`, ...
    let removed = cache
        .invalidate(&CacheKey::new("user").push_str("a*").children())
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let removed = cache
        .invalidate(&CacheKey::new("user").push_str("*").children())
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert_eq!(app.stats().await.key_count, TRICKY.len() as u64 - 2);

    // Every other entry is still there with its own value.
    for (i, segment) in TRICKY.iter().enumerate() {
        let row = cache
            .get_or_load(&key(segment), Duration::from_secs(600), || async move {
                Ok::<_, tonic::Status>(Row {
                    title: format!("reloaded {segment}"),
                    version: i as u64,
                })
            })
            .await
            .unwrap();
        if *segment == "a*" || *segment == "*" {
            assert_eq!(row.title, format!("reloaded {segment}"));
        } else {
            assert_eq!((row.title.as_str(), row.version), (*segment, i as u64));
        }
    }
    assert_eq!(cache.counters().loader_runs, TRICKY.len() as u64 + 2);
    app.stop().await;
}
