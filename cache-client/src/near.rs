//! The near-cache (L1): decoded values in this process, in front of cache-svc, kept coherent by
//! the invalidations cache-svc pushes (its `Subscribe` stream).
//!
//! It serves and keeps values only while the subscription is live: from cache-svc's greeting
//! until the stream breaks, jumps a number or comes from another cache-svc instance — then the
//! whole L1 is dropped and stays unused until the next greeting. A value is kept only when no
//! change was applied while it was being read or loaded (the `epoch`), so a push that overtakes
//! a read cannot leave the read's older value behind. Entries also expire after a short lifetime
//! (`NEAR_CACHE_TTL_MS`), which bounds staleness should a push be lost anyway. The process's own
//! invalidations and deletes are applied here before they are sent, so a write is visible to the
//! writer's next read without waiting for the push.
use std::{
    any::Any,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use learnhub_proto::cache::v1::invalidation::Change;
use moka::sync::Cache;
use prost::Message;

use crate::CacheKey;

/// How big and how long-lived the L1 is, and which namespaces it holds.
#[derive(Debug, Clone)]
pub struct NearCacheOptions {
    /// Longest an entry is served without cache-svc being asked again.
    pub ttl: Duration,
    pub max_entries: u64,
    /// Encoded bytes of the values held (keys included).
    pub max_bytes: u64,
    /// Namespaces kept in L1 (`catalog`, `course`); keys of other namespaces go to cache-svc.
    pub namespaces: Vec<&'static str>,
}

/// L1 hits and misses of one namespace since the client was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearNamespaceStats {
    pub namespace: &'static str,
    pub hits: u64,
    pub misses: u64,
}

/// What the L1 holds and has done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NearStats {
    pub namespaces: Vec<NearNamespaceStats>,
    pub entries: u64,
    /// Whether the subscription is live (the L1 serves only then).
    pub live: bool,
    /// Times the whole L1 was dropped (lost stream, gap, new cache-svc instance).
    pub drops: u64,
    /// Changes received from cache-svc.
    pub pushed: u64,
}

#[derive(Clone)]
struct Held {
    value: Arc<dyn Any + Send + Sync>,
    /// Encoded size, for the weigher.
    bytes: u64,
}

struct Namespace {
    name: &'static str,
    hits: AtomicU64,
    misses: AtomicU64,
    hit_counter: metrics::Counter,
    miss_counter: metrics::Counter,
}

/// Where a read began: a value read or loaded since then is kept only if nothing changed.
#[derive(Debug, Clone, Copy)]
pub struct NearTicket(u64);

pub struct NearCache {
    entries: Cache<String, Held>,
    namespaces: Vec<Namespace>,
    /// Bumped under the write lock by every change applied; a keep compares it under the read
    /// lock, so a change and a keep never interleave.
    epoch: RwLock<u64>,
    live: AtomicBool,
    drops: AtomicU64,
    pushed: AtomicU64,
    caller: &'static str,
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl NearCache {
    pub(crate) fn new(options: &NearCacheOptions, caller: &'static str) -> Self {
        // moka bounds one measure. Weighing each entry at least max_bytes / max_entries bounds
        // both: the entries' weights sum to at most max_bytes, so there are at most max_entries.
        let floor = (options.max_bytes / options.max_entries.max(1)).max(1);
        let entries = Cache::builder()
            .max_capacity(options.max_bytes.max(1))
            .weigher(move |key: &String, held: &Held| {
                let bytes = key.len() as u64 + held.bytes;
                u32::try_from(bytes.max(floor)).unwrap_or(u32::MAX)
            })
            .time_to_live(options.ttl)
            .build();
        let namespaces = options
            .namespaces
            .iter()
            .map(|&name| Namespace {
                name,
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                hit_counter: metrics::counter!(
                    "learnhub_cache_near_hits_total", "service" => caller, "namespace" => name
                ),
                miss_counter: metrics::counter!(
                    "learnhub_cache_near_misses_total", "service" => caller, "namespace" => name
                ),
            })
            .collect();
        metrics::gauge!("learnhub_cache_near_live", "service" => caller).set(0.0);
        Self {
            entries,
            namespaces,
            epoch: RwLock::new(0),
            live: AtomicBool::new(false),
            drops: AtomicU64::new(0),
            pushed: AtomicU64::new(0),
            caller,
        }
    }

    /// Whether keys of `namespace` are kept here.
    pub fn holds(&self, namespace: &str) -> bool {
        self.namespace(namespace).is_some()
    }

    fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.iter().find(|ns| ns.name == name)
    }

