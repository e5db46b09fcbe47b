//! Catalog operations on validated input: each is a few queries, with the statement count the
//! contract promises (GetCourse ≤ 2, ListCourses 1, GetCatalogSummary ≤ 3, BatchGetCourses 1).
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use learnhub_db::{Db, DbConn};
use learnhub_kit::time;

use crate::{
    domain::{CourseLevel, CourseStatus, CourseType},
    error::{Error, Result, is_unique_violation},
    models::{
        category::{Category, CategoryCount, Census, NewCategory},
        course::{Course, CourseChanges, CourseFilter, CourseRow, NewCourse},
        exercise::{Exercise, ExerciseChanges, NewExercise},
        lesson::{Lesson, LessonChanges},
    },
};

/// The catalog over one database.
#[derive(Clone)]
pub struct Catalog {
    db: Db,
}

/// A page of courses and the id to continue after, if there is more.
#[derive(Debug, Clone, PartialEq)]
pub struct CoursePage {
    pub courses: Vec<Course>,
    pub next_after: Option<i64>,
}

/// Fields of a new course.
#[derive(Debug, Clone)]
pub struct CourseDraft {
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub course_type: CourseType,
    pub category: String,
    pub level: CourseLevel,
    pub is_featured: bool,
}

/// Fields of a course update; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct CourseUpdate {
    pub slug: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub course_type: Option<CourseType>,
    pub category: Option<String>,
    pub level: Option<CourseLevel>,
    pub is_featured: Option<bool>,
}

impl Catalog {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn conn(&self) -> Result<DbConn> {
        Ok(self.db.conn().await?)
    }

    /// One statement: asks for one row more than the page to know whether another page follows.
    pub async fn list_courses(
        &self,
        filter: &CourseFilter,
        after: Option<i64>,
        page_size: i64,
    ) -> Result<CoursePage> {
        let mut conn = self.conn().await?;
        let mut courses = CourseRow::list(&mut conn, filter, after, page_size + 1).await?;
        let next_after = if courses.len() as i64 > page_size {
            courses.truncate(page_size as usize);
            courses.last().map(|c| c.row.id)
        } else {
            None
        };
        Ok(CoursePage {
            courses,
            next_after,
        })
    }

    /// The course and its lessons in position order: two statements.
    pub async fn get_course(&self, key: &CourseKey) -> Result<(Course, Vec<Lesson>)> {
        let mut conn = self.conn().await?;
        let course = match key {
            CourseKey::Id(id) => CourseRow::find(&mut conn, *id).await?,
            CourseKey::Slug(slug) => CourseRow::find_by_slug(&mut conn, slug).await?,
        }
        .ok_or_else(|| Error::NotFound(key.to_string()))?;
        let lessons = Lesson::for_course(&mut conn, course.row.id).await?;
        Ok((course, lessons))
    }

    /// One statement for any number of ids; the answer follows the order of `ids`.
    pub async fn batch_get_courses(&self, ids: &[i64]) -> Result<Vec<Course>> {
        let mut conn = self.conn().await?;
        let found = CourseRow::find_many(&mut conn, ids).await?;
        Ok(in_request_order(ids, found, |c| c.row.id))
    }

    /// One statement: published courses per type and per category.
    pub async fn census(&self) -> Result<Census> {
        let mut conn = self.conn().await?;
        Ok(Category::census(&mut conn).await?)
    }

    /// One statement: the first `limit` featured, published courses of a type.
    pub async fn featured(&self, course_type: CourseType, limit: i64) -> Result<Vec<Course>> {
        let mut conn = self.conn().await?;
        let filter = CourseFilter {
            course_type: Some(course_type),
            status: Some(CourseStatus::Published),
            featured: Some(true),
            ..CourseFilter::default()
        };
        Ok(CourseRow::list(&mut conn, &filter, None, limit).await?)
    }

    /// The slug of a course (to name its cache entries after a lesson changes).
    pub async fn course_slug(&self, id: i64) -> Result<Option<String>> {
        let mut conn = self.conn().await?;
        Ok(CourseRow::find(&mut conn, id)
            .await?
            .map(|course| course.row.slug))
    }

    pub async fn categories(&self) -> Result<Vec<CategoryCount>> {
        let mut conn = self.conn().await?;
        Ok(Category::census(&mut conn).await?.categories)
    }

