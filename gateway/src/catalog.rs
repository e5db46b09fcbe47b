//! Catalog operations: the public catalog page, courses and categories, and admin course writes.
use std::{sync::Arc, time::Duration};

use learnhub_cache_client::{CacheClient, CacheKey, NearCache};
use learnhub_proto::{
    catalog::v1::{
        ArchiveCourseRequest, Course, CourseStatus, CourseType, CreateCourseRequest,
        GetCatalogSummaryRequest, GetCourseRequest, GetCourseResponse, ListCategoriesRequest,
        ListCategoriesResponse, ListCoursesRequest, PublishCourseRequest, UpdateCourseRequest,
        get_course_request::Key,
    },
    enrollment::v1::BatchGetEnrollmentStateRequest,
    gateway::v1::{CourseEntry, GetCatalogPageRequest, GetCatalogPageResponse},
};

use learnhub_kit::validate;

use crate::{
    audit,
    auth::{Caller, Role, require},
    error::Error,
    stale::Served,
    state::Gateway,
    upstream::{CATALOG, ENROLLMENT},
};

/// Lifetime of a cached public page if no course write invalidates it first: the shortest of
/// its parts' lifetimes in catalog-svc (first list pages, 5 min).
const PUBLIC_PAGE_TTL: Duration = Duration::from_secs(300);

/// `catalog:page:{type}:{category}:{page_size}` of a first page. The category is escaped by
/// `push_str` (it is validated as a slug already).
pub fn public_page_key(request: &GetCatalogPageRequest) -> CacheKey {
    CacheKey::new("catalog")
        .push("page")
        .push(request.course_type)
        .push_str(if request.category.is_empty() {
            "any"
        } else {
            &request.category
        })
        .push(request.page_size)
}

/// The error of a load shared by several callers (single flight), back to an owned one.
fn shared_error(error: Arc<Error>) -> Error {
    Arc::try_unwrap(error).unwrap_or_else(|shared| match &*shared {
        Error::Upstream { service, status } => Error::Upstream {
            service,
            status: status.clone(),
        },
        Error::Timeout {
            service,
            timeout_ms,
        } => Error::Timeout {
            service,
            timeout_ms: *timeout_ms,
        },
        other => Error::Upstream {
            service: CATALOG,
            status: tonic::Status::internal(other.to_string()),
        },
    })
}

/// Largest page a caller may ask for.
pub const MAX_PAGE_SIZE: i32 = 100;
/// Longest slug worth sending upstream; anything longer cannot exist.
const MAX_SLUG_LEN: usize = 200;

/// Checks that `value` could be a slug (`[a-z0-9-]+`), naming `field` when it cannot.
pub fn validate_slug(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(Error::invalid(format!("{field}: must not be empty")));
    }
    if value.len() > MAX_SLUG_LEN {
        return Err(Error::invalid(format!(
            "{field}: at most {MAX_SLUG_LEN} characters"
        )));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(Error::invalid(format!(
            "{field}: only a-z, 0-9 and - are allowed, got {value:?}"
        )));
    }
    Ok(())
}

/// Checks a page size: 0 means the upstream default, otherwise 1..=100.
pub fn validate_page_size(page_size: i32) -> Result<(), Error> {
    if (0..=MAX_PAGE_SIZE).contains(&page_size) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "page_size: must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"
        )))
    }
}

fn validate_id(field: &str, id: i64) -> Result<(), Error> {
    if id > 0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "{field}: must be a positive integer, got {id}"
        )))
    }
}

/// The characters of a course's free text, checked at the edge for gRPC callers as for REST ones
/// (lengths and the rest are catalog-svc's to judge).
fn check_course_text(title: &str, summary: &str) -> Result<(), Error> {
    validate::single_line("title", title)
        .and_then(|_| validate::multi_line("summary", summary))
        .map(drop)
        .map_err(|invalid| Error::invalid(invalid.to_string()))
}

/// A course key from a REST path segment: all digits is an id, anything else a slug.
/// catalog-svc's cache key of a course (`course:7`, `course:slug:sql-joins`): the gateway's L1
/// keeps published courses under it, so catalog-svc's delete of the key reaches the L1 too.
fn course_cache_key(key: &Key) -> CacheKey {
    match key {
        Key::Id(id) => CacheKey::new("course").push(id),
        Key::Slug(slug) => CacheKey::new("course").push("slug").push_str(slug),
    }
}

