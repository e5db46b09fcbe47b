//! Stale-if-error for the public reads: the last good answer of each public catalog page, course
//! and the category list, served when catalog-svc cannot answer (UNAVAILABLE or no answer in
//! time) and no older than `--stale-if-error-secs`. A read served this way says so and how old
//! it is: `x-learnhub-stale-seconds` (REST header, gRPC metadata).
//!
//! Only what anyone may see is kept (first catalog pages without the caller's enrollment
//! state, published courses, categories); the store is bounded by the encoded size of what it
//! holds (moka, weighed by `prost::Message::encoded_len`).
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use moka::future::Cache;
use prost::Message;
use tonic::Code;

use crate::error::Error;

/// The header (REST) and metadata key (gRPC) of a stale answer: its age in whole seconds.
pub const STALE_HEADER: &str = "x-learnhub-stale-seconds";

/// Bytes of encoded answers the store may hold.
const MAX_BYTES: u64 = 32 * 1024 * 1024;
/// A copy is replaced by a newer answer at most this often (every answer of a hot page would
/// otherwise be encoded again).
const REFRESH: Duration = Duration::from_secs(1);

/// An answer and, when it is a stale copy, how old it is.
#[derive(Debug)]
pub struct Served<T> {
    pub value: T,
    pub stale: Option<Duration>,
}

impl<T> Served<T> {
    pub fn fresh(value: T) -> Self {
        Self { value, stale: None }
    }

    /// The header value of a stale answer.
    pub fn stale_seconds(&self) -> Option<String> {
        self.stale.map(|age| age.as_secs().to_string())
    }
}

#[derive(Clone)]
struct Copy {
    stored: Instant,
    bytes: Arc<Vec<u8>>,
}

/// Last good answers by key (`catalog:page:…`, `course:id:7`, `categories`).
#[derive(Clone)]
pub struct StaleStore {
    copies: Option<Cache<String, Copy>>,
}

impl std::fmt::Debug for StaleStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaleStore")
            .field("on", &self.copies.is_some())
            .finish()
    }
}

impl StaleStore {
    /// Keeps copies for `max_age`; zero keeps none (every failure is the caller's).
    pub fn new(max_age: Duration) -> Self {
        let copies = (!max_age.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(MAX_BYTES)
                .weigher(|key: &String, copy: &Copy| {
                    u32::try_from(key.len() + copy.bytes.len()).unwrap_or(u32::MAX)
                })
                .time_to_live(max_age)
                .build()
        });
        Self { copies }
    }

    /// Keeps `value` as the last good answer under `key`, unless a copy younger than
    /// [`REFRESH`] is there already (a cache hit then costs a lookup, not an encoding).
    pub async fn remember<T: Message>(&self, key: &str, value: &T) {
        let Some(copies) = &self.copies else {
            return;
        };
        if copies
            .get(key)
            .await
            .is_some_and(|copy| copy.stored.elapsed() < REFRESH)
        {
            return;
        }
        let copy = Copy {
            stored: Instant::now(),
            bytes: Arc::new(value.encode_to_vec()),
        };
        copies.insert(key.to_owned(), copy).await;
    }

    /// The last good answer under `key` in place of `err` when `err` is an upstream that did not
    /// answer and a copy is young enough; else `err`.
    pub async fn recall<T: Message + Default>(
        &self,
        key: &str,
        err: Error,
    ) -> Result<Served<T>, Error> {
        let Some(copies) = &self.copies else {
            return Err(err);
        };
        if !upstream_down(&err) {
            return Err(err);
        }
        let Some(copy) = copies.get(key).await else {
            return Err(err);
        };
        let Ok(value) = T::decode(copy.bytes.as_slice()) else {
            return Err(err);
        };
        let age = copy.stored.elapsed();
        tracing::warn!(
            key,
            age_secs = age.as_secs(),
            error = %err,
            "upstream down: serving the last good answer"
        );
        metrics::counter!("learnhub_gateway_stale_answers_total").increment(1);
        Ok(Served {
            value,
            stale: Some(age),
        })
    }

    /// `result` kept as the last good answer under `key`, or, when it is an upstream that did
    /// not answer, the copy [`StaleStore::recall`] finds.
    pub async fn or_copy<T: Message + Default>(
        &self,
        key: &str,
        result: Result<T, Error>,
    ) -> Result<Served<T>, Error> {
        match result {
            Ok(value) => {
                self.remember(key, &value).await;
                Ok(Served::fresh(value))
            }
            Err(err) => self.recall(key, err).await,
        }
    }
}

/// An upstream that did not answer (down, or not in time), as opposed to one that said no.
fn upstream_down(err: &Error) -> bool {
    match err {
        Error::Timeout { .. } => true,
        Error::Upstream { status, .. } => {
            matches!(status.code(), Code::Unavailable | Code::Cancelled)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use learnhub_proto::catalog::v1::{Category, ListCategoriesResponse};

    use super::*;

    fn categories(name: &str) -> ListCategoriesResponse {
        ListCategoriesResponse {
            categories: vec![Category {
                name: name.into(),
                ..Default::default()
            }],
        }
    }

    fn down() -> Error {
        Error::Upstream {
            service: "catalog-svc",
            status: tonic::Status::unavailable("connection refused"),
        }
    }

    #[tokio::test]
    async fn an_upstream_down_gets_the_last_good_answer_marked_stale() {
        let store = StaleStore::new(Duration::from_secs(60));
        let served = store
            .or_copy("categories", Ok(categories("python")))
            .await
            .unwrap();
        assert_eq!(served.stale, None);
        let served = store
            .or_copy::<ListCategoriesResponse>("categories", Err(down()))
            .await
            .unwrap();
        assert_eq!(served.value, categories("python"));
        assert!(served.stale.is_some());
        assert_eq!(served.stale_seconds().as_deref(), Some("0"));
    }

    #[tokio::test]
    async fn refusals_and_unknown_keys_stay_errors() {
        let store = StaleStore::new(Duration::from_secs(60));
        store.remember("categories", &categories("sql")).await;
        let not_found = Error::Upstream {
            service: "catalog-svc",
            status: tonic::Status::not_found("no such course"),
        };
        let refused = store
            .or_copy::<ListCategoriesResponse>("categories", Err(not_found))
            .await;
        assert!(matches!(refused, Err(Error::Upstream { .. })));
        let unknown = store
            .or_copy::<ListCategoriesResponse>("course:id:9", Err(down()))
            .await;
        assert!(matches!(unknown, Err(Error::Upstream { .. })));
    }

    #[tokio::test]
    async fn copies_older_than_the_bound_are_not_served() {
        let store = StaleStore::new(Duration::from_millis(50));
        store.remember("categories", &categories("sql")).await;
        tokio::time::sleep(Duration::from_millis(120)).await;
        let gone = store
            .or_copy::<ListCategoriesResponse>("categories", Err(down()))
            .await;
        assert!(gone.is_err());
    }

    #[tokio::test]
    async fn zero_keeps_nothing() {
        let store = StaleStore::new(Duration::ZERO);
        store.remember("categories", &categories("sql")).await;
        assert!(
            store
                .or_copy::<ListCategoriesResponse>("categories", Err(down()))
                .await
                .is_err()
        );
    }
}
