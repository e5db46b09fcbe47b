//! The `learnhub.enrollment.v1.EnrollmentService` gRPC handlers: validate the request into
//! domain values, call one learner operation, map the result.
use learnhub_kit::{PageToken, page_token};
use learnhub_proto::{
    common::v1 as common,
    enrollment::v1::{self as pb, enrollment_service_server::EnrollmentService},
};
use tonic::{Request, Response, Status};

use crate::{
    convert,
    domain::{self, Email, EnrollmentStatus, Role, StatsRange},
    error::{Error, Result},
    learners::{Learners, SubmissionDraft, next_token},
};

pub const DEFAULT_PAGE_SIZE: i64 = 20;
pub const MAX_PAGE_SIZE: i64 = 100;
pub const MAX_BATCH_IDS: usize = 1_000;
/// Default of `--max-submission-bytes`.
pub const DEFAULT_MAX_SUBMISSION_BYTES: usize = 64 * 1024;
/// How GetDbStats names this service.
const SERVICE: &str = "enrollment-svc";

pub struct EnrollmentApi {
    learners: Learners,
    max_submission_bytes: usize,
}

impl EnrollmentApi {
    pub fn new(learners: Learners, max_submission_bytes: usize) -> Self {
        Self {
            learners,
            max_submission_bytes,
        }
    }
}

type Reply<T> = std::result::Result<Response<T>, Status>;

fn reply<T>(result: Result<T>) -> Reply<T> {
    result.map(Response::new).map_err(Status::from)
}

