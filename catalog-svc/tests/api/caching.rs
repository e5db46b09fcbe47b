//! Catalog reads through cache-svc (on the real Redis): hits skip the database, and a read after
//! a write never returns the old data.
use learnhub_db::Backend;
use learnhub_proto::catalog::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{TestApp, assert_status, spawn_app_with_cache, spawn_cache},
    on_both_backends,
};

on_both_backends!(
    hits_skip_the_database,
    reads_after_writes_are_fresh,
    cache_down_falls_back_to_the_database
);

fn by_id(id: i64) -> pb::GetCourseRequest {
    pb::GetCourseRequest {
        key: Some(pb::get_course_request::Key::Id(id)),
    }
}

fn by_slug(slug: &str) -> pb::GetCourseRequest {
    pb::GetCourseRequest {
        key: Some(pb::get_course_request::Key::Slug(slug.into())),
    }
}

async fn course(app: &TestApp, request: pb::GetCourseRequest) -> pb::GetCourseResponse {
    app.client
        .clone()
        .get_course(request)
        .await
        .unwrap()
        .into_inner()
}

async fn hits_skip_the_database(backend: Backend) {
    let cache = spawn_cache().await;
    let app = spawn_app_with_cache(backend, Some(cache.url())).await;
    app.seed(40).await;
    let mut client = app.client.clone();

    let (first, statements) = app.statements(client.get_course(by_id(3))).await;
    assert_eq!(statements, 2, "a miss reads the database");
    let (second, statements) = app.statements(client.get_course(by_id(3))).await;
    assert_eq!(statements, 0, "a hit does not");
    assert_eq!(first.unwrap().into_inner(), second.unwrap().into_inner());

    let summary = pb::GetCatalogSummaryRequest::default();
    let (_, statements) = app.statements(client.get_catalog_summary(summary)).await;
    assert_eq!(statements, 3);
    let (_, statements) = app.statements(client.get_catalog_summary(summary)).await;
    assert_eq!(statements, 0);
    let (_, statements) = app
        .statements(client.list_categories(pb::ListCategoriesRequest {}))
        .await;
    assert_eq!(statements, 0, "categories come from the cached census");

    let list = pb::ListCoursesRequest {
        status: pb::CourseStatus::Published as i32,
        page_size: 10,
        ..Default::default()
    };
    let (page, statements) = app.statements(client.list_courses(list.clone())).await;
    assert_eq!(statements, 1);
    let (_, statements) = app.statements(client.list_courses(list.clone())).await;
    assert_eq!(statements, 0, "first pages are cached");
    let next = pb::ListCoursesRequest {
        page_token: page.unwrap().into_inner().next_page_token,
        ..list
    };
    let (_, statements) = app.statements(client.list_courses(next)).await;
    assert_eq!(statements, 1, "later pages are not");

    let cache = app.cache.as_ref().unwrap();
    let counters = cache.counters();
    assert_eq!(counters.bypasses, 0, "{counters:?}");
    // Hits in cache-svc, or in this process's near-cache in front of it.
    let near_hits: u64 = cache.near().map_or(0, |near| {
        near.stats().namespaces.iter().map(|ns| ns.hits).sum()
    });
    assert!(
        counters.hits + near_hits >= 4,
        "{counters:?} + {near_hits} near"
    );
}

async fn reads_after_writes_are_fresh(backend: Backend) {
    let cache = spawn_cache().await;
    let app = spawn_app_with_cache(backend, Some(cache.url())).await;
    app.seed(20).await;
    let mut client = app.client.clone();

    // Warm every cached read.
    let before = course(&app, by_id(2)).await;
    let old_slug = before.course.clone().unwrap().slug;
    course(&app, by_slug(&old_slug)).await;
    let summary_before = client
        .get_catalog_summary(pb::GetCatalogSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    let list = pb::ListCoursesRequest {
        page_size: 100,
        ..Default::default()
    };
    client.list_courses(list.clone()).await.unwrap();

    // Update: new title and slug show at once, by id and by the new slug; the old slug is gone.
    client
        .update_course(pb::UpdateCourseRequest {
            id: 2,
            title: Some("Renamed".into()),
            slug: Some("renamed-course".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        course(&app, by_id(2)).await.course.unwrap().title,
        "Renamed"
    );
    assert_eq!(
        course(&app, by_slug("renamed-course"))
            .await
            .course
            .unwrap()
            .title,
        "Renamed"
    );
    assert_status(
        client.get_course(by_slug(&old_slug)).await,
        Code::NotFound,
        &old_slug,
    );
    let listed = client
        .list_courses(list.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.courses.iter().any(|c| c.title == "Renamed"));

    // Archive: counts and the listing change.
    let archived = client
        .archive_course(pb::ArchiveCourseRequest { id: 2 })
        .await
        .unwrap()
        .into_inner();
    let summary_after = client
        .get_catalog_summary(pb::GetCatalogSummaryRequest::default())
        .await
        .unwrap()
        .into_inner();
    let total =
        |s: &pb::GetCatalogSummaryResponse| s.course_counts.iter().map(|c| c.count).sum::<i64>();
    let was_published = before.course.unwrap().status == pb::CourseStatus::Published as i32;
    assert_eq!(
        total(&summary_after),
        total(&summary_before) - i64::from(was_published)
    );
    assert_eq!(
        course(&app, by_id(2)).await.course.unwrap().status,
        archived.status
    );

    // A new lesson shows in the course at once.
    let lessons_before = course(&app, by_id(3)).await.lessons.len();
    client
        .create_lesson(pb::CreateLessonRequest {
            course_id: 3,
            title: "Extra".into(),
            body: String::new(),
            position: None,
        })
        .await
        .unwrap();
    let slug3 = course(&app, by_id(3)).await.course.unwrap().slug;
    assert_eq!(
        course(&app, by_id(3)).await.lessons.len(),
        lessons_before + 1
    );
    assert_eq!(
        course(&app, by_slug(&slug3)).await.lessons.len(),
        lessons_before + 1
    );

    // A new category shows in the cached census.
    client
        .list_categories(pb::ListCategoriesRequest {})
        .await
        .unwrap();
    client
        .create_category(pb::CreateCategoryRequest {
            slug: "brand-new".into(),
            name: "Brand New".into(),
        })
        .await
        .unwrap();
    let categories = client
        .list_categories(pb::ListCategoriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(categories.categories.iter().any(|c| c.slug == "brand-new"));
}

async fn cache_down_falls_back_to_the_database(backend: Backend) {
    let mut cache = spawn_cache().await;
    let app = spawn_app_with_cache(backend, Some(cache.url())).await;
    app.seed(10).await;
    let mut client = app.client.clone();
    course(&app, by_id(1)).await;
    cache.stop().await;
    // Every read still answers, from the database.
    for id in 1..=10 {
        let (found, statements) = app.statements(client.get_course(by_id(id))).await;
        assert_eq!(found.unwrap().into_inner().course.unwrap().id, id);
        assert_eq!(statements, 2);
    }
    client
        .update_course(pb::UpdateCourseRequest {
            id: 1,
            title: Some("Written while the cache was down".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        course(&app, by_id(1)).await.course.unwrap().title,
        "Written while the cache was down"
    );
    assert!(app.cache.as_ref().unwrap().counters().bypasses > 0);
}
