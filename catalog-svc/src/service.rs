//! The `learnhub.catalog.v1.CatalogService` gRPC handlers: validate the request into domain
//! values, call one catalog operation, map the result.
use std::{future::Future, time::Duration};

use learnhub_cache_client::{CacheClient, CacheKey, CachePattern};
use learnhub_kit::{PageToken, page_token, time};
use learnhub_proto::{
    catalog::v1::{self as pb, catalog_service_server::CatalogService},
    common::v1 as common,
};
use tonic::{Request, Response, Status};

use crate::{
    catalog::{Catalog, CourseDraft, CourseKey, CourseUpdate},
    convert,
    domain::{self, CourseLevel, CourseStatus, CourseType},
    error::{Error, Result},
    models::{
        course::CourseFilter,
        exercise::{ExerciseChanges, NewExercise},
        lesson::LessonChanges,
    },
};

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;
pub const MAX_BATCH_IDS: usize = 1_000;
const DEFAULT_FEATURED: i64 = 6;
/// How GetDbStats names this service.
const SERVICE: &str = "catalog-svc";
const MAX_FEATURED: i64 = 50;

// Lifetimes of the original's catalog caching: counts and categories 10 min, featured 30 min.
const CENSUS_TTL: Duration = Duration::from_secs(600);
const FEATURED_TTL: Duration = Duration::from_secs(1_800);
const COURSE_TTL: Duration = Duration::from_secs(600);
const LIST_TTL: Duration = Duration::from_secs(300);

/// Cache namespaces. `catalog:*` holds what any course change can alter (lists, counts,
/// categories, featured) and is invalidated whole, in O(1); `course:*` holds one entry per course
/// (by id and by slug), deleted exactly when that course or its lessons change.
const CATALOG_NS: &str = "catalog";
const COURSE_NS: &str = "course";

pub struct CatalogApi {
    catalog: Catalog,
    cache: Option<CacheClient>,
}

impl CatalogApi {
    pub fn new(catalog: Catalog, cache: Option<CacheClient>) -> Self {
        Self { catalog, cache }
    }

    /// The cached value of `key`, loaded by `load` on a miss (straight from `load` without a
    /// cache). Cache trouble never fails a read: the client falls back to `load`.
    async fn cached<T, F, Fut>(&self, key: CacheKey, ttl: Duration, load: F) -> Result<T, Status>
    where
        T: prost::Message + Default + Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        match &self.cache {
            Some(cache) => cache.get_or_load(&key, ttl, load).await,
            None => load().await,
        }
    }

    /// After a committed course change: everything in `catalog:*` and the course's own entries.
    async fn course_changed(&self, id: i64, slugs: &[&str]) {
        let Some(cache) = &self.cache else { return };
        let mut keys = vec![course_key(id)];
        keys.extend(slugs.iter().map(|slug| course_slug_key(slug)));
        // Failures are retried by the client, which bypasses the cache until they succeed.
        let catalog = CachePattern::namespace(CATALOG_NS);
        let (namespace, entries) = tokio::join!(cache.invalidate(&catalog), cache.delete(&keys));
        if let Err(err) = namespace.map(drop).and(entries.map(drop)) {
            tracing::warn!(%err, course = id, "cache invalidation deferred");
        }
    }

    /// After a committed change that only listings and counts show (a new category).
    async fn catalog_changed(&self) {
        let Some(cache) = &self.cache else { return };
        if let Err(err) = cache.invalidate(&CachePattern::namespace(CATALOG_NS)).await {
            tracing::warn!(%err, "cache invalidation deferred");
        }
    }

    /// After a committed change to a course's lessons: only that course's entries.
    async fn lessons_changed(&self, course_id: i64) {
        let Some(cache) = &self.cache else { return };
        let mut keys = vec![course_key(course_id)];
        match self.catalog.course_slug(course_id).await {
            Ok(Some(slug)) => keys.push(course_slug_key(&slug)),
            Ok(None) => {}
            // Without the slug its entry would outlive the change: drop every course entry.
            Err(err) => {
                tracing::warn!(%err, "course slug unknown; invalidating course:*");
                if let Err(err) = cache.invalidate(&CachePattern::namespace(COURSE_NS)).await {
                    tracing::warn!(%err, "cache invalidation deferred");
                }
            }
        }
        if let Err(err) = cache.delete(&keys).await {
            tracing::warn!(%err, course = course_id, "cache invalidation deferred");
        }
    }

    /// Course counts per type and categories with counts (`course_counts` and `categories`).
    async fn census(&self) -> Result<pb::GetCatalogSummaryResponse, Status> {
        self.cached(
            CacheKey::new(CATALOG_NS).push("census"),
            CENSUS_TTL,
            || async {
                let census = self.catalog.census().await?;
                Ok(pb::GetCatalogSummaryResponse {
                    course_counts: census
                        .per_type
                        .iter()
                        .map(|(course_type, count)| pb::CourseTypeCount {
                            course_type: course_type.to_pb() as i32,
                            count: *count,
                        })
                        .collect(),
                    categories: census.categories.iter().map(convert::category).collect(),
                    ..Default::default()
                })
            },
        )
        .await
    }

    async fn featured(
        &self,
        course_type: CourseType,
        limit: i64,
    ) -> Result<Vec<pb::Course>, Status> {
        let key = CacheKey::new(CATALOG_NS)
            .push("featured")
            .push(course_type.as_str())
            .push(limit);
        let page: pb::ListCoursesResponse = self
            .cached(key, FEATURED_TTL, || async {
                let courses = self.catalog.featured(course_type, limit).await?;
                Ok(pb::ListCoursesResponse {
                    courses: courses.iter().map(convert::course).collect(),
                    next_page_token: String::new(),
                })
            })
            .await?;
        Ok(page.courses)
    }
}

