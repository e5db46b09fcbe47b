//! The census's counts table (`course_counts`, kept by triggers on `courses`): after every kind
//! of course write, and after many concurrent ones, it equals a full recount of the published
//! courses, and so do GetCatalogSummary and ListCategories; the census reads no course row.
use std::collections::BTreeMap;

use diesel::{
    QueryableByName,
    sql_types::{BigInt, Text},
};
use diesel_async::SimpleAsyncConnection;
use learnhub_db::{Backend, SplitMix64, db_run};
use learnhub_proto::catalog::v1 as pb;
use tonic::Code;

use crate::{
    helpers::{TestApp, spawn_app, spawn_app_with_cache, spawn_cache},
    on_both_backends,
};

on_both_backends!(
    counts_follow_every_kind_of_course_write,
    counts_stay_exact_under_concurrent_writes,
    counts_stay_exact_under_concurrent_write_transactions,
    census_reads_no_course_row,
);

/// Published courses per (category id, course type).
type Counts = BTreeMap<(i64, String), i64>;

#[derive(QueryableByName)]
struct CountRow {
    #[diesel(sql_type = BigInt)]
    category_id: i64,
    #[diesel(sql_type = Text)]
    course_type: String,
    #[diesel(sql_type = BigInt)]
    published: i64,
}

/// The counts table, without its keys at 0 (kept once a key has had a published course).
async fn counts_table(app: &TestApp) -> Counts {
    let rows = load(
        app,
        "SELECT category_id, course_type, published FROM course_counts",
    )
    .await;
    for row in &rows {
        assert!(row.published >= 0, "negative count: {}", row.published);
    }
    rows.into_iter()
        .filter(|row| row.published != 0)
        .map(|row| ((row.category_id, row.course_type), row.published))
        .collect()
}

/// The truth: every published course counted from `courses`.
async fn recount(app: &TestApp) -> Counts {
    load(
        app,
        "SELECT category_id, course_type, COUNT(*) AS published FROM courses \
         WHERE status = 'published' GROUP BY category_id, course_type",
    )
    .await
    .into_iter()
    .map(|row| ((row.category_id, row.course_type), row.published))
    .collect()
}

async fn load(app: &TestApp, sql: &'static str) -> Vec<CountRow> {
    use diesel_async::RunQueryDsl;
    let conn = &mut app.db.conn().await.unwrap();
    db_run!(conn => diesel::sql_query(sql).load::<CountRow>(conn).await).unwrap()
}

async fn execute(app: &TestApp, sql: &str) {
    let conn = &mut app.db.conn().await.unwrap();
    db_run!(conn => conn.batch_execute(sql).await).unwrap_or_else(|err| panic!("{sql}: {err}"));
}

/// The counts table, GetCatalogSummary and ListCategories all agree with a recount.
async fn assert_exact(app: &TestApp, after: &str) {
    let truth = recount(app).await;
    assert_eq!(counts_table(app).await, truth, "counts table after {after}");

    let mut per_category: BTreeMap<i64, i64> = BTreeMap::new();
    let mut per_type: BTreeMap<i32, i64> = BTreeMap::new();
    for ((category_id, course_type), n) in &truth {
        *per_category.entry(*category_id).or_default() += n;
        let course_type = match course_type.as_str() {
            "python" => pb::CourseType::Python,
            "sql" => pb::CourseType::Sql,
            other => panic!("course type {other}"),
        };
        *per_type.entry(course_type as i32).or_default() += n;
    }
    let mut client = app.client.clone();
    let summary = client
        .get_catalog_summary(pb::GetCatalogSummaryRequest { featured_limit: 0 })
        .await
        .unwrap()
        .into_inner();
    let listed = client
        .list_categories(pb::ListCategoriesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summary.categories, listed.categories, "after {after}");
    for category in &listed.categories {
        assert_eq!(
            category.course_count,
            per_category.get(&category.id).copied().unwrap_or(0),
            "category {} after {after}",
            category.slug
        );
    }
    for count in &summary.course_counts {
        assert_eq!(
            count.count,
            per_type.get(&count.course_type).copied().unwrap_or(0),
            "type {} after {after}",
            count.course_type
        );
    }
}

fn new_course(slug: &str, course_type: pb::CourseType, category: &str) -> pb::CreateCourseRequest {
    pb::CreateCourseRequest {
        slug: slug.into(),
        title: format!("Course {slug}"),
        summary: "Counted or not.".into(),
        course_type: course_type as i32,
        category: category.into(),
        level: pb::CourseLevel::Beginner as i32,
        is_featured: false,
    }
}

