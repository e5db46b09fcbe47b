//! Test servers on port 0 with their own databases: a catalog-svc and the enrollment-svc that
//! calls it. Catalog fixtures go through catalog-svc's gRPC API, like production data would.
use std::sync::atomic::{AtomicU64, Ordering};

use enrollment_svc::{Application, Config};
use learnhub_db::{Backend, Db, DbArgs, testing::TestDatabase};
use learnhub_kit::shutdown::CancellationToken;
use learnhub_proto::{
    catalog::v1::{self as cat, catalog_service_client::CatalogServiceClient},
    enrollment::v1::{self as pb, enrollment_service_client::EnrollmentServiceClient},
};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

pub use learnhub_kit::testing::Partition;

pub type Client = EnrollmentServiceClient<Channel>;

/// A running catalog-svc.
pub struct CatalogServer {
    pub addr: String,
    pub client: CatalogServiceClient<Channel>,
    pub db: Db,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), learnhub_kit::server::ServeError>>>,
    _database: TestDatabase,
}

impl CatalogServer {
    pub async fn start() -> Self {
        let database = TestDatabase::create(Backend::Sqlite).await;
        let config = catalog_svc::Config {
            near_cache: Default::default(),
            listen: "127.0.0.1:0".into(),
            metrics_addr: String::new(),
            db: db_args(database.url()),
            cache_addr: None,
            no_migrate: false,
            tls: learnhub_kit::tls::TlsArgs::plaintext(),
            server_limits: learnhub_kit::limits::ServerLimits::default(),
        };
        let app = catalog_svc::Application::build(&config)
            .await
            .expect("catalog-svc starts");
        let addr = format!("http://{}", app.local_addr());
        let db = app.db().clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        let client = CatalogServiceClient::connect(addr.clone())
            .await
            .expect("connect to catalog-svc");
        Self {
            addr,
            client,
            db,
            shutdown,
            task: Some(task),
            _database: database,
        }
    }

    /// Stops the server and waits until it no longer accepts connections.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("catalog task")
                .expect("catalog-svc stops");
        }
    }
}

impl Drop for CatalogServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn db_args(url: &str) -> DbArgs {
    DbArgs {
        database_url: url.to_owned(),
        db_pool_size: 4,
        slow_query_ms: 1_000,
        n_plus_one_threshold: 5,
    }
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: Client,
    pub db: Db,
    pub catalog: CatalogServer,
    pub backend: Backend,
    config: Config,
    server: Server,
    database: TestDatabase,
}

type ServerTask = JoinHandle<Result<(), learnhub_kit::server::ServeError>>;

/// The running enrollment-svc: stopped when dropped.
struct Server {
    shutdown: CancellationToken,
    task: Option<ServerTask>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl Server {
    /// Stops the server and waits until its task (the outbox relay's too) has ended.
    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("enrollment-svc task")
                .expect("enrollment-svc stops cleanly");
        }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// An enrollment-svc on a fresh `backend` database, calling a fresh catalog-svc; `configure`
/// may change the settings (its `catalog_addr` starts as the catalog's).
pub async fn spawn_app_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
    let catalog = CatalogServer::start().await;
    let database = TestDatabase::create(backend).await;
    let mut config = Config::new("127.0.0.1:0", db_args(database.url()), catalog.addr.clone());
    configure(&mut config);
    start(config, catalog, backend, database).await
}

async fn start(
    config: Config,
    catalog: CatalogServer,
    backend: Backend,
    database: TestDatabase,
) -> TestApp {
    let app = Application::build(&config)
        .await
        .expect("enrollment-svc starts");
    let addr = app.local_addr();
    let db = app.db().clone();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = EnrollmentServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    TestApp {
        addr,
        client,
        db,
        catalog,
        backend,
        config,
        server: Server {
            shutdown,
            task: Some(task),
        },
        database,
    }
}

static NEXT: AtomicU64 = AtomicU64::new(1);

