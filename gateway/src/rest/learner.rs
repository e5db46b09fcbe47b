//! REST routes on learners' own data (learner token) and the admin views of users and
//! enrollment analytics. The caller's user id always comes from the token.
use std::sync::Arc;

use axum::{Json, extract::State, http::StatusCode};
use chrono::{DateTime, NaiveDate, Utc};
use learnhub_proto::{
    Timestamp,
    enrollment::v1::{
        DailyCount, EnrollmentStatsRequest, EnrollmentStatsResponse, EnrollmentStatus,
        GetProgressRequest, ListEnrollmentsResponse, ListSubmissionsResponse, Progress,
        RecordLessonProgressRequest, Role as UserRole, Submission, User,
    },
    gateway::v1::{
        EnrollRequest, GetUserRequest, ListMyEnrollmentsRequest, ListMySubmissionsRequest,
        SubmitExerciseRequest, get_user_request::Key as UserKey,
    },
};
use serde::{Deserialize, Serialize};

use super::{
    extract::{AdminCaller, JsonBody, LearnerCaller, PathSegment, QueryParams},
    json::{EnrollmentJson, rfc3339},
};
use crate::{catalog::MAX_PAGE_SIZE, error::Error, state::Gateway};

#[derive(Debug, Serialize)]
pub struct UserJson {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub role: &'static str,
    pub created_at: Option<String>,
}

