//! How reads reach Redis: the client coalesces concurrent reads into one GetMany, and cache-svc
//! answers a lookup from one MGET of the generations and the entries once it knows the
//! generation, going back to the lookup script whenever that generation moved.
use std::time::Duration;

use learnhub_cache_client::{CacheClient, CacheClientOptions, CacheError, CacheKey};
use learnhub_proto::cache::v1::{DeleteRequest, InvalidatePatternRequest};

use crate::helpers::{RedisProcess, TestApp, redis_conn, spawn_app, spawn_app_with, test_config};

const READERS: usize = 64;

/// cache-svc holding `ns:{i}` = `v{i}` for every reader `i`.
async fn app_with_values() -> TestApp {
    let app = spawn_app().await;
    for i in 0..READERS {
        assert!(
            app.set(&format!("ns:{i}"), format!("v{i}").as_bytes(), 60)
                .await
        );
    }
    app
}

fn one_slot_client(addr: &str) -> CacheClient {
    CacheClient::connect_lazy(
        addr,
        CacheClientOptions {
            call_timeout: Duration::from_secs(5),
            reads_in_flight: 1,
            ..CacheClientOptions::default()
        },
    )
    .unwrap()
}

/// On this single-threaded runtime the readers all queue before the first call is sent: the
/// first goes alone (a Get), the 63 that waited behind it share one GetMany, and each reader gets
/// its own key's value.
#[tokio::test]
async fn reads_made_while_a_read_call_is_under_way_share_one_get_many() {
    let app = app_with_values().await;
    let client = one_slot_client(&app.addr.to_string());
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.get(&CacheKey::new("ns").push(i)).await })
        })
        .collect();
    for (i, reader) in readers.into_iter().enumerate() {
        let value = reader.await.unwrap().unwrap();
        assert_eq!(value, Some(format!("v{i}").into_bytes()), "reader {i}");
    }
    let counters = client.counters();
    assert_eq!((counters.reads, counters.calls), (READERS as u64, 2));
    let total = app.stats().await.total.unwrap();
    assert_eq!(total.hits, READERS as u64);

    // Alone, a read is one Get again.
    assert_eq!(
        client.get(&CacheKey::new("ns").push(0)).await.unwrap(),
        Some(b"v0".to_vec())
    );
    assert_eq!(client.counters().calls, 3);
    app.stop().await;
}

/// A key cache-svc refuses fails the GetMany it is in: each key is then asked alone, so only that
/// reader is refused (and the others still get their values).
#[tokio::test]
async fn a_refused_key_in_a_batch_fails_only_its_reader() {
    let app = spawn_app().await;
    for i in 0..8 {
        assert!(app.set(&format!("ns:{i}"), b"v", 60).await);
    }
    let client = one_slot_client(&app.addr.to_string());
    let mut readers = Vec::new();
    for i in 0..8 {
        // The first read goes alone; the rest, the bad key among them, wait and go together.
        let key = if i == 4 {
            CacheKey::new("not a namespace").push(i)
        } else {
            CacheKey::new("ns").push(i)
        };
        let client = client.clone();
        readers.push(tokio::spawn(async move { client.get(&key).await }));
    }
    for (i, reader) in readers.into_iter().enumerate() {
        match reader.await.unwrap() {
            Err(CacheError::Status(status)) if i == 4 => {
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            }
            other => assert_eq!(other.unwrap(), Some(b"v".to_vec()), "reader {i}"),
        }
    }
    // One Get, the refused GetMany of 7, then each of those 7 alone.
    assert_eq!(client.counters().calls, 9);
    assert!(!client.breaker_open(), "a refused key is no outage");
    app.stop().await;
}

async fn evalsha_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().unwrap())
}

