//! Read-your-writes through the gateway under concurrency: a stress of 10^5 operations (reads
//! and acknowledged writes of course details, catalog pages, categories, a learner's
//! enrollments and progress) on the whole platform with cache-svc on the real Redis, and not
//! one read may show data older than a write acknowledged before the read was sent.
//!
//! Every service keeps its own cache client, as in production, so a read at the gateway can
//! never lean on the writer's process to have told it about the write: only cache-svc's leases
//! can (the defect this guards against let a read-back join a load begun before the write).
//! `LEARNHUB_STRESS_OPS` changes the number of operations (default 100,000).
use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Instant,
};

use learnhub_db::Backend;
use serde_json::{Value, json};

use crate::helpers::{Platform, admin, spawn_platform_with};

/// The category the publisher adds courses to (only it changes that category's count).
const CATEGORY: &str = "automation";
/// The catalog page every check reads: SQL courses only, which the publisher (adding Python
/// courses) never pushes off it; its summary counts every category.
const PAGE: &str = "/v1/catalog?type=sql&page_size=20";
/// Most courses the publisher adds; after that it checks counts only.
const MOST_PUBLISHED: u64 = 150;

/// What every worker shares: the operation budget, what has been acknowledged, what was stale.
struct Shared {
    platform: Platform,
    budget: usize,
    done: AtomicUsize,
    writes: AtomicUsize,
    /// Course id → the last title version acknowledged (titles read `Stress {id} v{n}`).
    titles: HashMap<i64, AtomicU64>,
    /// Published courses in [`CATEGORY`], as acknowledged.
    category_count: AtomicU64,
    stale: Mutex<Vec<String>>,
}

impl Shared {
    /// Takes one operation from the budget; false once it is spent.
    fn take(&self) -> bool {
        self.done.fetch_add(1, Ordering::Relaxed) < self.budget
    }

    fn stale(&self, what: String) {
        self.stale.lock().unwrap().push(what);
    }

    /// Every watched course in `courses` (catalog entries or a detail) shows at least the title
    /// acknowledged when the read was sent (`seen`).
    fn check_titles<'a>(
        &self,
        courses: impl IntoIterator<Item = &'a Value>,
        seen: &HashMap<i64, u64>,
        read: &str,
    ) {
        for course in courses {
            let id = course["id"].as_i64().unwrap();
            let Some(&acknowledged) = seen.get(&id) else {
                continue;
            };
            let version = title_version(course["title"].as_str().unwrap());
            if version < acknowledged {
                self.stale(format!(
                    "{read}: course {id} shows v{version}, v{acknowledged} was acknowledged"
                ));
            }
        }
    }

    fn acknowledged_titles(&self) -> HashMap<i64, u64> {
        self.titles
            .iter()
            .map(|(id, version)| (*id, version.load(Ordering::SeqCst)))
            .collect()
    }

    /// The category's published-course count on a categories list or a catalog summary is at
    /// least what was acknowledged when the read was sent.
    fn check_count(&self, categories: &Value, acknowledged: u64, read: &str) {
        let count = categories
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["slug"] == CATEGORY)
            .map_or(0, |c| c["course_count"].as_u64().unwrap());
        if count < acknowledged {
            self.stale(format!(
                "{read}: {CATEGORY} counts {count} courses, {acknowledged} were acknowledged"
            ));
        }
    }
}

