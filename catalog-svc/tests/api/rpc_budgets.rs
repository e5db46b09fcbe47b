//! Query budgets for every catalog RPC that `budgets.rs` does not cover, as exact statement
//! counts (a transaction's BEGIN and COMMIT count as statements). Refusals cost what they read
//! and no more; validation failures cost nothing. Like Django's `assertNumQueries`.
use learnhub_db::Backend;
use learnhub_proto::{
    catalog::v1 as pb,
    common::v1::{GetDbStatsRequest, ResetDbStatsRequest},
};
use tonic::Code;

use crate::{
    helpers::{TestApp, spawn_app},
    on_both_backends,
};

on_both_backends!(
    course_and_category_writes_have_exact_budgets,
    lesson_and_exercise_rpcs_have_exact_budgets,
    catalog_reads_have_exact_budgets,
);

/// Runs `$call`, asserts it ran exactly `$budget` statements, and gives its result.
macro_rules! costs {
    ($app:expr, $budget:expr, $what:expr, $call:expr) => {{
        let (result, statements) = $app.statements($call).await;
        assert_eq!(statements, $budget, "{}", $what);
        result
    }};
}

async fn create_course(app: &TestApp, slug: &str) -> pb::Course {
    let mut c = app.client.clone();
    costs!(
        app,
        2,
        "CreateCourse: category by slug + INSERT … RETURNING",
        c.create_course(pb::CreateCourseRequest {
            slug: slug.into(),
            title: "Budgets".into(),
            summary: "Counted statements.".into(),
            course_type: pb::CourseType::Sql as i32,
            category: "budget-topic".into(),
            level: pb::CourseLevel::Beginner as i32,
            is_featured: false,
        })
    )
    .unwrap()
    .into_inner()
}

async fn course_and_category_writes_have_exact_budgets(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(5).await;
    let mut c = app.client.clone();

    costs!(
        app,
        1,
        "CreateCategory",
        c.create_category(pb::CreateCategoryRequest {
            slug: "budget-topic".into(),
            name: "Budget Topic".into(),
        })
    )
    .unwrap();
    let refused = costs!(
        app,
        1,
        "CreateCategory with a taken slug: the refused INSERT",
        c.create_category(pb::CreateCategoryRequest {
            slug: "budget-topic".into(),
            name: "Again".into(),
        })
    );
    assert_eq!(refused.unwrap_err().code(), Code::AlreadyExists);
    let invalid = costs!(
        app,
        0,
        "CreateCategory refused by validation",
        c.create_category(pb::CreateCategoryRequest {
            slug: "Not A Slug".into(),
            name: "x".into(),
        })
    );
    assert_eq!(invalid.unwrap_err().code(), Code::InvalidArgument);

    let course = create_course(&app, "budget-course").await;
    let unknown_category = costs!(
        app,
        1,
        "CreateCourse in an unknown category: the category lookup only",
        c.create_course(pb::CreateCourseRequest {
            slug: "nowhere".into(),
            title: "Nowhere".into(),
            course_type: pb::CourseType::Sql as i32,
            category: "no-such-category".into(),
            ..Default::default()
        })
    );
    assert_eq!(unknown_category.unwrap_err().code(), Code::NotFound);

    costs!(
        app,
        3,
        "UpdateCourse: read before + UPDATE … RETURNING + read after",
        c.update_course(pb::UpdateCourseRequest {
            id: course.id,
            title: Some("Budgets, revised".into()),
            ..Default::default()
        })
    )
    .unwrap();
    costs!(
        app,
        4,
        "UpdateCourse moving category: + category by slug",
        c.update_course(pb::UpdateCourseRequest {
            id: course.id,
            category: Some("python-basics".into()),
            ..Default::default()
        })
    )
    .unwrap();
    let missing = costs!(
        app,
        1,
        "UpdateCourse of an unknown course: the read before",
        c.update_course(pb::UpdateCourseRequest {
            id: 999_999,
            title: Some("x".into()),
            ..Default::default()
        })
    );
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);

    let published = costs!(
        app,
        2,
        "PublishCourse: conditional UPDATE + read",
        c.publish_course(pb::PublishCourseRequest { id: course.id })
    )
    .unwrap()
    .into_inner();
    assert_eq!(published.status, pb::CourseStatus::Published as i32);
    costs!(
        app,
        2,
        "ArchiveCourse: conditional UPDATE + read",
        c.archive_course(pb::ArchiveCourseRequest { id: course.id })
    )
    .unwrap();
    let refused = costs!(
        app,
        2,
        "PublishCourse of an archived course: the UPDATE that matched nothing + read",
        c.publish_course(pb::PublishCourseRequest { id: course.id })
    );
    assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);

    // The statistics RPCs read the profiler, not the database.
    costs!(app, 0, "GetDbStats", c.get_db_stats(GetDbStatsRequest {})).unwrap();
    c.reset_db_stats(ResetDbStatsRequest {}).await.unwrap();
    assert_eq!(app.db.profiler().statement_count(), 0, "ResetDbStats");
}

