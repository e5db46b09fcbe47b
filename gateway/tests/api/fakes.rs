//! In-memory catalog-svc and enrollment-svc stand-ins, served on port 0 with health + reflection.
use std::sync::{
    Arc, Mutex,
    atomic::{AtomicUsize, Ordering},
};

use learnhub_kit::{server::serve, shutdown::CancellationToken};
use learnhub_proto::{
    Timestamp,
    catalog::v1::{
        self as catalog, catalog_service_server::CatalogService,
        catalog_service_server::CatalogServiceServer, get_course_request::Key,
    },
    common::v1 as common,
    enrollment::v1::{
        self as enrollment, enrollment_service_server::EnrollmentService,
        enrollment_service_server::EnrollmentServiceServer,
    },
};
use tokio::sync::Barrier;
use tonic::{Request, Response, Status, service::Routes};

type Reply<T> = Result<Response<T>, Status>;

fn unimplemented<T>() -> Reply<T> {
    Err(Status::unimplemented("not in the fake"))
}

pub fn course(
    id: i64,
    slug: &str,
    course_type: catalog::CourseType,
    status: catalog::CourseStatus,
) -> catalog::Course {
    catalog::Course {
        id,
        slug: slug.into(),
        title: format!("Course {id}"),
        summary: "A course".into(),
        course_type: course_type.into(),
        category_slug: "basics".into(),
        category_name: "Basics".into(),
        level: catalog::CourseLevel::Beginner.into(),
        status: status.into(),
        is_featured: id == 1,
        created_at: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        updated_at: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        published_at: (status == catalog::CourseStatus::Published).then_some(Timestamp {
            seconds: 1_700_000_100,
            nanos: 0,
        }),
    }
}

/// A catalog with three courses: 1 `py-basics` (published python), 2 `sql-joins` (published
/// sql), 3 `draft-one` (draft python). Course 4 is archived (publishing it fails).
pub struct FakeCatalog {
    pub courses: Vec<catalog::Course>,
    /// When set, ListCourses and GetCatalogSummary each wait for the other: a gateway that called
    /// them one after the other would hang until its timeout.
    pub rendezvous: Option<Arc<Barrier>>,
    pub list_calls: AtomicUsize,
    pub summary_calls: AtomicUsize,
    pub last_list: Mutex<Option<catalog::ListCoursesRequest>>,
    pub last_update: Mutex<Option<catalog::UpdateCourseRequest>>,
    /// ListCategories never answers (to exercise the gateway's timeout).
    pub hang_categories: bool,
    /// Every read answers UNAVAILABLE (catalog-svc down behind a live connection).
    pub down: std::sync::atomic::AtomicBool,
}

impl FakeCatalog {
    pub fn new() -> Self {
        use catalog::{CourseStatus::*, CourseType::*};
        Self {
            courses: vec![
                course(1, "py-basics", Python, Published),
                course(2, "sql-joins", Sql, Published),
                course(3, "draft-one", Python, Draft),
                course(4, "old-one", Sql, Archived),
            ],
            rendezvous: None,
            list_calls: AtomicUsize::new(0),
            summary_calls: AtomicUsize::new(0),
            last_list: Mutex::new(None),
            last_update: Mutex::new(None),
            hang_categories: false,
            down: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn up(&self) -> Result<(), Status> {
        if self.down.load(Ordering::SeqCst) {
            Err(Status::unavailable("catalog-svc is down"))
        } else {
            Ok(())
        }
    }

    fn find(&self, id: i64) -> Result<catalog::Course, Status> {
        self.courses
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("course {id} not found")))
    }
}

/// The fake as served (the test keeps another handle to read what it saw).
pub struct SharedCatalog(Arc<FakeCatalog>);

impl std::ops::Deref for SharedCatalog {
    type Target = FakeCatalog;

    fn deref(&self) -> &FakeCatalog {
        &self.0
    }
}

#[tonic::async_trait]
impl CatalogService for SharedCatalog {
    async fn list_courses(
        &self,
        request: Request<catalog::ListCoursesRequest>,
    ) -> Reply<catalog::ListCoursesResponse> {
        self.up()?;
        self.list_calls.fetch_add(1, Ordering::SeqCst);
        if let Some(barrier) = &self.rendezvous {
            barrier.wait().await;
        }
        let request = request.into_inner();
        *self.last_list.lock().unwrap() = Some(request.clone());
        if request.page_token == "garbage" {
            return Err(Status::invalid_argument(
                "page_token is not a token returned by this service",
            ));
        }
        let courses = self
            .courses
            .iter()
            .filter(|c| request.status == 0 || c.status == request.status)
            .filter(|c| request.course_type == 0 || c.course_type == request.course_type)
            .cloned()
            .collect();
        Ok(Response::new(catalog::ListCoursesResponse {
            courses,
            next_page_token: String::new(),
        }))
    }

