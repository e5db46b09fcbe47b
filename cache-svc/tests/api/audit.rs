//! An operator's invalidation (through the gateway) and every clear are audit events (target
//! `learnhub::audit`): who asked, what, and how it went. A data service's invalidations and
//! deletes, one after every write, are logged at debug only and counted in the periodic summary.
use std::time::{Duration, Instant};

use cache_svc::{Application, Config};
use learnhub_kit::{
    capture::{Captured, EventRecord, capture},
    client::{self, ClientOptions},
    enduser::{self, EndUser},
    memory::MemoryNetwork,
    server::ServeError,
    shutdown::CancellationToken,
    tls::TlsArgs,
};
use learnhub_proto::cache::v1::{
    ClearRequest, DeleteRequest, InvalidatePatternRequest, SetRequest,
    cache_service_client::CacheServiceClient,
};

use crate::helpers::{spawn_app, test_config};

const SUMMARY: &str = "cache invalidation summary";

fn messages(captured: &Captured, message: &str) -> Vec<EventRecord> {
    captured
        .events()
        .into_iter()
        .filter(|event| event.field("message") == Some(message))
        .collect()
}

/// Unauthenticated (plaintext) callers cannot be told from an operator: audited, as before.
#[tokio::test]
async fn invalidations_and_clears_are_audit_events() {
    let (subscriber, captured) = capture();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let app = spawn_app().await;
    assert!(app.set("audited:1", b"v", 60).await);
    let mut grpc = app.grpc.clone();
    let removed = grpc
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: "audited:*".into(),
            relay: None,
        })
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 1);
    grpc.clear(ClearRequest {}).await.unwrap();

    let audits = messages(&captured, "audit");
    assert_eq!(audits.len(), 2, "{audits:#?}");
    let invalidation = &audits[0];
    assert_eq!(invalidation.level, tracing::Level::INFO);
    assert_eq!(invalidation.field("action"), Some("cache.invalidate"));
    assert_eq!(
        invalidation.field("resource"),
        Some("Namespace(\"audited\")")
    );
    assert_eq!(invalidation.field("removed"), Some("1"));
    assert_eq!(invalidation.field("outcome"), Some("ok"));
    assert!(
        invalidation
            .field("caller")
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{invalidation:?}"
    );
    assert_eq!(audits[1].field("action"), Some("cache.clear"));
    app.stop().await;
}

/// cache-svc on an in-memory network, where the caller is the service that dialled (as over
/// mutual TLS), with a summary every `summary_secs`.
struct MemoryApp {
    network: MemoryNetwork,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl MemoryApp {
    async fn spawn(summary_secs: u64) -> Self {
        let network = MemoryNetwork::new();
        let config = Config {
            tls: TlsArgs::on_memory(network.endpoint("cache-svc")),
            log_summary_secs: summary_secs,
            ..test_config()
        };
        let app = Application::build(&config).await.unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            network,
            shutdown,
            task,
        }
    }

    /// A client calling as `service`.
    fn client(&self, service: &'static str) -> CacheServiceClient<client::ServiceChannel> {
        let options = ClientOptions::new(Duration::from_secs(5))
            .with_memory(Some(self.network.endpoint(service)));
        let channel =
            client::connect("cache-svc", "--cache-addr", "memory://cache-svc", &options).unwrap();
        CacheServiceClient::new(channel)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }
}

