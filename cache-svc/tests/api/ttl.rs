//! Entries expire after their TTL, in both stores.
use std::time::{Duration, Instant};

use crate::helpers::{TestApp, spawn_app, spawn_memory_app};

async fn expires(app: TestApp) {
    assert!(app.set("ttl:short", b"soon gone", 1).await);
    assert!(app.set("ttl:long", b"stays", 600).await);
    assert_eq!(
        app.get("ttl:short").await.as_deref(),
        Some(&b"soon gone"[..])
    );
    // Asserts behaviour, not speed: poll (bounded) until the short entry is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("ttl:short").await.is_some() {
        assert!(Instant::now() < deadline, "entry outlived its TTL");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("ttl:long").await.as_deref(), Some(&b"stays"[..]));
    assert_eq!(app.stats().await.key_count, 1);
    app.stop().await;
}

#[tokio::test]
async fn ttl_expiry_on_redis() {
    expires(spawn_app().await).await;
}

#[tokio::test]
async fn ttl_expiry_in_memory() {
    expires(spawn_memory_app().await).await;
}