    async fn get_course(
        &self,
        request: Request<catalog::GetCourseRequest>,
    ) -> Reply<catalog::GetCourseResponse> {
        self.up()?;
        let course = match request.into_inner().key {
            Some(Key::Id(id)) => self.find(id)?,
            Some(Key::Slug(slug)) => self
                .courses
                .iter()
                .find(|c| c.slug == slug)
                .cloned()
                .ok_or_else(|| Status::not_found(format!("course {slug:?} not found")))?,
            None => return Err(Status::invalid_argument("key: set id or slug")),
        };
        let lessons = vec![catalog::Lesson {
            id: course.id * 10,
            course_id: course.id,
            position: 1,
            title: "First".into(),
            body: "Hello".into(),
            created_at: None,
            updated_at: None,
        }];
        Ok(Response::new(catalog::GetCourseResponse {
            course: Some(course),
            lessons,
        }))
    }

    async fn batch_get_courses(
        &self,
        _: Request<catalog::BatchGetCoursesRequest>,
    ) -> Reply<catalog::BatchGetCoursesResponse> {
        unimplemented()
    }

    async fn get_catalog_summary(
        &self,
        _: Request<catalog::GetCatalogSummaryRequest>,
    ) -> Reply<catalog::GetCatalogSummaryResponse> {
        self.up()?;
        self.summary_calls.fetch_add(1, Ordering::SeqCst);
        if let Some(barrier) = &self.rendezvous {
            barrier.wait().await;
        }
        Ok(Response::new(catalog::GetCatalogSummaryResponse {
            course_counts: vec![
                catalog::CourseTypeCount {
                    course_type: catalog::CourseType::Python.into(),
                    count: 1,
                },
                catalog::CourseTypeCount {
                    course_type: catalog::CourseType::Sql.into(),
                    count: 1,
                },
            ],
            categories: vec![catalog::Category {
                id: 1,
                slug: "basics".into(),
                name: "Basics".into(),
                course_count: 2,
            }],
            featured_python: vec![self.courses[0].clone()],
            featured_sql: vec![],
        }))
    }

    async fn list_categories(
        &self,
        _: Request<catalog::ListCategoriesRequest>,
    ) -> Reply<catalog::ListCategoriesResponse> {
        self.up()?;
        if self.hang_categories {
            std::future::pending::<()>().await;
        }
        Ok(Response::new(catalog::ListCategoriesResponse {
            categories: vec![
                catalog::Category {
                    id: 1,
                    slug: "basics".into(),
                    name: "Basics".into(),
                    course_count: 2,
                },
                catalog::Category {
                    id: 2,
                    slug: "advanced".into(),
                    name: "Advanced".into(),
                    course_count: 0,
                },
            ],
        }))
    }

    async fn create_category(
        &self,
        _: Request<catalog::CreateCategoryRequest>,
    ) -> Reply<catalog::Category> {
        unimplemented()
    }

    async fn create_course(
        &self,
        request: Request<catalog::CreateCourseRequest>,
    ) -> Reply<catalog::Course> {
        let request = request.into_inner();
        if request.title.is_empty() {
            return Err(Status::invalid_argument("title must not be empty"));
        }
        if request.slug == "py-basics" {
            return Err(Status::already_exists("slug \"py-basics\" is taken"));
        }
        if request.slug == "boom" {
            return Err(Status::internal("relation \"courses\" does not exist"));
        }
        let mut created = course(
            99,
            &request.slug,
            catalog::CourseType::try_from(request.course_type).unwrap(),
            catalog::CourseStatus::Draft,
        );
        created.title = request.title;
        Ok(Response::new(created))
    }

    async fn update_course(
        &self,
        request: Request<catalog::UpdateCourseRequest>,
    ) -> Reply<catalog::Course> {
        let request = request.into_inner();
        let mut course = self.find(request.id)?;
        if let Some(title) = &request.title {
            course.title = title.clone();
        }
        *self.last_update.lock().unwrap() = Some(request);
        Ok(Response::new(course))
    }

    async fn publish_course(
        &self,
        request: Request<catalog::PublishCourseRequest>,
    ) -> Reply<catalog::Course> {
        let mut course = self.find(request.into_inner().id)?;
        if course.status == i32::from(catalog::CourseStatus::Archived) {
            return Err(Status::failed_precondition(
                "an archived course cannot be published",
            ));
        }
        course.status = catalog::CourseStatus::Published.into();
        Ok(Response::new(course))
    }

    async fn archive_course(
        &self,
        request: Request<catalog::ArchiveCourseRequest>,
    ) -> Reply<catalog::Course> {
        let mut course = self.find(request.into_inner().id)?;
        course.status = catalog::CourseStatus::Archived.into();
        Ok(Response::new(course))
    }

