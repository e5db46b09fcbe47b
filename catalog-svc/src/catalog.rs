//! Catalog operations on validated input: each is a few queries, with the statement count the
//! contract promises (GetCourse ≤ 2, ListCourses 1, GetCatalogSummary ≤ 3, BatchGetCourses 1),
//! read through the cache where `cache` says so; each write records what it makes stale in its
//! own transaction (the cache outbox), delivered after the commit.
use diesel::result::Error as DieselError;
use learnhub_db::{Db, DbConn, outbox::Invalidation};
use learnhub_kit::time;
use learnhub_proto::catalog::v1 as pb;

use crate::{
    cache::{self, CatalogCache, Entry},
    convert,
    domain::{CourseLevel, CourseStatus, CourseType},
    error::{Error, Result, is_foreign_key_violation, is_unique_violation},
    models::{
        category::{Category, CategoryCount, NewCategory},
        course::{Course, CourseChanges, CourseFilter, CourseRow, NewCourse},
        exercise::{Exercise, ExerciseChanges, NewExercise},
        lesson::{Lesson, LessonChanges},
    },
};

/// The catalog over one database, with its cache (disabled unless given one).
#[derive(Clone)]
pub struct Catalog {
    db: Db,
    cache: CatalogCache,
}

/// A page of courses and the id to continue after, if there is more.
#[derive(Debug, Clone, PartialEq)]
pub struct CoursePage {
    pub courses: Vec<Course>,
    pub next_after: Option<i64>,
}

/// One page of a filtered course list: the courses after `after` (in id order), `page_size` of
/// them at most.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseQuery {
    pub filter: CourseFilter,
    pub after: Option<i64>,
    pub page_size: i64,
}

/// A new category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategoryDraft {
    pub slug: String,
    pub name: String,
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
    pub id: i64,
    pub slug: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub course_type: Option<CourseType>,
    pub category: Option<String>,
    pub level: Option<CourseLevel>,
    pub is_featured: Option<bool>,
}

/// A new lesson; without a position it goes after the course's last lesson.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LessonDraft {
    pub course_id: i64,
    pub position: Option<i32>,
    pub title: String,
    pub body: String,
}

/// Fields of a lesson update; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LessonUpdate {
    pub id: i64,
    pub title: Option<String>,
    pub body: Option<String>,
    pub position: Option<i32>,
}

/// A new exercise of a lesson.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExerciseDraft {
    pub lesson_id: i64,
    pub title: String,
    pub prompt: String,
    pub starter_code: String,
}

/// Fields of an exercise update; `None` keeps the current value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExerciseUpdate {
    pub id: i64,
    pub title: Option<String>,
    pub prompt: Option<String>,
    pub starter_code: Option<String>,
}

impl Catalog {
    /// The catalog without a cache: every read goes to the database.
    pub fn new(db: Db) -> Self {
        Self {
            db,
            cache: CatalogCache::default(),
        }
    }