/// `Stress {id} v{n}` → n; a demo title (never edited yet) is version 0.
fn title_version(title: &str) -> u64 {
    title
        .rsplit_once(" v")
        .filter(|_| title.starts_with("Stress "))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_after_an_acknowledged_write_is_stale() {
    let budget: usize = std::env::var("LEARNHUB_STRESS_OPS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    // The stress measures the cache, not the gateway's per-caller rate limits.
    let platform = spawn_platform_with(Backend::Postgres, |config| {
        config.gateway_limits = gateway::limits::LimitConfig::off();
    })
    .await;
    // The page's courses: two writers own two each, and learners enroll in those with lessons.
    let page = platform.get_json(PAGE).await;
    let first_page: Vec<i64> = page["courses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    let watched: Vec<i64> = first_page.iter().take(4).copied().collect();
    let mut with_lessons = Vec::new();
    for id in &first_page {
        let course = platform.get_json(&format!("/v1/courses/{id}")).await;
        let lessons: Vec<i64> = course["lessons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_i64().unwrap())
            .collect();
        if !lessons.is_empty() {
            with_lessons.push((*id, lessons));
        }
    }
    assert!(
        with_lessons.len() >= 5,
        "the demo catalog has courses with lessons"
    );
    let categories = platform.get_json("/v1/categories").await;
    let initial_count = categories["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["slug"] == CATEGORY)
        .map_or(0, |c| c["course_count"].as_u64().unwrap());
    let learners = [
        platform.learner("stress-one@example.com").await,
        platform.learner("stress-two@example.com").await,
    ];

    let shared = Arc::new(Shared {
        platform,
        budget,
        done: AtomicUsize::new(0),
        writes: AtomicUsize::new(0),
        titles: watched.iter().map(|id| (*id, AtomicU64::new(0))).collect(),
        category_count: AtomicU64::new(initial_count),
        stale: Mutex::new(Vec::new()),
    });
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (n, owned) in watched.chunks(2).enumerate() {
        workers.spawn(title_writer(shared.clone(), owned.to_vec(), n as u64));
    }
    workers.spawn(publisher(shared.clone()));
    for (n, learner) in learners.into_iter().enumerate() {
        workers.spawn(learner_worker(
            shared.clone(),
            learner.token,
            with_lessons.clone(),
            n as u64,
        ));
    }
    for n in 0..3 {
        workers.spawn(reader(shared.clone(), watched.clone(), 10 + n));
    }
    while let Some(worker) = workers.join_next().await {
        worker.unwrap();
    }
    let elapsed = started.elapsed();
    let done = shared.done.load(Ordering::Relaxed).min(budget);
    let writes = shared.writes.load(Ordering::Relaxed);
    let stale = shared.stale.lock().unwrap().clone();
    println!(
        "coherence stress: {done} operations ({writes} acknowledged writes, {} reads) in {:.1} s \
         ({:.0} operations/s), stale reads: {}",
        done - writes.min(done),
        elapsed.as_secs_f64(),
        done as f64 / elapsed.as_secs_f64(),
        stale.len()
    );
    assert!(done >= budget, "the whole budget ran");
    assert!(
        stale.is_empty(),
        "{} stale reads after acknowledged writes, first: {:#?}",
        stale.len(),
        &stale[..stale.len().min(10)]
    );
}

/// Edits the titles of the courses it owns; after each acknowledged edit it reads the course
/// and the catalog page back.
async fn title_writer(shared: Arc<Shared>, owned: Vec<i64>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let token = admin();
    let mut versions: HashMap<i64, u64> = owned.iter().map(|id| (*id, 0)).collect();
    while shared.take() {
        let id = owned[rng.usize(..owned.len())];
        let version = versions[&id] + 1;
        let response = shared
            .platform
            .patch(&format!("/v1/admin/courses/{id}"))
            .bearer_auth(&token)
            .json(&json!({ "title": format!("Stress {id} v{version}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "PATCH course {id}");
        versions.insert(id, version);
        shared.titles[&id].store(version, Ordering::SeqCst);
        shared.writes.fetch_add(1, Ordering::Relaxed);

        if shared.take() {
            let seen = shared.acknowledged_titles();
            let course = shared.platform.get_json(&format!("/v1/courses/{id}")).await;
            shared.check_titles([&course["course"]], &seen, "course read-back");
        }
        if shared.take() {
            let seen = shared.acknowledged_titles();
            let page = shared.platform.get_json(PAGE).await;
            shared.check_titles(
                page["courses"].as_array().unwrap(),
                &seen,
                "catalog read-back",
            );
        }
    }
}

/// Adds published courses to [`CATEGORY`] and reads the counts back.
async fn publisher(shared: Arc<Shared>) {
    let token = admin();
    let mut published = 0;
    while shared.take() {
        if published < MOST_PUBLISHED {
            let (status, created) = shared
                .platform
                .post_json_as(
                    &token,
                    "/v1/admin/courses",
                    &json!({
                        "slug": format!("stress-course-{published}"),
                        "title": format!("Stress course {published}"),
                        "course_type": "python",
                        "category": CATEGORY,
                    }),
                )
                .await;
            assert_eq!(status, 201, "{created}");
            let id = created["id"].as_i64().unwrap();
            let response = shared
                .platform
                .post(&format!("/v1/admin/courses/{id}/publish"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "publish {id}");
            published += 1;
            shared.category_count.fetch_add(1, Ordering::SeqCst);
            shared.writes.fetch_add(2, Ordering::Relaxed);
            shared.take();
        }
        if shared.take() {
            let acknowledged = shared.category_count.load(Ordering::SeqCst);
            let categories = shared.platform.get_json("/v1/categories").await;
            shared.check_count(
                &categories["categories"],
                acknowledged,
                "categories read-back",
            );
        }
        if shared.take() {
            let acknowledged = shared.category_count.load(Ordering::SeqCst);
            let page = shared.platform.get_json(PAGE).await;
            shared.check_count(
                &page["summary"]["categories"],
                acknowledged,
                "catalog summary read-back",
            );
        }
    }
}

/// One learner: enrolls and completes lessons, reading its enrollments and progress back.
async fn learner_worker(
    shared: Arc<Shared>,
    token: String,
    courses: Vec<(i64, Vec<i64>)>,
    seed: u64,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    // Enrollment id → the lessons completed, as acknowledged.
    let mut completed: HashMap<i64, BTreeSet<i64>> = HashMap::new();
    while shared.take() {
        let (course, lessons) = &courses[rng.usize(..courses.len())];
        let (status, enrollment) = shared
            .platform
            .post_json_as(&token, "/v1/enrollments", &json!({ "course_id": course }))
            .await;
        assert_eq!(status, 200, "{enrollment}");
        let enrollment = enrollment["id"].as_i64().unwrap();
        shared.writes.fetch_add(1, Ordering::Relaxed);
        if shared.take() {
            let mine = shared
                .platform
                .get_json_as(&token, "/v1/me/enrollments?page_size=100")
                .await;
            let listed = mine["enrollments"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["id"] == enrollment);
            if !listed {
                shared.stale(format!(
                    "enrollments read-back: enrollment {enrollment} (course {course}) missing"
                ));
            }
        }
        if !shared.take() {
            break;
        }
        let lesson = lessons[rng.usize(..lessons.len())];
        let path = format!("/v1/enrollments/{enrollment}/progress");
        let (status, answer) = shared
            .platform
            .post_json_as(
                &token,
                &path,
                &json!({"lesson_id": lesson, "completed": true}),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
        shared.writes.fetch_add(1, Ordering::Relaxed);
        let done = completed.entry(enrollment).or_default();
        done.insert(lesson);
        if shared.take() {
            let progress = shared.platform.get_json_as(&token, &path).await;
            let count = progress["completed_lessons"].as_u64().unwrap();
            if count < done.len() as u64 {
                shared.stale(format!(
                    "progress read-back: enrollment {enrollment} shows {count} lessons done, {} \
                     were acknowledged",
                    done.len()
                ));
            }
        }
    }
}

/// Reads course details, catalog pages and categories, checking each against what was
/// acknowledged before it was sent.
async fn reader(shared: Arc<Shared>, watched: Vec<i64>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    while shared.take() {
        let seen = shared.acknowledged_titles();
        let count = shared.category_count.load(Ordering::SeqCst);
        match rng.u8(..3) {
            0 => {
                let id = watched[rng.usize(..watched.len())];
                let course = shared.platform.get_json(&format!("/v1/courses/{id}")).await;
                shared.check_titles([&course["course"]], &seen, "course read");
            }
            1 => {
                let page = shared.platform.get_json(PAGE).await;
                shared.check_titles(page["courses"].as_array().unwrap(), &seen, "catalog read");
                for featured in page["summary"]["featured"].as_object().unwrap().values() {
                    shared.check_titles(featured.as_array().unwrap(), &seen, "featured read");
                }
                shared.check_count(
                    &page["summary"]["categories"],
                    count,
                    "catalog summary read",
                );
            }
            _ => {
                let categories = shared.platform.get_json("/v1/categories").await;
                shared.check_count(&categories["categories"], count, "categories read");
            }
        }
    }
}
