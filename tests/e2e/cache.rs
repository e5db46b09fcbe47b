//! The cache through the gateway: admin statistics and invalidation, and catalog reads after
//! writes never returning old data.
use learnhub_db::Backend;
use serde_json::{Value, json};

use crate::{
    helpers::{admin, error_of, learner, spawn_platform},
    on_both_backends,
};

on_both_backends!(admin_cache_routes, reads_after_writes_through_the_gateway);

async fn admin_cache_routes(backend: Backend) {
    let platform = spawn_platform(backend).await;
    platform.near_cache_live().await;
    for _ in 0..3 {
        platform.get_json("/v1/courses/1").await;
        platform.get_json("/v1/catalog?type=sql").await;
    }
    let stats = platform.cache_stats().await;
    assert_eq!(stats["store"], "redis");
    assert_eq!(stats["redis_connected"], true);
    // The first read of the course missed in cache-svc and was loaded; the two after it were
    // answered by the gateway's near-cache and never reached cache-svc.
    let course = &stats["namespaces"]["course"];
    assert_eq!(
        (course["misses"].as_u64(), course["hits"].as_u64()),
        (Some(1), Some(0)),
        "{stats}"
    );
    let near = &stats["near_caches"][0];
    assert_eq!(near["service"], "gateway", "{stats}");
    assert_eq!(near["live"], true, "{stats}");
    assert_eq!(
        (
            near["namespaces"]["course"]["misses"].as_u64(),
            near["namespaces"]["course"]["hits"].as_u64()
        ),
        (Some(1), Some(2)),
        "{stats}"
    );
    assert_eq!(near["namespaces"]["catalog"]["hits"], 2, "{stats}");
    assert!(
        stats["namespaces"]["catalog"]["misses"].as_u64().unwrap() >= 1,
        "{stats}"
    );

    let invalidated: Value = platform
        .post("/v1/admin/cache/invalidate")
        .bearer_auth(admin())
        .json(&json!({"pattern": "catalog:*"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(invalidated["pattern"], "catalog:*");
    assert!(
        invalidated["removed"].as_u64().unwrap() >= 1,
        "{invalidated}"
    );

    let refused = platform
        .post("/v1/admin/cache/invalidate")
        .bearer_auth(admin())
        .json(&json!({"pattern": "*"}))
        .send()
        .await
        .unwrap();
    let (status, code, message) = error_of(refused).await;
    assert_eq!((status.as_u16(), code.as_str()), (400, "invalid_argument"));
    assert!(message.contains("pattern"), "{message}");

    for (token, expected) in [
        (None, 401),
        (Some("garbage".to_owned()), 401),
        (Some(learner()), 403),
    ] {
        let mut stats = platform.get("/v1/admin/cache/stats");
        let mut invalidate = platform
            .post("/v1/admin/cache/invalidate")
            .json(&json!({"pattern": "catalog:*"}));
        if let Some(token) = &token {
            stats = stats.bearer_auth(token);
            invalidate = invalidate.bearer_auth(token);
        }
        assert_eq!(stats.send().await.unwrap().status().as_u16(), expected);
        assert_eq!(invalidate.send().await.unwrap().status().as_u16(), expected);
    }
}

async fn reads_after_writes_through_the_gateway(backend: Backend) {
    let platform = spawn_platform(backend).await;
    let course = platform.get_json("/v1/courses/1").await;
    let slug = course["course"]["slug"].as_str().unwrap().to_owned();
    platform.get_json(&format!("/v1/courses/{slug}")).await;
    let page = platform.get_json("/v1/catalog?page_size=100").await;
    assert!(
        page["courses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == 1)
    );

    let patched = platform
        .patch("/v1/admin/courses/1")
        .bearer_auth(admin())
        .json(&json!({"title": "Fresh Title"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status().as_u16(), 200);
    assert_eq!(
        platform.get_json("/v1/courses/1").await["course"]["title"],
        "Fresh Title"
    );
    assert_eq!(
        platform.get_json(&format!("/v1/courses/{slug}")).await["course"]["title"],
        "Fresh Title"
    );
    let page = platform.get_json("/v1/catalog?page_size=100").await;
    let listed = page["courses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == 1)
        .unwrap();
    assert_eq!(listed["title"], "Fresh Title");

    let before = page["summary"]["course_counts"].clone();
    let kind = listed["course_type"].as_str().unwrap().to_owned();
    let archived = platform
        .post("/v1/admin/courses/1/archive")
        .bearer_auth(admin())
        .send()
        .await
        .unwrap();
    assert_eq!(archived.status().as_u16(), 200);
    assert_eq!(
        platform
            .get("/v1/courses/1")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404,
        "archived courses are not public"
    );
    let page = platform.get_json("/v1/catalog?page_size=100").await;
    assert!(
        !page["courses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == 1)
    );
    assert_eq!(
        page["summary"]["course_counts"][&kind].as_i64().unwrap(),
        before[&kind].as_i64().unwrap() - 1
    );
}
