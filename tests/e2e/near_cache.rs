//! Two gateways, each with its near-cache (L1) in front of one cache-svc: an admin write through
//! one is seen at once there and, by cache-svc's push, on the other — with an L1 lifetime of a
//! minute, so nothing but the push can explain it; the admin statistics show the L1's hits and
//! misses per namespace.
use std::time::Duration;

use learnhub_cache_client::NearCacheArgs;
use learnhub_db::Backend;
use learnhub_kit::testing::eventually;
use serde_json::{Value, json};

use crate::{
    helpers::{admin, cache_stats, near_cache_live, spawn_platform_with},
    on_both_backends,
};

on_both_backends!(a_write_through_one_gateway_reaches_the_other_s_near_cache);

fn long_lived_l1() -> NearCacheArgs {
    NearCacheArgs {
        near_cache_ttl_ms: 60_000,
        ..NearCacheArgs::default()
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Value {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.json().await.unwrap()
}

const LIMIT: Duration = Duration::from_secs(20);

async fn a_write_through_one_gateway_reaches_the_other_s_near_cache(backend: Backend) {
    let platform = spawn_platform_with(backend, |config| {
        config.near_cache = long_lived_l1();
        config.gateway_limits = gateway::limits::LimitConfig::off();
    })
    .await;
    let second = platform.replica_gateway().await;
    let http = reqwest::Client::new();
    let (a, b) = (platform.url.clone(), second.url.clone());
    for base in [&a, &b] {
        near_cache_live(&http, base).await;
    }
    let course = |base: &str| format!("{base}/v1/courses/1");
    let page = |base: &str| format!("{base}/v1/catalog?page_size=50");
    // Course 1's title as the page shows it (the demo catalog is smaller than a page).
    let title_on_page = |page: Value| {
        page["courses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|entry| entry["id"] == 1)
            .map(|entry| entry["title"].clone())
    };
    assert!(
        title_on_page(get(&http, &page(&a)).await).is_some(),
        "course 1 is on the first page"
    );
    for base in [&a, &b] {
        for _ in 0..3 {
            get(&http, &course(base)).await;
            get(&http, &page(base)).await;
            get(&http, &format!("{base}/v1/categories")).await;
        }
    }
    let near = cache_stats(&http, &b).await["near_caches"][0].clone();
    assert_eq!(near["service"], "gateway");
    assert_eq!(
        (
            near["namespaces"]["course"]["hits"].as_u64(),
            near["namespaces"]["course"]["misses"].as_u64()
        ),
        (Some(2), Some(1)),
        "{near}"
    );
    // The page and the category list: one miss each, then hits.
    assert_eq!(near["namespaces"]["catalog"]["misses"], 2, "{near}");
    assert_eq!(near["namespaces"]["catalog"]["hits"], 4, "{near}");

    // Rename course 1 through A.
    let response = http
        .patch(format!("{a}/v1/admin/courses/1"))
        .bearer_auth(admin())
        .json(&json!({"title": "Renamed through A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // A forgot its own copies as it answered.
    assert_eq!(
        get(&http, &course(&a)).await["course"]["title"],
        "Renamed through A"
    );
    // B hears of it from cache-svc.
    eventually("B serves the new title", LIMIT, async || {
        get(&http, &course(&b)).await["course"]["title"] == "Renamed through A"
    })
    .await;
    eventually("B's catalog page is fresh too", LIMIT, async || {
        title_on_page(get(&http, &page(&b)).await) == Some(json!("Renamed through A"))
    })
    .await;
    let near = cache_stats(&http, &b).await["near_caches"][0].clone();
    assert!(near["pushed"].as_u64().unwrap() >= 1, "{near}");
    assert_eq!(near["drops"], 0, "{near}");
    second.stop().await;
}
