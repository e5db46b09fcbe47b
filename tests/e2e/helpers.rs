//! `spawn_platform`: the whole platform (`learnhub::Platform`) on port 0, each data service over
//! a throwaway database of its own, catalog-svc with the demo catalog, cache-svc on the real
//! Redis under a key prefix of the test's own.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use gateway::auth::{Role, issue_token};
use learnhub::{CacheStore, DemoData, GatewayUpstreams, PlatformConfig, Service, UpstreamHook};
use learnhub_db::{Backend, Db, testing::TestDatabase};
use learnhub_kit::{shutdown::CancellationToken, testing::eventually};
use learnhub_proto::{
    catalog::v1::{
        CourseStatus, GetCourseRequest, ListCoursesRequest, ListExercisesRequest,
        catalog_service_client::CatalogServiceClient, get_course_request::Key,
    },
    enrollment::v1::{
        CreateUserRequest, Role as UserRole, User,
        enrollment_service_client::EnrollmentServiceClient,
    },
    gateway::v1::gateway_service_client::GatewayServiceClient,
};
use reqwest::StatusCode;
use serde_json::Value;
use tonic::transport::Channel;

pub const SECRET: &str = "e2e-test-secret-of-at-least-32-bytes";

pub struct Platform {
    pub url: String,
    pub http: reqwest::Client,
    /// catalog-svc and enrollment-svc themselves (never through a call counter).
    pub catalog_url: String,
    pub enrollment_url: String,
    /// Each service's database; `profiler().rpcs()` counts the calls that reached it per RPC.
    pub catalog_db: Db,
    pub enrollment_db: Db,
    /// The calls the gateway made to each service, counted on the wire; only with
    /// [`spawn_counting_platform`].
    pub upstream_calls: Option<UpstreamCalls>,
    platform: learnhub::Platform,
    config: PlatformConfig,
    proxies_shutdown: CancellationToken,
    // Dropped last: the servers stop before their databases go.
    _catalog_database: TestDatabase,
    _enrollment_database: TestDatabase,
}

impl Drop for Platform {
    fn drop(&mut self) {
        self.proxies_shutdown.cancel();
    }
}

/// The gateway's calls to catalog-svc and to enrollment-svc.
#[derive(Clone)]
pub struct UpstreamCalls {
    pub catalog: CallCounter,
    pub enrollment: CallCounter,
}

/// gRPC calls that passed through a counting proxy, by method path.
#[derive(Clone, Default)]
pub struct CallCounter(Arc<Mutex<HashMap<String, u64>>>);

impl CallCounter {
    fn record(&self, path: &str) {
        *self.0.lock().unwrap().entry(path.to_owned()).or_default() += 1;
    }

    /// Every call so far by method name (`ListCourses`), health checks left out.
    pub fn snapshot(&self) -> HashMap<String, u64> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(path, _)| !path.starts_with("/grpc."))
            .map(|(path, count)| (path.rsplit('/').next().unwrap().to_owned(), *count))
            .collect()
    }

    /// The calls made since `before` (a snapshot), by method name; methods not called are absent.
    pub fn since(&self, before: &HashMap<String, u64>) -> HashMap<String, u64> {
        self.snapshot()
            .into_iter()
            .map(|(method, count)| {
                let earlier = before.get(&method).copied().unwrap_or(0);
                (method, count - earlier)
            })
            .filter(|(_, count)| *count > 0)
            .collect()
    }
}