fn course_key(id: i64) -> CacheKey {
    CacheKey::new(COURSE_NS).push(id)
}

fn course_slug_key(slug: &str) -> CacheKey {
    CacheKey::new(COURSE_NS).push("slug").push_str(slug)
}

fn list_key(filter: &CourseFilter, size: i64) -> CacheKey {
    let part = |value: Option<&str>| value.unwrap_or("any").to_owned();
    CacheKey::new(CATALOG_NS)
        .push("list")
        .push(part(filter.course_type.map(CourseType::as_str)))
        .push_str(&part(filter.category.as_deref()))
        .push(part(filter.status.map(CourseStatus::as_str)))
        .push(part(
            filter
                .featured
                .map(|f| if f { "featured" } else { "regular" }),
        ))
        .push(size)
}

type Reply<T> = std::result::Result<Response<T>, Status>;

fn reply<T>(result: Result<T>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

fn ids(field: &'static str, ids: &[i64]) -> Result<()> {
    if ids.len() > MAX_BATCH_IDS {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_BATCH_IDS} ids"),
        ));
    }
    ids.iter()
        .try_for_each(|id| domain::id(field, *id).map(drop))
}

fn optional_category(text: &str) -> Result<Option<String>> {
    if text.is_empty() {
        Ok(None)
    } else {
        domain::slug("category", text).map(Some)
    }
}