async fn lesson_and_exercise_rpcs_have_exact_budgets(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(10).await;
    let mut c = app.client.clone();
    c.create_category(pb::CreateCategoryRequest {
        slug: "budget-topic".into(),
        name: "Budget Topic".into(),
    })
    .await
    .unwrap();
    let course = create_course(&app, "lessons-course").await;

    let first = costs!(
        app,
        3,
        "CreateLesson at a given position: BEGIN + INSERT + COMMIT",
        c.create_lesson(pb::CreateLessonRequest {
            course_id: course.id,
            title: "One".into(),
            body: "First.".into(),
            position: Some(1),
        })
    )
    .unwrap()
    .into_inner();
    let second = costs!(
        app,
        4,
        "CreateLesson after the last: BEGIN + max(position) + INSERT + COMMIT",
        c.create_lesson(pb::CreateLessonRequest {
            course_id: course.id,
            title: "Two".into(),
            body: "Second.".into(),
            position: None,
        })
    )
    .unwrap()
    .into_inner();
    assert_eq!(second.position, 2);
    let taken = costs!(
        app,
        3,
        "CreateLesson at a taken position: BEGIN + refused INSERT + ROLLBACK",
        c.create_lesson(pb::CreateLessonRequest {
            course_id: course.id,
            title: "Clash".into(),
            body: "Taken.".into(),
            position: Some(1),
        })
    );
    assert_eq!(taken.unwrap_err().code(), Code::AlreadyExists);
    costs!(
        app,
        1,
        "UpdateLesson",
        c.update_lesson(pb::UpdateLessonRequest {
            id: first.id,
            title: Some("One, revised".into()),
            ..Default::default()
        })
    )
    .unwrap();

    for n in [1, 2, 20] {
        let ids: Vec<i64> = [first.id, second.id]
            .into_iter()
            .chain(1..=20)
            .take(n)
            .collect();
        let found = costs!(
            app,
            1,
            format!("BatchGetLessons of {n} ids: one statement"),
            c.batch_get_lessons(pb::BatchGetLessonsRequest { ids })
        )
        .unwrap()
        .into_inner();
        assert_eq!(found.lessons.len(), n);
    }
    costs!(
        app,
        0,
        "BatchGetLessons of no ids",
        c.batch_get_lessons(pb::BatchGetLessonsRequest { ids: vec![] })
    )
    .unwrap();

    let exercise = costs!(
        app,
        1,
        "CreateExercise",
        c.create_exercise(pb::CreateExerciseRequest {
            lesson_id: first.id,
            title: "Try it".into(),
            prompt: "Do it.".into(),
            starter_code: "# here\n".into(),
        })
    )
    .unwrap()
    .into_inner();
    let orphan = costs!(
        app,
        1,
        "CreateExercise for an unknown lesson: the refused INSERT",
        c.create_exercise(pb::CreateExerciseRequest {
            lesson_id: 999_999,
            title: "Nowhere".into(),
            prompt: "x".into(),
            starter_code: String::new(),
        })
    );
    assert_eq!(orphan.unwrap_err().code(), Code::NotFound);
    costs!(
        app,
        1,
        "UpdateExercise",
        c.update_exercise(pb::UpdateExerciseRequest {
            id: exercise.id,
            prompt: Some("Do it again.".into()),
            ..Default::default()
        })
    )
    .unwrap();
    costs!(
        app,
        1,
        "GetExercise",
        c.get_exercise(pb::GetExerciseRequest { id: exercise.id })
    )
    .unwrap();
    let missing = costs!(
        app,
        1,
        "GetExercise of an unknown id",
        c.get_exercise(pb::GetExerciseRequest { id: 999_999 })
    );
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let listed = costs!(
        app,
        2,
        "ListExercises: the lesson + its exercises",
        c.list_exercises(pb::ListExercisesRequest { lesson_id: 1 })
    )
    .unwrap()
    .into_inner();
    assert!(!listed.exercises.is_empty());
    let missing = costs!(
        app,
        1,
        "ListExercises of an unknown lesson: the lesson read",
        c.list_exercises(pb::ListExercisesRequest { lesson_id: 999_999 })
    );
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    costs!(
        app,
        1,
        "DeleteExercise",
        c.delete_exercise(pb::DeleteExerciseRequest { id: exercise.id })
    )
    .unwrap();
    costs!(
        app,
        1,
        "DeleteLesson (its exercises cascade in the same statement)",
        c.delete_lesson(pb::DeleteLessonRequest { id: second.id })
    )
    .unwrap();
    let gone = costs!(
        app,
        1,
        "DeleteLesson of a deleted lesson",
        c.delete_lesson(pb::DeleteLessonRequest { id: second.id })
    );
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
    assert_eq!(app.db.profiler().n_plus_one_count(), 0);
}

