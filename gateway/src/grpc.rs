//! `learnhub.gateway.v1.GatewayService`: each RPC authenticates from the `authorization`
//! metadata and calls the shared operation.
use std::sync::Arc;

use learnhub_proto::{
    cache::v1::{CacheStats, GetStatsRequest, InvalidatePatternRequest, InvalidatePatternResponse},
    catalog::v1::{
        ArchiveCourseRequest, Course, CreateCourseRequest, GetCourseRequest, GetCourseResponse,
        ListCategoriesRequest, ListCategoriesResponse, PublishCourseRequest, UpdateCourseRequest,
    },
    common::v1::GetDbStatsRequest,
    enrollment::v1::{
        Enrollment, EnrollmentStatsRequest, EnrollmentStatsResponse, GetProgressRequest,
        ListEnrollmentsResponse, ListSubmissionsResponse, Progress, RecordLessonProgressRequest,
        Submission, User,
    },
    gateway::v1::{
        EnrollRequest, GetCatalogPageRequest, GetCatalogPageResponse, GetDbStatsResponse,
        GetMeRequest, GetUserRequest, ListMyEnrollmentsRequest, ListMySubmissionsRequest,
        SubmitExerciseRequest,
        gateway_service_server::{GatewayService, GatewayServiceServer},
    },
};
use tonic::{Request, Response, Status};

use crate::stale::{STALE_HEADER, Served};

use crate::{auth::Caller, error::Error, state::Gateway};

/// The gRPC face of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayGrpc {
    gateway: Arc<Gateway>,
}

impl GatewayGrpc {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    pub fn into_server(self) -> GatewayServiceServer<Self> {
        GatewayServiceServer::new(self)
    }

    /// The caller (from `authorization` metadata) and the message.
    fn open<T>(&self, request: Request<T>) -> Result<(Option<Caller>, T), Status> {
        let mut headers = request.metadata().get_all("authorization").iter();
        let header = headers.next();
        // Two credentials on one call: which one would be meant is a guess, so none is taken.
        if headers.next().is_some() {
            return Err(Status::invalid_argument(
                "authorization: send one authorization entry, not several",
            ));
        }
        let caller = self
            .gateway
            .authenticate(header.map(|value| value.as_bytes()))
            .map_err(|err| Error::from(err).to_status())?;
        if let Some(caller) = &caller {
            crate::access::note_caller(caller);
        }
        Ok((caller, request.into_inner()))
    }
}

