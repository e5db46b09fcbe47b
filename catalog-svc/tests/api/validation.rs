//! Bad input is INVALID_ARGUMENT naming the field, never a panic or an internal error.
use learnhub_db::Backend;
use learnhub_proto::catalog::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{assert_status, spawn_app},
    on_both_backends,
};

on_both_backends!(bad_input_names_the_field);

async fn bad_input_names_the_field(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(3).await;
    let mut c = app.client.clone();
    let list = |f: fn(&mut pb::ListCoursesRequest)| {
        let mut request = pb::ListCoursesRequest::default();
        f(&mut request);
        request
    };
    for (request, field) in [
        (list(|r| r.page_size = 101), "page_size"),
        (list(|r| r.page_size = -1), "page_size"),
        (list(|r| r.page_token = "not-a-token".into()), "page_token"),
        (list(|r| r.page_token = "djE6eDox".into()), "page_token"),
        (list(|r| r.course_type = 99), "course_type"),
        (list(|r| r.status = 42), "status"),
        (list(|r| r.category = "Bad Category".into()), "category"),
    ] {
        assert_status(c.list_courses(request).await, Code::InvalidArgument, field);
    }
    assert_status(
        c.get_course(pb::GetCourseRequest { key: None }).await,
        Code::InvalidArgument,
        "key",
    );
    assert_status(
        c.get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Id(0)),
        })
        .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        c.get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Slug("a*b".into())),
        })
        .await,
        Code::InvalidArgument,
        "slug",
    );
    assert_status(
        c.batch_get_courses(pb::BatchGetCoursesRequest { ids: vec![1, -5] })
            .await,
        Code::InvalidArgument,
        "ids",
    );
    assert_status(
        c.batch_get_courses(pb::BatchGetCoursesRequest {
            ids: (1..=1001).collect(),
        })
        .await,
        Code::InvalidArgument,
        "ids",
    );
    assert_status(
        c.get_catalog_summary(pb::GetCatalogSummaryRequest { featured_limit: 51 })
            .await,
        Code::InvalidArgument,
        "featured_limit",
    );

    let good = pb::CreateCourseRequest {
        slug: "valid-slug".into(),
        title: "A title".into(),
        summary: String::new(),
        course_type: pb::CourseType::Python as i32,
        category: "python-basics".into(),
        level: 0,
        is_featured: false,
    };
    let bad = |f: fn(&mut pb::CreateCourseRequest)| {
        let mut request = good.clone();
        f(&mut request);
        request
    };
    for (request, field) in [
        (bad(|r| r.slug = "Has Spaces".into()), "slug"),
        (bad(|r| r.slug = String::new()), "slug"),
        (bad(|r| r.slug = "ünïcode".into()), "slug"),
        (bad(|r| r.title = "   ".into()), "title"),
        (bad(|r| r.title = "x".repeat(201)), "title"),
        (bad(|r| r.summary = "x".repeat(2_001)), "summary"),
        (bad(|r| r.course_type = 0), "course_type"),
        (bad(|r| r.course_type = 7), "course_type"),
        (bad(|r| r.level = 9), "level"),
        (bad(|r| r.category = String::new()), "category"),
    ] {
        assert_status(c.create_course(request).await, Code::InvalidArgument, field);
    }
    assert_status(
        c.update_course(pb::UpdateCourseRequest {
            id: 0,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "id",
    );
    assert_status(
        c.update_course(pb::UpdateCourseRequest {
            id: 1,
            title: Some(String::new()),
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "title",
    );
    assert_status(
        c.create_lesson(pb::CreateLessonRequest {
            course_id: 1,
            title: "t".into(),
            body: String::new(),
            position: Some(0),
        })
        .await,
        Code::InvalidArgument,
        "position",
    );
    assert_status(
        c.create_lesson(pb::CreateLessonRequest {
            course_id: 1,
            title: String::new(),
            body: String::new(),
            position: None,
        })
        .await,
        Code::InvalidArgument,
        "title",
    );
    assert_status(
        c.create_exercise(pb::CreateExerciseRequest {
            lesson_id: 0,
            ..Default::default()
        })
        .await,
        Code::InvalidArgument,
        "lesson_id",
    );
    // None of it wrote anything.
    let all = c
        .list_courses(pb::ListCoursesRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.courses.len(), 3);
}