async fn catalog_reads_have_exact_budgets(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(120).await;
    let mut c = app.client.clone();
    for featured_limit in [0, 1, 50] {
        costs!(
            app,
            3,
            "GetCatalogSummary: census + featured python + featured sql",
            c.get_catalog_summary(pb::GetCatalogSummaryRequest { featured_limit })
        )
        .unwrap();
    }
    let categories = costs!(
        app,
        1,
        "ListCategories: the census",
        c.list_categories(pb::ListCategoriesRequest {})
    )
    .unwrap()
    .into_inner();
    assert_eq!(categories.categories.len(), 8);
    let course = c
        .get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Id(7)),
        })
        .await
        .unwrap()
        .into_inner()
        .course
        .unwrap();
    costs!(
        app,
        2,
        "GetCourse by slug: course + lessons",
        c.get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Slug(course.slug)),
        })
    )
    .unwrap();
    let missing = costs!(
        app,
        1,
        "GetCourse of an unknown id: the course read",
        c.get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Id(999_999)),
        })
    );
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let filters = [
        pb::ListCoursesRequest {
            course_type: pb::CourseType::Python as i32,
            status: pb::CourseStatus::Published as i32,
            ..Default::default()
        },
        pb::ListCoursesRequest {
            category: "sql-fundamentals".into(),
            ..Default::default()
        },
        pb::ListCoursesRequest {
            featured: Some(true),
            page_size: 100,
            ..Default::default()
        },
    ];
    for filter in filters {
        let page = costs!(
            app,
            1,
            format!("ListCourses {filter:?}"),
            c.list_courses(filter.clone())
        )
        .unwrap()
        .into_inner();
        if !page.next_page_token.is_empty() {
            costs!(
                app,
                1,
                "ListCourses, next page",
                c.list_courses(pb::ListCoursesRequest {
                    page_token: page.next_page_token,
                    ..filter
                })
            )
            .unwrap();
        }
    }
    assert_eq!(app.db.profiler().n_plus_one_count(), 0);
}