impl From<User> for UserJson {
    fn from(user: User) -> Self {
        Self {
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            role: match UserRole::try_from(user.role) {
                Ok(UserRole::Admin) => "admin",
                Ok(UserRole::Learner) => "learner",
                _ => "unspecified",
            },
            created_at: rfc3339(user.created_at.as_ref()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EnrollmentsJson {
    pub enrollments: Vec<EnrollmentJson>,
    pub next_page_token: Option<String>,
}

impl From<ListEnrollmentsResponse> for EnrollmentsJson {
    fn from(page: ListEnrollmentsResponse) -> Self {
        Self {
            enrollments: page.enrollments.into_iter().map(Into::into).collect(),
            next_page_token: Some(page.next_page_token).filter(|t| !t.is_empty()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LessonProgressJson {
    pub lesson_id: i64,
    pub completed: bool,
    pub completed_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ProgressJson {
    pub enrollment: Option<EnrollmentJson>,
    pub lessons: Vec<LessonProgressJson>,
    pub completed_lessons: i64,
    pub total_lessons: i64,
    pub percent: f64,
}

impl From<Progress> for ProgressJson {
    fn from(progress: Progress) -> Self {
        Self {
            enrollment: progress.enrollment.map(Into::into),
            lessons: progress
                .lessons
                .into_iter()
                .map(|lesson| LessonProgressJson {
                    lesson_id: lesson.lesson_id,
                    completed: lesson.completed,
                    completed_at: rfc3339(lesson.completed_at.as_ref()),
                })
                .collect(),
            completed_lessons: progress.completed_lessons,
            total_lessons: progress.total_lessons,
            percent: progress.percent,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SubmissionJson {
    pub id: i64,
    pub user_id: i64,
    pub exercise_id: i64,
    pub code: String,
    pub passed: bool,
    pub score: i32,
    pub submitted_at: Option<String>,
}

impl From<Submission> for SubmissionJson {
    fn from(s: Submission) -> Self {
        Self {
            id: s.id,
            user_id: s.user_id,
            exercise_id: s.exercise_id,
            code: s.code,
            passed: s.passed,
            score: s.score,
            submitted_at: rfc3339(s.submitted_at.as_ref()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SubmissionsJson {
    pub submissions: Vec<SubmissionJson>,
    pub next_page_token: Option<String>,
}

impl From<ListSubmissionsResponse> for SubmissionsJson {
    fn from(page: ListSubmissionsResponse) -> Self {
        Self {
            submissions: page.submissions.into_iter().map(Into::into).collect(),
            next_page_token: Some(page.next_page_token).filter(|t| !t.is_empty()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EnrollmentStatsJson {
    pub days: Vec<DailyCountJson>,
    pub total_enrollments: i64,
    pub total_completions: i64,
    pub active_learners: i64,
}

#[derive(Debug, Serialize)]
pub struct DailyCountJson {
    pub day: String,
    pub enrollments: i64,
    pub completions: i64,
}

impl From<EnrollmentStatsResponse> for EnrollmentStatsJson {
    fn from(stats: EnrollmentStatsResponse) -> Self {
        Self {
            days: stats
                .days
                .into_iter()
                .map(
                    |DailyCount {
                         day,
                         enrollments,
                         completions,
                     }| DailyCountJson {
                        day,
                        enrollments,
                        completions,
                    },
                )
                .collect(),
            total_enrollments: stats.total_enrollments,
            total_completions: stats.total_completions,
            active_learners: stats.active_learners,
        }
    }
}

/// `?status=active|completed|dropped&page_size=&page_token=`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub status: Option<String>,
    pub page_size: Option<String>,
    pub page_token: Option<String>,
}

/// A REST `page_size`: absent or empty is the default (0); else an integer in 1..=100.
pub(crate) fn page_size(text: Option<String>) -> Result<i32, Error> {
    match text.filter(|t| !t.is_empty()) {
        None => Ok(0),
        Some(text) => match text.parse::<i32>() {
            Ok(size) if (1..=MAX_PAGE_SIZE).contains(&size) => Ok(size),
            _ => Err(Error::invalid(format!(
                "page_size: must be an integer between 1 and {MAX_PAGE_SIZE}, got {text:?}"
            ))),
        },
    }
}

fn enrollment_status(text: Option<String>) -> Result<EnrollmentStatus, Error> {
    match text.as_deref().filter(|t| !t.is_empty()) {
        None => Ok(EnrollmentStatus::Unspecified),
        Some("active") => Ok(EnrollmentStatus::Active),
        Some("completed") => Ok(EnrollmentStatus::Completed),
        Some("dropped") => Ok(EnrollmentStatus::Dropped),
        Some(other) => Err(Error::invalid(format!(
            "status: must be active, completed or dropped, got {other:?}"
        ))),
    }
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/me"))]
pub async fn me(
    State(gateway): State<Arc<Gateway>>,
    LearnerCaller(caller): LearnerCaller,
) -> Result<Json<UserJson>, Error> {
    Ok(Json(gateway.me(Some(&caller)).await?.into()))
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/me/enrollments"))]
pub async fn my_enrollments(
    State(gateway): State<Arc<Gateway>>,
    LearnerCaller(caller): LearnerCaller,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<EnrollmentsJson>, Error> {
    let request = ListMyEnrollmentsRequest {
        status: enrollment_status(query.status)?.into(),
        page_size: page_size(query.page_size)?,
        page_token: query.page_token.unwrap_or_default(),
    };
    Ok(Json(
        gateway.my_enrollments(Some(&caller), request).await?.into(),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollJson {
    pub course_id: i64,
}

#[tracing::instrument(skip_all, fields(route = "POST /v1/enrollments"))]
pub async fn enroll(
    State(gateway): State<Arc<Gateway>>,
    LearnerCaller(caller): LearnerCaller,
    JsonBody(body): JsonBody<EnrollJson>,
) -> Result<Json<EnrollmentJson>, Error> {
    let request = EnrollRequest {
        course_id: body.course_id,
    };
    Ok(Json(gateway.enroll(Some(&caller), request).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressBodyJson {
    pub lesson_id: i64,
    #[serde(default = "yes")]
    pub completed: bool,
}

fn yes() -> bool {
    true
}

#[tracing::instrument(skip_all, fields(route = "POST /v1/enrollments/{id}/progress", id = %id.0))]
pub async fn record_progress(
    State(gateway): State<Arc<Gateway>>,
    LearnerCaller(caller): LearnerCaller,
    id: PathSegment,
    JsonBody(body): JsonBody<ProgressBodyJson>,
) -> Result<Json<ProgressJson>, Error> {
    let request = RecordLessonProgressRequest {
        enrollment_id: id.id()?,
        lesson_id: body.lesson_id,
        completed: body.completed,
    };
    Ok(Json(
        gateway
            .record_progress(Some(&caller), request)
            .await?
            .into(),
    ))
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/enrollments/{id}/progress", id = %id.0))]
pub async fn progress(
    State(gateway): State<Arc<Gateway>>,
    LearnerCaller(caller): LearnerCaller,
    id: PathSegment,
) -> Result<Json<ProgressJson>, Error> {
    let request = GetProgressRequest {
        enrollment_id: id.id()?,
    };
    Ok(Json(gateway.progress(Some(&caller), request).await?.into()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionBodyJson {
    pub code: String,
    #[serde(default)]
    pub passed: bool,
    #[serde(default)]
    pub score: i32,
}

#[tracing::instrument(skip_all, fields(route = "POST /v1/exercises/{id}/submissions", id = %id.0))]
pub async fn submit(
    State(gateway): State<Arc<Gateway>>,
    LearnerCaller(caller): LearnerCaller,
    id: PathSegment,
    JsonBody(body): JsonBody<SubmissionBodyJson>,
) -> Result<(StatusCode, Json<SubmissionJson>), Error> {
    let request = SubmitExerciseRequest {
        exercise_id: id.id()?,
        code: body.code,
        passed: body.passed,
        score: body.score,
    };
    let submission = gateway.submit_exercise(Some(&caller), request).await?;
    Ok((StatusCode::CREATED, Json(submission.into())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmissionsQuery {
    pub page_size: Option<String>,
    pub page_token: Option<String>,
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/exercises/{id}/submissions", id = %id.0))]
pub async fn submissions(
    State(gateway): State<Arc<Gateway>>,
    LearnerCaller(caller): LearnerCaller,
    id: PathSegment,
    QueryParams(query): QueryParams<SubmissionsQuery>,
) -> Result<Json<SubmissionsJson>, Error> {
    let request = ListMySubmissionsRequest {
        exercise_id: id.id()?,
        page_size: page_size(query.page_size)?,
        page_token: query.page_token.unwrap_or_default(),
    };
    Ok(Json(
        gateway.my_submissions(Some(&caller), request).await?.into(),
    ))
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/admin/users/{key}", admin = %admin.subject))]
pub async fn user(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
    key: PathSegment,
) -> Result<Json<UserJson>, Error> {
    let key = if key.0.contains('@') {
        UserKey::Email(key.0)
    } else {
        UserKey::Id(key.id()?)
    };
    let request = GetUserRequest { key: Some(key) };
    Ok(Json(gateway.user(Some(&admin), request).await?.into()))
}

/// `?from=YYYY-MM-DD&to=YYYY-MM-DD` (UTC days, `to` exclusive) or RFC 3339 instants.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    pub from: Option<String>,
    pub to: Option<String>,
}

fn instant(field: &str, text: Option<String>) -> Result<Timestamp, Error> {
    let text = text
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::invalid(format!("{field}: required (YYYY-MM-DD or RFC 3339)")))?;
    let at: DateTime<Utc> = if let Ok(day) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        day.and_hms_opt(0, 0, 0)
            .map(|at| at.and_utc())
            .ok_or_else(|| Error::invalid(format!("{field}: not a date: {text:?}")))?
    } else {
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|_| {
                Error::invalid(format!(
                    "{field}: expected YYYY-MM-DD or RFC 3339, got {text:?}"
                ))
            })?
    };
    Ok(Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    })
}

#[tracing::instrument(skip_all, fields(route = "GET /v1/admin/stats/enrollments", admin = %admin.subject))]
pub async fn enrollment_stats(
    State(gateway): State<Arc<Gateway>>,
    AdminCaller(admin): AdminCaller,
    QueryParams(query): QueryParams<StatsQuery>,
) -> Result<Json<EnrollmentStatsJson>, Error> {
    let request = EnrollmentStatsRequest {
        from: Some(instant("from", query.from)?),
        to: Some(instant("to", query.to)?),
    };
    Ok(Json(
        gateway
            .enrollment_stats(Some(&admin), request)
            .await?
            .into(),
    ))
}