fn reply<T>(result: Result<T, Error>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

/// [`reply`] for an answer that may be a stale copy: `x-learnhub-stale-seconds` in its metadata.
fn reply_served<T>(result: Result<Served<T>, Error>) -> Result<Response<T>, Status> {
    let served = result.map_err(Status::from)?;
    let stale = served.stale_seconds();
    let mut response = Response::new(served.value);
    if let Some(age) = stale.and_then(|age| age.parse().ok()) {
        response.metadata_mut().insert(STALE_HEADER, age);
    }
    Ok(response)
}

#[tonic::async_trait]
impl GatewayService for GatewayGrpc {
    #[tracing::instrument(skip_all, fields(rpc = "GetCatalogPage"))]
    async fn get_catalog_page(
        &self,
        request: Request<GetCatalogPageRequest>,
    ) -> Result<Response<GetCatalogPageResponse>, Status> {
        let (caller, message) = self.open(request)?;
        reply_served(self.gateway.catalog_page(caller.as_ref(), message).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCourse"))]
    async fn get_course(
        &self,
        request: Request<GetCourseRequest>,
    ) -> Result<Response<GetCourseResponse>, Status> {
        let (caller, message) = self.open(request)?;
        reply_served(self.gateway.course(caller.as_ref(), message.key).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListCategories"))]
    async fn list_categories(
        &self,
        request: Request<ListCategoriesRequest>,
    ) -> Result<Response<ListCategoriesResponse>, Status> {
        self.open(request)?;
        reply_served(self.gateway.categories().await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetMe"))]
    async fn get_me(&self, request: Request<GetMeRequest>) -> Result<Response<User>, Status> {
        let (caller, _) = self.open(request)?;
        reply(self.gateway.me(caller.as_ref()).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListMyEnrollments"))]
    async fn list_my_enrollments(
        &self,
        request: Request<ListMyEnrollmentsRequest>,
    ) -> Result<Response<ListEnrollmentsResponse>, Status> {
        let (caller, message) = self.open(request)?;
        reply(self.gateway.my_enrollments(caller.as_ref(), message).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "Enroll"))]
    async fn enroll(
        &self,
        request: Request<EnrollRequest>,
    ) -> Result<Response<Enrollment>, Status> {
        let (caller, message) = self.open(request)?;
        reply(self.gateway.enroll(caller.as_ref(), message).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "RecordProgress"))]
    async fn record_progress(
        &self,
        request: Request<RecordLessonProgressRequest>,
    ) -> Result<Response<Progress>, Status> {
        let (caller, message) = self.open(request)?;
        reply(self.gateway.record_progress(caller.as_ref(), message).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetProgress"))]
    async fn get_progress(
        &self,
        request: Request<GetProgressRequest>,
    ) -> Result<Response<Progress>, Status> {
        let (caller, message) = self.open(request)?;
        reply(self.gateway.progress(caller.as_ref(), message).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "SubmitExercise"))]
    async fn submit_exercise(
        &self,
        request: Request<SubmitExerciseRequest>,
    ) -> Result<Response<Submission>, Status> {
        let (caller, message) = self.open(request)?;
        reply(self.gateway.submit_exercise(caller.as_ref(), message).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListMySubmissions"))]
    async fn list_my_submissions(
        &self,
        request: Request<ListMySubmissionsRequest>,
    ) -> Result<Response<ListSubmissionsResponse>, Status> {
        let (caller, message) = self.open(request)?;
        reply(self.gateway.my_submissions(caller.as_ref(), message).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "CreateCourse"))]
    async fn create_course(
        &self,
        request: Request<CreateCourseRequest>,
    ) -> Result<Response<Course>, Status> {
        let (caller, message) = self.open(request)?;
        reply(self.gateway.create_course(caller.as_ref(), message).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateCourse"))]
    async fn update_course(
        &self,
        request: Request<UpdateCourseRequest>,
    ) -> Result<Response<Course>, Status> {
        let (caller, message) = self.open(request)?;
        reply(self.gateway.update_course(caller.as_ref(), message).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "PublishCourse"))]
    async fn publish_course(
        &self,
        request: Request<PublishCourseRequest>,
    ) -> Result<Response<Course>, Status> {
        let (caller, message) = self.open(request)?;
        reply(
            self.gateway
                .publish_course(caller.as_ref(), message.id)
                .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "ArchiveCourse"))]
    async fn archive_course(
        &self,
        request: Request<ArchiveCourseRequest>,
    ) -> Result<Response<Course>, Status> {
        let (caller, message) = self.open(request)?;
        reply(
            self.gateway
                .archive_course(caller.as_ref(), message.id)
                .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetUser"))]
    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let (caller, message) = self.open(request)?;
        reply(self.gateway.user(caller.as_ref(), message).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetEnrollmentStats"))]
    async fn get_enrollment_stats(
        &self,
        request: Request<EnrollmentStatsRequest>,
    ) -> Result<Response<EnrollmentStatsResponse>, Status> {
        let (caller, message) = self.open(request)?;
        reply(
            self.gateway
                .enrollment_stats(caller.as_ref(), message)
                .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetCacheStats"))]
    async fn get_cache_stats(
        &self,
        request: Request<GetStatsRequest>,
    ) -> Result<Response<CacheStats>, Status> {
        let (caller, _) = self.open(request)?;
        reply(self.gateway.cache_stats(caller.as_ref()).await)
    }

    #[tracing::instrument(skip_all, fields(rpc = "InvalidateCache"))]
    async fn invalidate_cache(
        &self,
        request: Request<InvalidatePatternRequest>,
    ) -> Result<Response<InvalidatePatternResponse>, Status> {
        let (caller, message) = self.open(request)?;
        reply(
            self.gateway
                .invalidate_cache(caller.as_ref(), message)
                .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetDbStats"))]
    async fn get_db_stats(
        &self,
        request: Request<GetDbStatsRequest>,
    ) -> Result<Response<GetDbStatsResponse>, Status> {
        let (caller, _) = self.open(request)?;
        reply(self.gateway.db_stats(caller.as_ref()).await)
    }
}
