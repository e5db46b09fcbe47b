//! The `learnhub.catalog.v1.CatalogService` gRPC handlers: each turns its request into the
//! domain input (`requests`), calls one catalog operation and maps the result.
use learnhub_db::outbox::Outbox;
use learnhub_proto::{
    catalog::v1::{self as pb, catalog_service_server::CatalogService},
    common::v1 as common,
};
use tonic::{Request, Response, Status};

use crate::{
    cache::CatalogCache,
    catalog::{
        Catalog, CategoryDraft, CourseDraft, CourseKey, CourseQuery, CourseUpdate, ExerciseDraft,
        ExerciseUpdate, LessonDraft, LessonUpdate,
    },
    convert, domain, requests,
};

/// How GetDbStats names this service.
const SERVICE: &str = "catalog-svc";

type Reply<T> = Result<Response<T>, Status>;

pub struct CatalogApi {
    catalog: Catalog,
}

impl CatalogApi {
    /// The API over `catalog`, reading through cache-svc (and invalidating through the outbox)
    /// when `outbox` is set.
    pub fn new(catalog: Catalog, outbox: Option<Outbox>) -> Self {
        Self {
            catalog: catalog.with_cache(CatalogCache::new(outbox)),
        }
    }
}

#[tonic::async_trait]
impl CatalogService for CatalogApi {
    #[tracing::instrument(skip_all, fields(rpc = "ListCourses"))]
    async fn list_courses(
        &self,
        request: Request<pb::ListCoursesRequest>,
    ) -> Reply<pb::ListCoursesResponse> {
        let query = CourseQuery::try_from(request.into_inner())?;
        let page = self.catalog.list_courses(&query).await?;
        Ok(Response::new(page))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCourse"))]
    async fn get_course(
        &self,
        request: Request<pb::GetCourseRequest>,
    ) -> Reply<pb::GetCourseResponse> {
        let key = CourseKey::try_from(request.into_inner())?;
        let course = self.catalog.get_course(&key).await?;
        Ok(Response::new(course))
    }

    #[tracing::instrument(skip_all, fields(rpc = "BatchGetCourses"))]
    async fn batch_get_courses(
        &self,
        request: Request<pb::BatchGetCoursesRequest>,
    ) -> Reply<pb::BatchGetCoursesResponse> {
        let ids = requests::batch_ids("ids", request.into_inner().ids)?;
        let courses = self.catalog.batch_get_courses(&ids).await?;
        Ok(Response::new(pb::BatchGetCoursesResponse {
            courses: courses.iter().map(convert::course).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCatalogSummary"))]
    async fn get_catalog_summary(
        &self,
        request: Request<pb::GetCatalogSummaryRequest>,
    ) -> Reply<pb::GetCatalogSummaryResponse> {
        let limit = requests::featured_limit(request.get_ref())?;
        let summary = self.catalog.summary(limit).await?;
        Ok(Response::new(summary))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListCategories"))]
    async fn list_categories(
        &self,
        _request: Request<pb::ListCategoriesRequest>,
    ) -> Reply<pb::ListCategoriesResponse> {
        let census = self.catalog.census().await?;
        Ok(Response::new(pb::ListCategoriesResponse {
            categories: census.categories,
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateCategory"))]
    async fn create_category(
        &self,
        request: Request<pb::CreateCategoryRequest>,
    ) -> Reply<pb::Category> {
        let draft = CategoryDraft::try_from(request.into_inner())?;
        let category = self.catalog.create_category(&draft).await?;
        Ok(Response::new(convert::category(&category)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateCourse"))]
    async fn create_course(&self, request: Request<pb::CreateCourseRequest>) -> Reply<pb::Course> {
        let draft = CourseDraft::try_from(request.into_inner())?;
        let course = self.catalog.create_course(draft).await?;
        Ok(Response::new(convert::course(&course)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateCourse"))]
    async fn update_course(&self, request: Request<pb::UpdateCourseRequest>) -> Reply<pb::Course> {
        let update = CourseUpdate::try_from(request.into_inner())?;
        let course = self.catalog.update_course(update).await?;
        Ok(Response::new(convert::course(&course)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "PublishCourse"))]
    async fn publish_course(
        &self,
        request: Request<pb::PublishCourseRequest>,
    ) -> Reply<pb::Course> {
        let id = domain::id("id", request.into_inner().id)?;
        let course = self.catalog.publish(id).await?;
        Ok(Response::new(convert::course(&course)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ArchiveCourse"))]
    async fn archive_course(
        &self,
        request: Request<pb::ArchiveCourseRequest>,
    ) -> Reply<pb::Course> {
        let id = domain::id("id", request.into_inner().id)?;
        let course = self.catalog.archive(id).await?;
        Ok(Response::new(convert::course(&course)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateLesson"))]
    async fn create_lesson(&self, request: Request<pb::CreateLessonRequest>) -> Reply<pb::Lesson> {
        let draft = LessonDraft::try_from(request.into_inner())?;
        let lesson = self.catalog.create_lesson(draft).await?;
        Ok(Response::new(convert::lesson(&lesson)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateLesson"))]
    async fn update_lesson(&self, request: Request<pb::UpdateLessonRequest>) -> Reply<pb::Lesson> {
        let update = LessonUpdate::try_from(request.into_inner())?;
        let lesson = self.catalog.update_lesson(update).await?;
        Ok(Response::new(convert::lesson(&lesson)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "DeleteLesson"))]
    async fn delete_lesson(
        &self,
        request: Request<pb::DeleteLessonRequest>,
    ) -> Reply<pb::DeleteLessonResponse> {
        let id = domain::id("id", request.into_inner().id)?;
        self.catalog.delete_lesson(id).await?;
        Ok(Response::new(pb::DeleteLessonResponse {}))
    }

    #[tracing::instrument(skip_all, fields(rpc = "BatchGetLessons"))]
    async fn batch_get_lessons(
        &self,
        request: Request<pb::BatchGetLessonsRequest>,
    ) -> Reply<pb::BatchGetLessonsResponse> {
        let ids = requests::batch_ids("ids", request.into_inner().ids)?;
        let lessons = self.catalog.batch_get_lessons(&ids).await?;
        Ok(Response::new(pb::BatchGetLessonsResponse {
            lessons: lessons.iter().map(convert::lesson).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateExercise"))]
    async fn create_exercise(
        &self,
        request: Request<pb::CreateExerciseRequest>,
    ) -> Reply<pb::Exercise> {
        let draft = ExerciseDraft::try_from(request.into_inner())?;
        let exercise = self.catalog.create_exercise(draft).await?;
        Ok(Response::new(convert::exercise(&exercise)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateExercise"))]
    async fn update_exercise(
        &self,
        request: Request<pb::UpdateExerciseRequest>,
    ) -> Reply<pb::Exercise> {
        let update = ExerciseUpdate::try_from(request.into_inner())?;
        let exercise = self.catalog.update_exercise(update).await?;
        Ok(Response::new(convert::exercise(&exercise)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "DeleteExercise"))]
    async fn delete_exercise(
        &self,
        request: Request<pb::DeleteExerciseRequest>,
    ) -> Reply<pb::DeleteExerciseResponse> {
        let id = domain::id("id", request.into_inner().id)?;
        self.catalog.delete_exercise(id).await?;
        Ok(Response::new(pb::DeleteExerciseResponse {}))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetExercise"))]
    async fn get_exercise(&self, request: Request<pb::GetExerciseRequest>) -> Reply<pb::Exercise> {
        let id = domain::id("id", request.into_inner().id)?;
        let exercise = self.catalog.get_exercise(id).await?;
        Ok(Response::new(convert::exercise(&exercise)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListExercises"))]
    async fn list_exercises(
        &self,
        request: Request<pb::ListExercisesRequest>,
    ) -> Reply<pb::ListExercisesResponse> {
        let lesson_id = domain::id("lesson_id", request.into_inner().lesson_id)?;
        let exercises = self.catalog.list_exercises(lesson_id).await?;
        Ok(Response::new(pb::ListExercisesResponse {
            exercises: exercises.iter().map(convert::exercise).collect(),
        }))
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
