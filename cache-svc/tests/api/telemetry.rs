//! What cache-svc and its client report besides the statistics RPC: a span per Redis round trip
//! under the Get/Set span (which says the namespace and hit or miss), per-namespace counters, Redis
//! durations and the fallback gauge; on the client, a `cache get` span saying how each value was
//! found, spans for invalidate/delete, and the bypass and breaker metrics of its caller.
use learnhub_kit::capture::{SpanRecord, TestRecorder, capture};
use std::time::Duration;

use cache_svc::Config;
use learnhub_cache_client::{CacheClient, CacheClientOptions, CacheKey, CachePattern};
use learnhub_proto::cache::v1::{GetRequest, InvalidatePatternRequest, SetRequest};

use crate::helpers::{RedisProcess, Row, spawn_app, spawn_app_with, test_config};

fn results(spans: &[SpanRecord]) -> Vec<&str> {
    spans
        .iter()
        .map(|s| s.field("cache.result").unwrap_or("-"))
        .collect()
}

#[tokio::test]
async fn redis_round_trips_are_spans_under_the_get_and_set_spans() {
    let (subscriber, captured) = capture();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let app = spawn_app().await;
    assert_eq!(app.get("ns:1").await, None);
    assert!(app.set("ns:1", b"v", 60).await);
    assert!(app.get("ns:1").await.is_some());
    app.stop().await;

    let gets = captured.named("cache Get");
    assert_eq!(results(&gets), ["miss", "hit"]);
    for get in &gets {
        assert_eq!(get.field("cache.key_namespace"), Some("ns"));
    }
    let redis_gets = captured.named("redis GET");
    assert_eq!(redis_gets.len(), 2, "{redis_gets:#?}");
    for (redis, get) in redis_gets.iter().zip(&gets) {
        assert_eq!(redis.parent, Some(get.index), "a child of the Get span");
        assert_eq!(redis.field("db.system.name"), Some("redis"));
        assert_eq!(redis.field("db.operation.name"), Some("GET"));
        assert_eq!(redis.field("otel.kind"), Some("client"));
        assert_eq!(redis.field("db.operation.batch.size"), None, "one key");
        assert!(redis.closed);
    }
    let set = &captured.named("cache Set")[0];
    assert_eq!(set.field("cache.key_namespace"), Some("ns"));
    assert_eq!(set.field("cache.stored"), Some("true"));
    let redis_set = &captured.named("redis SET")[0];
    assert_eq!(redis_set.parent, Some(set.index));
    assert_eq!(redis_set.field("db.operation.name"), Some("SET"));
    // Background upkeep (connect, sweeps) starts no trace of its own.
    for span in captured.spans().iter().filter(|s| s.name == "redis") {
        assert!(span.parent.is_some(), "{span:?}");
    }
}

#[tokio::test]
async fn per_namespace_counters_and_redis_durations_are_metrics() {
    let recorder = TestRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let app = spawn_app().await;
    let mut grpc = app.grpc.clone();
    assert!(app.set("m:1", b"1", 60).await);
    assert!(app.set("m:2", b"2", 60).await);
    assert!(app.set("other:1", b"1", 60).await);
    assert!(app.get("m:1").await.is_some());
    let miss = grpc
        .get(GetRequest { key: "m:9".into() })
        .await
        .unwrap()
        .into_inner();
    let refused = grpc
        .set(SetRequest {
            key: "m:9".into(),
            value: b"late".to_vec(),
            ttl_seconds: 60,
            lease: miss.lease.wrapping_add(1),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!refused.stored);
    let removed = grpc
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: "m:*".into(),
            relay: None,
        })
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 2);
    let stats = app.stats().await;
    app.stop().await;

    let m = [("namespace", "m")];
    for (name, expected) in [
        ("learnhub_cache_hits_total", 1),
        ("learnhub_cache_misses_total", 1),
        ("learnhub_cache_sets_total", 2),
        ("learnhub_cache_refused_sets_total", 1),
        ("learnhub_cache_invalidations_total", 1),
        ("learnhub_cache_entries_removed_total", 2),
        ("learnhub_cache_errors_total", 0),
    ] {
        assert_eq!(recorder.counter(name, &m), expected, "{name}");
        assert_eq!(
            recorder.label_sets(name, &m).len(),
            1,
            "{name} has a series"
        );
    }
    assert_eq!(
        recorder.counter("learnhub_cache_sets_total", &[("namespace", "other")]),
        1
    );
    // The statistics RPC counts the same.
    let stats_m = stats
        .namespaces
        .iter()
        .find(|n| n.namespace == "m")
        .and_then(|n| n.counters)
        .unwrap();
    assert_eq!((stats_m.hits, stats_m.misses, stats_m.sets), (1, 1, 2));

    let durations = |command| {
        recorder.histogram(
            "learnhub_cache_redis_duration_seconds",
            &[("command", command)],
        )
    };
    // The first read runs the lookup script (and learns the generation); the miss of `m:9` is
    // the MGET, then the script that leaves the lease.
    assert_eq!(durations("GET").len(), 3);
    assert_eq!(durations("SET").len(), 4);
    assert_eq!(durations("BUMP").len(), 1);
    assert!(durations("GET").iter().all(|s| *s > 0.0 && *s < 30.0));
    assert_eq!(
        recorder.gauge("learnhub_cache_fallback_active", &[]),
        Some(0.0)
    );
}

