//! The one client constructor (`learnhub_kit::client::connect`) as the services use it: calls
//! from enrollment-svc spread over two catalog-svc replicas behind one name, and the caller's
//! trace context arrives at catalog-svc and at cache-svc. Its own test binary: the tracing
//! subscriber is process-global.
#![allow(clippy::unwrap_used)]
use std::{collections::HashMap, net::SocketAddr};

use learnhub_db::{Backend, DbArgs, testing::TestDatabase};
use learnhub_kit::{client::Resolver, shutdown::CancellationToken};
use learnhub_proto::{
    catalog::v1::{ListExercisesRequest, catalog_service_client::CatalogServiceClient},
    enrollment::v1::{
        CreateUserRequest, EnrollRequest, Role, SubmitExerciseRequest,
        enrollment_service_client::EnrollmentServiceClient,
    },
};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use support::otlp::Receiver;

mod support {
    pub mod otlp;
}

fn db_args(database: &TestDatabase) -> DbArgs {
    DbArgs {
        database_url: database.url().to_owned(),
        db_pool_size: 2,
        slow_query_ms: 1_000,
        n_plus_one_threshold: 5,
    }
}

/// A catalog-svc with the demo catalog on a database of its own, serving until `stop`.
async fn catalog_replica(
    database: &TestDatabase,
    cache_addr: Option<String>,
    stop: &CancellationToken,
) -> (SocketAddr, learnhub_db::Db) {
    let catalog = catalog_svc::Application::build(&catalog_svc::Config {
        near_cache: Default::default(),
        listen: "127.0.0.1:0".into(),
        metrics_addr: String::new(),
        db: db_args(database),
        cache_addr,
        no_migrate: false,
        tls: learnhub_kit::tls::TlsArgs::plaintext(),
        server_limits: learnhub_kit::limits::ServerLimits::default(),
    })
    .await
    .unwrap();
    catalog_svc::seed::demo(catalog.db()).await.unwrap();
    let addr = catalog.local_addr();
    let db = catalog.db().clone();
    tokio::spawn(catalog.run_until_stopped(stop.clone()));
    (addr, db)
}

/// An enrollment-svc whose CATALOG_ADDR (and CACHE_ADDR) names are resolved by `resolver`.
async fn enrollment(
    database: &TestDatabase,
    catalog_addr: &str,
    cache_addr: Option<String>,
    resolver: Resolver,
    stop: &CancellationToken,
) -> EnrollmentServiceClient<tonic::transport::Channel> {
    let mut config =
        enrollment_svc::Config::new("127.0.0.1:0", db_args(database), catalog_addr.to_owned());
    config.cache_addr = cache_addr;
    config.resolver = resolver;
    let app = enrollment_svc::Application::build(&config).await.unwrap();
    let addr = app.local_addr();
    tokio::spawn(app.run_until_stopped(stop.clone()));
    EnrollmentServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap()
}

/// The first exercise of the first lesson that has one (the demo catalog is the same in every
/// replica).
async fn an_exercise(catalog: SocketAddr) -> i64 {
    let mut client = CatalogServiceClient::connect(format!("http://{catalog}"))
        .await
        .unwrap();
    for lesson_id in 1.. {
        let exercises = client
            .list_exercises(ListExercisesRequest { lesson_id })
            .await
            .unwrap()
            .into_inner()
            .exercises;
        if let Some(exercise) = exercises.first() {
            return exercise.id;
        }
        assert!(lesson_id < 100, "no exercise in the demo catalog");
    }
    unreachable!()
}