    /// The value held under `key`, counted as an L1 hit or miss of its namespace. `None` when the
    /// namespace is not held here, the subscription is not live, or the entry holds another type.
    pub fn get<T: Clone + 'static>(&self, key: &CacheKey) -> Option<T> {
        let namespace = self.namespace(key.namespace())?;
        let found = if self.live.load(Relaxed) {
            self.entries
                .get(key.as_str())
                .and_then(|held| held.value.downcast_ref::<T>().cloned())
        } else {
            None
        };
        match found {
            Some(value) => {
                namespace.hits.fetch_add(1, Relaxed);
                namespace.hit_counter.increment(1);
                Some(value)
            }
            None => {
                namespace.misses.fetch_add(1, Relaxed);
                namespace.miss_counter.increment(1);
                None
            }
        }
    }

    /// Taken before a read or load whose value may be kept.
    pub fn ticket(&self) -> NearTicket {
        NearTicket(*read(&self.epoch))
    }

    /// Keeps `value` under `key` unless a change was applied since `ticket` was taken, the
    /// subscription is not live, or the namespace is not held here.
    pub fn keep<T: Message + Clone + Send + Sync + 'static>(
        &self,
        ticket: NearTicket,
        key: &CacheKey,
        value: &T,
    ) {
        if !self.holds(key.namespace()) {
            return;
        }
        let bytes = value.encoded_len() as u64;
        let epoch = read(&self.epoch);
        if *epoch != ticket.0 || !self.live.load(Relaxed) {
            return;
        }
        self.entries.insert(
            key.as_str().to_owned(),
            Held {
                value: Arc::new(value.clone()),
                bytes,
            },
        );
    }

    /// Applies a change (pushed by cache-svc, or this process's own invalidation or delete).
    pub(crate) fn apply(&self, change: &Change) {
        let mut epoch = write(&self.epoch);
        *epoch += 1;
        match change {
            Change::Keys(keys) => {
                for key in &keys.keys {
                    self.entries.invalidate(key.as_str());
                }
            }
            Change::Pattern(pattern) => self.remove_matching(pattern),
            Change::Everything(_) => self.entries.invalidate_all(),
        }
    }

    /// Removes what `pattern` (`ns:*`, `ns:prefix*`, or any other glob of cache-svc) may match:
    /// exactly for a prefix, the whole namespace for any other glob (dropping more than needed is
    /// only a miss).
    fn remove_matching(&self, pattern: &str) {
        let Some(colon) = pattern.find(':') else {
            self.entries.invalidate_all();
            return;
        };
        let is_glob = |c: char| matches!(c, '*' | '?' | '[' | ']' | '\\');
        let prefix = match pattern.strip_suffix('*') {
            Some(prefix) if !prefix.contains(is_glob) => prefix,
            _ => &pattern[..=colon],
        };
        let doomed: Vec<Arc<String>> = self
            .entries
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key)
            .collect();
        for key in doomed {
            self.entries.invalidate(key.as_str());
        }
    }

    /// The subscription is live (greeted): the L1 may serve and keep.
    pub(crate) fn went_live(&self) {
        self.live.store(true, Relaxed);
        metrics::gauge!("learnhub_cache_near_live", "service" => self.caller).set(1.0);
    }

    /// The subscription broke (or jumped): nothing held can be trusted any more.
    pub(crate) fn drop_all(&self, reason: &'static str) {
        let was_live = self.live.swap(false, Relaxed);
        self.apply(&Change::Everything(true));
        if was_live {
            self.drops.fetch_add(1, Relaxed);
            metrics::counter!(
                "learnhub_cache_near_drops_total", "service" => self.caller, "reason" => reason
            )
            .increment(1);
            metrics::gauge!("learnhub_cache_near_live", "service" => self.caller).set(0.0);
        }
    }

    pub(crate) fn pushed(&self) {
        self.pushed.fetch_add(1, Relaxed);
    }

    pub fn stats(&self) -> NearStats {
        self.entries.run_pending_tasks();
        NearStats {
            namespaces: self
                .namespaces
                .iter()
                .map(|ns| NearNamespaceStats {
                    namespace: ns.name,
                    hits: ns.hits.load(Relaxed),
                    misses: ns.misses.load(Relaxed),
                })
                .collect(),
            entries: self.entries.entry_count(),
            live: self.live.load(Relaxed),
            drops: self.drops.load(Relaxed),
            pushed: self.pushed.load(Relaxed),
        }
    }

    /// Zeroes the hit and miss counts (the admin route's reset).
    pub fn reset_stats(&self) {
        for ns in &self.namespaces {
            ns.hits.store(0, Relaxed);
            ns.misses.store(0, Relaxed);
        }
    }
}