    pub async fn create_category(&self, slug: &str, name: &str) -> Result<CategoryCount> {
        let mut conn = self.conn().await?;
        let new = NewCategory {
            slug,
            name,
            created_at: time::now(),
        };
        let category = Category::create(&mut conn, &new).await.map_err(|err| {
            if is_unique_violation(&err) {
                Error::AlreadyExists(format!("a category with slug {slug:?} already exists"))
            } else {
                err.into()
            }
        })?;
        Ok(CategoryCount {
            id: category.id,
            slug: category.slug,
            name: category.name,
            course_count: 0,
        })
    }

    pub async fn create_course(&self, draft: CourseDraft) -> Result<Course> {
        let mut conn = self.conn().await?;
        let category = find_category(&mut conn, &draft.category).await?;
        let now = time::now();
        let new = NewCourse {
            slug: draft.slug,
            title: draft.title,
            summary: draft.summary,
            course_type: draft.course_type.as_str().to_owned(),
            category_id: category.id,
            level: draft.level.as_str().to_owned(),
            status: CourseStatus::Draft.as_str().to_owned(),
            is_featured: draft.is_featured,
            created_at: now,
            updated_at: now,
            published_at: None,
        };
        let row = CourseRow::insert(&mut conn, &new)
            .await
            .map_err(|err| slug_taken(err, &new.slug))?;
        Ok(Course {
            row,
            category_slug: category.slug,
            category_name: category.name,
        })
    }

    /// Returns the course as updated and the slug it had before (its old cache entries).
    pub async fn update_course(&self, id: i64, update: CourseUpdate) -> Result<(Course, String)> {
        let mut conn = self.conn().await?;
        let before = CourseRow::find(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound(CourseKey::Id(id).to_string()))?;
        let category = match &update.category {
            Some(slug) => Some(find_category(&mut conn, slug).await?),
            None => None,
        };
        let changes = CourseChanges {
            slug: update.slug.clone(),
            title: update.title,
            summary: update.summary,
            course_type: update.course_type.map(|t| t.as_str().to_owned()),
            category_id: category.as_ref().map(|c| c.id),
            level: update.level.map(|l| l.as_str().to_owned()),
            is_featured: update.is_featured,
            updated_at: Some(time::now()),
        };
        let updated = CourseRow::update(&mut conn, id, &changes)
            .await
            .map_err(|err| slug_taken(err, update.slug.as_deref().unwrap_or_default()))?;
        if updated.is_none() {
            return Err(Error::NotFound(CourseKey::Id(id).to_string()));
        }
        let after = CourseRow::find(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound(CourseKey::Id(id).to_string()))?;
        Ok((after, before.row.slug))
    }

    /// draft → published (published stays published, keeping its first published_at).
    pub async fn publish(&self, id: i64) -> Result<Course> {
        self.transition(
            id,
            &[CourseStatus::Draft, CourseStatus::Published],
            CourseStatus::Published,
        )
        .await
    }

    /// draft | published → archived (archived stays archived).
    pub async fn archive(&self, id: i64) -> Result<Course> {
        self.transition(id, CourseStatus::ALL, CourseStatus::Archived)
            .await
    }

    async fn transition(&self, id: i64, from: &[CourseStatus], to: CourseStatus) -> Result<Course> {
        let mut conn = self.conn().await?;
        let moved = CourseRow::transition(&mut conn, id, from, to, time::now()).await?;
        let course = CourseRow::find(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound(CourseKey::Id(id).to_string()))?;
        if moved.is_none() {
            return Err(Error::FailedPrecondition(format!(
                "course {id} is {}; it cannot become {}",
                course.row.status,
                to.as_str()
            )));
        }
        Ok(course)
    }

    pub async fn create_lesson(
        &self,
        course_id: i64,
        position: Option<i32>,
        title: String,
        body: String,
    ) -> Result<Lesson> {
        let mut conn = self.conn().await?;
        Lesson::insert(&mut conn, course_id, position, title, body, time::now())
            .await
            .map_err(|err| lesson_write_error(err, course_id, position))
    }