async fn a_learner(client: &mut EnrollmentServiceClient<tonic::transport::Channel>) -> i64 {
    client
        .create_user(CreateUserRequest {
            email: format!("learner-{}@example.com", fastrand_id()),
            display_name: "Learner".into(),
            role: Role::Learner.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .id
}

fn fastrand_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Calls of one RPC a catalog replica served, counted by its profiler.
fn served(db: &learnhub_db::Db, rpc: &str) -> u64 {
    db.profiler()
        .rpcs()
        .into_iter()
        .filter(|(name, _)| name.ends_with(rpc))
        .map(|(_, stats)| stats.calls)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_svc_spreads_catalog_calls_over_the_replicas_behind_one_name() {
    let stop = CancellationToken::new();
    let (db_a, db_b, db_enrollment) = tokio::join!(
        TestDatabase::create(Backend::Sqlite),
        TestDatabase::create(Backend::Sqlite),
        TestDatabase::create(Backend::Sqlite),
    );
    let (replica_a, catalog_a) = catalog_replica(&db_a, None, &stop).await;
    let (replica_b, catalog_b) = catalog_replica(&db_b, None, &stop).await;
    // One name, two replicas: what a headless Service's DNS answers on Kubernetes.
    let resolver = Resolver::fixed(HashMap::from([(
        "catalog.test".to_owned(),
        vec![replica_a, replica_b],
    )]));
    let mut client = enrollment(
        &db_enrollment,
        "http://catalog.test:50051",
        None,
        resolver,
        &stop,
    )
    .await;
    let exercise_id = an_exercise(replica_a).await;
    let user_id = a_learner(&mut client).await;
    let (before_a, before_b) = (
        served(&catalog_a, "GetExercise"),
        served(&catalog_b, "GetExercise"),
    );

    // SubmitExercise asks catalog-svc whether the exercise exists, every time.
    const CALLS: u64 = 60;
    for round in 0..CALLS / 4 {
        let submissions = (0..4).map(|i| {
            let mut client = client.clone();
            async move {
                client
                    .submit_exercise(SubmitExerciseRequest {
                        user_id,
                        exercise_id,
                        code: format!("print({round}{i})"),
                        passed: true,
                        score: 100,
                    })
                    .await
            }
        });
        for submitted in futures::future::join_all(submissions).await {
            submitted.unwrap();
        }
    }

    let on_a = served(&catalog_a, "GetExercise") - before_a;
    let on_b = served(&catalog_b, "GetExercise") - before_b;
    assert_eq!(on_a + on_b, CALLS, "every check reached a replica");
    assert!(
        on_a > 0 && on_b > 0,
        "both replicas served: {on_a} and {on_b}"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_reaches_catalog_svc_and_cache_svc() {
    let (receiver, telemetry) = Receiver::start_exporting().await;

    let stop = CancellationToken::new();
    let cache = cache_svc::Application::build(&cache_svc::Config {
        listen: "127.0.0.1:0".into(),
        ..cache_svc::Config::default()
    })
    .await
    .unwrap();
    let cache_addr = format!("http://{}", cache.local_addr());
    tokio::spawn(cache.run_until_stopped(stop.clone()));
    let (catalog_db, enrollment_db) = tokio::join!(
        TestDatabase::create(Backend::Sqlite),
        TestDatabase::create(Backend::Sqlite),
    );
    let (catalog, _) = catalog_replica(&catalog_db, Some(cache_addr.clone()), &stop).await;
    let mut client = enrollment(
        &enrollment_db,
        &format!("http://{catalog}"),
        Some(cache_addr),
        Resolver::default(),
        &stop,
    )
    .await;
    let user_id = a_learner(&mut client).await;
    // Enroll asks catalog-svc whether the course is published, then invalidates the learner's
    // cached entries in cache-svc after its commit.
    let enrolled = client
        .enroll(EnrollRequest {
            user_id,
            course_id: 1,
        })
        .await;
    assert!(enrolled.is_ok(), "{enrolled:?}");
    stop.cancel();
    // Dropping the guard flushes the batch of spans to the collector.
    drop(telemetry);

    let spans: Vec<Span> = receiver.spans().into_iter().map(|r| r.span).collect();
    let enroll = spans
        .iter()
        .find(|span| span.name == "learnhub.enrollment.v1.EnrollmentService/Enroll")
        .unwrap_or_else(|| panic!("no Enroll span in {:?}", names(&spans)));
    let trace: Vec<&Span> = spans
        .iter()
        .filter(|span| span.trace_id == enroll.trace_id)
        .collect();
    for (callee, prefix) in [
        ("catalog-svc", "learnhub.catalog.v1.CatalogService/"),
        ("cache-svc", "learnhub.cache.v1.CacheService/"),
    ] {
        let served = trace
            .iter()
            .find(|span| span.name.starts_with(prefix) && span.kind == SpanKind::Server as i32)
            .unwrap_or_else(|| {
                panic!(
                    "{callee} has no server span in the Enroll trace: {:?}",
                    names(&trace)
                )
            });
        // Its parent is enrollment-svc's client span for the same call, in the same trace: the
        // context crossed the hop.
        let parent = trace
            .iter()
            .find(|span| span.span_id == served.parent_span_id)
            .unwrap_or_else(|| panic!("{} has no parent in the trace", served.name));
        assert_eq!(
            parent.kind,
            SpanKind::Client as i32,
            "{}'s parent",
            served.name
        );
        assert_eq!(parent.name, served.name);
    }
}

fn names(spans: &[impl std::borrow::Borrow<Span>]) -> Vec<String> {
    spans
        .iter()
        .map(|span| span.borrow().name.clone())
        .collect()
}