    async fn create_lesson(
        &self,
        _: Request<catalog::CreateLessonRequest>,
    ) -> Reply<catalog::Lesson> {
        unimplemented()
    }

    async fn update_lesson(
        &self,
        _: Request<catalog::UpdateLessonRequest>,
    ) -> Reply<catalog::Lesson> {
        unimplemented()
    }

    async fn delete_lesson(
        &self,
        _: Request<catalog::DeleteLessonRequest>,
    ) -> Reply<catalog::DeleteLessonResponse> {
        unimplemented()
    }

    async fn batch_get_lessons(
        &self,
        _: Request<catalog::BatchGetLessonsRequest>,
    ) -> Reply<catalog::BatchGetLessonsResponse> {
        unimplemented()
    }

    async fn create_exercise(
        &self,
        _: Request<catalog::CreateExerciseRequest>,
    ) -> Reply<catalog::Exercise> {
        unimplemented()
    }

    async fn update_exercise(
        &self,
        _: Request<catalog::UpdateExerciseRequest>,
    ) -> Reply<catalog::Exercise> {
        unimplemented()
    }

    async fn delete_exercise(
        &self,
        _: Request<catalog::DeleteExerciseRequest>,
    ) -> Reply<catalog::DeleteExerciseResponse> {
        unimplemented()
    }

    async fn get_exercise(
        &self,
        _: Request<catalog::GetExerciseRequest>,
    ) -> Reply<catalog::Exercise> {
        unimplemented()
    }

    async fn list_exercises(
        &self,
        _: Request<catalog::ListExercisesRequest>,
    ) -> Reply<catalog::ListExercisesResponse> {
        unimplemented()
    }

    async fn get_db_stats(&self, _: Request<common::GetDbStatsRequest>) -> Reply<common::DbStats> {
        Ok(Response::new(db_stats("catalog-svc")))
    }

    async fn reset_db_stats(
        &self,
        _: Request<common::ResetDbStatsRequest>,
    ) -> Reply<common::ResetDbStatsResponse> {
        unimplemented()
    }
}

/// What the fakes answer to GetDbStats: statements deliberately not in total-time order.
pub fn db_stats(service: &str) -> common::DbStats {
    let statement = |sql: &str, count: u64, total_ms: f64| common::StatementStats {
        statement: sql.into(),
        count,
        total_ms,
        avg_ms: total_ms / count as f64,
        ..Default::default()
    };
    common::DbStats {
        service: service.into(),
        backend: "sqlite".into(),
        since: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        totals: Some(common::DbTotals {
            statements: 6,
            rpc_calls: 2,
            ..Default::default()
        }),
        thresholds: Some(common::DbThresholds {
            slow_query_ms: 100.0,
            n_plus_one: 5,
        }),
        statements: vec![
            statement("SELECT small", 4, 1.0),
            statement("SELECT big", 2, 8.0),
        ],
        rpcs: vec![common::RpcDbStats {
            rpc: format!("/{service}/Get"),
            calls: 2,
            statements: 6,
            avg_statements: 3.0,
            max_statements: 3,
            db_time_ms: 9.0,
            ..Default::default()
        }],
    }
}

/// Enrollments 10 (user 1, course 1) and 20 (user 2, course 2); user 1 exists.
pub struct FakeEnrollment;

fn enrollment_row(id: i64) -> Result<enrollment::Enrollment, Status> {
    let (user_id, course_id) = match id {
        10 => (1, 1),
        20 => (2, 2),
        _ => return Err(Status::not_found(format!("enrollment {id} not found"))),
    };
    Ok(enrollment::Enrollment {
        id,
        user_id,
        course_id,
        status: enrollment::EnrollmentStatus::Active.into(),
        enrolled_at: Some(Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        }),
        completed_at: None,
    })
}

#[tonic::async_trait]
impl EnrollmentService for FakeEnrollment {
    async fn create_user(
        &self,
        _: Request<enrollment::CreateUserRequest>,
    ) -> Reply<enrollment::User> {
        unimplemented()
    }

    async fn get_user(
        &self,
        request: Request<enrollment::GetUserRequest>,
    ) -> Reply<enrollment::User> {
        let id = request.into_inner().id;
        Ok(Response::new(enrollment::User {
            id,
            email: format!("user{id}@example.com"),
            display_name: format!("User {id}"),
            role: enrollment::Role::Learner.into(),
            created_at: None,
        }))
    }

    async fn get_user_by_email(
        &self,
        _: Request<enrollment::GetUserByEmailRequest>,
    ) -> Reply<enrollment::User> {
        unimplemented()
    }

    async fn enroll(
        &self,
        request: Request<enrollment::EnrollRequest>,
    ) -> Reply<enrollment::Enrollment> {
        let request = request.into_inner();
        let mut row = enrollment_row(10)?;
        row.user_id = request.user_id;
        row.course_id = request.course_id;
        Ok(Response::new(row))
    }

