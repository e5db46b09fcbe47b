//! Deterministic catalog data: the demo catalog of the monolith and `catalog-svc seed --courses N`
//! for scale tests. Course `i` is always the same course, so a seed can be rerun or extended:
//! courses whose slug exists are skipped.
use std::collections::{HashMap, HashSet};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use indicatif::{ProgressBar, ProgressStyle};
use learnhub_db::{Db, SplitMix64, db_run};
use learnhub_kit::time;

use crate::{
    domain::{CourseLevel, CourseStatus, CourseType},
    error::Result,
    models::{
        category::{Category, NewCategory},
        course::{CourseRow, NewCourse},
        exercise::{Exercise, NewExercise},
        lesson::{Lesson, NewLesson},
    },
    schema::{courses, lessons},
};

/// Courses the monolith seeds into an empty catalog.
const DEMO_COURSES: u64 = 48;

const CHUNK: u64 = 1_000;

/// (slug, name, type, topics) of every seeded category.
const CATEGORIES: &[(&str, &str, CourseType, &[&str])] = &[
    (
        "python-basics",
        "Python Basics",
        CourseType::Python,
        &[
            "Variables and Types",
            "Lists and Loops",
            "Functions",
            "Dictionaries",
            "Error Handling",
        ],
    ),
    (
        "data-analysis",
        "Data Analysis",
        CourseType::Python,
        &[
            "pandas DataFrames",
            "Cleaning Data",
            "Plotting",
            "Statistics with NumPy",
        ],
    ),
    (
        "web-development",
        "Web Development",
        CourseType::Python,
        &[
            "Flask Fundamentals",
            "REST APIs",
            "Templates",
            "Testing Web Apps",
        ],
    ),
    (
        "automation",
        "Automation & Scripting",
        CourseType::Python,
        &[
            "Files and Paths",
            "Scheduling Jobs",
            "Web Scraping",
            "Command-line Tools",
        ],
    ),
    (
        "sql-fundamentals",
        "SQL Fundamentals",
        CourseType::Sql,
        &[
            "SELECT and WHERE",
            "Joins",
            "Aggregates",
            "Subqueries",
            "NULL Handling",
        ],
    ),
    (
        "database-design",
        "Database Design",
        CourseType::Sql,
        &[
            "Normalisation",
            "Keys and Constraints",
            "Modelling Relationships",
            "Migrations",
        ],
    ),
    (
        "analytics",
        "Analytics & Reporting",
        CourseType::Sql,
        &[
            "Window Functions",
            "Cohort Analysis",
            "Dashboards in SQL",
            "Time Series",
        ],
    ),
    (
        "query-performance",
        "Query Performance",
        CourseType::Sql,
        &[
            "Indexes",
            "Reading EXPLAIN",
            "Avoiding N+1",
            "Caching Results",
        ],
    ),
];

/// What a seed run inserted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeedReport {
    pub categories: u64,
    pub courses: u64,
    pub lessons: u64,
    pub exercises: u64,
}

/// Seeds the demo catalog when the catalog has no course yet; `None` when it already had data.
pub async fn demo(db: &Db) -> Result<Option<SeedReport>> {
    let mut pooled = db.conn().await?;
    let conn = &mut pooled;
    let any: Option<i64> =
        db_run!(conn => courses::table.select(courses::id).first(conn).await.optional())?;
    drop(pooled);
    if any.is_some() {
        return Ok(None);
    }
    run(db, DEMO_COURSES, false).await.map(Some)
}

/// Ensures courses 1..=`count` of the deterministic catalog exist, with their lessons and
/// exercises, inserting in multi-row statements of up to 1,000 rows.
pub async fn run(db: &Db, count: u64, progress: bool) -> Result<SeedReport> {
    let mut report = SeedReport::default();
    let category_ids = ensure_categories(db, &mut report).await?;
    let bar = if progress {
        ProgressBar::new(count).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} courses {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut start = 1;
    while start <= count {
        let end = (start + CHUNK - 1).min(count);
        seed_chunk(db, start..=end, &category_ids, &mut report).await?;
        bar.inc(end - start + 1);
        start = end + 1;
    }
    bar.finish_and_clear();
    Ok(report)
}

async fn ensure_categories(db: &Db, report: &mut SeedReport) -> Result<HashMap<&'static str, i64>> {
    let mut conn = db.conn().await?;
    let mut ids = HashMap::new();
    for (slug, name, _, _) in CATEGORIES {
        let category = match Category::find_by_slug(&mut conn, slug).await? {
            Some(category) => category,
            None => {
                report.categories += 1;
                Category::create(
                    &mut conn,
                    &NewCategory {
                        slug,
                        name,
                        created_at: time::now(),
                    },
                )
                .await?
            }
        };
        ids.insert(*slug, category.id);
    }
    Ok(ids)
}