#[tokio::test]
async fn fallback_gauge_is_one_while_the_in_process_store_serves() {
    let recorder = TestRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let mut redis = RedisProcess::start();
    let app = spawn_app_with(Config {
        redis_url: Some(redis.url()),
        redis_timeout_ms: 300,
        ..test_config()
    })
    .await;
    let fallback = || recorder.gauge("learnhub_cache_fallback_active", &[]);
    assert_eq!(fallback(), Some(0.0));

    redis.kill();
    assert_eq!(app.get("k:1").await, None);
    assert_eq!(
        fallback(),
        Some(1.0),
        "Redis failed: the in-process store serves"
    );
    assert!(recorder.counter("learnhub_cache_errors_total", &[("namespace", "k")]) >= 1);

    redis.restart();
    app.wait_for_store("redis").await;
    assert_eq!(fallback(), Some(0.0));
    app.stop().await;
}

#[tokio::test]
async fn cache_get_spans_say_how_each_value_was_found() {
    let (subscriber, captured) = capture();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let app = spawn_app().await;
    let cache = app.cache_client();
    let ttl = Duration::from_secs(60);
    let row = |version| Row {
        title: "course".into(),
        version,
    };
    let key = CacheKey::new("catalog").push("course").push(7);
    for _ in 0..2 {
        cache
            .get_or_load(&key, ttl, || async {
                let _loading = tracing::info_span!("loader").entered();
                Ok::<_, tonic::Status>(row(7))
            })
            .await
            .unwrap();
    }
    // Two callers of one missing key: the one whose read comes back first loads, the other waits
    // for it (their reads may go out together, so either can be first).
    let other = CacheKey::new("catalog").push("course").push(8);
    let loads = std::sync::atomic::AtomicUsize::new(0);
    let gate = tokio::sync::Notify::new();
    let load = || async {
        loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        gate.notified().await;
        Ok::<_, tonic::Status>(row(8))
    };
    let both = async {
        tokio::join!(
            cache.get_or_load(&other, ttl, load),
            cache.get_or_load(&other, ttl, load),
            // A permit the one load takes whenever it starts waiting.
            async { gate.notify_one() },
        )
    };
    let (first, second, ()) = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .expect("a second load would wait for ever");
    assert_eq!((first.unwrap(), second.unwrap()), (row(8), row(8)));
    assert_eq!(loads.load(std::sync::atomic::Ordering::SeqCst), 1);
    let removed = cache
        .invalidate(&CachePattern::namespace("catalog"))
        .await
        .unwrap();
    assert_eq!(removed, 2);
    assert_eq!(cache.delete(std::slice::from_ref(&key)).await.unwrap(), 0);
    app.stop().await;

    let gets = captured.named("cache get");
    let mut pair = results(&gets[2..]);
    pair.sort_unstable();
    assert_eq!(results(&gets[..2]), ["miss", "hit"]);
    assert_eq!(pair, ["coalesced", "miss"]);
    for get in &gets {
        assert_eq!(get.field("cache.key_namespace"), Some("catalog"));
    }
    let loader = &captured.named("loader")[0];
    assert_eq!(
        loader.parent,
        Some(gets[0].index),
        "the load runs in the span"
    );

    let invalidate = &captured.named("cache invalidate")[0];
    assert_eq!(invalidate.field("cache.key_namespace"), Some("catalog"));
    assert_eq!(invalidate.field("cache.pattern"), Some("catalog:*"));
    assert_eq!(invalidate.field("cache.removed"), Some("2"));
    let delete = &captured.named("cache delete")[0];
    assert_eq!(delete.field("cache.key_namespace"), Some("catalog"));
    assert_eq!(delete.field("cache.keys"), Some("1"));
    assert_eq!(delete.field("cache.removed"), Some("0"));
}

#[tokio::test]
async fn bypasses_and_the_open_breaker_are_metrics_of_the_caller() {
    let recorder = TestRecorder::default();
    let _metrics = metrics::set_default_local_recorder(&recorder);
    let (subscriber, captured) = capture();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Nothing listens there any more.
    let cache = CacheClient::connect_lazy(
        &addr.to_string(),
        CacheClientOptions {
            caller: "telemetry-caller",
            call_timeout: Duration::from_secs(5),
            breaker_failures: 1,
            breaker_cooldown: Duration::from_secs(3600),
            ..CacheClientOptions::default()
        },
    )
    .unwrap();
    let service = [("service", "telemetry-caller")];
    assert_eq!(
        recorder.gauge("learnhub_cache_client_breaker_open", &service),
        Some(0.0)
    );
    for version in 0..2 {
        let loaded = cache
            .get_or_load(
                &CacheKey::new("user").push(version),
                Duration::from_secs(60),
                || async move {
                    Ok::<_, tonic::Status>(Row {
                        title: "from db".into(),
                        version,
                    })
                },
            )
            .await
            .unwrap();
        assert_eq!(loaded.version, version);
    }
    assert_eq!(
        recorder.counter("learnhub_cache_client_bypasses_total", &service),
        2
    );
    assert_eq!(
        recorder.gauge("learnhub_cache_client_breaker_open", &service),
        Some(1.0)
    );
    assert_eq!(results(&captured.named("cache get")), ["bypass", "bypass"]);
}
