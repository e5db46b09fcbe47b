//! catalog-svc as enrollment-svc uses it: whether a course is published, a course's lessons,
//! whether a lesson or exercise exists. Every call has a deadline; catalog-svc down or slow is
//! `Error::Unavailable`, never a hung request.
use std::time::Duration;

use learnhub_kit::client::{self, BadAddress, ClientOptions, ServiceChannel};
use learnhub_proto::catalog::v1::{self as pb, catalog_service_client::CatalogServiceClient};
use tonic::{Code, Status};

use crate::error::{Error, Result};

/// catalog-svc's page size limit for ListCourses.
const COURSE_PAGE: i32 = 100;

#[derive(Clone)]
pub struct CatalogClient {
    client: CatalogServiceClient<ServiceChannel>,
}

/// A course as enrollment cares about it.
#[derive(Debug, Clone, PartialEq)]
pub struct CourseOutline {
    pub id: i64,
    pub published: bool,
    /// Lesson ids in position order.
    pub lesson_ids: Vec<i64>,
}

impl CatalogClient {
    /// A client that connects on first use (and reconnects by itself), so enrollment-svc starts
    /// while catalog-svc is still starting; every call is bounded by `timeout`. A malformed
    /// address fails here.
    pub fn connect_lazy(addr: &str, timeout: Duration) -> Result<Self, BadAddress> {
        Self::connect(addr, &ClientOptions::new(timeout))
    }

    /// A client built by the kit's one constructor: balanced over every address the host name
    /// resolves to, trace context and a deadline on every call.
    pub fn connect(addr: &str, options: &ClientOptions) -> Result<Self, BadAddress> {
        let channel = client::connect("catalog-svc", "--catalog-addr", addr, options)?;
        Ok(Self {
            client: CatalogServiceClient::new(channel),
        })
    }

    /// The course's status and lessons (GetCourse: one call); `None` when there is no such course.
    pub async fn course(&self, id: i64) -> Result<Option<CourseOutline>> {
        let mut client = self.client.clone();
        let request = pb::GetCourseRequest {
            key: Some(pb::get_course_request::Key::Id(id)),
        };
        match client
            .get_course(request)
            .await
            .map(tonic::Response::into_inner)
        {
            Ok(found) => {
                let course = found.course.ok_or_else(|| {
                    Error::Internal("catalog-svc GetCourse answered without a course".into())
                })?;
                Ok(Some(CourseOutline {
                    id: course.id,
                    published: course.status == pb::CourseStatus::Published as i32,
                    lesson_ids: found.lessons.iter().map(|l| l.id).collect(),
                }))
            }
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(failed("GetCourse", status)),
        }
    }

    /// Whether the course is published (BatchGetCourses: the catalog reads one row, no
    /// lessons); `None` when there is no such course.
    pub async fn course_published(&self, id: i64) -> Result<Option<bool>> {
        let mut client = self.client.clone();
        let request = pb::BatchGetCoursesRequest { ids: vec![id] };
        let found = client
            .batch_get_courses(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| failed("BatchGetCourses", status))?;
        Ok(found
            .courses
            .iter()
            .find(|c| c.id == id)
            .map(|c| c.status == pb::CourseStatus::Published as i32))
    }

    /// The lessons among `ids` that exist (BatchGetLessons).
    pub async fn lessons(&self, ids: &[i64]) -> Result<Vec<pb::Lesson>> {
        let mut client = self.client.clone();
        let request = pb::BatchGetLessonsRequest { ids: ids.to_vec() };
        Ok(client
            .batch_get_lessons(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| failed("BatchGetLessons", status))?
            .lessons)
    }

    /// Whether the exercise exists (GetExercise).
    pub async fn exercise_exists(&self, id: i64) -> Result<bool> {
        let mut client = self.client.clone();
        match client
            .get_exercise(pb::GetExerciseRequest { id })
            .await
            .map(tonic::Response::into_inner)
        {
            Ok(_) => Ok(true),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(failed("GetExercise", status)),
        }
    }

    /// Every published course id, paging through ListCourses (for the seed).
    pub async fn published_course_ids(&self) -> Result<Vec<i64>> {
        let mut ids = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut client = self.client.clone();
            let request = pb::ListCoursesRequest {
                status: pb::CourseStatus::Published as i32,
                page_size: COURSE_PAGE,
                page_token,
                ..Default::default()
            };
            let page = client
                .list_courses(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| failed("ListCourses", status))?;
            ids.extend(page.courses.iter().map(|c| c.id));
            if page.next_page_token.is_empty() {
                return Ok(ids);
            }
            page_token = page.next_page_token;
        }
    }

    /// The exercise ids of one lesson (for the seed).
    pub async fn exercise_ids(&self, lesson_id: i64) -> Result<Vec<i64>> {
        let mut client = self.client.clone();
        let request = pb::ListExercisesRequest { lesson_id };
        Ok(client
            .list_exercises(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| failed("ListExercises", status))?
            .exercises
            .iter()
            .map(|e| e.id)
            .collect())
    }
}

/// A catalog-svc failure as this service reports it: unreachable, overloaded, slow or a broken
/// connection (which tonic reports as UNKNOWN) is UNAVAILABLE (retryable); any other answer
/// means a bug on one side and is internal.
fn failed(rpc: &str, status: Status) -> Error {
    match status.code() {
        Code::Unavailable
        | Code::Unknown
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::ResourceExhausted
        | Code::Aborted => Error::Unavailable(format!(
            "catalog-svc unavailable ({rpc}: {})",
            status.message()
        )),
        code => Error::Internal(format!(
            "catalog-svc {rpc} failed: {code:?} {}",
            status.message()
        )),
    }
}
