//! REST JSON shapes: enums as lowercase strings, timestamps as RFC 3339, absent values as null.
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use learnhub_kit::validate::{self, Invalid, MAX_SUMMARY_CHARS, MAX_TITLE_CHARS};
use learnhub_proto::{
    Timestamp,
    catalog::v1::{
        Category, Course, CourseLevel, CourseStatus, CourseType, CreateCourseRequest,
        GetCatalogSummaryResponse, GetCourseResponse, Lesson, UpdateCourseRequest,
    },
    enrollment::v1::{Enrollment, EnrollmentStatus},
    gateway::v1::{CourseEntry, GetCatalogPageResponse},
};
use serde::{Deserialize, Serialize};

use crate::rest::extract::RequestBody;

pub(crate) fn rfc3339(ts: Option<&Timestamp>) -> Option<String> {
    let ts = ts?;
    let nanos = u32::try_from(ts.nanos).ok()?;
    DateTime::<Utc>::from_timestamp(ts.seconds, nanos)
        .map(|at| at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

fn course_type_name(value: i32) -> &'static str {
    match CourseType::try_from(value) {
        Ok(CourseType::Python) => "python",
        Ok(CourseType::Sql) => "sql",
        _ => "unspecified",
    }
}

fn level_name(value: i32) -> &'static str {
    match CourseLevel::try_from(value) {
        Ok(CourseLevel::Beginner) => "beginner",
        Ok(CourseLevel::Intermediate) => "intermediate",
        Ok(CourseLevel::Advanced) => "advanced",
        _ => "unspecified",
    }
}

fn status_name(value: i32) -> &'static str {
    match CourseStatus::try_from(value) {
        Ok(CourseStatus::Draft) => "draft",
        Ok(CourseStatus::Published) => "published",
        Ok(CourseStatus::Archived) => "archived",
        _ => "unspecified",
    }
}

fn enrollment_status_name(value: i32) -> &'static str {
    match EnrollmentStatus::try_from(value) {
        Ok(EnrollmentStatus::Active) => "active",
        Ok(EnrollmentStatus::Completed) => "completed",
        Ok(EnrollmentStatus::Dropped) => "dropped",
        _ => "unspecified",
    }
}

#[derive(Debug, Serialize)]
pub struct CategoryRefJson {
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Serialize)]
pub struct CourseJson {
    pub id: i64,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub course_type: &'static str,
    pub category: CategoryRefJson,
    pub level: &'static str,
    pub status: &'static str,
    pub is_featured: bool,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub published_at: Option<String>,
}

