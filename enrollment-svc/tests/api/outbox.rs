//! The cache outbox (docs/cache-outbox.md): a learner's invalidation that cache-svc did not
//! take is kept in the database with the write, so a restart of enrollment-svc does not lose it.
use std::time::{Duration, Instant};

use learnhub_db::Backend;
use learnhub_kit::{server::ServeError, shutdown::CancellationToken};
use learnhub_proto::enrollment::v1 as pb;
use tokio::task::JoinHandle;
use tonic::Code;

use crate::{
    helpers::{Partition, TestApp, assert_status, spawn_app, spawn_app_with},
    on_both_backends,
};

on_both_backends!(
    an_invalidation_cut_off_from_cache_svc_survives_a_restart_of_enrollment_svc,
    a_write_that_fails_records_nothing_and_one_delivered_inline_leaves_no_row,
    without_a_cache_nothing_is_recorded,
);

/// How long the relay may take once cache-svc answers again: its round every second, after the
/// client's own in-memory retries (backing off up to 5 s) have drained.
const RELAY_DEADLINE: Duration = Duration::from_secs(15);

/// A cache-svc over the test Redis, under a key prefix of its own, on port 0.
struct RedisCache {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    _task: JoinHandle<Result<(), ServeError>>,
}

impl Drop for RedisCache {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl RedisCache {
    async fn start() -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let config = cache_svc::Config {
            listen: "127.0.0.1:0".into(),
            redis_url: Some(
                std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
            ),
            key_prefix: format!(
                "lh-test-enrollment-{}-{}:",
                std::process::id(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            ..cache_svc::Config::default()
        };
        let app = cache_svc::Application::build(&config)
            .await
            .expect("cache-svc starts");
        let addr = app.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            addr,
            shutdown,
            _task: task,
        }
    }
}

async fn backlog(app: &TestApp) -> i64 {
    learnhub_db::outbox::backlog(&app.db).await.unwrap()
}

/// Waits until the outbox is empty.
async fn relayed(app: &TestApp) {
    let deadline = Instant::now() + RELAY_DEADLINE;
    while backlog(app).await > 0 {
        assert!(
            Instant::now() < deadline,
            "outbox not relayed within {RELAY_DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first page of the user's enrollments (course ids) and the statements it ran.
async fn enrolled(app: &TestApp, user_id: i64) -> (Vec<i64>, u64) {
    let mut client = app.client();
    let (page, statements) = app
        .statements(client.list_enrollments(pb::ListEnrollmentsRequest {
            user_id,
            ..Default::default()
        }))
        .await;
    let mut courses: Vec<i64> = page
        .unwrap()
        .into_inner()
        .enrollments
        .iter()
        .map(|e| e.course_id)
        .collect();
    courses.sort_unstable();
    (courses, statements)
}

/// Reads the user's enrollments until a read is served from the cache (no statement), at most
/// 20 reads, and returns them all. A fill is not certain to land on the first load: its call has
/// a 50 ms budget, which a loaded CI machine can exceed (the value is then simply not stored).
async fn read_until_cached(app: &TestApp, user_id: i64) -> Vec<(Vec<i64>, u64)> {
    let mut reads = Vec::new();
    for _ in 0..20 {
        let read = enrolled(app, user_id).await;
        let cached = read.1 == 0;
        reads.push(read);
        if cached {
            break;
        }
    }
    reads
}

/// Warm a learner's enrollments; cut enrollment-svc off from cache-svc (which keeps running and
/// keeps the entry); enroll them in another course (acknowledged); restart enrollment-svc, so
/// the invalidation its client was retrying in memory is gone; mend the path. The relay of the
/// new enrollment-svc delivers the recorded invalidation: the listing shows both courses.
async fn an_invalidation_cut_off_from_cache_svc_survives_a_restart_of_enrollment_svc(
    backend: Backend,
) {
    let cache = RedisCache::start().await;
    let path = Partition::to(cache.addr).await;
    let url = path.url();
    let app = spawn_app_with(backend, |config| config.cache_addr = Some(url)).await;
    let (a, b) = (app.course(true, 1).await, app.course(true, 1).await);
    let user = app.user().await;
    app.enroll(user.id, a.id).await;
    assert_eq!(enrolled(&app, user.id).await, (vec![a.id], 1));
    let reads = read_until_cached(&app, user.id).await;
    assert_eq!(reads.last(), Some(&(vec![a.id], 0)), "cached: {reads:?}");

    path.cut().await;
    app.enroll(user.id, b.id).await;
    assert_eq!(
        backlog(&app).await,
        1,
        "the undelivered invalidation is recorded"
    );

    let app = app.restart().await;
    path.mend();
    relayed(&app).await;
    let mut both = vec![a.id, b.id];
    both.sort_unstable();
    assert_eq!(enrolled(&app, user.id).await.0, both);
    // Cached again, though maybe not on the first read: delivery is at least once, and the
    // stopped enrollment-svc's client may still deliver the invalidation it was retrying in
    // memory a moment after the path is mended, refusing one fill.
    let reads = read_until_cached(&app, user.id).await;
    assert_eq!(
        reads.last(),
        Some(&(both, 0)),
        "and cached again: {reads:?}"
    );
}

async fn a_write_that_fails_records_nothing_and_one_delivered_inline_leaves_no_row(
    backend: Backend,
) {
    let cache = RedisCache::start().await;
    let path = Partition::to(cache.addr).await;
    let url = path.url();
    let app = spawn_app_with(backend, |config| config.cache_addr = Some(url)).await;
    let course = app.course(true, 2).await;
    let user = app.user().await;

    // With cache-svc reachable each invalidation is delivered before the write returns.
    let enrollment = app.enroll(user.id, course.id).await;
    assert_eq!(backlog(&app).await, 0);
    app.complete_lesson(enrollment.id, course.lessons[0]).await;
    assert_eq!(backlog(&app).await, 0);

    // Cut off, writes that change nothing or roll back record nothing…
    path.cut().await;
    app.enroll(user.id, course.id).await;
    assert_eq!(
        backlog(&app).await,
        0,
        "an enrollment that existed changes nothing"
    );
    assert_status(
        app.client()
            .update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
                id: enrollment.id,
                status: pb::EnrollmentStatus::Active as i32,
            })
            .await,
        Code::FailedPrecondition,
        "active",
    );
    assert_eq!(
        backlog(&app).await,
        0,
        "a refused transition records nothing"
    );
    // …and one that commits is recorded, then relayed once the path is mended.
    app.complete_lesson(enrollment.id, course.lessons[1]).await;
    assert_eq!(backlog(&app).await, 1);
    path.mend();
    relayed(&app).await;
}

async fn without_a_cache_nothing_is_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    let course = app.course(true, 1).await;
    let user = app.user().await;
    let enrollment = app.enroll(user.id, course.id).await;
    app.complete_lesson(enrollment.id, course.lessons[0]).await;
    assert_eq!(backlog(&app).await, 0);
}