/// A gRPC pass-through on 127.0.0.1:0 in front of `upstream` that counts every call.
async fn spawn_counting_proxy(
    upstream: &str,
    shutdown: CancellationToken,
) -> (String, CallCounter) {
    use axum::extract::{Request, State};
    use tonic::codegen::Service;

    async fn forward(
        State((channel, counter)): State<(Channel, CallCounter)>,
        request: Request,
    ) -> axum::response::Response {
        counter.record(request.uri().path());
        let mut channel = channel;
        let forwarded = async {
            std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
            channel.call(request.map(tonic::body::Body::new)).await
        };
        match forwarded.await {
            Ok(response) => response.map(axum::body::Body::new),
            Err(err) => {
                tonic::Status::unavailable(format!("proxy: {err}")).into_http::<axum::body::Body>()
            }
        }
    }

    let channel = tonic::transport::Endpoint::from_shared(upstream.to_owned())
        .unwrap()
        .connect_lazy();
    let counter = CallCounter::default();
    let router = axum::Router::new()
        .fallback(forward)
        .with_state((channel, counter.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tonic::transport::Server::builder()
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown.cancelled_owned(),
        );
    tokio::spawn(server);
    (format!("http://{addr}"), counter)
}

/// gateway + catalog-svc + enrollment-svc + cache-svc (on the real Redis, under a key prefix of
/// this test's own).
pub async fn spawn_platform(backend: Backend) -> Platform {
    spawn(backend, false, |_| {}).await
}

/// [`spawn_platform`] with `adjust` applied to its configuration first.
pub async fn spawn_platform_with(
    backend: Backend,
    adjust: impl FnOnce(&mut PlatformConfig),
) -> Platform {
    spawn(backend, false, adjust).await
}

/// [`spawn_platform`] with the gateway's calls to catalog-svc and enrollment-svc going through
/// counting proxies (`Platform::upstream_calls`).
pub async fn spawn_counting_platform(backend: Backend) -> Platform {
    spawn(backend, true, |_| {}).await
}

async fn spawn(
    backend: Backend,
    count_upstream_calls: bool,
    adjust: impl FnOnce(&mut PlatformConfig),
) -> Platform {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let (catalog_database, enrollment_database) =
        tokio::join!(TestDatabase::create(backend), TestDatabase::create(backend));
    let mut config = PlatformConfig::new(catalog_database.url(), enrollment_database.url(), SECRET);
    config.db_pool_size = 4;
    config.slow_query_ms = 1_000;
    config.upstream_timeout = Duration::from_secs(5);
    config.demo_data = DemoData::Catalog;
    config.cache = CacheStore::Redis {
        url: std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        key_prefix: Some(format!(
            "lh-test-e2e-{}-{}:",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )),
    };
    adjust(&mut config);
    let proxies_shutdown = CancellationToken::new();
    let counted = Arc::new(OnceLock::new());
    if count_upstream_calls {
        let (shutdown, counted) = (proxies_shutdown.clone(), counted.clone());
        config.gateway_upstreams = Some(UpstreamHook::new(move |services: GatewayUpstreams| {
            let (shutdown, counted) = (shutdown.clone(), counted.clone());
            async move {
                let (catalog, catalog_calls) =
                    spawn_counting_proxy(&services.catalog, shutdown.clone()).await;
                let (enrollment, enrollment_calls) =
                    spawn_counting_proxy(&services.enrollment, shutdown).await;
                let _ = counted.set(UpstreamCalls {
                    catalog: catalog_calls,
                    enrollment: enrollment_calls,
                });
                GatewayUpstreams {
                    catalog,
                    enrollment,
                }
            }
        }));
    }
    let platform = learnhub::Platform::start(&config)
        .await
        .expect("the platform starts");
    let config_kept = config.clone();
    assert!(
        platform.demo_seed().catalog.is_some(),
        "a fresh database gets the demo catalog"
    );
    Platform {
        url: platform.gateway_url(),
        http: reqwest::Client::new(),
        catalog_url: format!("http://{}", platform.catalog_addr().expect("a TCP port")),
        enrollment_url: format!("http://{}", platform.enrollment_addr().expect("a TCP port")),
        catalog_db: platform.catalog_db().clone(),
        enrollment_db: platform.enrollment_db().clone(),
        upstream_calls: counted.get().cloned(),
        platform,
        config: config_kept,
        proxies_shutdown,
        _catalog_database: catalog_database,
        _enrollment_database: enrollment_database,
    }
}

/// A user of enrollment-svc and a token naming them.
#[derive(Debug, Clone)]
pub struct Person {
    pub id: i64,
    pub email: String,
    pub token: String,
}

/// A published course with its lessons (position order) and an exercise of one of them.
#[derive(Debug, Clone)]
pub struct CourseWithExercise {
    pub id: i64,
    pub lessons: Vec<i64>,
    pub exercise: i64,
}

impl Platform {
    /// One more gateway in front of the platform's services, configured as the first.
    pub async fn replica_gateway(&self) -> ReplicaGateway {
        let config = self
            .platform
            .replica_gateway_config(&self.config)
            .expect("plaintext services");
        let app = gateway::Application::build(&config).await.unwrap();
        let url = format!("http://{}", app.local_addr());
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move { app.run_until_stopped(stop).await.unwrap() });
        ReplicaGateway {
            url,
            shutdown,
            task,
        }
    }

    /// Waits (bounded) until the gateway's near-cache is subscribed to cache-svc's invalidations,
    /// so what a test reads next is kept in it.
    pub async fn near_cache_live(&self) {
        near_cache_live(&self.http, &self.url).await;
    }

    /// `GET /v1/admin/cache/stats` as an admin.
    pub async fn cache_stats(&self) -> Value {
        cache_stats(&self.http, &self.url).await
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.url))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(format!("{}{path}", self.url))
    }

    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.patch(format!("{}{path}", self.url))
    }

    /// GET `path` and return its JSON, asserting 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {path}");
        response.json().await.unwrap()
    }

    /// GET `path` with `token` and return its JSON, asserting 200.
    pub async fn get_json_as(&self, token: &str, path: &str) -> Value {
        let response = self.get(path).bearer_auth(token).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// POST `body` to `path` with `token`: the status and the JSON answer.
    pub async fn post_json_as(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .post(path)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    pub async fn grpc(&self) -> GatewayServiceClient<Channel> {
        GatewayServiceClient::connect(self.url.clone())
            .await
            .unwrap()
    }

    /// enrollment-svc itself (users are created there, not through the gateway).
    pub async fn enrollment_svc(&self) -> EnrollmentServiceClient<Channel> {
        EnrollmentServiceClient::connect(self.enrollment_url.clone())
            .await
            .unwrap()
    }

    pub async fn catalog_svc(&self) -> CatalogServiceClient<Channel> {
        CatalogServiceClient::connect(self.catalog_url.clone())
            .await
            .unwrap()
    }

    /// A new user in enrollment-svc and a token for them (`sub` = their id).
    pub async fn create_user(&self, email: &str, role: UserRole) -> Person {
        let user: User = self
            .enrollment_svc()
            .await
            .create_user(CreateUserRequest {
                email: email.into(),
                display_name: email.split('@').next().unwrap().into(),
                role: role.into(),
            })
            .await
            .unwrap()
            .into_inner();
        let token_role = match role {
            UserRole::Admin => Role::Admin,
            _ => Role::Learner,
        };
        Person {
            id: user.id,
            email: user.email,
            token: token(token_role, &user.id.to_string()),
        }
    }

    pub async fn learner(&self, email: &str) -> Person {
        self.create_user(email, UserRole::Learner).await
    }

    pub async fn admin_user(&self, email: &str) -> Person {
        self.create_user(email, UserRole::Admin).await
    }

    /// The `skip`-th published course (id order) that has at least two lessons and an exercise.
    pub async fn course_with_exercise(&self, skip: usize) -> CourseWithExercise {
        let mut catalog = self.catalog_svc().await;
        let page = catalog
            .list_courses(ListCoursesRequest {
                status: CourseStatus::Published.into(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let mut found = Vec::new();
        for course in page.courses {
            let detail = catalog
                .get_course(GetCourseRequest {
                    key: Some(Key::Id(course.id)),
                })
                .await
                .unwrap()
                .into_inner();
            let lessons: Vec<i64> = detail.lessons.iter().map(|l| l.id).collect();
            if lessons.len() < 2 {
                continue;
            }
            for lesson in &lessons {
                let exercises = catalog
                    .list_exercises(ListExercisesRequest { lesson_id: *lesson })
                    .await
                    .unwrap()
                    .into_inner()
                    .exercises;
                if let Some(exercise) = exercises.first() {
                    found.push(CourseWithExercise {
                        id: course.id,
                        lessons: lessons.clone(),
                        exercise: exercise.id,
                    });
                    break;
                }
            }
            if found.len() > skip {
                return found.swap_remove(skip);
            }
        }
        panic!("the demo catalog has fewer than {} such courses", skip + 1);
    }

    /// A new draft course (through the admin route); its id.
    pub async fn draft_course(&self, slug: &str) -> i64 {
        let (status, body) = self
            .post_json_as(
                &admin(),
                "/v1/admin/courses",
                &serde_json::json!({
                    "slug": slug,
                    "title": "Not Yet",
                    "course_type": "python",
                    "category": "automation",
                }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Stops catalog-svc (the gateway keeps running) and waits for it to drain.
    pub async fn stop_catalog(&mut self) {
        self.platform.stop_service(Service::Catalog).await.unwrap();
    }
}

/// A gateway started by [`Platform::replica_gateway`].
pub struct ReplicaGateway {
    pub url: String,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ReplicaGateway {
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// `GET {base}/v1/admin/cache/stats` as an admin, on any gateway.
pub async fn cache_stats(http: &reqwest::Client, base: &str) -> Value {
    http.get(format!("{base}/v1/admin/cache/stats"))
        .bearer_auth(admin())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits (bounded) until the near-cache of the gateway at `base` is subscribed.
pub async fn near_cache_live(http: &reqwest::Client, base: &str) {
    eventually(
        "the gateway's near-cache is subscribed",
        Duration::from_secs(20),
        async || cache_stats(http, base).await["near_caches"][0]["live"] == true,
    )
    .await;
}

pub fn token(role: Role, subject: &str) -> String {
    issue_token(SECRET, subject, role, Duration::from_secs(600)).unwrap()
}

pub fn admin() -> String {
    token(Role::Admin, "1")
}

pub fn learner() -> String {
    token(Role::Learner, "2")
}

/// A token that expired long ago, otherwise valid.
pub fn expired(role: Role, subject: &str) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let claims = serde_json::json!({"sub": subject, "role": role, "exp": 1_000_000_000});
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap()
}

/// A token signed with another secret.
pub fn forged(role: Role, subject: &str) -> String {
    issue_token("not-the-secret", subject, role, Duration::from_secs(600)).unwrap()
}

/// A REST error: status, `code` and `message`.
pub async fn error_of(response: reqwest::Response) -> (StatusCode, String, String) {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// `message` in a gRPC request with `authorization: Bearer <token>` metadata.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Today's UTC date, `YYYY-MM-DD`.
pub fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

/// Every course of the catalog page for `query`, following next_page_token to the end.
pub async fn all_pages(platform: &Platform, query: &str) -> (Vec<Value>, usize) {
    let mut courses = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("/v1/catalog?{query}");
        if let Some(token) = &token {
            path.push_str(&format!("&page_token={token}"));
        }
        let page = platform.get_json(&path).await;
        pages += 1;
        courses.extend(page["courses"].as_array().unwrap().iter().cloned());
        match page["next_page_token"].as_str() {
            Some(next) => token = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 1_000, "pagination does not end");
    }
    (courses, pages)
}
