//! The data generator: deterministic, rerunnable, drawing courses and lessons from catalog-svc.
use std::time::Duration;

use enrollment_svc::{catalog_client::CatalogClient, seed};
use learnhub_db::Backend;
use learnhub_proto::enrollment::v1 as pb;

use crate::{helpers::spawn_app, on_both_backends};

on_both_backends!(seed_is_deterministic_and_rerunnable);

async fn seed_is_deterministic_and_rerunnable(backend: Backend) {
    let app = spawn_app(backend).await;
    catalog_svc::seed::run(&app.catalog.db, 30, false)
        .await
        .unwrap();
    let catalog = CatalogClient::connect_lazy(&app.catalog.addr, Duration::from_secs(10)).unwrap();
    let plan = seed::Plan {
        users: 40,
        enrollments: 160,
        progress: 400,
        submissions: 90,
    };
    let report = seed::run(&app.db, &catalog, plan, false).await.unwrap();
    assert_eq!(report.users, 40);
    assert_eq!(report.enrollments, 160);
    assert_eq!(
        report.progress, 400,
        "2.5 lessons per enrollment fits every course (3+ lessons)"
    );
    assert_eq!(report.submissions, 90);

    // Rerunning inserts nothing; extending adds only the new learners.
    assert_eq!(
        seed::run(&app.db, &catalog, plan, false).await.unwrap(),
        seed::SeedReport::default()
    );
    let more = seed::run(&app.db, &catalog, seed::Plan { users: 50, ..plan }, false)
        .await
        .unwrap();
    assert_eq!((more.users, more.enrollments), (10, 30));

    // The data is what the API serves: learner 1 exists, is enrolled in published courses
    // only, and has progress and submissions.
    let mut c = app.client();
    let learner = c
        .get_user_by_email(pb::GetUserByEmailRequest {
            email: "Learner1@example.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let enrollments = c
        .list_enrollments(pb::ListEnrollmentsRequest {
            user_id: learner.id,
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .enrollments;
    assert_eq!(enrollments.len(), 4);
    let published: Vec<i64> = catalog_svc_published(&app).await;
    assert!(enrollments.iter().all(|e| published.contains(&e.course_id)));
    for enrollment in &enrollments {
        let progress = c
            .get_progress(pb::GetProgressRequest {
                enrollment_id: enrollment.id,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(progress.completed_lessons >= 2);
        assert_eq!(
            enrollment.status == pb::EnrollmentStatus::Completed as i32,
            progress.completed_lessons == progress.total_lessons,
        );
    }
    let submissions = c
        .list_submissions(pb::ListSubmissionsRequest {
            user_id: learner.id,
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .submissions;
    assert!(submissions.len() >= 2);

    // Activity spreads over the past year, so the stats have something to show.
    let now = learnhub_kit::time::now();
    let stats = c
        .enrollment_stats(pb::EnrollmentStatsRequest {
            from: Some(learnhub_kit::time::to_timestamp(
                now - chrono::Duration::days(365),
            )),
            to: Some(learnhub_kit::time::to_timestamp(
                now + chrono::Duration::minutes(1),
            )),
        })
        .await
        .unwrap()
        .into_inner();
    // 160 for the first 40 learners; learners 41..=50 got 160 / 50 = 3 each.
    assert_eq!(stats.total_enrollments, 190);
    assert_eq!(stats.active_learners, 50);
    assert!(stats.days.iter().filter(|d| d.enrollments > 0).count() > 50);
}

async fn catalog_svc_published(app: &crate::helpers::TestApp) -> Vec<i64> {
    let catalog = CatalogClient::connect_lazy(&app.catalog.addr, Duration::from_secs(10)).unwrap();
    catalog.published_course_ids().await.unwrap()
}