fn read(lock: &RwLock<u64>) -> std::sync::RwLockReadGuard<'_, u64> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(lock: &RwLock<u64>) -> std::sync::RwLockWriteGuard<'_, u64> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use learnhub_proto::cache::v1::{GetResponse as Value, InvalidatedKeys};

    use super::*;

    fn near() -> NearCache {
        let near = NearCache::new(
            &NearCacheOptions {
                ttl: Duration::from_secs(60),
                max_entries: 3,
                max_bytes: 1 << 20,
                namespaces: vec!["catalog", "course"],
            },
            "test",
        );
        near.went_live();
        near
    }

    fn value(n: u8) -> Value {
        Value {
            found: true,
            value: vec![n],
            lease: 0,
        }
    }

    fn keep(near: &NearCache, key: &CacheKey, n: u8) {
        near.keep(near.ticket(), key, &value(n));
    }

    #[test]
    fn a_value_read_across_a_change_is_not_kept() {
        let near = near();
        let key = CacheKey::new("catalog").push("page");
        let ticket = near.ticket();
        near.apply(&Change::Keys(InvalidatedKeys {
            keys: vec!["course:1".into()],
        }));
        near.keep(ticket, &key, &value(1));
        assert_eq!(near.get::<Value>(&key), None);
        keep(&near, &key, 2);
        assert_eq!(near.get::<Value>(&key), Some(value(2)));
    }

    #[test]
    fn patterns_remove_their_prefix_or_else_the_whole_namespace() {
        let near = near();
        let (a, b, c) = (
            CacheKey::new("catalog").push("page").push(1),
            CacheKey::new("catalog").push("census"),
            CacheKey::new("course").push(7),
        );
        for key in [&a, &b, &c] {
            keep(&near, key, 1);
        }
        near.apply(&Change::Pattern("catalog:page:*".into()));
        near.entries.run_pending_tasks();
        assert_eq!(near.get::<Value>(&a), None);
        assert!(near.get::<Value>(&b).is_some());
        near.apply(&Change::Pattern("catalog:c?nsus".into()));
        assert_eq!(near.get::<Value>(&b), None, "a glob drops the namespace");
        assert!(near.get::<Value>(&c).is_some(), "but no other");
    }

    #[test]
    fn nothing_is_served_or_kept_while_the_subscription_is_down() {
        let near = near();
        let key = CacheKey::new("catalog").push("page");
        keep(&near, &key, 1);
        near.drop_all("disconnected");
        keep(&near, &key, 2);
        assert_eq!(near.get::<Value>(&key), None);
        near.went_live();
        assert_eq!(
            near.get::<Value>(&key),
            None,
            "dropped, not kept while down"
        );
        let stats = near.stats();
        assert_eq!((stats.drops, stats.entries), (1, 0));
    }

    #[test]
    fn bounded_by_entries() {
        let near = near();
        for i in 0..10 {
            keep(&near, &CacheKey::new("catalog").push(i), 1);
        }
        near.entries.run_pending_tasks();
        assert!(near.stats().entries <= 3, "{:?}", near.stats());
    }
}