pub fn course_key(segment: &str) -> Result<Key, Error> {
    if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
        let id = segment
            .parse::<i64>()
            .map_err(|_| Error::invalid(format!("id: out of range: {segment}")))?;
        validate_id("id", id)?;
        Ok(Key::Id(id))
    } else {
        validate_slug("slug", segment)?;
        Ok(Key::Slug(segment.to_owned()))
    }
}

impl Gateway {
    /// The catalog summary and one page of published courses (first pages from the cache when
    /// cache-svc is configured), plus the caller's enrollment state for that page when it is a
    /// user.
    pub async fn catalog_page(
        &self,
        caller: Option<&Caller>,
        request: GetCatalogPageRequest,
    ) -> Result<Served<GetCatalogPageResponse>, Error> {
        if CourseType::try_from(request.course_type).is_err() {
            return Err(Error::invalid(format!(
                "course_type: unknown value {}",
                request.course_type
            )));
        }
        validate_page_size(request.page_size)?;
        if !request.category.is_empty() {
            validate_slug("category", &request.category)?;
        }
        let mut page = if request.page_token.is_empty() {
            // First pages are what every visitor asks for: the whole public page is one cache
            // read. It lives under `catalog:`, which catalog-svc invalidates after every course
            // write, and the fill carries the miss's lease, so a page loaded before a write is
            // never stored after it.
            let key = public_page_key(&request);
            let page = match self.upstreams.page_cache() {
                Some(cache) => cache
                    .get_or_load(&key, PUBLIC_PAGE_TTL, || async {
                        self.public_page(request).await.map_err(Arc::new)
                    })
                    .await
                    .map_err(shared_error),
                None => self.public_page(request).await,
            };
            // Before the caller's own enrollment state is added: the copy is anyone's page.
            self.stale.or_copy(key.as_str(), page).await?
        } else {
            // Deeper pages are not cached (catalog-svc does not cache them either): their
            // tokens make the keyspace unbounded and they are rarely read twice.
            Served::fresh(self.public_page(request).await?)
        };
        self.add_enrollment_state(caller, &mut page.value.courses)
            .await;
        Ok(page)
    }

    /// The page as anyone sees it: summary and one page of published courses, fetched
    /// concurrently (one call to each RPC).
    async fn public_page(
        &self,
        request: GetCatalogPageRequest,
    ) -> Result<GetCatalogPageResponse, Error> {
        let upstreams = &self.upstreams;
        let (mut summary_client, mut list_client) = (upstreams.catalog(), upstreams.catalog());
        let summary = upstreams.call(
            CATALOG,
            summary_client.get_catalog_summary(
                upstreams.request(GetCatalogSummaryRequest { featured_limit: 0 }),
            ),
        );
        let page = upstreams.call(
            CATALOG,
            list_client.list_courses(upstreams.request(ListCoursesRequest {
                course_type: request.course_type,
                category: request.category,
                status: CourseStatus::Published.into(),
                featured: None,
                page_size: request.page_size,
                page_token: request.page_token,
            })),
        );
        let (summary, page) = tokio::try_join!(summary, page)?;
        Ok(GetCatalogPageResponse {
            summary: Some(summary),
            courses: page
                .courses
                .into_iter()
                .map(|course| CourseEntry {
                    course: Some(course),
                    enrollment: None,
                    completed_lessons: 0,
                })
                .collect(),
            next_page_token: page.next_page_token,
        })
    }

