//! The `learnhub.catalog.v1.CatalogService` gRPC handlers: validate the request into domain
//! values, call one catalog operation, map the result.
use learnhub_kit::{PageToken, page_token, time};
use learnhub_proto::catalog::v1::{self as pb, catalog_service_server::CatalogService};
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
const MAX_FEATURED: i64 = 50;

pub struct CatalogApi {
    catalog: Catalog,
}

impl CatalogApi {
    pub fn new(catalog: Catalog) -> Self {
        Self { catalog }
    }
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
        reply(
            async {
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
                let page = self.catalog.list_courses(&filter, after, size).await?;
                Ok(pb::ListCoursesResponse {
                    courses: page.courses.iter().map(convert::course).collect(),
                    next_page_token: page
                        .next_after
                        .map(|id| PageToken::after_id(id).encode())
                        .unwrap_or_default(),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCourse"))]
    async fn get_course(
        &self,
        request: Request<pb::GetCourseRequest>,
    ) -> Reply<pb::GetCourseResponse> {
        let req = request.into_inner();
        reply(
            async {
                let key = match req.key {
                    Some(pb::get_course_request::Key::Id(id)) => {
                        CourseKey::Id(domain::id("id", id)?)
                    }
                    Some(pb::get_course_request::Key::Slug(slug)) => {
                        CourseKey::Slug(domain::slug("slug", &slug)?)
                    }
                    None => return Err(Error::invalid("key", "set id or slug")),
                };
                let (course, lessons) = self.catalog.get_course(&key).await?;
                Ok(pb::GetCourseResponse {
                    course: Some(convert::course(&course)),
                    lessons: lessons.iter().map(convert::lesson).collect(),
                })
            }
            .await,
        )
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
        reply(
            async {
                let limit =
                    page_token::page_size(req.featured_limit, DEFAULT_FEATURED, MAX_FEATURED)
                        .map_err(|reason| {
                            Error::invalid(
                                "featured_limit",
                                reason.replace("page_size", "featured_limit"),
                            )
                        })?;
                let summary = self.catalog.summary(limit).await?;
                Ok(pb::GetCatalogSummaryResponse {
                    course_counts: summary
                        .census
                        .per_type
                        .iter()
                        .map(|(course_type, count)| pb::CourseTypeCount {
                            course_type: course_type.to_pb() as i32,
                            count: *count,
                        })
                        .collect(),
                    categories: summary
                        .census
                        .categories
                        .iter()
                        .map(convert::category)
                        .collect(),
                    featured_python: summary
                        .featured_python
                        .iter()
                        .map(convert::course)
                        .collect(),
                    featured_sql: summary.featured_sql.iter().map(convert::course).collect(),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListCategories"))]
    async fn list_categories(
        &self,
        _request: Request<pb::ListCategoriesRequest>,
    ) -> Reply<pb::ListCategoriesResponse> {
        reply(
            async {
                let categories = self.catalog.categories().await?;
                Ok(pb::ListCategoriesResponse {
                    categories: categories.iter().map(convert::category).collect(),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateCategory"))]
    async fn create_category(
        &self,
        request: Request<pb::CreateCategoryRequest>,
    ) -> Reply<pb::Category> {
        let req = request.into_inner();
        reply(
            async {
                let slug = domain::slug("slug", &req.slug)?;
                let name = domain::title("name", &req.name, domain::MAX_TITLE_CHARS)?;
                let category = self.catalog.create_category(&slug, &name).await?;
                Ok(convert::category(&category))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateCourse"))]
    async fn create_course(&self, request: Request<pb::CreateCourseRequest>) -> Reply<pb::Course> {
        let req = request.into_inner();
        reply(
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
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateCourse"))]
    async fn update_course(&self, request: Request<pb::UpdateCourseRequest>) -> Reply<pb::Course> {
        let req = request.into_inner();
        reply(
            async {
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
                let course = self.catalog.update_course(id, update).await?;
                Ok(convert::course(&course))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "PublishCourse"))]
    async fn publish_course(
        &self,
        request: Request<pb::PublishCourseRequest>,
    ) -> Reply<pb::Course> {
        let id = request.into_inner().id;
        reply(
            async {
                let course = self.catalog.publish(domain::id("id", id)?).await?;
                Ok(convert::course(&course))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "ArchiveCourse"))]
    async fn archive_course(
        &self,
        request: Request<pb::ArchiveCourseRequest>,
    ) -> Reply<pb::Course> {
        let id = request.into_inner().id;
        reply(
            async {
                let course = self.catalog.archive(domain::id("id", id)?).await?;
                Ok(convert::course(&course))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateLesson"))]
    async fn create_lesson(&self, request: Request<pb::CreateLessonRequest>) -> Reply<pb::Lesson> {
        let req = request.into_inner();
        reply(
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
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateLesson"))]
    async fn update_lesson(&self, request: Request<pb::UpdateLessonRequest>) -> Reply<pb::Lesson> {
        let req = request.into_inner();
        reply(
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
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "DeleteLesson"))]
    async fn delete_lesson(
        &self,
        request: Request<pb::DeleteLessonRequest>,
    ) -> Reply<pb::DeleteLessonResponse> {
        let id = request.into_inner().id;
        reply(
            async {
                self.catalog.delete_lesson(domain::id("id", id)?).await?;
                Ok(pb::DeleteLessonResponse {})
            }
            .await,
        )
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
}
