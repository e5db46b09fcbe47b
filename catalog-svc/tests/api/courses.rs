//! Course reads and writes: filters, pagination, summary, the course lifecycle.
use std::collections::HashSet;

use learnhub_db::Backend;
use learnhub_proto::catalog::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{TestApp, assert_status, spawn_app},
    on_both_backends,
};

on_both_backends!(
    pages_cover_the_filtered_list_once,
    get_by_id_and_slug_with_ordered_lessons,
    batch_get_keeps_request_order_and_skips_unknown,
    summary_counts_match_the_data,
    course_lifecycle,
    writes_refuse_conflicts_without_partial_writes,
);

async fn all_pages(app: &TestApp, mut request: pb::ListCoursesRequest) -> Vec<pb::Course> {
    let mut client = app.client.clone();
    let mut courses = Vec::new();
    loop {
        let page = client
            .list_courses(request.clone())
            .await
            .unwrap()
            .into_inner();
        courses.extend(page.courses);
        if page.next_page_token.is_empty() {
            return courses;
        }
        request.page_token = page.next_page_token;
    }
}

async fn pages_cover_the_filtered_list_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(120).await;
    let everything = all_pages(
        &app,
        pb::ListCoursesRequest {
            page_size: 100,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(everything.len(), 120);

    let filter = pb::ListCoursesRequest {
        course_type: pb::CourseType::Python as i32,
        status: pb::CourseStatus::Published as i32,
        category: "python-basics".into(),
        page_size: 3,
        ..Default::default()
    };
    let paged = all_pages(&app, filter).await;
    let expected: Vec<i64> = everything
        .iter()
        .filter(|c| {
            c.course_type == pb::CourseType::Python as i32
                && c.status == pb::CourseStatus::Published as i32
                && c.category_slug == "python-basics"
        })
        .map(|c| c.id)
        .collect();
    let got: Vec<i64> = paged.iter().map(|c| c.id).collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected, "pages in id order, each course once");

    let featured = all_pages(
        &app,
        pb::ListCoursesRequest {
            featured: Some(true),
            page_size: 50,
            ..Default::default()
        },
    )
    .await;
    assert!(!featured.is_empty());
    assert!(featured.iter().all(|c| c.is_featured));
}

async fn get_by_id_and_slug_with_ordered_lessons(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(5).await;
    let mut client = app.client.clone();
    let by_id = client
        .get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Id(2)),
        })
        .await
        .unwrap()
        .into_inner();
    let course = by_id.course.clone().unwrap();
    let by_slug = client
        .get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Slug(course.slug.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id, by_slug);
    let positions: Vec<i32> = by_id.lessons.iter().map(|l| l.position).collect();
    let expected: Vec<i32> = (1..=positions.len() as i32).collect();
    assert_eq!(positions, expected);
    assert!(!course.category_name.is_empty());

    assert_status(
        client
            .get_course(pb::GetCourseRequest {
                key: Some(pb::get_course_request::Key::Id(999)),
            })
            .await,
        Code::NotFound,
        "course 999",
    );
    assert_status(
        client
            .get_course(pb::GetCourseRequest {
                key: Some(pb::get_course_request::Key::Slug("no-such-course".into())),
            })
            .await,
        Code::NotFound,
        "no-such-course",
    );
}