fn unique() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A course created in catalog-svc, with its lessons in position order and their exercises.
#[derive(Debug, Clone)]
pub struct Course {
    pub id: i64,
    pub lessons: Vec<i64>,
    pub exercises: Vec<i64>,
}

impl TestApp {
    /// Stops this enrollment-svc and lets go of everything it had in memory (its cache client,
    /// with any invalidation it was still retrying), then starts a new one on the same database
    /// and settings (and the same catalog-svc): what a restart of the process leaves.
    pub async fn restart(self) -> TestApp {
        let TestApp {
            client,
            db,
            catalog,
            backend,
            config,
            server,
            database,
            ..
        } = self;
        drop((client, db));
        server.stop().await;
        start(config, catalog, backend, database).await
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A course with `lessons` lessons (one exercise each), published or left as a draft.
    pub async fn course(&self, published: bool, lessons: usize) -> Course {
        let mut catalog = self.catalog.client.clone();
        let n = unique();
        let category = format!("topic-{n}");
        catalog
            .create_category(cat::CreateCategoryRequest {
                slug: category.clone(),
                name: format!("Topic {n}"),
            })
            .await
            .expect("create category");
        let course = catalog
            .create_course(cat::CreateCourseRequest {
                slug: format!("course-{n}"),
                title: format!("Course {n}"),
                summary: "A course.".into(),
                course_type: cat::CourseType::Python as i32,
                category,
                level: cat::CourseLevel::Beginner as i32,
                is_featured: false,
            })
            .await
            .expect("create course")
            .into_inner();
        let mut lesson_ids = Vec::new();
        let mut exercise_ids = Vec::new();
        for position in 1..=lessons {
            let lesson = catalog
                .create_lesson(cat::CreateLessonRequest {
                    course_id: course.id,
                    position: Some(position as i32),
                    title: format!("Lesson {position}"),
                    body: "Read, try, check.".into(),
                })
                .await
                .expect("create lesson")
                .into_inner();
            let exercise = catalog
                .create_exercise(cat::CreateExerciseRequest {
                    lesson_id: lesson.id,
                    title: format!("Exercise {position}"),
                    prompt: "Solve it.".into(),
                    starter_code: "# here\n".into(),
                })
                .await
                .expect("create exercise")
                .into_inner();
            lesson_ids.push(lesson.id);
            exercise_ids.push(exercise.id);
        }
        if published {
            catalog
                .publish_course(cat::PublishCourseRequest { id: course.id })
                .await
                .expect("publish");
        }
        Course {
            id: course.id,
            lessons: lesson_ids,
            exercises: exercise_ids,
        }
    }

    /// A learner with a unique email.
    pub async fn user(&self) -> pb::User {
        let n = unique();
        self.client()
            .create_user(pb::CreateUserRequest {
                email: format!("Learner{n}@Example.com"),
                display_name: format!("Learner {n}"),
                role: pb::Role::Unspecified as i32,
            })
            .await
            .expect("create user")
            .into_inner()
    }

    pub async fn enroll(&self, user_id: i64, course_id: i64) -> pb::Enrollment {
        self.client()
            .enroll(pb::EnrollRequest { user_id, course_id })
            .await
            .expect("enroll")
            .into_inner()
    }

    pub async fn complete_lesson(&self, enrollment_id: i64, lesson_id: i64) -> pb::Progress {
        self.client()
            .record_lesson_progress(pb::RecordLessonProgressRequest {
                enrollment_id,
                lesson_id,
                completed: true,
            })
            .await
            .expect("record progress")
            .into_inner()
    }

    /// SQL statements enrollment-svc ran while `call` ran.
    pub async fn statements<T>(&self, call: impl std::future::Future<Output = T>) -> (T, u64) {
        let before = self.db.profiler().statement_count();
        let result = call.await;
        (result, self.db.profiler().statement_count() - before)
    }
}

pub use learnhub_kit::testing::assert_status;