impl From<Course> for CourseJson {
    fn from(course: Course) -> Self {
        Self {
            id: course.id,
            course_type: course_type_name(course.course_type),
            level: level_name(course.level),
            status: status_name(course.status),
            is_featured: course.is_featured,
            created_at: rfc3339(course.created_at.as_ref()),
            updated_at: rfc3339(course.updated_at.as_ref()),
            published_at: rfc3339(course.published_at.as_ref()),
            category: CategoryRefJson {
                slug: course.category_slug,
                name: course.category_name,
            },
            slug: course.slug,
            title: course.title,
            summary: course.summary,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EnrollmentJson {
    pub id: i64,
    pub user_id: i64,
    pub course_id: i64,
    pub status: &'static str,
    pub enrolled_at: Option<String>,
    pub completed_at: Option<String>,
}

impl From<Enrollment> for EnrollmentJson {
    fn from(enrollment: Enrollment) -> Self {
        Self {
            id: enrollment.id,
            user_id: enrollment.user_id,
            course_id: enrollment.course_id,
            status: enrollment_status_name(enrollment.status),
            enrolled_at: rfc3339(enrollment.enrolled_at.as_ref()),
            completed_at: rfc3339(enrollment.completed_at.as_ref()),
        }
    }
}

/// A course on the catalog page; `enrollment` and `completed_lessons` appear only when the
/// caller is enrolled in it.
#[derive(Debug, Serialize)]
pub struct CatalogEntryJson {
    #[serde(flatten)]
    pub course: Option<CourseJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<EnrollmentJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_lessons: Option<i64>,
}

impl From<CourseEntry> for CatalogEntryJson {
    fn from(entry: CourseEntry) -> Self {
        let enrolled = entry.enrollment.is_some();
        Self {
            course: entry.course.map(CourseJson::from),
            enrollment: entry.enrollment.map(EnrollmentJson::from),
            completed_lessons: enrolled.then_some(entry.completed_lessons),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CategoryJson {
    pub slug: String,
    pub name: String,
    pub course_count: i64,
}

impl From<Category> for CategoryJson {
    fn from(category: Category) -> Self {
        Self {
            slug: category.slug,
            name: category.name,
            course_count: category.course_count,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CategoriesJson {
    pub categories: Vec<CategoryJson>,
}

#[derive(Debug, Serialize)]
pub struct FeaturedJson {
    pub python: Vec<CourseJson>,
    pub sql: Vec<CourseJson>,
}

#[derive(Debug, Serialize)]
pub struct SummaryJson {
    /// Published courses per type; every type is present, 0 when it has none.
    pub course_counts: BTreeMap<&'static str, i64>,
    pub categories: Vec<CategoryJson>,
    pub featured: FeaturedJson,
}

impl From<GetCatalogSummaryResponse> for SummaryJson {
    fn from(summary: GetCatalogSummaryResponse) -> Self {
        let mut course_counts = BTreeMap::from([("python", 0), ("sql", 0)]);
        for count in summary.course_counts {
            let name = course_type_name(count.course_type);
            if name != "unspecified" {
                course_counts.insert(name, count.count);
            }
        }
        Self {
            course_counts,
            categories: summary.categories.into_iter().map(Into::into).collect(),
            featured: FeaturedJson {
                python: summary
                    .featured_python
                    .into_iter()
                    .map(Into::into)
                    .collect(),
                sql: summary.featured_sql.into_iter().map(Into::into).collect(),
            },
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CatalogPageJson {
    pub summary: Option<SummaryJson>,
    pub courses: Vec<CatalogEntryJson>,
    /// null on the last page.
    pub next_page_token: Option<String>,
}

impl From<GetCatalogPageResponse> for CatalogPageJson {
    fn from(page: GetCatalogPageResponse) -> Self {
        Self {
            summary: page.summary.map(Into::into),
            courses: page.courses.into_iter().map(Into::into).collect(),
            next_page_token: Some(page.next_page_token).filter(|token| !token.is_empty()),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct LessonJson {
    pub id: i64,
    pub course_id: i64,
    pub position: i32,
    pub title: String,
    pub body: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<Lesson> for LessonJson {
    fn from(lesson: Lesson) -> Self {
        Self {
            id: lesson.id,
            course_id: lesson.course_id,
            position: lesson.position,
            created_at: rfc3339(lesson.created_at.as_ref()),
            updated_at: rfc3339(lesson.updated_at.as_ref()),
            title: lesson.title,
            body: lesson.body,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CourseDetailJson {
    pub course: Option<CourseJson>,
    pub lessons: Vec<LessonJson>,
}

impl From<GetCourseResponse> for CourseDetailJson {
    fn from(response: GetCourseResponse) -> Self {
        Self {
            course: response.course.map(Into::into),
            lessons: response.lessons.into_iter().map(Into::into).collect(),
        }
    }
}

/// `python` or `sql` in request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CourseTypeJson {
    Python,
    Sql,
}

impl From<CourseTypeJson> for CourseType {
    fn from(value: CourseTypeJson) -> Self {
        match value {
            CourseTypeJson::Python => CourseType::Python,
            CourseTypeJson::Sql => CourseType::Sql,
        }
    }
}

/// `beginner`, `intermediate` or `advanced` in request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LevelJson {
    Beginner,
    Intermediate,
    Advanced,
}

impl From<LevelJson> for CourseLevel {
    fn from(value: LevelJson) -> Self {
        match value {
            LevelJson::Beginner => CourseLevel::Beginner,
            LevelJson::Intermediate => CourseLevel::Intermediate,
            LevelJson::Advanced => CourseLevel::Advanced,
        }
    }
}

/// `POST /v1/admin/courses`. Unknown fields (`status`, typos) are refused rather than ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCourseJson {
    pub slug: String,
    pub title: String,
    #[serde(default)]
    pub summary: String,
    pub course_type: CourseTypeJson,
    /// Category slug.
    pub category: String,
    #[serde(default)]
    pub level: Option<LevelJson>,
    #[serde(default)]
    pub is_featured: bool,
}

impl From<CreateCourseJson> for CreateCourseRequest {
    fn from(body: CreateCourseJson) -> Self {
        Self {
            slug: body.slug,
            title: body.title,
            summary: body.summary,
            course_type: CourseType::from(body.course_type).into(),
            category: body.category,
            level: body
                .level
                .map_or(CourseLevel::Unspecified, Into::into)
                .into(),
            is_featured: body.is_featured,
        }
    }
}

/// catalog-svc's rules, checked in its order so a body with several bad fields names the same one.
impl RequestBody for CreateCourseJson {
    fn check(&self) -> Result<(), Invalid> {
        validate::slug("slug", &self.slug)?;
        validate::title("title", &self.title, MAX_TITLE_CHARS)?;
        validate::text("summary", &self.summary, MAX_SUMMARY_CHARS)?;
        validate::slug("category", &self.category)?;
        Ok(())
    }
}

/// `PATCH /v1/admin/courses/{id}`: only the fields present change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateCourseJson {
    pub slug: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub course_type: Option<CourseTypeJson>,
    pub category: Option<String>,
    pub level: Option<LevelJson>,
    pub is_featured: Option<bool>,
}

impl UpdateCourseJson {
    pub fn into_request(self, id: i64) -> UpdateCourseRequest {
        UpdateCourseRequest {
            id,
            title: self.title,
            summary: self.summary,
            course_type: self
                .course_type
                .map_or(CourseType::Unspecified, Into::into)
                .into(),
            category: self.category,
            level: self
                .level
                .map_or(CourseLevel::Unspecified, Into::into)
                .into(),
            is_featured: self.is_featured,
            slug: self.slug,
        }
    }
}

/// The fields present follow catalog-svc's rules, checked in its order.
impl RequestBody for UpdateCourseJson {
    fn check(&self) -> Result<(), Invalid> {
        if let Some(slug) = &self.slug {
            validate::slug("slug", slug)?;
        }
        if let Some(title) = &self.title {
            validate::title("title", title, MAX_TITLE_CHARS)?;
        }
        if let Some(summary) = &self.summary {
            validate::text("summary", summary, MAX_SUMMARY_CHARS)?;
        }
        if let Some(category) = &self.category {
            validate::slug("category", category)?;
        }
        Ok(())
    }
}

/// `GET /v1/catalog` query. Values are taken as text and parsed here so errors name the field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogQuery {
    #[serde(rename = "type")]
    pub course_type: Option<String>,
    pub category: Option<String>,
    pub page_size: Option<String>,
    pub page_token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use learnhub_proto::catalog::v1::CourseTypeCount;

    fn course() -> Course {
        Course {
            id: 7,
            slug: "sql-joins".into(),
            title: "SQL joins".into(),
            summary: "Inner, outer, lateral".into(),
            course_type: CourseType::Sql.into(),
            category_slug: "databases".into(),
            category_name: "Databases".into(),
            level: CourseLevel::Intermediate.into(),
            status: CourseStatus::Published.into(),
            is_featured: true,
            created_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 123_456_000,
            }),
            updated_at: Some(Timestamp {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
            published_at: None,
        }
    }

    #[test]
    fn course_shape() {
        let json = serde_json::to_value(CourseJson::from(course())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": 7,
                "slug": "sql-joins",
                "title": "SQL joins",
                "summary": "Inner, outer, lateral",
                "course_type": "sql",
                "category": {"slug": "databases", "name": "Databases"},
                "level": "intermediate",
                "status": "published",
                "is_featured": true,
                "created_at": "2023-11-14T22:13:20.123456Z",
                "updated_at": "2023-11-14T22:13:20Z",
                "published_at": null,
            })
        );
    }

    #[test]
    fn catalog_page_shape() {
        let page = GetCatalogPageResponse {
            summary: Some(GetCatalogSummaryResponse {
                course_counts: vec![CourseTypeCount {
                    course_type: CourseType::Sql.into(),
                    count: 3,
                }],
                categories: vec![Category {
                    id: 1,
                    slug: "databases".into(),
                    name: "Databases".into(),
                    course_count: 3,
                }],
                featured_python: vec![],
                featured_sql: vec![course()],
            }),
            courses: vec![CourseEntry {
                course: Some(course()),
                enrollment: None,
                completed_lessons: 0,
            }],
            next_page_token: String::new(),
        };
        let json = serde_json::to_value(CatalogPageJson::from(page)).unwrap();
        assert_eq!(
            json["summary"]["course_counts"],
            serde_json::json!({"python": 0, "sql": 3})
        );
        assert_eq!(
            json["summary"]["categories"],
            serde_json::json!([{"slug": "databases", "name": "Databases", "course_count": 3}])
        );
        assert_eq!(json["summary"]["featured"]["sql"][0]["slug"], "sql-joins");
        assert_eq!(json["summary"]["featured"]["python"], serde_json::json!([]));
        assert_eq!(json["courses"][0]["slug"], "sql-joins");
        assert!(json["courses"][0].get("enrollment").is_none());
        assert!(json["next_page_token"].is_null());
    }

    #[test]
    fn create_body_refuses_unknown_fields_and_values() {
        let ok: CreateCourseJson = serde_json::from_str(
            r#"{"slug":"a","title":"A","course_type":"python","category":"basics"}"#,
        )
        .unwrap();
        let request = CreateCourseRequest::from(ok);
        assert_eq!(request.course_type, i32::from(CourseType::Python));
        assert_eq!(request.level, i32::from(CourseLevel::Unspecified));
        for bad in [
            r#"{"slug":"a","title":"A","course_type":"ruby","category":"basics"}"#,
            r#"{"slug":"a","title":"A","course_type":"python","category":"basics","status":"published"}"#,
            r#"{"title":"A","course_type":"python","category":"basics"}"#,
        ] {
            assert!(
                serde_json::from_str::<CreateCourseJson>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn course_bodies_are_checked_by_catalog_rules_naming_the_field() {
        let create = |slug: &str, title: &str, category: &str| CreateCourseJson {
            slug: slug.into(),
            title: title.into(),
            summary: String::new(),
            course_type: CourseTypeJson::Python,
            category: category.into(),
            level: None,
            is_featured: false,
        };
        assert_eq!(create("intro-1", "Intro", "basics").check(), Ok(()));
        for (body, message) in [
            (
                create("-a", "A", "basics"),
                "slug: must not start or end with -",
            ),
            (
                create("123", "A", "basics"),
                "slug: must contain a letter (all digits reads as an id)",
            ),
            (create("a", "  ", "basics"), "title: must not be empty"),
            (
                create("a", "A", "Basics"),
                "category: only a-z, 0-9 and - are allowed",
            ),
        ] {
            assert_eq!(body.check().unwrap_err().to_string(), message);
        }
        let update = UpdateCourseJson {
            summary: Some("x".repeat(MAX_SUMMARY_CHARS + 1)),
            ..UpdateCourseJson::default()
        };
        assert_eq!(
            update.check().unwrap_err().to_string(),
            "summary: at most 2000 characters"
        );
        assert_eq!(UpdateCourseJson::default().check(), Ok(()));
    }

    #[test]
    fn update_body_changes_only_present_fields() {
        let body: UpdateCourseJson = serde_json::from_str(r#"{"title":"New"}"#).unwrap();
        let request = body.into_request(3);
        assert_eq!(request.id, 3);
        assert_eq!(request.title.as_deref(), Some("New"));
        assert_eq!(request.summary, None);
        assert_eq!(request.course_type, 0);
        assert_eq!(request.level, 0);
        assert_eq!(request.is_featured, None);
    }
}

/// `GET /v1/admin/cache/stats`: cache-svc's statistics, total and per namespace.
#[derive(Debug, Serialize)]
pub struct CacheStatsJson {
    pub store: String,
    pub redis_connected: bool,
    pub redis_used_memory_bytes: u64,
    pub key_count: u64,
    pub uptime_seconds: u64,
    pub redis_latency_p50_ms: f64,
    pub redis_latency_p99_ms: f64,
    pub total: CacheCountersJson,
    pub namespaces: std::collections::BTreeMap<String, CacheCountersJson>,
    /// The gateway's own near-cache (L1), when it keeps one.
    pub near_caches: Vec<NearCacheJson>,
}

#[derive(Debug, Serialize)]
pub struct NearCacheJson {
    pub service: String,
    pub live: bool,
    pub entries: u64,
    pub drops: u64,
    pub pushed: u64,
    pub namespaces: std::collections::BTreeMap<String, NearCountersJson>,
}

#[derive(Debug, Serialize)]
pub struct NearCountersJson {
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct CacheCountersJson {
    pub hits: u64,
    pub misses: u64,
    pub hit_rate: f64,
    pub sets: u64,
    pub sets_refused: u64,
    pub deletes: u64,
    pub invalidations: u64,
    pub entries_removed: u64,
    pub errors: u64,
}

impl From<Option<learnhub_proto::cache::v1::CounterSet>> for CacheCountersJson {
    fn from(counters: Option<learnhub_proto::cache::v1::CounterSet>) -> Self {
        let c = counters.unwrap_or_default();
        Self {
            hits: c.hits,
            misses: c.misses,
            hit_rate: c.hit_rate,
            sets: c.sets,
            sets_refused: c.sets_refused,
            deletes: c.deletes,
            invalidations: c.invalidations,
            entries_removed: c.entries_removed,
            errors: c.errors,
        }
    }
}

impl From<learnhub_proto::cache::v1::CacheStats> for CacheStatsJson {
    fn from(stats: learnhub_proto::cache::v1::CacheStats) -> Self {
        Self {
            store: stats.store,
            redis_connected: stats.redis_connected,
            redis_used_memory_bytes: stats.redis_used_memory_bytes,
            key_count: stats.key_count,
            uptime_seconds: stats.uptime_seconds,
            redis_latency_p50_ms: stats.redis_latency_p50_ms,
            redis_latency_p99_ms: stats.redis_latency_p99_ms,
            total: stats.total.into(),
            namespaces: stats
                .namespaces
                .into_iter()
                .map(|ns| (ns.namespace, ns.counters.into()))
                .collect(),
            near_caches: stats
                .near_caches
                .into_iter()
                .map(|near| NearCacheJson {
                    service: near.service,
                    live: near.live,
                    entries: near.entries,
                    drops: near.drops,
                    pushed: near.pushed,
                    namespaces: near
                        .namespaces
                        .into_iter()
                        .map(|ns| {
                            let counters = NearCountersJson {
                                hits: ns.hits,
                                misses: ns.misses,
                                hit_rate: ns.hit_rate,
                            };
                            (ns.namespace, counters)
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// `POST /v1/admin/cache/invalidate`: `{"pattern": "catalog:*"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvalidateCacheJson {
    pub pattern: String,
}

/// cache-svc judges patterns (a bare `*` is refused there).
impl RequestBody for InvalidateCacheJson {}

#[derive(Debug, Serialize)]
pub struct InvalidatedJson {
    pub pattern: String,
    pub removed: u64,
}