fn position(value: Option<i32>) -> Result<Option<i32>> {
    match value {
        Some(p) if p <= 0 => Err(Error::invalid("position", "must be 1 or more")),
        other => Ok(other),
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    #[tracing::instrument(skip_all, fields(rpc = "ListCourses"))]
    async fn list_courses(
        &self,
        request: Request<pb::ListCoursesRequest>,
    ) -> Reply<pb::ListCoursesResponse> {
        let req = request.into_inner();
        let valid: Result<_> = async {
            let filter = CourseFilter {
                course_type: CourseType::from_pb(req.course_type)?,
                category: optional_category(&req.category)?,
                status: CourseStatus::from_pb(req.status)?,
                featured: req.featured,
                level: None,
            };
            let size = page_token::page_size(req.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
                .map_err(|reason| Error::invalid("page_size", reason))?;
            let after = PageToken::decode(&req.page_token)
                .map_err(|err| Error::invalid("page_token", err.to_string()))?
                .map(|token| token.id);
            Ok((filter, after, size))
        }
        .await;
        let (filter, after, size) = valid.map_err(Status::from)?;
        let load = || async {
            let page = self.catalog.list_courses(&filter, after, size).await?;
            Ok(pb::ListCoursesResponse {
                courses: page.courses.iter().map(convert::course).collect(),
                next_page_token: page
                    .next_after
                    .map(|id| PageToken::after_id(id).encode())
                    .unwrap_or_default(),
            })
        };
        // Only first pages are cached: they are what the catalog page asks for again and again.
        let page = match after {
            None => self.cached(list_key(&filter, size), LIST_TTL, load).await?,
            Some(_) => load().await?,
        };
        Ok(Response::new(page))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCourse"))]
    async fn get_course(
        &self,
        request: Request<pb::GetCourseRequest>,
    ) -> Reply<pb::GetCourseResponse> {
        let key = match request.into_inner().key {
            Some(pb::get_course_request::Key::Id(id)) => domain::id("id", id).map(CourseKey::Id),
            Some(pb::get_course_request::Key::Slug(slug)) => {
                domain::slug("slug", &slug).map(CourseKey::Slug)
            }
            None => Err(Error::invalid("key", "set id or slug")),
        }
        .map_err(Status::from)?;
        let cache_key = match &key {
            CourseKey::Id(id) => course_key(*id),
            CourseKey::Slug(slug) => course_slug_key(slug),
        };
        let course = self
            .cached(cache_key, COURSE_TTL, || async {
                let (course, lessons) = self.catalog.get_course(&key).await?;
                Ok(pb::GetCourseResponse {
                    course: Some(convert::course(&course)),
                    lessons: lessons.iter().map(convert::lesson).collect(),
                })
            })
            .await?;
        Ok(Response::new(course))
    }

    #[tracing::instrument(skip_all, fields(rpc = "BatchGetCourses"))]
    async fn batch_get_courses(
        &self,
        request: Request<pb::BatchGetCoursesRequest>,
    ) -> Reply<pb::BatchGetCoursesResponse> {
        let req = request.into_inner();
        reply(
            async {
                ids("ids", &req.ids)?;
                let courses = self.catalog.batch_get_courses(&req.ids).await?;
                Ok(pb::BatchGetCoursesResponse {
                    courses: courses.iter().map(convert::course).collect(),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCatalogSummary"))]
    async fn get_catalog_summary(
        &self,
        request: Request<pb::GetCatalogSummaryRequest>,
    ) -> Reply<pb::GetCatalogSummaryResponse> {
        let req = request.into_inner();
        let limit = page_token::page_size(req.featured_limit, DEFAULT_FEATURED, MAX_FEATURED)
            .map_err(|reason| {
                Error::invalid(
                    "featured_limit",
                    reason.replace("page_size", "featured_limit"),
                )
            })
            .map_err(Status::from)?;
        // Three cached parts with the original's lifetimes, read (or loaded) concurrently.
        let (census, featured_python, featured_sql) = tokio::try_join!(
            self.census(),
            self.featured(CourseType::Python, limit),
            self.featured(CourseType::Sql, limit),
        )?;
        Ok(Response::new(pb::GetCatalogSummaryResponse {
            course_counts: census.course_counts,
            categories: census.categories,
            featured_python,
            featured_sql,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListCategories"))]
    async fn list_categories(
        &self,
        _request: Request<pb::ListCategoriesRequest>,
    ) -> Reply<pb::ListCategoriesResponse> {
        let census = self.census().await?;
        Ok(Response::new(pb::ListCategoriesResponse {
            categories: census.categories,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateCategory"))]
    async fn create_category(
        &self,
        request: Request<pb::CreateCategoryRequest>,
    ) -> Reply<pb::Category> {
        let req = request.into_inner();
        let created = reply(
            async {
                let slug = domain::slug("slug", &req.slug)?;
                let name = domain::title("name", &req.name, domain::MAX_TITLE_CHARS)?;
                let category = self.catalog.create_category(&slug, &name).await?;
                Ok(convert::category(&category))
            }
            .await,
        )?;
        self.catalog_changed().await;
        Ok(created)
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateCourse"))]
    async fn create_course(&self, request: Request<pb::CreateCourseRequest>) -> Reply<pb::Course> {
        let req = request.into_inner();
        let created = reply(
            async {
                let draft = CourseDraft {
                    slug: domain::slug("slug", &req.slug)?,
                    title: domain::title("title", &req.title, domain::MAX_TITLE_CHARS)?,
                    summary: domain::text("summary", &req.summary, domain::MAX_SUMMARY_CHARS)?,
                    course_type: CourseType::from_pb(req.course_type)?
                        .ok_or_else(|| Error::invalid("course_type", "required: python or sql"))?,
                    category: domain::slug("category", &req.category)?,
                    level: CourseLevel::from_pb(req.level)?.unwrap_or(CourseLevel::Beginner),
                    is_featured: req.is_featured,
                };
                let course = self.catalog.create_course(draft).await?;
                Ok(convert::course(&course))
            }
            .await,
        )?;
        let course = created.get_ref();
        self.course_changed(course.id, &[&course.slug]).await;
        Ok(created)
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateCourse"))]
    async fn update_course(&self, request: Request<pb::UpdateCourseRequest>) -> Reply<pb::Course> {
        let req = request.into_inner();
        let updated = async {
            let id = domain::id("id", req.id)?;
            let update = CourseUpdate {
                slug: req
                    .slug
                    .as_deref()
                    .map(|s| domain::slug("slug", s))
                    .transpose()?,
                title: req
                    .title
                    .as_deref()
                    .map(|t| domain::title("title", t, domain::MAX_TITLE_CHARS))
                    .transpose()?,
                summary: req
                    .summary
                    .as_deref()
                    .map(|s| domain::text("summary", s, domain::MAX_SUMMARY_CHARS))
                    .transpose()?,
                course_type: CourseType::from_pb(req.course_type)?,
                category: req
                    .category
                    .as_deref()
                    .map(|c| domain::slug("category", c))
                    .transpose()?,
                level: CourseLevel::from_pb(req.level)?,
                is_featured: req.is_featured,
            };
            self.catalog.update_course(id, update).await
        }
        .await
        .map_err(Status::from)?;
        let (course, old_slug) = updated;
        self.course_changed(course.row.id, &[&old_slug, &course.row.slug])
            .await;
        Ok(Response::new(convert::course(&course)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "PublishCourse"))]
    async fn publish_course(
        &self,
        request: Request<pb::PublishCourseRequest>,
    ) -> Reply<pb::Course> {
        let id = request.into_inner().id;
        let course = async { self.catalog.publish(domain::id("id", id)?).await }
            .await
            .map_err(Status::from)?;
        self.course_changed(course.row.id, &[&course.row.slug])
            .await;
        Ok(Response::new(convert::course(&course)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ArchiveCourse"))]
    async fn archive_course(
        &self,
        request: Request<pb::ArchiveCourseRequest>,
    ) -> Reply<pb::Course> {
        let id = request.into_inner().id;
        let course = async { self.catalog.archive(domain::id("id", id)?).await }
            .await
            .map_err(Status::from)?;
        self.course_changed(course.row.id, &[&course.row.slug])
            .await;
        Ok(Response::new(convert::course(&course)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateLesson"))]
    async fn create_lesson(&self, request: Request<pb::CreateLessonRequest>) -> Reply<pb::Lesson> {
        let req = request.into_inner();
        let lesson = reply(
            async {
                let course_id = domain::id("course_id", req.course_id)?;
                let title = domain::title("title", &req.title, domain::MAX_TITLE_CHARS)?;
                let body = domain::text("body", &req.body, domain::MAX_BODY_CHARS)?;
                let lesson = self
                    .catalog
                    .create_lesson(course_id, position(req.position)?, title, body)
                    .await?;
                Ok(convert::lesson(&lesson))
            }
            .await,
        )?;
        self.lessons_changed(lesson.get_ref().course_id).await;
        Ok(lesson)
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateLesson"))]
    async fn update_lesson(&self, request: Request<pb::UpdateLessonRequest>) -> Reply<pb::Lesson> {
        let req = request.into_inner();
        let lesson = reply(
            async {
                let id = domain::id("id", req.id)?;
                let changes = LessonChanges {
                    title: req
                        .title
                        .as_deref()
                        .map(|t| domain::title("title", t, domain::MAX_TITLE_CHARS))
                        .transpose()?,
                    body: req
                        .body
                        .as_deref()
                        .map(|b| domain::text("body", b, domain::MAX_BODY_CHARS))
                        .transpose()?,
                    position: position(req.position)?,
                    updated_at: Some(time::now()),
                };
                let lesson = self.catalog.update_lesson(id, changes).await?;
                Ok(convert::lesson(&lesson))
            }
            .await,
        )?;
        self.lessons_changed(lesson.get_ref().course_id).await;
        Ok(lesson)
    }

    #[tracing::instrument(skip_all, fields(rpc = "DeleteLesson"))]
    async fn delete_lesson(
        &self,
        request: Request<pb::DeleteLessonRequest>,
    ) -> Reply<pb::DeleteLessonResponse> {
        let id = request.into_inner().id;
        let deleted = async { self.catalog.delete_lesson(domain::id("id", id)?).await }
            .await
            .map_err(Status::from)?;
        self.lessons_changed(deleted.course_id).await;
        Ok(Response::new(pb::DeleteLessonResponse {}))
    }

    #[tracing::instrument(skip_all, fields(rpc = "BatchGetLessons"))]
    async fn batch_get_lessons(
        &self,
        request: Request<pb::BatchGetLessonsRequest>,
    ) -> Reply<pb::BatchGetLessonsResponse> {
        let req = request.into_inner();
        reply(
            async {
                ids("ids", &req.ids)?;
                let lessons = self.catalog.batch_get_lessons(&req.ids).await?;
                Ok(pb::BatchGetLessonsResponse {
                    lessons: lessons.iter().map(convert::lesson).collect(),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateExercise"))]
    async fn create_exercise(
        &self,
        request: Request<pb::CreateExerciseRequest>,
    ) -> Reply<pb::Exercise> {
        let req = request.into_inner();
        reply(
            async {
                let now = time::now();
                let new = NewExercise {
                    lesson_id: domain::id("lesson_id", req.lesson_id)?,
                    title: domain::title("title", &req.title, domain::MAX_TITLE_CHARS)?,
                    prompt: domain::text("prompt", &req.prompt, domain::MAX_BODY_CHARS)?,
                    starter_code: domain::text(
                        "starter_code",
                        &req.starter_code,
                        domain::MAX_BODY_CHARS,
                    )?,
                    created_at: now,
                    updated_at: now,
                };
                let exercise = self.catalog.create_exercise(new).await?;
                Ok(convert::exercise(&exercise))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateExercise"))]
    async fn update_exercise(
        &self,
        request: Request<pb::UpdateExerciseRequest>,
    ) -> Reply<pb::Exercise> {
        let req = request.into_inner();
        reply(
            async {
                let id = domain::id("id", req.id)?;
                let changes = ExerciseChanges {
                    title: req
                        .title
                        .as_deref()
                        .map(|t| domain::title("title", t, domain::MAX_TITLE_CHARS))
                        .transpose()?,
                    prompt: req
                        .prompt
                        .as_deref()
                        .map(|p| domain::text("prompt", p, domain::MAX_BODY_CHARS))
                        .transpose()?,
                    starter_code: req
                        .starter_code
                        .as_deref()
                        .map(|c| domain::text("starter_code", c, domain::MAX_BODY_CHARS))
                        .transpose()?,
                    updated_at: Some(time::now()),
                };
                let exercise = self.catalog.update_exercise(id, changes).await?;
                Ok(convert::exercise(&exercise))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "DeleteExercise"))]
    async fn delete_exercise(
        &self,
        request: Request<pb::DeleteExerciseRequest>,
    ) -> Reply<pb::DeleteExerciseResponse> {
        let id = request.into_inner().id;
        reply(
            async {
                self.catalog.delete_exercise(domain::id("id", id)?).await?;
                Ok(pb::DeleteExerciseResponse {})
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetExercise"))]
    async fn get_exercise(&self, request: Request<pb::GetExerciseRequest>) -> Reply<pb::Exercise> {
        let id = request.into_inner().id;
        reply(
            async {
                let exercise = self.catalog.get_exercise(domain::id("id", id)?).await?;
                Ok(convert::exercise(&exercise))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListExercises"))]
    async fn list_exercises(
        &self,
        request: Request<pb::ListExercisesRequest>,
    ) -> Reply<pb::ListExercisesResponse> {
        let lesson_id = request.into_inner().lesson_id;
        reply(
            async {
                let exercises = self
                    .catalog
                    .list_exercises(domain::id("lesson_id", lesson_id)?)
                    .await?;
                Ok(pb::ListExercisesResponse {
                    exercises: exercises.iter().map(convert::exercise).collect(),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetDbStats"))]
    async fn get_db_stats(
        &self,
        _request: Request<common::GetDbStatsRequest>,
    ) -> Reply<common::DbStats> {
        let db = self.catalog.db();
        Ok(Response::new(db.profiler().to_proto(SERVICE, db.backend())))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ResetDbStats"))]
    async fn reset_db_stats(
        &self,
        _request: Request<common::ResetDbStatsRequest>,
    ) -> Reply<common::ResetDbStatsResponse> {
        self.catalog.db().profiler().reset();
        tracing::info!("query statistics reset");
        Ok(Response::new(common::ResetDbStatsResponse {}))
    }
}