    pub async fn update_lesson(&self, id: i64, changes: LessonChanges) -> Result<Lesson> {
        let mut conn = self.conn().await?;
        let position = changes.position;
        match Lesson::update(&mut conn, id, &changes).await {
            Ok(Some(lesson)) => Ok(lesson),
            Ok(None) => Err(Error::NotFound(format!("lesson {id}"))),
            Err(err) if is_unique_violation(&err) => Err(Error::AlreadyExists(format!(
                "position {} is taken in this course",
                position.unwrap_or_default()
            ))),
            Err(err) => Err(err.into()),
        }
    }

    pub async fn delete_lesson(&self, id: i64) -> Result<Lesson> {
        let mut conn = self.conn().await?;
        Lesson::delete(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("lesson {id}")))
    }

    pub async fn batch_get_lessons(&self, ids: &[i64]) -> Result<Vec<Lesson>> {
        let mut conn = self.conn().await?;
        let found = Lesson::find_many(&mut conn, ids).await?;
        Ok(in_request_order(ids, found, |l| l.id))
    }

    pub async fn create_exercise(&self, new: NewExercise) -> Result<Exercise> {
        let mut conn = self.conn().await?;
        let lesson_id = new.lesson_id;
        Exercise::insert(&mut conn, &new).await.map_err(|err| {
            if is_foreign_key_violation(&err) {
                Error::NotFound(format!("lesson {lesson_id}"))
            } else {
                err.into()
            }
        })
    }

    pub async fn update_exercise(&self, id: i64, changes: ExerciseChanges) -> Result<Exercise> {
        let mut conn = self.conn().await?;
        Exercise::update(&mut conn, id, &changes)
            .await?
            .ok_or_else(|| Error::NotFound(format!("exercise {id}")))
    }

    pub async fn delete_exercise(&self, id: i64) -> Result<Exercise> {
        let mut conn = self.conn().await?;
        Exercise::delete(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("exercise {id}")))
    }

    pub async fn get_exercise(&self, id: i64) -> Result<Exercise> {
        let mut conn = self.conn().await?;
        Exercise::find(&mut conn, id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("exercise {id}")))
    }

    /// The lesson must exist: an unknown lesson is NOT_FOUND rather than an empty list.
    pub async fn list_exercises(&self, lesson_id: i64) -> Result<Vec<Exercise>> {
        let mut conn = self.conn().await?;
        Lesson::find(&mut conn, lesson_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("lesson {lesson_id}")))?;
        Ok(Exercise::for_lesson(&mut conn, lesson_id).await?)
    }
}

/// How a caller names a course.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CourseKey {
    Id(i64),
    Slug(String),
}

impl std::fmt::Display for CourseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "course {id}"),
            Self::Slug(slug) => write!(f, "course {slug:?}"),
        }
    }
}

async fn find_category(conn: &mut DbConn, slug: &str) -> Result<Category> {
    Category::find_by_slug(conn, slug)
        .await?
        .ok_or_else(|| Error::NotFound(format!("category {slug:?}")))
}

fn slug_taken(err: DieselError, slug: &str) -> Error {
    if is_unique_violation(&err) {
        Error::AlreadyExists(format!("a course with slug {slug:?} already exists"))
    } else {
        err.into()
    }
}

fn is_foreign_key_violation(err: &DieselError) -> bool {
    matches!(
        err,
        DieselError::DatabaseError(DatabaseErrorKind::ForeignKeyViolation, _)
    )
}

fn lesson_write_error(err: DieselError, course_id: i64, position: Option<i32>) -> Error {
    if is_foreign_key_violation(&err) {
        Error::NotFound(format!("course {course_id}"))
    } else if is_unique_violation(&err) {
        Error::AlreadyExists(format!(
            "position {} is taken in course {course_id}",
            position.unwrap_or_default()
        ))
    } else {
        err.into()
    }
}

/// Rows found by id, in the order the caller asked for them (duplicates once, unknown left out).
fn in_request_order<T: Clone>(ids: &[i64], found: Vec<T>, id_of: impl Fn(&T) -> i64) -> Vec<T> {
    let by_id: std::collections::HashMap<i64, T> =
        found.into_iter().map(|row| (id_of(&row), row)).collect();
    let mut seen = std::collections::HashSet::new();
    ids.iter()
        .filter(|id| seen.insert(**id))
        .filter_map(|id| by_id.get(id).cloned())
        .collect()
}