async fn counts_follow_every_kind_of_course_write(backend: Backend) {
    let app = spawn_app(backend).await;
    // Seeded rows are multi-row INSERTs of published, draft and archived courses.
    app.seed(60).await;
    assert_exact(&app, "the seed").await;
    let mut client = app.client.clone();

    client
        .create_category(pb::CreateCategoryRequest {
            slug: "empty-shelf".into(),
            name: "Empty Shelf".into(),
        })
        .await
        .unwrap();
    assert_exact(&app, "a new category").await;
    let listed = client
        .list_categories(pb::ListCategoriesRequest {})
        .await
        .unwrap()
        .into_inner();
    let empty = listed.categories.iter().find(|c| c.slug == "empty-shelf");
    assert_eq!(empty.map(|c| c.course_count), Some(0), "{listed:#?}");

    let course = client
        .create_course(new_course(
            "counted",
            pb::CourseType::Python,
            "python-basics",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_exact(&app, "a draft created").await;

    client
        .publish_course(pb::PublishCourseRequest { id: course.id })
        .await
        .unwrap();
    assert_exact(&app, "publish").await;

    client
        .publish_course(pb::PublishCourseRequest { id: course.id })
        .await
        .unwrap();
    assert_exact(&app, "publishing a published course again").await;

    let update = |changes: pb::UpdateCourseRequest| pb::UpdateCourseRequest {
        id: course.id,
        ..changes
    };
    client
        .update_course(update(pb::UpdateCourseRequest {
            course_type: pb::CourseType::Sql as i32,
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_exact(&app, "a published course's type changed").await;

    client
        .update_course(update(pb::UpdateCourseRequest {
            category: Some("empty-shelf".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_exact(&app, "a published course moved to another category").await;

    client
        .update_course(update(pb::UpdateCourseRequest {
            course_type: pb::CourseType::Python as i32,
            category: Some("analytics".into()),
            title: Some("Both at once".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_exact(&app, "type and category changed in one update").await;

    client
        .update_course(update(pb::UpdateCourseRequest {
            title: Some("Only the title".into()),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_exact(&app, "an update of nothing counted").await;

    client
        .archive_course(pb::ArchiveCourseRequest { id: course.id })
        .await
        .unwrap();
    assert_exact(&app, "archive of a published course").await;

    let draft = client
        .create_course(new_course(
            "never-published",
            pb::CourseType::Sql,
            "analytics",
        ))
        .await
        .unwrap()
        .into_inner();
    client
        .update_course(pb::UpdateCourseRequest {
            id: draft.id,
            course_type: pb::CourseType::Python as i32,
            category: Some("empty-shelf".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .archive_course(pb::ArchiveCourseRequest { id: draft.id })
        .await
        .unwrap();
    assert_exact(&app, "a draft changed and archived").await;

    // Status changes the API refuses (archived → published) leave the counts alone.
    let refused = client
        .publish_course(pb::PublishCourseRequest { id: draft.id })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_exact(&app, "a refused publish").await;

    // Writes outside the service: a published row inserted, statuses set in bulk, deletes.
    execute(
        &app,
        "INSERT INTO courses (slug, title, summary, course_type, category_id, level, status, \
         is_featured, created_at, updated_at, published_at) \
         SELECT 'direct-insert', 'Direct', 'By SQL', 'sql', id, 'advanced', 'published', \
         false, created_at, created_at, created_at FROM categories WHERE slug = 'empty-shelf'",
    )
    .await;
    assert_exact(&app, "a published course inserted by SQL").await;
    execute(
        &app,
        "UPDATE courses SET status = 'published' WHERE status = 'draft'",
    )
    .await;
    assert_exact(&app, "every draft published in one statement").await;
    execute(
        &app,
        "UPDATE courses SET course_type = CASE course_type WHEN 'sql' THEN 'python' ELSE 'sql' END \
         WHERE id % 3 = 0",
    )
    .await;
    assert_exact(&app, "types swapped in one statement").await;
    execute(&app, "DELETE FROM courses WHERE slug = 'direct-insert'").await;
    assert_exact(&app, "a published course deleted").await;
    execute(&app, "DELETE FROM courses WHERE id % 4 = 0").await;
    assert_exact(&app, "a quarter of the courses deleted").await;
    // TRUNCATE (Postgres only) fires no DELETE trigger: it has its own.
    let empty = match backend {
        Backend::Postgres => "TRUNCATE courses CASCADE",
        Backend::Sqlite => "DELETE FROM courses",
    };
    execute(&app, empty).await;
    assert_exact(&app, empty).await;
    assert!(counts_table(&app).await.is_empty());
}

/// One random course write of task `task`: what the service does with many writers at once.
async fn random_write(app: &TestApp, rng: &mut SplitMix64, task: u64, step: u64) {
    const CATEGORIES: &[&str] = &[
        "python-basics",
        "analytics",
        "sql-fundamentals",
        "automation",
    ];
    let mut client = app.client.clone();
    let id = rng.below(40) as i64 + 1;
    let course_type = if rng.below(2) == 0 {
        pb::CourseType::Python
    } else {
        pb::CourseType::Sql
    };
    let category = CATEGORIES[rng.below(CATEGORIES.len() as u64) as usize];
    let result = match rng.below(6) {
        0 => client
            .create_course(new_course(
                &format!("concurrent-{task}-{step}"),
                course_type,
                category,
            ))
            .await
            .map(drop),
        1 | 2 => client
            .publish_course(pb::PublishCourseRequest { id })
            .await
            .map(drop),
        3 => client
            .archive_course(pb::ArchiveCourseRequest { id })
            .await
            .map(drop),
        4 => client
            .update_course(pb::UpdateCourseRequest {
                id,
                course_type: course_type as i32,
                ..Default::default()
            })
            .await
            .map(drop),
        _ => client
            .update_course(pb::UpdateCourseRequest {
                id,
                category: Some(category.into()),
                course_type: course_type as i32,
                ..Default::default()
            })
            .await
            .map(drop),
    };
    // Publishing an archived course is refused; nothing else may fail (a deadlock or a busy
    // database would).
    if let Err(status) = result {
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    }
}

/// 24 tasks of 12 random course writes each, all at once.
async fn concurrent_writes(app: &TestApp) {
    app.seed(40).await;
    let tasks = (0..24_u64).map(|task| {
        let app = &app;
        async move {
            let mut rng = SplitMix64::new(task);
            for step in 0..12 {
                random_write(app, &mut rng, task, step).await;
            }
        }
    });
    futures::future::join_all(tasks).await;
}

/// Without a cache each write statement commits on its own (the trigger runs in it).
async fn counts_stay_exact_under_concurrent_writes(backend: Backend) {
    let app = spawn_app(backend).await;
    concurrent_writes(&app).await;
    assert_exact(&app, "24 tasks of 12 concurrent writes").await;
}

/// With a cache each write is a transaction that reads, writes and records its invalidation:
/// the counts change with the course in that transaction. (The answers are the cache's, so the
/// table is checked against the recount directly.)
async fn counts_stay_exact_under_concurrent_write_transactions(backend: Backend) {
    let cache = spawn_cache().await;
    let app = spawn_app_with_cache(backend, Some(cache.url())).await;
    concurrent_writes(&app).await;
    assert_eq!(counts_table(&app).await, recount(&app).await);
}

/// Whether `sql` names the `courses` table (`course_counts` does not count).
fn reads_courses(sql: &str) -> bool {
    sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| word.eq_ignore_ascii_case("courses"))
}

async fn census_reads_no_course_row(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed(100).await;
    let mut client = app.client.clone();

    app.db.profiler().reset();
    client
        .list_categories(pb::ListCategoriesRequest {})
        .await
        .unwrap();
    let statements: Vec<String> = app.db.profiler().statements().into_keys().collect();
    assert_eq!(statements.len(), 1, "{statements:#?}");
    assert!(statements[0].contains("course_counts"), "{statements:#?}");
    assert!(!reads_courses(&statements[0]), "{statements:#?}");

    // The summary reads courses only for its featured lists.
    app.db.profiler().reset();
    client
        .get_catalog_summary(pb::GetCatalogSummaryRequest::default())
        .await
        .unwrap();
    let statements: Vec<String> = app.db.profiler().statements().into_keys().collect();
    assert!(
        statements.iter().any(|sql| sql.contains("course_counts")),
        "{statements:#?}"
    );
    let counting: Vec<&String> = statements
        .iter()
        .filter(|sql| reads_courses(sql) && !sql.contains("is_featured"))
        .collect();
    assert!(counting.is_empty(), "{counting:#?}");
}
