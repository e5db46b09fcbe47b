//! The one place the catalog's cached reads and their invalidation live.
//!
//! Cached through cache-svc (when `--cache-addr` is set), as encoded response messages, with the
//! original's lifetimes. Two namespaces: `catalog:*` holds what any course change can alter
//! (lists, counts, categories, featured) and is invalidated whole, in O(1); `course:*` holds one
//! entry per course (by id and by slug), deleted exactly when that course or its lessons change.
//! Every invalidation is recorded in the write's transaction and sent after the commit (see
//! `crate::outbox`); the client's leases keep a load that raced with the change from being
//! stored after it, so a read that follows a write sees the write.
use std::{future::Future, time::Duration};

use learnhub_cache_client::{CacheKey, CachePattern};
use learnhub_db::{
    Db, DbConn,
    outbox::{Invalidation, Outbox},
};

use crate::{
    catalog::CourseKey,
    domain::{CourseStatus, CourseType},
    error::{Error, Result},
    models::course::CourseFilter,
};

/// Course counts per type and categories with counts: 10 minutes, as in the original.
pub const CENSUS_TTL: Duration = Duration::from_secs(600);
/// Featured courses per type: 30 minutes, as in the original.
pub const FEATURED_TTL: Duration = Duration::from_secs(1_800);
/// First pages of course lists.
pub const LIST_TTL: Duration = Duration::from_secs(300);
/// A course with its lessons.
pub const COURSE_TTL: Duration = Duration::from_secs(600);

pub(crate) const CATALOG_NS: &str = "catalog";
const COURSE_NS: &str = "course";

/// A cached read: its key and how long it may live if no change invalidates it first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: CacheKey,
    pub ttl: Duration,
}

impl Entry {
    /// `catalog:census`: published courses per type and per category.
    pub fn census() -> Self {
        Self {
            key: CacheKey::new(CATALOG_NS).push("census"),
            ttl: CENSUS_TTL,
        }
    }

    /// `catalog:featured:{type}:{limit}`.
    pub fn featured(course_type: CourseType, limit: i64) -> Self {
        Self {
            key: CacheKey::new(CATALOG_NS)
                .push("featured")
                .push(course_type.as_str())
                .push(limit),
            ttl: FEATURED_TTL,
        }
    }

    /// `catalog:list:{type}:{category}:{status}:{featured}:{size}`. Only first pages are cached:
    /// they are what the catalog page asks for again and again, and later pages' tokens would
    /// make the keyspace unbounded.
    pub fn first_page(filter: &CourseFilter, size: i64) -> Self {
        let part = |value: Option<&str>| value.unwrap_or("any").to_owned();
        let key = CacheKey::new(CATALOG_NS)
            .push("list")
            .push(part(filter.course_type.map(CourseType::as_str)))
            .push_str(&part(filter.category.as_deref()))
            .push(part(filter.status.map(CourseStatus::as_str)))
            .push(part(
                filter
                    .featured
                    .map(|f| if f { "featured" } else { "regular" }),
            ))
            .push(size);
        Self { key, ttl: LIST_TTL }
    }

    /// `course:{id}` or `course:slug:{slug}`: a course with its lessons.
    pub fn course(key: &CourseKey) -> Self {
        let key = match key {
            CourseKey::Id(id) => course_id_key(*id),
            CourseKey::Slug(slug) => course_slug_key(slug),
        };
        Self {
            key,
            ttl: COURSE_TTL,
        }
    }
}

fn course_id_key(id: i64) -> CacheKey {
    CacheKey::new(COURSE_NS).push(id)
}

fn course_slug_key(slug: &str) -> CacheKey {
    CacheKey::new(COURSE_NS).push("slug").push_str(slug)
}

/// Read-through cache of catalog reads; without a cache-svc every read loads.
#[derive(Clone, Default)]
pub struct CatalogCache {
    outbox: Option<Outbox>,
}