fn course(i: u64, category_ids: &HashMap<&'static str, i64>) -> (NewCourse, u64) {
    let mut rng = SplitMix64::new(i);
    let course_type = if i % 2 == 1 {
        CourseType::Python
    } else {
        CourseType::Sql
    };
    let choices: Vec<_> = CATEGORIES.iter().filter(|c| c.2 == course_type).collect();
    let (category_slug, category_name, _, topics) =
        choices[rng.below(choices.len() as u64) as usize];
    let topic = topics[rng.below(topics.len() as u64) as usize];
    let level = CourseLevel::ALL[rng.below(3) as usize];
    // Every 8th course is featured and published; otherwise 85% published, 10% draft, 5% archived.
    let featured = i % 8 == 1 || i % 8 == 2;
    let status = match (featured, rng.below(100)) {
        (true, _) | (false, 0..85) => CourseStatus::Published,
        (false, 85..95) => CourseStatus::Draft,
        _ => CourseStatus::Archived,
    };
    let now = time::now();
    let slug = format!(
        "{}-{i}",
        topic
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
            .replace("--", "-")
    );
    let new = NewCourse {
        slug,
        title: format!("{topic} ({} #{i})", level.as_str()),
        summary: format!("A {} course on {topic} in {category_name}.", level.as_str()),
        course_type,
        category_id: category_ids.get(category_slug).copied().unwrap_or_default(),
        level,
        status,
        is_featured: featured,
        created_at: now,
        updated_at: now,
        published_at: (status != CourseStatus::Draft).then_some(now),
    };
    let lessons = 3 + rng.below(6);
    (new, lessons)
}

async fn seed_chunk(
    db: &Db,
    range: std::ops::RangeInclusive<u64>,
    category_ids: &HashMap<&'static str, i64>,
    report: &mut SeedReport,
) -> Result<()> {
    let mut pooled = db.conn().await?;
    let conn = &mut pooled;
    let generated: Vec<(NewCourse, u64)> = range.map(|i| course(i, category_ids)).collect();
    let slugs: Vec<String> = generated.iter().map(|(c, _)| c.slug.clone()).collect();
    let existing: HashSet<String> = db_run!(conn => courses::table
        .filter(courses::slug.eq_any(&slugs))
        .select(courses::slug)
        .load::<String>(conn)
        .await)?
    .into_iter()
    .collect();
    let (new_courses, lesson_counts): (Vec<NewCourse>, Vec<u64>) = generated
        .into_iter()
        .filter(|(c, _)| !existing.contains(&c.slug))
        .unzip();
    if new_courses.is_empty() {
        return Ok(());
    }
    let lesson_count_by_slug: HashMap<&str, u64> = new_courses
        .iter()
        .zip(&lesson_counts)
        .map(|(c, n)| (c.slug.as_str(), *n))
        .collect();
    let inserted = CourseRow::insert_batch(conn, &new_courses).await?;
    report.courses += inserted.len() as u64;

    let now = time::now();
    let mut new_lessons = Vec::new();
    for (course_id, slug) in &inserted {
        let count = lesson_count_by_slug
            .get(slug.as_str())
            .copied()
            .unwrap_or(3);
        for position in 1..=count {
            new_lessons.push(NewLesson {
                course_id: *course_id,
                position: position as i32,
                title: format!("Lesson {position}"),
                body: format!("Lesson {position} of {slug}: read, try, check."),
                created_at: now,
                updated_at: now,
            });
        }
    }
    report.lessons += Lesson::insert_many(conn, &new_lessons).await? as u64;

    let course_ids: Vec<i64> = inserted.iter().map(|(id, _)| *id).collect();
    let lesson_rows: Vec<(i64, i64, i32)> = db_run!(conn => lessons::table
        .filter(lessons::course_id.eq_any(&course_ids))
        .select((lessons::id, lessons::course_id, lessons::position))
        .order(lessons::id.asc())
        .load(conn)
        .await)?;
    let mut new_exercises = Vec::new();
    for (lesson_id, _, position) in lesson_rows {
        for n in 1..=(1 + (lesson_id as u64 + position as u64) % 2) {
            new_exercises.push(NewExercise {
                lesson_id,
                title: format!("Exercise {position}.{n}"),
                prompt: "Write the code that makes the checks pass.".to_owned(),
                starter_code: "# your code here\n".to_owned(),
                created_at: now,
                updated_at: now,
            });
        }
    }
    report.exercises += Exercise::insert_many(conn, &new_exercises).await? as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Course `i` of every seed, computed with the generator the seed used before it moved to
    /// `learnhub_db::SplitMix64`: a rerun extends an old seed instead of duplicating it.
    #[test]
    fn course_i_is_always_the_same_course() {
        let category_ids: HashMap<&'static str, i64> = CATEGORIES
            .iter()
            .zip(1..)
            .map(|((slug, ..), id)| (*slug, id))
            .collect();
        for (i, slug, category_id, level, status, lessons) in [
            (
                1,
                "statistics-with-numpy-1",
                2,
                CourseLevel::Beginner,
                CourseStatus::Published,
                6,
            ),
            (
                8,
                "cohort-analysis-8",
                7,
                CourseLevel::Intermediate,
                CourseStatus::Published,
                7,
            ),
            (
                28,
                "joins-28",
                5,
                CourseLevel::Intermediate,
                CourseStatus::Draft,
                6,
            ),
            (
                45,
                "flask-fundamentals-45",
                3,
                CourseLevel::Advanced,
                CourseStatus::Draft,
                4,
            ),
            (
                51,
                "lists-and-loops-51",
                1,
                CourseLevel::Intermediate,
                CourseStatus::Archived,
                8,
            ),
        ] {
            let (new, lesson_count) = course(i, &category_ids);
            assert_eq!(
                (
                    new.slug.as_str(),
                    new.category_id,
                    new.level,
                    new.status,
                    lesson_count
                ),
                (slug, category_id, level, status, lessons),
                "course {i}"
            );
        }
    }
}
