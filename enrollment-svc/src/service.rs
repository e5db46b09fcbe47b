//! The `learnhub.enrollment.v1.EnrollmentService` gRPC handlers: each validates its request into
//! a domain input (see `requests`), makes one learner operation and maps the result.
use learnhub_kit::enduser::EndUser;
use learnhub_proto::{
    common::v1 as common,
    enrollment::v1::{self as pb, enrollment_service_server::EnrollmentService},
};
use tonic::{Request, Response, Status};

use crate::{
    convert,
    domain::{
        self, Email, EnrollmentKey, EnrollmentQuery, EnrollmentStateQuery, ProgressUpdate,
        StatsRange, StatusChange, SubmissionQuery, UserDraft,
    },
    learners::Learners,
    models::enrollment::Enrollment,
    requests,
};

/// Default of `--max-submission-bytes`.
pub const DEFAULT_MAX_SUBMISSION_BYTES: usize = 64 * 1024;
/// How GetDbStats names this service.
const SERVICE: &str = "enrollment-svc";

pub(crate) struct EnrollmentApi {
    learners: Learners,
    max_submission_bytes: usize,
}

impl EnrollmentApi {
    pub(crate) fn new(learners: Learners, max_submission_bytes: usize) -> Self {
        Self {
            learners,
            max_submission_bytes,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Defence in depth behind the gateway's own checks: a learner the gateway forwarded as the end
/// user (`learnhub_kit::enduser`, over mutual TLS or in memory) may act only on its own learner
/// data; an admin, or a call that names no end user, on anyone's. PERMISSION_DENIED otherwise.
fn check_owner(user: Option<&EndUser>, user_id: i64, what: &str) -> Result<(), Status> {
    match user {
        Some(user) if !user.may_act_for(user_id) => Err(Status::permission_denied(format!(
            "end user {} may not {what} of user {user_id}",
            user.id
        ))),
        _ => Ok(()),
    }
}

/// The end user a request was made for, when the gateway named one.
fn end_user<T>(request: &Request<T>) -> Option<EndUser> {
    request.extensions().get::<EndUser>().cloned()
}

/// [`check_owner`] of an enrollment, as the domain's `allowed` callback.
fn owns<'a>(
    user: Option<&'a EndUser>,
    what: &'static str,
) -> impl FnOnce(&Enrollment) -> crate::error::Result<()> + 'a {
    move |enrollment| {
        check_owner(user, enrollment.user_id, what).map_err(learnhub_db::ServiceError::Status)
    }
}

#[tonic::async_trait]
impl EnrollmentService for EnrollmentApi {
    #[tracing::instrument(skip_all, fields(rpc = "CreateUser"))]
    async fn create_user(&self, request: Request<pb::CreateUserRequest>) -> Reply<pb::User> {
        let draft = UserDraft::try_from(request.into_inner())?;
        let user = self.learners.create_user(draft).await?;
        Ok(Response::new(convert::user(&user)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetUser"))]
    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::User> {
        let user = end_user(&request);
        let id = domain::id("id", request.into_inner().id)?;
        check_owner(user.as_ref(), id, "read the account")?;
        let user = self.learners.user(id).await?;
        Ok(Response::new(convert::user(&user)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetUserByEmail"))]
    async fn get_user_by_email(
        &self,
        request: Request<pb::GetUserByEmailRequest>,
    ) -> Reply<pb::User> {
        let email = Email::parse("email", &request.into_inner().email)?;
        let user = self.learners.user_by_email(&email).await?;
        Ok(Response::new(convert::user(&user)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "Enroll"))]
    async fn enroll(&self, request: Request<pb::EnrollRequest>) -> Reply<pb::Enrollment> {
        let user = end_user(&request);
        let key = EnrollmentKey::try_from(request.into_inner())?;
        check_owner(user.as_ref(), key.user_id, "enroll on behalf")?;
        let enrollment = self.learners.enroll(key).await?;
        Ok(Response::new(convert::enrollment(&enrollment)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListEnrollments"))]
    async fn list_enrollments(
        &self,
        request: Request<pb::ListEnrollmentsRequest>,
    ) -> Reply<pb::ListEnrollmentsResponse> {
        let user = end_user(&request);
        let query = EnrollmentQuery::try_from(request.into_inner())?;
        check_owner(user.as_ref(), query.user_id, "list the enrollments")?;
        let page = self.learners.list_enrollments(query).await?;
        Ok(Response::new(page))
    }

    #[tracing::instrument(skip_all, fields(rpc = "BatchGetEnrollmentState"))]
    async fn batch_get_enrollment_state(
        &self,
        request: Request<pb::BatchGetEnrollmentStateRequest>,
    ) -> Reply<pb::BatchGetEnrollmentStateResponse> {
        let user = end_user(&request);
        let query = EnrollmentStateQuery::try_from(request.into_inner())?;
        check_owner(user.as_ref(), query.user_id, "read the enrollments")?;
        let states = self.learners.enrollment_states(&query).await?;
        Ok(Response::new(convert::enrollment_states(&states)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateEnrollmentStatus"))]
    async fn update_enrollment_status(
        &self,
        request: Request<pb::UpdateEnrollmentStatusRequest>,
    ) -> Reply<pb::Enrollment> {
        let user = end_user(&request);
        let change = StatusChange::try_from(request.into_inner())?;
        if user.as_ref().is_some_and(|user| !user.admin) {
            // Only a learner's own: one more read, only for calls made for a learner.
            let enrollment = self.learners.enrollment(change.id).await?;
            check_owner(user.as_ref(), enrollment.user_id, "change the enrollment")?;
        }
        let enrollment = self.learners.update_status(change).await?;
        Ok(Response::new(convert::enrollment(&enrollment)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetEnrollment"))]
    async fn get_enrollment(
        &self,
        request: Request<pb::GetEnrollmentRequest>,
    ) -> Reply<pb::Enrollment> {
        let user = end_user(&request);
        let id = domain::id("id", request.into_inner().id)?;
        let enrollment = self.learners.enrollment(id).await?;
        check_owner(user.as_ref(), enrollment.user_id, "read the enrollment")?;
        Ok(Response::new(convert::enrollment(&enrollment)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "RecordLessonProgress"))]
    async fn record_lesson_progress(
        &self,
        request: Request<pb::RecordLessonProgressRequest>,
    ) -> Reply<pb::Progress> {
        let user = end_user(&request);
        let update = ProgressUpdate::try_from(request.into_inner())?;
        let progress = self
            .learners
            .record_progress(
                update,
                owns(user.as_ref(), "record progress in the enrollment"),
            )
            .await?;
        Ok(Response::new(progress))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetProgress"))]
    async fn get_progress(&self, request: Request<pb::GetProgressRequest>) -> Reply<pb::Progress> {
        let user = end_user(&request);
        let enrollment_id = domain::id("enrollment_id", request.into_inner().enrollment_id)?;
        let progress = self
            .learners
            .progress(enrollment_id, owns(user.as_ref(), "read the progress"))
            .await?;
        Ok(Response::new(progress))
    }

    #[tracing::instrument(skip_all, fields(rpc = "SubmitExercise"))]
    async fn submit_exercise(
        &self,
        request: Request<pb::SubmitExerciseRequest>,
    ) -> Reply<pb::Submission> {
        let user = end_user(&request);
        let draft = requests::submission_draft(request.into_inner(), self.max_submission_bytes)?;
        check_owner(user.as_ref(), draft.user_id, "submit on behalf")?;
        let submission = self.learners.submit(draft).await?;
        Ok(Response::new(convert::submission(&submission)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListSubmissions"))]
    async fn list_submissions(
        &self,
        request: Request<pb::ListSubmissionsRequest>,
    ) -> Reply<pb::ListSubmissionsResponse> {
        let user = end_user(&request);
        let query = SubmissionQuery::try_from(request.into_inner())?;
        check_owner(user.as_ref(), query.user_id, "read the submissions")?;
        let page = self.learners.submissions(query).await?;
        Ok(Response::new(convert::submission_page(&page)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "EnrollmentStats"))]
    async fn enrollment_stats(
        &self,
        request: Request<pb::EnrollmentStatsRequest>,
    ) -> Reply<pb::EnrollmentStatsResponse> {
        let range = StatsRange::try_from(request.into_inner())?;
        let stats = self.learners.stats(range).await?;
        Ok(Response::new(convert::stats(&stats)))
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetDbStats"))]
    async fn get_db_stats(
        &self,
        _request: Request<common::GetDbStatsRequest>,
    ) -> Reply<common::DbStats> {
        let db = self.learners.db();
        Ok(Response::new(db.profiler().to_proto(SERVICE, db.backend())))
    }

    #[tracing::instrument(skip_all, fields(rpc = "ResetDbStats"))]
    async fn reset_db_stats(
        &self,
        _request: Request<common::ResetDbStatsRequest>,
    ) -> Reply<common::ResetDbStatsResponse> {
        self.learners.db().profiler().reset();
        tracing::info!("query statistics reset");
        Ok(Response::new(common::ResetDbStatsResponse {}))
    }
}