/// Two replicas on one Redis and one prefix, not told of each other's invalidations (no peers):
/// the reader's known generation goes stale with every bump by the writer, and its reads still
/// never return what was invalidated. Its repeated hits run no script (a private redis-server,
/// so the script count is this test's own).
#[tokio::test]
async fn a_known_generation_serves_hits_without_the_script_and_never_outlives_a_bump() {
    let redis = RedisProcess::start();
    let config = test_config();
    let on_redis = |config: &cache_svc::Config| cache_svc::Config {
        redis_url: Some(redis.url()),
        listen: "127.0.0.1:0".into(),
        ..config.clone()
    };
    let writer = spawn_app_with(on_redis(&config)).await;
    let reader = spawn_app_with(on_redis(&config)).await;
    let mut conn = redis_conn(&redis.url()).await;

    assert!(writer.set("ns:1", b"one", 60).await);
    // The first read runs the script and learns the generation.
    assert_eq!(reader.get("ns:1").await, Some(b"one".to_vec()));
    let scripts = evalsha_calls(&mut conn).await;
    for _ in 0..5 {
        assert_eq!(reader.get("ns:1").await, Some(b"one".to_vec()));
    }
    assert_eq!(
        evalsha_calls(&mut conn).await,
        scripts,
        "hits ran the script"
    );

    // The writer bumps the namespace: the reader's generation is stale, and it misses.
    let mut grpc = writer.grpc.clone();
    grpc.invalidate_pattern(InvalidatePatternRequest {
        pattern: "ns:*".into(),
        relay: None,
    })
    .await
    .unwrap();
    assert_eq!(reader.get("ns:1").await, None);
    assert!(writer.set("ns:1", b"two", 60).await);
    assert_eq!(reader.get("ns:1").await, Some(b"two".to_vec()));
    assert_eq!(reader.get("ns:1").await, Some(b"two".to_vec()));

    // A delete under the same generation: the entry is gone, the read misses.
    grpc.delete(DeleteRequest {
        keys: vec!["ns:1".into()],
        relay: None,
    })
    .await
    .unwrap();
    assert_eq!(reader.get("ns:1").await, None);

    // Redis loses everything: the generation is made anew, never the one the reader knew.
    assert!(writer.set("ns:1", b"three", 60).await);
    assert_eq!(reader.get("ns:1").await, Some(b"three".to_vec()));
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    assert_eq!(reader.get("ns:1").await, None);
    assert!(writer.set("ns:1", b"four", 60).await);
    assert_eq!(reader.get("ns:1").await, Some(b"four".to_vec()));

    reader.stop().await;
    writer.stop().await;
}

/// Sends `READERS` concurrent reads of `ns:0..` (the key `bad` of them in a namespace cache-svc
/// refuses) and checks every reader's answer.
async fn read_round(client: &CacheClient, bad: Option<usize>) {
    let readers: Vec<_> = (0..READERS)
        .map(|i| {
            let client = client.clone();
            let key = if Some(i) == bad {
                CacheKey::new("not a namespace").push(i)
            } else {
                CacheKey::new("ns").push(i)
            };
            tokio::spawn(async move { client.get(&key).await })
        })
        .collect();
    for (i, reader) in readers.into_iter().enumerate() {
        match reader.await.unwrap() {
            Err(CacheError::Status(status)) if Some(i) == bad => {
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            }
            other => assert_eq!(other.unwrap(), Some(format!("v{i}").into_bytes()), "{i}"),
        }
    }
}

/// Rounds of concurrent reads until one of their batches went on the Lookup stream (it opens in
/// the background after the first batch).
async fn until_streamed(client: &CacheClient) {
    let before = client.counters().streamed;
    for _ in 0..100 {
        read_round(client, None).await;
        if client.counters().streamed > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no batch went on the lookup stream: {:?}",
        client.counters()
    );
}

/// Once the stream is open, batches go on it with their answers matched in order; cache-svc
/// still stops cleanly with the stream open (it ends the stream).
#[tokio::test]
async fn coalesced_reads_go_on_the_lookup_stream_once_it_is_open() {
    let app = app_with_values().await;
    let client = one_slot_client(&app.addr.to_string());
    until_streamed(&client).await;
    let streamed = client.counters().streamed;
    for _ in 0..5 {
        read_round(&client, None).await;
    }
    assert!(
        client.counters().streamed > streamed,
        "{:?}",
        client.counters()
    );
    let total = app.stats().await.total.unwrap();
    assert_eq!(total.hits, client.counters().reads, "every read a hit");
    app.stop().await;
}

/// A refused key ends the stream (INVALID_ARGUMENT): its reader is refused, every other reader
/// still gets its value (their batches are asked again by calls), and the stream opens again.
#[tokio::test]
async fn a_refused_key_ends_the_stream_and_only_its_reader_is_refused() {
    let app = app_with_values().await;
    let client = one_slot_client(&app.addr.to_string());
    until_streamed(&client).await;
    read_round(&client, Some(40)).await;
    // Reopened after a second, the stream carries batches again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    until_streamed(&client).await;
    app.stop().await;
}
