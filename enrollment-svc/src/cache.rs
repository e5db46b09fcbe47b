//! The one place a learner's cached reads and their invalidation live.
//!
//! Cached through cache-svc (when `--cache-addr` is set): the first page of ListEnrollments and
//! GetProgress, stored as their encoded response messages under `user:{id}:…`. Every committed
//! change to a learner's data invalidates `user:{id}:*`: recorded in the write's transaction and
//! sent after the commit (see `crate::outbox`); the client's leases keep a load that raced with
//! the change from being stored after it, so a read that follows a write sees the write.
use std::{future::Future, time::Duration};

use learnhub_cache_client::{CacheKey, CachePattern};
use learnhub_db::{
    Db, DbConn,
    outbox::{Invalidation, Outbox},
};

use crate::{
    domain::EnrollmentStatus,
    error::{Error, Result},
};

/// How long a cached read may live if no change invalidates it first.
const TTL: Duration = Duration::from_secs(300);

/// Read-through cache of a learner's data; without a cache-svc every read loads.
#[derive(Clone)]
pub struct LearnerCache {
    outbox: Option<Outbox>,
}

impl LearnerCache {
    pub fn new(outbox: Option<Outbox>) -> Self {
        Self { outbox }
    }

    /// The cached value of `key`, or `load`'s (then stored for next time). Concurrent calls for
    /// one key share one load. Cache trouble never fails the call: it loads instead.
    pub async fn get_or_load<M, F>(&self, key: &CacheKey, load: F) -> Result<M>
    where
        M: prost::Message + Default + Clone + Send + Sync + 'static,
        F: Future<Output = Result<M>>,
    {
        let shared = async { load.await.map_err(tonic::Status::from) };
        let client = self.outbox.as_ref().map(Outbox::client);
        learnhub_cache_client::get_or_load(client, key, TTL, || shared)
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

/// A change to a learner's data: everything cached for them (`user:{id}:*`).
pub fn user_changed(user_id: i64) -> Invalidation {
    Invalidation {
        patterns: vec![user_pattern(user_id)],
        keys: Vec::new(),
    }
}

fn user(user_id: i64) -> CacheKey {
    CacheKey::new("user").push(user_id)
}

/// The key of the first page of a user's enrollments (other pages are not cached: their
/// tokens make the keyspace unbounded and they are rarely read twice).
pub fn enrollments_key(user_id: i64, status: Option<EnrollmentStatus>, page_size: i64) -> CacheKey {
    user(user_id)
        .push("enrollments")
        .push(status.map_or("all", EnrollmentStatus::as_str))
        .push(page_size)
}

pub fn progress_key(user_id: i64, enrollment_id: i64) -> CacheKey {
    user(user_id).push("progress").push(enrollment_id)
}

/// Every key of one user: `user:{id}:*`.
fn user_pattern(user_id: i64) -> CachePattern {
    user(user_id).children()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sit_under_the_user_pattern() {
        assert_eq!(
            enrollments_key(7, None, 20).as_str(),
            "user:7:enrollments:all:20"
        );
        assert_eq!(
            enrollments_key(7, Some(EnrollmentStatus::Dropped), 5).as_str(),
            "user:7:enrollments:dropped:5"
        );
        assert_eq!(progress_key(7, 3).as_str(), "user:7:progress:3");
        assert_eq!(user_pattern(7).as_str(), "user:7:*");
        assert!(!progress_key(70, 3).as_str().starts_with("user:7:"));
    }
}