    /// Fills in the caller's enrollments for the page's courses with one batch call. The page is
    /// still useful without them, so a missing or failing enrollment-svc only logs.
    async fn add_enrollment_state(&self, caller: Option<&Caller>, courses: &mut [CourseEntry]) {
        let Some(user_id) = caller.and_then(Caller::user_id) else {
            return;
        };
        if courses.is_empty() || !self.upstreams.has_enrollment() {
            return;
        }
        let Ok(mut client) = self.upstreams.enrollment() else {
            return;
        };
        let course_ids = courses
            .iter()
            .filter_map(|entry| entry.course.as_ref().map(|course| course.id))
            .collect();
        let request = self.upstreams.request(BatchGetEnrollmentStateRequest {
            user_id,
            course_ids,
        });
        match self
            .upstreams
            .call(ENROLLMENT, client.batch_get_enrollment_state(request))
            .await
        {
            Ok(response) => {
                for state in response.states {
                    let Some(enrollment) = state.enrollment else {
                        continue;
                    };
                    if let Some(entry) = courses.iter_mut().find(|entry| {
                        entry.course.as_ref().map(|course| course.id) == Some(enrollment.course_id)
                    }) {
                        entry.enrollment = Some(enrollment);
                        entry.completed_lessons = state.completed_lessons;
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "catalog page served without enrollment state");
            }
        }
    }

    /// A course with its lessons. Drafts and archived courses exist only for admins.
    pub async fn course(
        &self,
        caller: Option<&Caller>,
        key: Option<Key>,
    ) -> Result<Served<GetCourseResponse>, Error> {
        let key = match key {
            None => return Err(Error::invalid("key: set id or slug")),
            Some(Key::Id(id)) => {
                validate_id("id", id)?;
                Key::Id(id)
            }
            Some(Key::Slug(slug)) => {
                validate_slug("slug", &slug)?;
                Key::Slug(slug)
            }
        };
        let (shown, copy_key) = match &key {
            Key::Id(id) => (format!("id {id}"), format!("course:id:{id}")),
            Key::Slug(slug) => (format!("slug {slug:?}"), format!("course:slug:{slug}")),
        };
        // Only published courses are kept in the L1 (anyone may see them), under catalog-svc's
        // own keys of the course, which it deletes when the course or its lessons change.
        let near = self.upstreams.page_cache().and_then(CacheClient::near);
        let near_key = course_cache_key(&key);
        if let Some(response) = near.and_then(|near| near.get::<GetCourseResponse>(&near_key)) {
            return Ok(Served::fresh(response));
        }
        let ticket = near.map(NearCache::ticket);
        let mut client = self.upstreams.catalog();
        let request = self.upstreams.request(GetCourseRequest { key: Some(key) });
        let response = match self
            .upstreams
            .call(CATALOG, client.get_course(request))
            .await
        {
            Ok(response) => response,
            // Only published courses are ever kept, so a copy is anyone's to see.
            Err(err) => return self.stale.recall(&copy_key, err).await,
        };
        let is_admin = caller.is_some_and(|caller| caller.role == Role::Admin);
        let published = response
            .course
            .as_ref()
            .is_some_and(|course| course.status == i32::from(CourseStatus::Published));
        if published {
            if let Some((near, ticket)) = near.zip(ticket) {
                near.keep(ticket, &near_key, &response);
            }
            self.stale.remember(&copy_key, &response).await;
        }
        if published || is_admin {
            Ok(Served::fresh(response))
        } else {
            Err(Error::NotFound(format!("no published course with {shown}")))
        }
    }

    pub async fn categories(&self) -> Result<Served<ListCategoriesResponse>, Error> {
        let near = self.upstreams.page_cache().and_then(CacheClient::near);
        let near_key = CacheKey::new("catalog").push("gateway").push("categories");
        if let Some(response) = near.and_then(|near| near.get(&near_key)) {
            return Ok(Served::fresh(response));
        }
        let ticket = near.map(NearCache::ticket);
        let mut client = self.upstreams.catalog();
        let request = self.upstreams.request(ListCategoriesRequest {});
        let result = self
            .upstreams
            .call(CATALOG, client.list_categories(request))
            .await;
        if let (Ok(response), Some(near), Some(ticket)) = (&result, near, ticket) {
            near.keep(ticket, &near_key, response);
        }
        self.stale.or_copy("categories", result).await
    }

    /// After a course write this gateway forwarded and catalog-svc acknowledged (it has
    /// invalidated cache-svc, whose push will follow): this gateway's next read sees the write
    /// without waiting for the push.
    fn forget_catalog(&self) {
        if let Some(cache) = self.upstreams.page_cache() {
            cache.forget("catalog:*");
            cache.forget("course:*");
        }
    }

    pub async fn create_course(
        &self,
        caller: Option<&Caller>,
        request: CreateCourseRequest,
    ) -> Result<Course, Error> {
        let admin = require(caller, Role::Admin)?;
        let resource = format!("course slug {:?}", request.slug);
        let outcome = self.write_course(request).await;
        self.forget_catalog();
        audit::record(admin, "course.create", &resource, outcome)
    }

    async fn write_course(&self, request: CreateCourseRequest) -> Result<Course, Error> {
        check_course_text(&request.title, &request.summary)?;
        let mut client = self.upstreams.catalog();
        let request = self.upstreams.request(request);
        self.upstreams
            .call(CATALOG, client.create_course(request))
            .await
    }

    /// Changes only the fields that are set.
    pub async fn update_course(
        &self,
        caller: Option<&Caller>,
        request: UpdateCourseRequest,
    ) -> Result<Course, Error> {
        let admin = require(caller, Role::Admin)?;
        let resource = format!("course {}", request.id);
        let outcome = self.change_course(request).await;
        self.forget_catalog();
        audit::record(admin, "course.update", &resource, outcome)
    }

    async fn change_course(&self, request: UpdateCourseRequest) -> Result<Course, Error> {
        validate_id("id", request.id)?;
        check_course_text(
            request.title.as_deref().unwrap_or_default(),
            request.summary.as_deref().unwrap_or_default(),
        )?;
        let mut client = self.upstreams.catalog();
        let request = self.upstreams.request(request);
        self.upstreams
            .call(CATALOG, client.update_course(request))
            .await
    }

    pub async fn publish_course(&self, caller: Option<&Caller>, id: i64) -> Result<Course, Error> {
        let admin = require(caller, Role::Admin)?;
        let outcome = self.publish(id).await;
        self.forget_catalog();
        audit::record(admin, "course.publish", &format!("course {id}"), outcome)
    }

    async fn publish(&self, id: i64) -> Result<Course, Error> {
        validate_id("id", id)?;
        let mut client = self.upstreams.catalog();
        let request = self.upstreams.request(PublishCourseRequest { id });
        self.upstreams
            .call(CATALOG, client.publish_course(request))
            .await
    }

    pub async fn archive_course(&self, caller: Option<&Caller>, id: i64) -> Result<Course, Error> {
        let admin = require(caller, Role::Admin)?;
        let outcome = self.archive(id).await;
        self.forget_catalog();
        audit::record(admin, "course.archive", &format!("course {id}"), outcome)
    }

    async fn archive(&self, id: i64) -> Result<Course, Error> {
        validate_id("id", id)?;
        let mut client = self.upstreams.catalog();
        let request = self.upstreams.request(ArchiveCourseRequest { id });
        self.upstreams
            .call(CATALOG, client.archive_course(request))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(validate_slug("slug", "intro-to-sql-2").is_ok());
        for bad in ["", "Intro", "a_b", "a b", "ü", "a/b", &"a".repeat(201)] {
            let err = validate_slug("slug", bad).unwrap_err();
            assert!(err.to_string().starts_with("slug: "), "{err}");
        }
    }

    #[test]
    fn public_pages_are_cached_under_the_catalog_namespace() {
        let request = GetCatalogPageRequest {
            course_type: CourseType::Sql.into(),
            category: "query-performance".into(),
            page_size: 20,
            page_token: String::new(),
        };
        let key = public_page_key(&request);
        // catalog-svc invalidates `catalog:*` after every course write: that must cover it.
        assert_eq!(key.namespace(), "catalog");
        assert!(key.as_str().contains("query-performance"), "{key}");
        let every_category = GetCatalogPageRequest {
            category: String::new(),
            ..request.clone()
        };
        let other_size = GetCatalogPageRequest {
            page_size: 5,
            ..request.clone()
        };
        assert_ne!(public_page_key(&every_category), key);
        assert_ne!(public_page_key(&other_size), key);
    }

    #[test]
    fn page_sizes() {
        for ok in [0, 1, 20, 100] {
            assert!(validate_page_size(ok).is_ok());
        }
        for bad in [-1, 101, i32::MAX, i32::MIN] {
            assert!(
                validate_page_size(bad)
                    .unwrap_err()
                    .to_string()
                    .contains("page_size")
            );
        }
    }

    #[test]
    fn course_keys() {
        assert_eq!(course_key("42").unwrap(), Key::Id(42));
        assert_eq!(
            course_key("sql-basics").unwrap(),
            Key::Slug("sql-basics".into())
        );
        assert_eq!(
            course_key("101-python").unwrap(),
            Key::Slug("101-python".into())
        );
        assert!(course_key("0").unwrap_err().to_string().contains("id"));
        assert!(
            course_key("99999999999999999999")
                .unwrap_err()
                .to_string()
                .contains("id")
        );
        assert!(
            course_key("Bad_Slug")
                .unwrap_err()
                .to_string()
                .contains("slug")
        );
        assert!(course_key("").is_err());
    }
}
