//! The one place a learner's cached reads and their invalidation live.
//!
//! Cached through cache-svc (when `--cache-addr` is set): the first page of ListEnrollments and
//! GetProgress, stored as their encoded response messages under `user:{id}:…`. Every committed
//! change to a learner's data invalidates `user:{id}:*` after the commit; the client's leases
//! keep a load that raced with the change from being stored after it, so a read that follows a
//! write sees the write.
use std::{future::Future, time::Duration};

use learnhub_cache_client::{CacheClient, CacheKey, CachePattern};

use crate::{
    domain::EnrollmentStatus,
    error::{Error, Result},
};

/// How long a cached read may live if no change invalidates it first.
const TTL: Duration = Duration::from_secs(300);

/// Read-through cache of a learner's data; without a cache-svc every read loads.
#[derive(Clone)]
pub struct LearnerCache {
    client: Option<CacheClient>,
}

impl LearnerCache {
    pub fn new(client: Option<CacheClient>) -> Self {
        Self { client }
    }

    /// The cached value of `key`, or `load`'s (then stored for next time). Concurrent calls for
    /// one key share one load. Cache trouble never fails the call: it loads instead.
    pub async fn get_or_load<M, F>(&self, key: &CacheKey, load: F) -> Result<M>
    where
        M: prost::Message + Default + Clone + Send + Sync + 'static,
        F: Future<Output = Result<M>>,
    {
        let shared = async { load.await.map_err(tonic::Status::from) };
        learnhub_cache_client::get_or_load(self.client.as_ref(), key, TTL, || shared)
            .await
            .map_err(Error::Status)
    }

    /// Forgets everything cached for the user; call after the change is committed. If cache-svc
    /// does not answer, the client retries in the background and bypasses the cache meanwhile.
    pub async fn invalidate_user(&self, user_id: i64) {
        if let Some(client) = &self.client
            && let Err(err) = client.invalidate(&user_pattern(user_id)).await
        {
            tracing::warn!(user_id, %err, "cache invalidation deferred");
        }
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