fn page(requested: i32, token: &str) -> Result<(i64, Option<i64>)> {
    let size = page_token::page_size(requested, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        .map_err(|reason| Error::invalid("page_size", reason))?;
    let before = PageToken::decode(token)
        .map_err(|err| Error::invalid("page_token", err.to_string()))?
        .map(|token| token.id);
    Ok((size, before))
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

#[tonic::async_trait]
impl EnrollmentService for EnrollmentApi {
    #[tracing::instrument(skip_all, fields(rpc = "CreateUser"))]
    async fn create_user(&self, request: Request<pb::CreateUserRequest>) -> Reply<pb::User> {
        let req = request.into_inner();
        reply(
            async {
                let email = Email::parse("email", &req.email)?;
                let display_name = domain::name(
                    "display_name",
                    &req.display_name,
                    domain::MAX_DISPLAY_NAME_CHARS,
                )?;
                let role = Role::from_pb(req.role)?.unwrap_or(Role::Learner);
                let user = self
                    .learners
                    .create_user(&email, display_name, role)
                    .await?;
                Ok(convert::user(&user))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetUser"))]
    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::User> {
        let id = request.into_inner().id;
        reply(
            async {
                let user = self.learners.user(domain::id("id", id)?).await?;
                Ok(convert::user(&user))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetUserByEmail"))]
    async fn get_user_by_email(
        &self,
        request: Request<pb::GetUserByEmailRequest>,
    ) -> Reply<pb::User> {
        let req = request.into_inner();
        reply(
            async {
                let email = Email::parse("email", &req.email)?;
                let user = self.learners.user_by_email(&email).await?;
                Ok(convert::user(&user))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "Enroll"))]
    async fn enroll(&self, request: Request<pb::EnrollRequest>) -> Reply<pb::Enrollment> {
        let req = request.into_inner();
        reply(
            async {
                let user_id = domain::id("user_id", req.user_id)?;
                let course_id = domain::id("course_id", req.course_id)?;
                let enrollment = self.learners.enroll(user_id, course_id).await?;
                Ok(convert::enrollment(&enrollment))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListEnrollments"))]
    async fn list_enrollments(
        &self,
        request: Request<pb::ListEnrollmentsRequest>,
    ) -> Reply<pb::ListEnrollmentsResponse> {
        let req = request.into_inner();
        reply(
            async {
                let user_id = domain::id("user_id", req.user_id)?;
                let status = EnrollmentStatus::from_pb(req.status)?;
                let (size, before) = page(req.page_size, &req.page_token)?;
                self.learners
                    .list_enrollments(user_id, status, before, size)
                    .await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "BatchGetEnrollmentState"))]
    async fn batch_get_enrollment_state(
        &self,
        request: Request<pb::BatchGetEnrollmentStateRequest>,
    ) -> Reply<pb::BatchGetEnrollmentStateResponse> {
        let req = request.into_inner();
        reply(
            async {
                let user_id = domain::id("user_id", req.user_id)?;
                ids("course_ids", &req.course_ids)?;
                let states = self
                    .learners
                    .enrollment_states(user_id, &req.course_ids)
                    .await?;
                Ok(pb::BatchGetEnrollmentStateResponse {
                    states: states
                        .iter()
                        .map(|(enrollment, completed_lessons)| pb::EnrollmentState {
                            enrollment: Some(convert::enrollment(enrollment)),
                            completed_lessons: *completed_lessons,
                        })
                        .collect(),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "UpdateEnrollmentStatus"))]
    async fn update_enrollment_status(
        &self,
        request: Request<pb::UpdateEnrollmentStatusRequest>,
    ) -> Reply<pb::Enrollment> {
        let req = request.into_inner();
        reply(
            async {
                let id = domain::id("id", req.id)?;
                let to = EnrollmentStatus::from_pb(req.status)?.ok_or_else(|| {
                    Error::invalid("status", "required: active, completed or dropped")
                })?;
                let enrollment = self.learners.update_status(id, to).await?;
                Ok(convert::enrollment(&enrollment))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetEnrollment"))]
    async fn get_enrollment(
        &self,
        request: Request<pb::GetEnrollmentRequest>,
    ) -> Reply<pb::Enrollment> {
        let id = request.into_inner().id;
        reply(
            async {
                let enrollment = self.learners.enrollment(domain::id("id", id)?).await?;
                Ok(convert::enrollment(&enrollment))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "RecordLessonProgress"))]
    async fn record_lesson_progress(
        &self,
        request: Request<pb::RecordLessonProgressRequest>,
    ) -> Reply<pb::Progress> {
        let req = request.into_inner();
        reply(
            async {
                let enrollment_id = domain::id("enrollment_id", req.enrollment_id)?;
                let lesson_id = domain::id("lesson_id", req.lesson_id)?;
                self.learners
                    .record_progress(enrollment_id, lesson_id, req.completed)
                    .await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "GetProgress"))]
    async fn get_progress(&self, request: Request<pb::GetProgressRequest>) -> Reply<pb::Progress> {
        let id = request.into_inner().enrollment_id;
        reply(
            async {
                self.learners
                    .progress(domain::id("enrollment_id", id)?)
                    .await
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "SubmitExercise"))]
    async fn submit_exercise(
        &self,
        request: Request<pb::SubmitExerciseRequest>,
    ) -> Reply<pb::Submission> {
        let req = request.into_inner();
        reply(
            async {
                let draft = SubmissionDraft {
                    user_id: domain::id("user_id", req.user_id)?,
                    exercise_id: domain::id("exercise_id", req.exercise_id)?,
                    code: domain::code(&req.code, self.max_submission_bytes)?,
                    passed: req.passed,
                    score: domain::score(req.score)?,
                };
                let submission = self.learners.submit(draft).await?;
                Ok(convert::submission(&submission))
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "ListSubmissions"))]
    async fn list_submissions(
        &self,
        request: Request<pb::ListSubmissionsRequest>,
    ) -> Reply<pb::ListSubmissionsResponse> {
        let req = request.into_inner();
        reply(
            async {
                let user_id = domain::id("user_id", req.user_id)?;
                let exercise_id = match req.exercise_id {
                    0 => None,
                    id => Some(domain::id("exercise_id", id)?),
                };
                let (size, before) = page(req.page_size, &req.page_token)?;
                let page = self
                    .learners
                    .submissions(user_id, exercise_id, before, size)
                    .await?;
                Ok(pb::ListSubmissionsResponse {
                    submissions: page.rows.iter().map(convert::submission).collect(),
                    next_page_token: next_token(page.next_before),
                })
            }
            .await,
        )
    }

    #[tracing::instrument(skip_all, fields(rpc = "EnrollmentStats"))]
    async fn enrollment_stats(
        &self,
        request: Request<pb::EnrollmentStatsRequest>,
    ) -> Reply<pb::EnrollmentStatsResponse> {
        let req = request.into_inner();
        reply(
            async {
                let range = StatsRange::parse(req.from.as_ref(), req.to.as_ref())?;
                let stats = self.learners.stats(range).await?;
                Ok(pb::EnrollmentStatsResponse {
                    days: stats
                        .days
                        .iter()
                        .map(|d| pb::DailyCount {
                            day: d.day.format("%Y-%m-%d").to_string(),
                            enrollments: d.enrollments,
                            completions: d.completions,
                        })
                        .collect(),
                    total_enrollments: stats.total_enrollments,
                    total_completions: stats.total_completions,
                    active_learners: stats.active_learners,
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