    /// The same catalog reading through `cache`.
    pub fn with_cache(self, cache: CatalogCache) -> Self {
        Self { cache, ..self }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    async fn conn(&self) -> Result<DbConn> {
        Ok(self.db.conn().await?)
    }

    /// One statement; first pages are cached.
    pub async fn list_courses(&self, query: &CourseQuery) -> Result<pb::ListCoursesResponse> {
        let load = async {
            let page = self
                .course_page(&query.filter, query.after, query.page_size)
                .await?;
            Ok(convert::course_page(&page))
        };
        match query.after {
            None => {
                let entry = Entry::first_page(&query.filter, query.page_size);
                self.cache.cached(entry, load).await
            }
            Some(_) => load.await,
        }
    }

    /// One statement: asks for one row more than the page to know whether another page follows.
    async fn course_page(
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

    /// The course and its lessons in position order: two statements (none on a cache hit).
    pub async fn get_course(&self, key: &CourseKey) -> Result<pb::GetCourseResponse> {
        self.cache
            .cached(Entry::course(key), async {
                let mut conn = self.conn().await?;
                let course = match key {
                    CourseKey::Id(id) => CourseRow::find(&mut conn, *id).await?,
                    CourseKey::Slug(slug) => CourseRow::find_by_slug(&mut conn, slug).await?,
                }
                .ok_or_else(|| Error::NotFound(key.to_string()))?;
                let lessons = Lesson::for_course(&mut conn, course.row.id).await?;
                Ok(convert::course_with_lessons(&course, &lessons))
            })
            .await
    }

    /// One statement for any number of ids; the answer follows the order of `ids`.
    pub async fn batch_get_courses(&self, ids: &[i64]) -> Result<Vec<Course>> {
        let mut conn = self.conn().await?;
        let found = CourseRow::find_many(&mut conn, ids).await?;
        Ok(in_request_order(ids, found, |c| c.row.id))
    }

    /// Course counts per type, categories with counts, and the first `featured_limit` featured
    /// courses of each type: three cached parts with the original's lifetimes, read (or
    /// loaded, one statement each) concurrently.
    pub async fn summary(&self, featured_limit: i64) -> Result<pb::GetCatalogSummaryResponse> {
        let (census, featured_python, featured_sql) = tokio::try_join!(
            self.census(),
            self.featured(CourseType::Python, featured_limit),
            self.featured(CourseType::Sql, featured_limit),
        )?;
        Ok(pb::GetCatalogSummaryResponse {
            featured_python,
            featured_sql,
            ..census
        })
    }

    /// Published courses per type and per category (`course_counts` and `categories` of the
    /// summary): one statement, cached.
    pub async fn census(&self) -> Result<pb::GetCatalogSummaryResponse> {
        self.cache
            .cached(Entry::census(), async {
                let mut conn = self.conn().await?;
                let census = Category::census(&mut conn).await?;
                Ok(convert::census(&census))
            })
            .await
    }

    /// One statement: the first `limit` featured, published courses of a type; cached.
    async fn featured(&self, course_type: CourseType, limit: i64) -> Result<Vec<pb::Course>> {
        let filter = CourseFilter {
            course_type: Some(course_type),
            status: Some(CourseStatus::Published),
            featured: Some(true),
            ..CourseFilter::default()
        };
        let page: pb::ListCoursesResponse = self
            .cache
            .cached(Entry::featured(course_type, limit), async {
                let mut conn = self.conn().await?;
                let courses = CourseRow::list(&mut conn, &filter, None, limit).await?;
                Ok(pb::ListCoursesResponse {
                    courses: courses.iter().map(convert::course).collect(),
                    next_page_token: String::new(),
                })
            })
            .await?;
        Ok(page.courses)
    }

    pub async fn create_category(&self, draft: &CategoryDraft) -> Result<CategoryCount> {
        let new = NewCategory {
            slug: &draft.slug,
            name: &draft.name,
            created_at: time::now(),
        };
        let create = async |conn: &mut DbConn| {
            Category::create(conn, &new).await.map_err(|err| {
                if is_unique_violation(&err) {
                    Error::AlreadyExists(format!(
                        "a category with slug {:?} already exists",
                        draft.slug
                    ))
                } else {
                    err.into()
                }
            })
        };
        let category = self
            .cache
            .write(&self.db, create, async |_, _| {
                Ok(Some(cache::category_added()))
            })
            .await?;
        Ok(CategoryCount {
            id: category.id,
            slug: category.slug,
            name: category.name,
            course_count: 0,
        })
    }

    pub async fn create_course(&self, draft: CourseDraft) -> Result<Course> {
        let create = async |conn: &mut DbConn| insert_course(conn, draft).await;
        let (row, category) = self
            .cache
            .write(
                &self.db,
                create,
                async |_, (row, _): &(CourseRow, Category)| {
                    Ok(Some(cache::course_changed(row.id, &[&row.slug])))
                },
            )
            .await?;
        Ok(Course {
            row,
            category_slug: category.slug,
            category_name: category.name,
        })
    }

    /// Changes the fields `update` sets; the course's entries under its old and new slug go.
    pub async fn update_course(&self, update: CourseUpdate) -> Result<Course> {
        let id = update.id;
        let (before, after) = self
            .cache
            .write(
                &self.db,
                async |conn: &mut DbConn| update_course(conn, update).await,
                async |_, (before, after): &(Course, Course)| {
                    let slugs = [before.row.slug.as_str(), after.row.slug.as_str()];
                    Ok(Some(cache::course_changed(id, &slugs)))
                },
            )
            .await?;
        drop(before);
        Ok(after)
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
        let transition = async |conn: &mut DbConn| {
            let moved = CourseRow::transition(conn, id, from, to, time::now()).await?;
            let course = CourseRow::find(conn, id)
                .await?
                .ok_or_else(|| Error::NotFound(CourseKey::Id(id).to_string()))?;
            if moved.is_none() {
                return Err(Error::FailedPrecondition(format!(
                    "course {id} is {}; it cannot become {}",
                    course.row.status.as_str(),
                    to.as_str()
                )));
            }
            Ok(course)
        };
        self.cache
            .write(&self.db, transition, async |_, course: &Course| {
                Ok(Some(cache::course_changed(
                    course.row.id,
                    &[&course.row.slug],
                )))
            })
            .await
    }

    pub async fn create_lesson(&self, draft: LessonDraft) -> Result<Lesson> {
        let LessonDraft {
            course_id,
            position,
            title,
            body,
        } = draft;
        let insert = async |conn: &mut DbConn| {
            Lesson::insert(conn, course_id, position, title, body, time::now())
                .await
                .map_err(|err| lesson_write_error(err, course_id, position))
        };
        self.cache.write(&self.db, insert, lessons_changed).await
    }

    pub async fn update_lesson(&self, update: LessonUpdate) -> Result<Lesson> {
        let id = update.id;
        let changes = LessonChanges {
            title: update.title,
            body: update.body,
            position: update.position,
            updated_at: Some(time::now()),
        };
        let write = async |conn: &mut DbConn| match Lesson::update(conn, id, &changes).await {
            Ok(Some(lesson)) => Ok(lesson),
            Ok(None) => Err(Error::NotFound(format!("lesson {id}"))),
            Err(err) if is_unique_violation(&err) => Err(Error::AlreadyExists(format!(
                "position {} is taken in this course",
                update.position.unwrap_or_default()
            ))),
            Err(err) => Err(err.into()),
        };
        self.cache.write(&self.db, write, lessons_changed).await
    }

    pub async fn delete_lesson(&self, id: i64) -> Result<Lesson> {
        let delete = async |conn: &mut DbConn| {
            Lesson::delete(conn, id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("lesson {id}")))
        };
        self.cache.write(&self.db, delete, lessons_changed).await
    }

    pub async fn batch_get_lessons(&self, ids: &[i64]) -> Result<Vec<Lesson>> {
        let mut conn = self.conn().await?;
        let found = Lesson::find_many(&mut conn, ids).await?;
        Ok(in_request_order(ids, found, |l| l.id))
    }

    pub async fn create_exercise(&self, draft: ExerciseDraft) -> Result<Exercise> {
        let now = time::now();
        let lesson_id = draft.lesson_id;
        let new = NewExercise {
            lesson_id,
            title: draft.title,
            prompt: draft.prompt,
            starter_code: draft.starter_code,
            created_at: now,
            updated_at: now,
        };
        let mut conn = self.conn().await?;
        Exercise::insert(&mut conn, &new).await.map_err(|err| {
            if is_foreign_key_violation(&err) {
                Error::NotFound(format!("lesson {lesson_id}"))
            } else {
                err.into()
            }
        })
    }

    pub async fn update_exercise(&self, update: ExerciseUpdate) -> Result<Exercise> {
        let id = update.id;
        let changes = ExerciseChanges {
            title: update.title,
            prompt: update.prompt,
            starter_code: update.starter_code,
            updated_at: Some(time::now()),
        };
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

/// One statement: the category by slug, then INSERT … RETURNING.
async fn insert_course(conn: &mut DbConn, draft: CourseDraft) -> Result<(CourseRow, Category)> {
    let category = find_category(conn, &draft.category).await?;
    let now = time::now();
    let new = NewCourse {
        slug: draft.slug,
        title: draft.title,
        summary: draft.summary,
        course_type: draft.course_type,
        category_id: category.id,
        level: draft.level,
        status: CourseStatus::Draft,
        is_featured: draft.is_featured,
        created_at: now,
        updated_at: now,
        published_at: None,
    };
    let row = CourseRow::insert(conn, &new)
        .await
        .map_err(|err| slug_taken(err, &new.slug))?;
    Ok((row, category))
}

/// The course before and after the update (read, category by slug if it changes, UPDATE, read).
async fn update_course(conn: &mut DbConn, update: CourseUpdate) -> Result<(Course, Course)> {
    let id = update.id;
    let before = CourseRow::find(conn, id)
        .await?
        .ok_or_else(|| Error::NotFound(CourseKey::Id(id).to_string()))?;
    let category = match &update.category {
        Some(slug) => Some(find_category(conn, slug).await?),
        None => None,
    };
    let changes = CourseChanges {
        slug: update.slug.clone(),
        title: update.title,
        summary: update.summary,
        course_type: update.course_type,
        category_id: category.as_ref().map(|c| c.id),
        level: update.level,
        is_featured: update.is_featured,
        updated_at: Some(time::now()),
    };
    let updated = CourseRow::update(conn, id, &changes)
        .await
        .map_err(|err| slug_taken(err, update.slug.as_deref().unwrap_or_default()))?;
    if updated.is_none() {
        return Err(Error::NotFound(CourseKey::Id(id).to_string()));
    }
    let after = CourseRow::find(conn, id)
        .await?
        .ok_or_else(|| Error::NotFound(CourseKey::Id(id).to_string()))?;
    Ok((before, after))
}

/// What a lesson write makes stale: its course's entries by id and by slug (read in the write's
/// transaction, so it is the slug the course has when the change commits).
async fn lessons_changed(conn: &mut DbConn, lesson: &Lesson) -> Result<Option<Invalidation>> {
    let slug = CourseRow::find(conn, lesson.course_id)
        .await?
        .map(|course| course.row.slug);
    Ok(Some(cache::lessons_changed(
        lesson.course_id,
        slug.as_deref(),
    )))
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