async fn batch_get_keeps_request_order_and_skips_unknown(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(10).await;
    let mut client = app.client.clone();
    let found = client
        .batch_get_courses(pb::BatchGetCoursesRequest {
            ids: vec![7, 999, 2, 7, 5],
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<i64> = found.courses.iter().map(|c| c.id).collect();
    assert_eq!(ids, vec![7, 2, 5]);
    let empty = client
        .batch_get_courses(pb::BatchGetCoursesRequest { ids: vec![] })
        .await
        .unwrap();
    assert!(empty.into_inner().courses.is_empty());
}

async fn summary_counts_match_the_data(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(200).await;
    let everything = all_pages(
        &app,
        pb::ListCoursesRequest {
            page_size: 100,
            ..Default::default()
        },
    )
    .await;
    let published: Vec<&pb::Course> = everything
        .iter()
        .filter(|c| c.status == pb::CourseStatus::Published as i32)
        .collect();
    let mut client = app.client.clone();
    let summary = client
        .get_catalog_summary(pb::GetCatalogSummaryRequest { featured_limit: 4 })
        .await
        .unwrap()
        .into_inner();
    for count in &summary.course_counts {
        let expected = published
            .iter()
            .filter(|c| c.course_type == count.course_type)
            .count();
        assert_eq!(count.count, expected as i64, "type {}", count.course_type);
    }
    assert_eq!(summary.course_counts.len(), 2);
    assert_eq!(summary.categories.len(), 8);
    for category in &summary.categories {
        let expected = published
            .iter()
            .filter(|c| c.category_slug == category.slug)
            .count();
        assert_eq!(category.course_count, expected as i64, "{}", category.slug);
    }
    for (featured, kind) in [
        (&summary.featured_python, pb::CourseType::Python),
        (&summary.featured_sql, pb::CourseType::Sql),
    ] {
        assert_eq!(featured.len(), 4);
        assert!(featured.iter().all(|c| c.is_featured
            && c.status == pb::CourseStatus::Published as i32
            && c.course_type == kind as i32));
    }
    let categories = client
        .list_categories(pb::ListCategoriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(categories.categories, summary.categories);
}

fn new_course(slug: &str) -> pb::CreateCourseRequest {
    pb::CreateCourseRequest {
        slug: slug.into(),
        title: "Window Functions in Practice".into(),
        summary: "Ranking, running totals and gaps.".into(),
        course_type: pb::CourseType::Sql as i32,
        category: "analytics".into(),
        level: pb::CourseLevel::Intermediate as i32,
        is_featured: false,
    }
}

async fn course_lifecycle(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(1).await;
    let mut client = app.client.clone();
    let created = client
        .create_course(new_course("window-functions"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.status, pb::CourseStatus::Draft as i32);
    assert_eq!(created.category_slug, "analytics");
    assert!(created.published_at.is_none());

    let updated = client
        .update_course(pb::UpdateCourseRequest {
            id: created.id,
            title: Some("Window Functions".into()),
            category: Some("sql-fundamentals".into()),
            is_featured: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.title, "Window Functions");
    assert_eq!(updated.category_slug, "sql-fundamentals");
    assert!(updated.is_featured);
    assert_eq!(updated.summary, created.summary, "unset fields are kept");

    let published = client
        .publish_course(pb::PublishCourseRequest { id: created.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(published.status, pb::CourseStatus::Published as i32);
    let first_published_at = published.published_at.unwrap();
    let again = client
        .publish_course(pb::PublishCourseRequest { id: created.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        again.published_at.unwrap(),
        first_published_at,
        "publishing twice keeps the first date"
    );

    let archived = client
        .archive_course(pb::ArchiveCourseRequest { id: created.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(archived.status, pb::CourseStatus::Archived as i32);
    assert_status(
        client
            .publish_course(pb::PublishCourseRequest { id: created.id })
            .await,
        Code::FailedPrecondition,
        "archived",
    );
    assert_status(
        client
            .publish_course(pb::PublishCourseRequest { id: 4242 })
            .await,
        Code::NotFound,
        "4242",
    );
    assert_status(
        client
            .archive_course(pb::ArchiveCourseRequest { id: 4242 })
            .await,
        Code::NotFound,
        "4242",
    );
    assert_status(
        client
            .update_course(pb::UpdateCourseRequest {
                id: 4242,
                title: Some("x".into()),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "4242",
    );
}

async fn writes_refuse_conflicts_without_partial_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(3).await;
    let mut client = app.client.clone();
    let first = client
        .create_course(new_course("dup-slug"))
        .await
        .unwrap()
        .into_inner();
    assert_status(
        client.create_course(new_course("dup-slug")).await,
        Code::AlreadyExists,
        "dup-slug",
    );
    let second = client
        .create_course(new_course("other-slug"))
        .await
        .unwrap()
        .into_inner();
    assert_status(
        client
            .update_course(pb::UpdateCourseRequest {
                id: second.id,
                slug: Some("dup-slug".into()),
                title: Some("Changed".into()),
                ..Default::default()
            })
            .await,
        Code::AlreadyExists,
        "dup-slug",
    );
    let unchanged = client
        .get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Id(second.id)),
        })
        .await
        .unwrap()
        .into_inner()
        .course
        .unwrap();
    assert_eq!(
        unchanged.title, second.title,
        "a refused update changes nothing"
    );

    let mut unknown_category = new_course("needs-category");
    unknown_category.category = "no-such-category".into();
    assert_status(
        client.create_course(unknown_category).await,
        Code::NotFound,
        "no-such-category",
    );
    assert_status(
        client
            .get_course(pb::GetCourseRequest {
                key: Some(pb::get_course_request::Key::Slug("needs-category".into())),
            })
            .await,
        Code::NotFound,
        "needs-category",
    );
    let all = client
        .list_courses(pb::ListCoursesRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: HashSet<i64> = all.courses.iter().map(|c| c.id).collect();
    assert_eq!(ids.len(), 5);
    assert!(ids.contains(&first.id));
}