    async fn list_enrollments(
        &self,
        _: Request<enrollment::ListEnrollmentsRequest>,
    ) -> Reply<enrollment::ListEnrollmentsResponse> {
        unimplemented()
    }

    async fn batch_get_enrollment_state(
        &self,
        request: Request<enrollment::BatchGetEnrollmentStateRequest>,
    ) -> Reply<enrollment::BatchGetEnrollmentStateResponse> {
        let request = request.into_inner();
        let states = [enrollment_row(10)?, enrollment_row(20)?]
            .into_iter()
            .filter(|row| {
                row.user_id == request.user_id && request.course_ids.contains(&row.course_id)
            })
            .map(|row| enrollment::EnrollmentState {
                enrollment: Some(row),
                completed_lessons: 1,
            })
            .collect();
        Ok(Response::new(enrollment::BatchGetEnrollmentStateResponse {
            states,
        }))
    }

    async fn update_enrollment_status(
        &self,
        _: Request<enrollment::UpdateEnrollmentStatusRequest>,
    ) -> Reply<enrollment::Enrollment> {
        unimplemented()
    }

    async fn get_enrollment(
        &self,
        request: Request<enrollment::GetEnrollmentRequest>,
    ) -> Reply<enrollment::Enrollment> {
        Ok(Response::new(enrollment_row(request.into_inner().id)?))
    }

    async fn record_lesson_progress(
        &self,
        request: Request<enrollment::RecordLessonProgressRequest>,
    ) -> Reply<enrollment::Progress> {
        let row = enrollment_row(request.into_inner().enrollment_id)?;
        Ok(Response::new(enrollment::Progress {
            enrollment: Some(row),
            lessons: vec![],
            completed_lessons: 1,
            total_lessons: 2,
            percent: 50.0,
        }))
    }

    async fn get_progress(
        &self,
        request: Request<enrollment::GetProgressRequest>,
    ) -> Reply<enrollment::Progress> {
        let row = enrollment_row(request.into_inner().enrollment_id)?;
        Ok(Response::new(enrollment::Progress {
            enrollment: Some(row),
            lessons: vec![],
            completed_lessons: 0,
            total_lessons: 2,
            percent: 0.0,
        }))
    }

    async fn submit_exercise(
        &self,
        request: Request<enrollment::SubmitExerciseRequest>,
    ) -> Reply<enrollment::Submission> {
        let request = request.into_inner();
        Ok(Response::new(enrollment::Submission {
            id: 1,
            user_id: request.user_id,
            exercise_id: request.exercise_id,
            code: request.code,
            passed: request.passed,
            score: request.score,
            submitted_at: None,
        }))
    }

    async fn list_submissions(
        &self,
        _: Request<enrollment::ListSubmissionsRequest>,
    ) -> Reply<enrollment::ListSubmissionsResponse> {
        unimplemented()
    }

    async fn enrollment_stats(
        &self,
        _: Request<enrollment::EnrollmentStatsRequest>,
    ) -> Reply<enrollment::EnrollmentStatsResponse> {
        unimplemented()
    }

    async fn get_db_stats(&self, _: Request<common::GetDbStatsRequest>) -> Reply<common::DbStats> {
        Ok(Response::new(db_stats("enrollment-svc")))
    }

    async fn reset_db_stats(
        &self,
        _: Request<common::ResetDbStatsRequest>,
    ) -> Reply<common::ResetDbStatsResponse> {
        unimplemented()
    }
}

/// A fake upstream served until the token is cancelled; returns its `http://` address.
pub async fn spawn_catalog(fake: Arc<FakeCatalog>, shutdown: &CancellationToken) -> String {
    let routes = Routes::new(CatalogServiceServer::new(SharedCatalog(fake)));
    spawn(routes, "learnhub.catalog.v1.CatalogService", shutdown).await
}

pub async fn spawn_enrollment(shutdown: &CancellationToken) -> String {
    let routes = Routes::new(EnrollmentServiceServer::new(FakeEnrollment));
    spawn(routes, "learnhub.enrollment.v1.EnrollmentService", shutdown).await
}

async fn spawn(routes: Routes, name: &'static str, shutdown: &CancellationToken) -> String {
    let listener = learnhub_kit::server::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = shutdown.clone();
    tokio::spawn(async move { serve(listener, routes, &[name], shutdown).await });
    format!("http://{addr}")
}

/// A "service" that accepts each connection and closes it at once: a transport failure that is
/// neither a refused connection nor a timeout.
pub async fn spawn_resetting(shutdown: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => drop(accepted),
                () = shutdown.cancelled() => return,
            }
        }
    });
    format!("http://{addr}")
}
