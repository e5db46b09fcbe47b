//! Caching through a real cache-svc (in-process store): the first page of a learner's
//! enrollments and their progress are served from the cache (no SQL), every change invalidates
//! them (read-after-write holds), another learner's change does not, and a cache-svc that goes
//! away only costs the cache.
use learnhub_db::Backend;
use learnhub_kit::{server::ServeError, shutdown::CancellationToken};
use learnhub_proto::enrollment::v1 as pb;
use tokio::task::JoinHandle;

use crate::{
    helpers::{TestApp, spawn_app_with},
    on_both_backends,
};

on_both_backends!(
    reads_are_cached_and_every_write_invalidates,
    reads_and_writes_survive_the_cache_going_away
);

struct CacheServer {
    addr: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl CacheServer {
    async fn start() -> Self {
        let config = cache_svc::Config {
            listen: "127.0.0.1:0".into(),
            ..cache_svc::Config::default()
        };
        let app = cache_svc::Application::build(&config)
            .await
            .expect("cache-svc starts");
        let addr = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            addr,
            shutdown,
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("cache task").expect("cache-svc stops");
        }
    }
}

impl Drop for CacheServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn list(
    app: &TestApp,
    user_id: i64,
    status: pb::EnrollmentStatus,
) -> (Vec<pb::Enrollment>, u64) {
    let mut c = app.client();
    let (page, statements) = app
        .statements(c.list_enrollments(pb::ListEnrollmentsRequest {
            user_id,
            status: status as i32,
            ..Default::default()
        }))
        .await;
    (page.unwrap().into_inner().enrollments, statements)
}

async fn progress(app: &TestApp, enrollment_id: i64) -> (pb::Progress, u64) {
    let mut c = app.client();
    let (progress, statements) = app
        .statements(c.get_progress(pb::GetProgressRequest { enrollment_id }))
        .await;
    (progress.unwrap().into_inner(), statements)
}

async fn reads_are_cached_and_every_write_invalidates(backend: Backend) {
    use pb::EnrollmentStatus::{Dropped, Unspecified};
    let cache = CacheServer::start().await;
    let addr = cache.addr.clone();
    let app = spawn_app_with(backend, |config| config.cache_addr = Some(addr)).await;
    let (a, b) = (app.course(true, 3).await, app.course(true, 2).await);
    let user = app.user().await;
    let other = app.user().await;
    let enrollment = app.enroll(user.id, a.id).await;

    let (first, statements) = list(&app, user.id, Unspecified).await;
    assert_eq!((first.len(), statements), (1, 1), "a miss loads");
    let (again, statements) = list(&app, user.id, Unspecified).await;
    assert_eq!((again, statements), (first, 0), "a hit runs no SQL");

    app.enroll(user.id, b.id).await;
    let (after_enroll, statements) = list(&app, user.id, Unspecified).await;
    assert_eq!(
        (after_enroll.len(), statements),
        (2, 1),
        "Enroll invalidated the listing"
    );

    let (fresh, statements) = progress(&app, enrollment.id).await;
    assert_eq!((fresh.completed_lessons, statements), (0, 2));
    let (cached, statements) = progress(&app, enrollment.id).await;
    assert_eq!(
        (cached, statements),
        (fresh, 1),
        "only the owner lookup runs"
    );

    app.complete_lesson(enrollment.id, a.lessons[0]).await;
    let (recorded, _) = progress(&app, enrollment.id).await;
    assert_eq!(
        recorded.completed_lessons, 1,
        "RecordLessonProgress invalidated the progress"
    );

    // Another learner's change leaves this learner's entries alone.
    let (_, statements) = list(&app, user.id, Unspecified).await;
    assert_eq!(
        statements, 1,
        "the progress change invalidated the listing too (user:{{id}}:*)"
    );
    app.enroll(other.id, a.id).await;
    let (_, statements) = list(&app, user.id, Unspecified).await;
    assert_eq!(statements, 0);

    app.client()
        .update_enrollment_status(pb::UpdateEnrollmentStatusRequest {
            id: enrollment.id,
            status: Dropped as i32,
        })
        .await
        .unwrap();
    let (dropped, _) = list(&app, user.id, Dropped).await;
    assert_eq!(
        dropped.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![enrollment.id]
    );
    let (all, _) = list(&app, user.id, Unspecified).await;
    assert!(
        all.iter()
            .any(|e| e.id == enrollment.id && e.status == Dropped as i32),
        "the status change shows"
    );
    let (after_drop, _) = progress(&app, enrollment.id).await;
    assert_eq!(after_drop.enrollment.unwrap().status, Dropped as i32);
}

async fn reads_and_writes_survive_the_cache_going_away(backend: Backend) {
    let mut cache = CacheServer::start().await;
    let addr = cache.addr.clone();
    let app = spawn_app_with(backend, |config| config.cache_addr = Some(addr)).await;
    let (a, b) = (app.course(true, 1).await, app.course(true, 1).await);
    let user = app.user().await;
    app.enroll(user.id, a.id).await;
    let (cached, _) = list(&app, user.id, pb::EnrollmentStatus::Unspecified).await;
    assert_eq!(cached.len(), 1);

    cache.stop().await;
    let (page, statements) = list(&app, user.id, pb::EnrollmentStatus::Unspecified).await;
    assert_eq!(
        (page.len(), statements),
        (1, 1),
        "without the cache, reads go to the database"
    );
    app.enroll(user.id, b.id).await;
    let (page, _) = list(&app, user.id, pb::EnrollmentStatus::Unspecified).await;
    assert_eq!(
        page.len(),
        2,
        "a write while the cache is away is still read back"
    );
}
