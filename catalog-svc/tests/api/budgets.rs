//! Query budgets: each read RPC runs a fixed number of SQL statements whatever the data size,
//! so an N+1 regression fails here.
use learnhub_db::Backend;
use learnhub_proto::catalog::v1 as pb;

use crate::{helpers::spawn_app, on_both_backends};

on_both_backends!(
    list_courses_is_one_statement_per_page,
    get_course_is_two_statements,
    batch_get_is_one_statement_for_any_number_of_ids,
    summary_is_at_most_three_statements,
);

async fn list_courses_is_one_statement_per_page(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(150).await;
    for page_size in [1, 20, 100] {
        let mut client = app.client.clone();
        let (page, statements) = app
            .statements(client.list_courses(pb::ListCoursesRequest {
                page_size,
                ..Default::default()
            }))
            .await;
        assert_eq!(page.unwrap().into_inner().courses.len(), page_size as usize);
        assert_eq!(statements, 1, "page_size {page_size}");
    }
}

async fn get_course_is_two_statements(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(10).await;
    let mut client = app.client.clone();
    let (course, statements) = app
        .statements(client.get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Id(3)),
        }))
        .await;
    let course = course.unwrap().into_inner();
    assert!(course.lessons.len() >= 3);
    assert_eq!(statements, 2);
}

async fn batch_get_is_one_statement_for_any_number_of_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(300).await;
    for n in [1_i64, 10, 300] {
        let mut client = app.client.clone();
        let ids: Vec<i64> = (1..=n).collect();
        let (found, statements) = app
            .statements(client.batch_get_courses(pb::BatchGetCoursesRequest { ids }))
            .await;
        assert_eq!(found.unwrap().into_inner().courses.len(), n as usize);
        assert_eq!(statements, 1, "{n} ids");
    }
}

async fn summary_is_at_most_three_statements(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(200).await;
    let mut client = app.client.clone();
    let (summary, statements) = app
        .statements(client.get_catalog_summary(pb::GetCatalogSummaryRequest { featured_limit: 0 }))
        .await;
    summary.unwrap();
    assert!(statements <= 3, "{statements} statements");
}