async fn set(grpc: &mut CacheServiceClient<client::ServiceChannel>, key: &str) {
    let stored = grpc
        .set(SetRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ttl_seconds: 60,
            lease: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .stored;
    assert!(stored, "{key}");
}

#[tokio::test]
async fn a_data_services_invalidation_is_debug_and_the_gateways_is_audited() {
    let (subscriber, captured) = capture();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let app = MemoryApp::spawn(0).await;
    let mut catalog = app.client("catalog-svc");
    let mut gateway = app.client("gateway");

    set(&mut catalog, "courses:1").await;
    let removed = catalog
        .invalidate_pattern(InvalidatePatternRequest {
            pattern: "courses:*".into(),
            relay: None,
        })
        .await
        .unwrap()
        .into_inner()
        .removed;
    assert_eq!(removed, 1);
    set(&mut catalog, "courses:2").await;
    catalog
        .delete(DeleteRequest {
            keys: vec!["courses:2".into()],
            relay: None,
        })
        .await
        .unwrap();
    assert!(
        messages(&captured, "audit").is_empty(),
        "a data service's invalidation and delete are no audit events: {:#?}",
        messages(&captured, "audit")
    );
    let routine = messages(&captured, "cache invalidation");
    assert_eq!(routine.len(), 1, "{routine:#?}");
    assert_eq!(routine[0].level, tracing::Level::DEBUG);
    assert_eq!(routine[0].field("caller"), Some("catalog-svc"));
    assert_eq!(routine[0].field("removed"), Some("1"));
    let deletes = messages(&captured, "cache delete");
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert_eq!(deletes[0].level, tracing::Level::DEBUG);

    // The admin route: the gateway calls for the operator it names.
    set(&mut catalog, "courses:3").await;
    let removed = enduser::scope(
        EndUser::admin("7"),
        gateway.invalidate_pattern(InvalidatePatternRequest {
            pattern: "courses:*".into(),
            relay: None,
        }),
    )
    .await
    .unwrap()
    .into_inner()
    .removed;
    assert_eq!(removed, 1);
    enduser::scope(EndUser::admin("7"), gateway.clear(ClearRequest {}))
        .await
        .unwrap();

    let audits = messages(&captured, "audit");
    assert_eq!(audits.len(), 2, "{audits:#?}");
    let invalidation = &audits[0];
    assert_eq!(invalidation.level, tracing::Level::INFO);
    assert_eq!(invalidation.field("action"), Some("cache.invalidate"));
    assert_eq!(
        invalidation.field("resource"),
        Some("Namespace(\"courses\")")
    );
    assert_eq!(invalidation.field("caller"), Some("gateway"));
    assert_eq!(invalidation.field("enduser"), Some("7"));
    assert_eq!(invalidation.field("removed"), Some("1"));
    assert_eq!(invalidation.field("outcome"), Some("ok"));
    assert_eq!(audits[1].field("action"), Some("cache.clear"));
    assert_eq!(audits[1].field("caller"), Some("gateway"));
    assert_eq!(
        messages(&captured, "cache invalidation").len(),
        1,
        "the operator's is not logged twice"
    );
    // CACHE_LOG_SUMMARY_SECS=0: no summary, not even at shutdown.
    app.stop().await;
    assert!(messages(&captured, SUMMARY).is_empty());
}

#[tokio::test]
async fn the_summary_is_one_line_per_caller_and_namespace_and_nothing_when_idle() {
    let (subscriber, captured) = capture();
    let _tracing = tracing::subscriber::set_default(subscriber);
    let app = MemoryApp::spawn(1).await;
    let mut catalog = app.client("catalog-svc");
    let mut enrollment = app.client("enrollment-svc");

    set(&mut catalog, "courses:1").await;
    set(&mut catalog, "courses:2").await;
    for _ in 0..3 {
        catalog
            .invalidate_pattern(InvalidatePatternRequest {
                pattern: "courses:*".into(),
                relay: None,
            })
            .await
            .unwrap();
    }
    set(&mut enrollment, "progress:1").await;
    enrollment
        .delete(DeleteRequest {
            keys: vec!["progress:1".into(), "progress:2".into()],
            relay: None,
        })
        .await
        .unwrap();

    // The calls may straddle a flush: wait until every count is in, summed over the lines.
    let deadline = Instant::now() + Duration::from_secs(20);
    let total = |caller: &str, field: &str| -> u64 {
        messages(&captured, SUMMARY)
            .iter()
            .filter(|line| line.field("caller") == Some(caller))
            .map(|line| line.field(field).unwrap().parse::<u64>().unwrap())
            .sum()
    };
    while (total("catalog-svc", "invalidations") < 3 || total("enrollment-svc", "deletes") < 1)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = messages(&captured, SUMMARY);
    assert!(lines.len() >= 2, "{lines:#?}");
    for line in &lines {
        assert_eq!(line.level, tracing::Level::INFO);
    }
    assert_eq!(total("catalog-svc", "invalidations"), 3, "{lines:#?}");
    assert_eq!(total("catalog-svc", "deletes"), 0);
    assert_eq!(total("catalog-svc", "entries_removed"), 2, "{lines:#?}");
    assert_eq!(total("enrollment-svc", "invalidations"), 0);
    assert_eq!(total("enrollment-svc", "deletes"), 1);
    assert_eq!(total("enrollment-svc", "entries_removed"), 1, "{lines:#?}");
    assert!(
        lines.iter().all(|line| match line.field("caller") {
            Some("catalog-svc") => line.field("namespace") == Some("courses"),
            Some("enrollment-svc") => line.field("namespace") == Some("progress"),
            _ => false,
        }),
        "{lines:#?}"
    );
    // Most likely all in one period: then exactly one line per (caller, namespace).
    if lines.len() == 2 {
        assert_ne!(lines[0].field("caller"), lines[1].field("caller"));
    }

    // Idle periods (and the flush at shutdown) write nothing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.stop().await;
    assert_eq!(messages(&captured, SUMMARY).len(), lines.len());
}
