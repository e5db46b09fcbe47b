//! Lessons and exercises.
use learnhub_db::Backend;
use learnhub_proto::catalog::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{assert_status, spawn_app},
    on_both_backends,
};

on_both_backends!(lessons_and_exercises_crud, categories_create);

async fn lessons_and_exercises_crud(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(2).await;
    let mut client = app.client.clone();
    let course = client
        .get_course(pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Id(1)),
        })
        .await
        .unwrap()
        .into_inner();
    let last = course.lessons.last().unwrap().position;

    let appended = client
        .create_lesson(pb::CreateLessonRequest {
            course_id: 1,
            title: "Recap".into(),
            body: "All of it.".into(),
            position: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(appended.position, last + 1);
    assert_status(
        client
            .create_lesson(pb::CreateLessonRequest {
                course_id: 1,
                title: "Clash".into(),
                body: String::new(),
                position: Some(1),
            })
            .await,
        Code::AlreadyExists,
        "position 1",
    );
    assert_status(
        client
            .create_lesson(pb::CreateLessonRequest {
                course_id: 999,
                title: "Orphan".into(),
                body: String::new(),
                position: None,
            })
            .await,
        Code::NotFound,
        "course 999",
    );
    let moved = client
        .update_lesson(pb::UpdateLessonRequest {
            id: appended.id,
            position: Some(100),
            title: Some("Final recap".into()),
            body: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (moved.position, moved.title.as_str(), moved.body.as_str()),
        (100, "Final recap", "All of it.")
    );

    let batch = client
        .batch_get_lessons(pb::BatchGetLessonsRequest {
            ids: vec![appended.id, 99_999, course.lessons[0].id],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        batch.lessons.iter().map(|l| l.id).collect::<Vec<_>>(),
        vec![appended.id, course.lessons[0].id]
    );

    let exercise = client
        .create_exercise(pb::CreateExerciseRequest {
            lesson_id: appended.id,
            title: "Sum a list".into(),
            prompt: "sum([1,2])".into(),
            starter_code: "def f(): ...".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let fetched = client
        .get_exercise(pb::GetExerciseRequest { id: exercise.id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched, exercise);
    let changed = client
        .update_exercise(pb::UpdateExerciseRequest {
            id: exercise.id,
            prompt: Some("sum([1,2,3])".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (changed.title.as_str(), changed.prompt.as_str()),
        ("Sum a list", "sum([1,2,3])")
    );
    let listed = client
        .list_exercises(pb::ListExercisesRequest {
            lesson_id: appended.id,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.exercises, vec![changed.clone()]);
    assert_status(
        client
            .create_exercise(pb::CreateExerciseRequest {
                lesson_id: 99_999,
                title: "x".into(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "lesson 99999",
    );
    assert_status(
        client
            .list_exercises(pb::ListExercisesRequest { lesson_id: 99_999 })
            .await,
        Code::NotFound,
        "lesson 99999",
    );

    client
        .delete_lesson(pb::DeleteLessonRequest { id: appended.id })
        .await
        .unwrap();
    assert_status(
        client
            .get_exercise(pb::GetExerciseRequest { id: exercise.id })
            .await,
        Code::NotFound,
        "exercise",
    );
    assert_status(
        client
            .delete_lesson(pb::DeleteLessonRequest { id: appended.id })
            .await,
        Code::NotFound,
        "lesson",
    );
    assert_status(
        client
            .delete_exercise(pb::DeleteExerciseRequest { id: exercise.id })
            .await,
        Code::NotFound,
        "exercise",
    );
}

async fn categories_create(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut client = app.client.clone();
    let created = client
        .create_category(pb::CreateCategoryRequest {
            slug: "machine-learning".into(),
            name: "Machine Learning".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (created.slug.as_str(), created.course_count),
        ("machine-learning", 0)
    );
    assert_status(
        client
            .create_category(pb::CreateCategoryRequest {
                slug: "machine-learning".into(),
                name: "Again".into(),
            })
            .await,
        Code::AlreadyExists,
        "machine-learning",
    );
    let listed = client
        .list_categories(pb::ListCategoriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.categories, vec![created]);
}