impl CatalogCache {
    pub fn new(outbox: Option<Outbox>) -> Self {
        Self { outbox }
    }

    /// The cached value of `entry`, or `load`'s (then stored for next time). Concurrent calls
    /// for one key share one load. Cache trouble never fails a read: the client loads instead.
    pub async fn cached<M, F>(&self, entry: Entry, load: F) -> Result<M>
    where
        M: prost::Message + Default + Clone + Send + Sync + 'static,
        F: Future<Output = Result<M>>,
    {
        // A shared load hands every caller the leader's outcome, so it travels as a Status.
        let shared = async { load.await.map_err(tonic::Status::from) };
        let client = self.outbox.as_ref().map(Outbox::client);
        learnhub_cache_client::get_or_load(client, &entry.key, entry.ttl, || shared)
            .await
            .map_err(Error::Status)
    }

    /// Runs `write` on a connection of `db`, with the outbox row of what `stale` says it changed
    /// when there is a cache (`learnhub_db::outbox::write`).
    pub async fn write<T>(
        &self,
        db: &Db,
        write: impl AsyncFnOnce(&mut DbConn) -> Result<T>,
        stale: impl AsyncFnOnce(&mut DbConn, &T) -> Result<Option<Invalidation>>,
    ) -> Result<T> {
        learnhub_db::outbox::write(self.outbox.as_ref(), db, write, stale).await
    }
}

/// A course change (create, update, publish, archive): everything in `catalog:*` and the
/// course's own entries under its id and each slug it had.
pub fn course_changed(id: i64, slugs: &[&str]) -> Invalidation {
    let mut keys = vec![course_id_key(id)];
    keys.extend(slugs.iter().map(|slug| course_slug_key(slug)));
    Invalidation {
        patterns: vec![CachePattern::namespace(CATALOG_NS)],
        keys,
    }
}

/// A change that only listings and counts show (a new category).
pub fn category_added() -> Invalidation {
    Invalidation {
        patterns: vec![CachePattern::namespace(CATALOG_NS)],
        keys: Vec::new(),
    }
}

/// A change to a course's lessons: only that course's entries, by id and by `slug` (read in the
/// write's transaction; `None` when the course was not found).
pub fn lessons_changed(course_id: i64, slug: Option<&str>) -> Invalidation {
    let mut keys = vec![course_id_key(course_id)];
    keys.extend(slug.map(course_slug_key));
    Invalidation {
        patterns: Vec::new(),
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_lifetimes() {
        assert_eq!(Entry::census().key.as_str(), "catalog:census");
        assert_eq!(Entry::census().ttl, CENSUS_TTL);
        let featured = Entry::featured(CourseType::Sql, 6);
        assert_eq!(
            (featured.key.as_str(), featured.ttl),
            ("catalog:featured:sql:6", FEATURED_TTL)
        );
        let filter = CourseFilter {
            course_type: Some(CourseType::Python),
            status: Some(CourseStatus::Published),
            ..CourseFilter::default()
        };
        assert_eq!(
            Entry::first_page(&filter, 20).key.as_str(),
            "catalog:list:python:any:published:any:20"
        );
        assert_eq!(Entry::course(&CourseKey::Id(7)).key.as_str(), "course:7");
        assert_eq!(
            Entry::course(&CourseKey::Slug("sql-joins".into()))
                .key
                .as_str(),
            "course:slug:sql-joins"
        );
    }

    #[test]
    fn every_catalog_entry_sits_under_the_namespace_a_course_change_invalidates() {
        let pattern = CachePattern::namespace(CATALOG_NS);
        let prefix = pattern.as_str().trim_end_matches('*');
        for entry in [
            Entry::census(),
            Entry::featured(CourseType::Python, 3),
            Entry::first_page(&CourseFilter::default(), 5),
        ] {
            assert!(entry.key.as_str().starts_with(prefix), "{entry:?}");
        }
    }
}
