//! The in-process store (moka), bounded by bytes: the whole cache when there is no Redis, the
//! fallback when Redis is down. Same model as Redis: generations in entry names, lease markers,
//! per-entry TTL.
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use moka::{
    Expiry,
    future::Cache,
    notification::RemovalCause,
    ops::compute::{CompResult, Op},
};

use super::{Lookup, SetEntry, new_lease};
use crate::key::{Key, Pattern, glob_matches};

#[derive(Debug, Clone)]
enum Entry {
    Value { bytes: Arc<[u8]>, ttl: Duration },
    Lease { token: u64, ttl: Duration },
}

impl Entry {
    fn ttl(&self) -> Duration {
        match self {
            Self::Value { ttl, .. } | Self::Lease { ttl, .. } => *ttl,
        }
    }
}

/// Bytes an entry costs beyond its name and value: moka's node, the `Arc`s, the map slot.
pub const ENTRY_OVERHEAD_BYTES: u32 = 128;

/// What an entry counts against the store's byte bound: name + value + overhead (an empty value
/// or a lease marker still costs its name and the overhead, so a flood of tiny entries is
/// bounded too).
fn weight(name: &str, entry: &Entry) -> u32 {
    let value = match entry {
        Entry::Value { bytes, .. } => bytes.len(),
        Entry::Lease { .. } => 0,
    };
    u32::try_from(name.len().saturating_add(value))
        .unwrap_or(u32::MAX)
        .saturating_add(ENTRY_OVERHEAD_BYTES)
}

/// Each entry expires after its own TTL, counted from its last write.
struct EntryTtl;

impl Expiry<String, Entry> for EntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl())
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl())
    }
}

/// Values held per generation (`ns@gen`), kept exact by the eviction listener.
type LiveCounts = Arc<Mutex<HashMap<String, i64>>>;

pub struct MemoryStore {
    /// Entry names are `{ns}@{gen}{rest}`.
    cache: Cache<String, Entry>,
    generations: Mutex<HashMap<String, u64>>,
    live: LiveCounts,
    lease_ttl: Duration,
}

impl MemoryStore {
    /// `max_bytes`: most bytes held, by [`weight`] (values and lease markers); the least useful
    /// entries go first.
    pub fn new(max_bytes: u64, lease_ttl: Duration) -> Self {
        let live: LiveCounts = Arc::default();
        let listener_live = live.clone();
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|name: &String, entry: &Entry| weight(name, entry))
            .expire_after(EntryTtl)
            .support_invalidation_closures()
            .eviction_listener(move |name: Arc<String>, entry: Entry, _: RemovalCause| {
                // Every removal of a value, whatever the cause (replaced, deleted, expired,
                // evicted), balances the +1 of its insertion.
                if let Entry::Value { .. } = entry {
                    let mut live = lock(&listener_live);
                    if let Some(count) = live.get_mut(generation_of(&name)) {
                        *count -= 1;
                    }
                }
            })
            .build();
        Self {
            cache,
            generations: Mutex::new(HashMap::new()),
            live,
            lease_ttl,
        }
    }

    pub async fn get_many(&self, keys: &[Key]) -> Vec<Lookup> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await);
        }
        out
    }

    pub async fn get(&self, key: &Key) -> Lookup {
        let name = self.entry_name(key);
        if let Some(entry) = self.cache.get(&name).await {
            return lookup(entry);
        }
        let lease_ttl = self.lease_ttl;
        let result = self
            .cache
            .entry(name)
            .and_compute_with(|current| {
                std::future::ready(match current {
                    Some(_) => Op::Nop,
                    None => Op::Put(Entry::Lease {
                        token: new_lease(),
                        ttl: lease_ttl,
                    }),
                })
            })
            .await;
        match result {
            CompResult::Inserted(entry)
            | CompResult::Unchanged(entry)
            | CompResult::ReplacedWith(entry) => lookup(entry.into_value()),
            // Not produced by the closure above; a miss without a lease is the safe reading.
            CompResult::StillNone(_) | CompResult::Removed(_) => Lookup::Miss { lease: 0 },
        }
    }

    pub async fn set_many(&self, entries: &[SetEntry]) -> Vec<bool> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            out.push(self.set(entry).await);
        }
        out
    }

    pub async fn set(&self, entry: &SetEntry) -> bool {
        let name = self.entry_name(&entry.key);
        let generation = generation_of(&name).to_owned();
        let lease = entry.lease;
        let value = Entry::Value {
            bytes: Arc::from(entry.value.as_slice()),
            ttl: entry.ttl,
        };
        let result = self
            .cache
            .entry(name)
            .and_compute_with(|current| {
                let allowed = lease == 0
                    || matches!(
                        current.map(|c| c.into_value()),
                        Some(Entry::Lease { token, .. }) if token == lease
                    );
                std::future::ready(if allowed { Op::Put(value) } else { Op::Nop })
            })
            .await;
        let stored = matches!(
            result,
            CompResult::Inserted(_) | CompResult::ReplacedWith(_)
        );
        if stored {
            *lock(&self.live).entry(generation).or_insert(0) += 1;
        }
        stored
    }

    /// Per key: whether it held a value. Lease markers are removed too.
    pub async fn delete(&self, keys: &[Key]) -> Vec<bool> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let removed = self.cache.remove(&self.entry_name(key)).await;
            out.push(matches!(removed, Some(Entry::Value { .. })));
        }
        out
    }

    /// Returns the values removed.
    pub async fn invalidate(&self, pattern: &Pattern) -> u64 {
        match pattern {
            Pattern::Namespace(namespace) => self.bump(namespace).await,
            Pattern::Match { namespace, glob } => self.remove_matching(namespace, glob).await,
        }
    }

    /// O(1) for the request: the generation moves on; the old entries are dropped lazily by moka.
    pub async fn bump(&self, namespace: &str) -> u64 {
        // Expired entries must leave the live counts before they are read.
        self.cache.run_pending_tasks().await;
        let old = {
            let mut generations = lock(&self.generations);
            // A namespace never read or written holds nothing; remembering it would let made-up
            // names grow the map.
            let Some(generation) = generations.get_mut(namespace) else {
                return 0;
            };
            let old = format!("{namespace}@{generation}");
            *generation += 1;
            old
        };
        let removed = lock(&self.live).remove(&old).unwrap_or(0);
        let old_prefix = format!("{old}:");
        // Only fails if invalidation closures were not enabled, which `new` does.
        if let Err(err) = self
            .cache
            .invalidate_entries_if(move |name, _| name.starts_with(&old_prefix))
        {
            tracing::warn!(%err, "old generation left to expire");
        }
        u64::try_from(removed).unwrap_or(0)
    }

    /// One pass over the (bounded) store.
    async fn remove_matching(&self, namespace: &str, glob: &str) -> u64 {
        let base = {
            let generations = lock(&self.generations);
            match generations.get(namespace) {
                Some(generation) => format!("{namespace}@{generation}"),
                None => return 0,
            }
        };
        let matched: Vec<Arc<String>> = self
            .cache
            .iter()
            .filter(|(name, _)| {
                name.strip_prefix(base.as_str()).is_some_and(|rest| {
                    rest.starts_with(':') && glob_matches(glob.as_bytes(), rest.as_bytes())
                })
            })
            .map(|(name, _)| name)
            .collect();
        let mut removed = 0;
        for name in matched {
            if let Some(Entry::Value { .. }) = self.cache.remove(name.as_str()).await {
                removed += 1;
            }
        }
        removed
    }

    /// Removes every entry: every generation moves on and the store is emptied.
    pub async fn clear(&self) {
        {
            let mut generations = lock(&self.generations);
            for generation in generations.values_mut() {
                *generation += 1;
            }
            lock(&self.live).clear();
        }
        self.cache.invalidate_all();
        self.cache.run_pending_tasks().await;
    }

    /// Live values (lease markers and old generations not counted).
    pub async fn key_count(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        let current: Vec<String> = lock(&self.generations)
            .iter()
            .map(|(ns, generation)| format!("{ns}@{generation}"))
            .collect();
        let live = lock(&self.live);
        let total: i64 = current.iter().filter_map(|base| live.get(base)).sum();
        u64::try_from(total).unwrap_or(0)
    }

    /// Bytes held, by [`weight`], once pending evictions have run.
    #[cfg(test)]
    pub async fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks().await;
        self.cache.weighted_size()
    }

    fn entry_name(&self, key: &Key) -> String {
        let mut generations = lock(&self.generations);
        let generation = generations.entry(key.namespace().to_owned()).or_insert(1);
        format!("{}@{generation}{}", key.namespace(), key.rest())
    }
}

fn lookup(entry: Entry) -> Lookup {
    match entry {
        Entry::Value { bytes, .. } => Lookup::Hit(bytes.to_vec()),
        Entry::Lease { token, .. } => Lookup::Miss { lease: token },
    }
}

/// `ns@gen` of an entry name `ns@gen:rest`.
fn generation_of(name: &str) -> &str {
    name.split_once(':')
        .map_or(name, |(generation, _)| generation)
}

/// The maps hold plain counters: a panic elsewhere cannot leave them inconsistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, bytes: usize) -> SetEntry {
        SetEntry {
            key: Key::parse(key.to_owned(), "key").unwrap(),
            value: vec![7; bytes],
            ttl: Duration::from_secs(600),
            lease: 0,
        }
    }

    #[tokio::test]
    async fn inserting_more_than_the_byte_bound_keeps_the_store_within_it() {
        const MAX: u64 = 1 << 20;
        let store = MemoryStore::new(MAX, Duration::from_secs(30));
        // 200 × 16 KiB = 3.2 MiB offered to a 1 MiB store.
        for i in 0..200 {
            store.set(&entry(&format!("flood:{i}"), 16 << 10)).await;
        }
        let held = store.weighted_size().await;
        assert!(held <= MAX, "{held} bytes held, bound {MAX}");
        assert!(
            held > MAX / 2,
            "the store still holds what fits: {held} bytes"
        );
        // The live count follows the evictions: no more values than fit.
        let values = store.key_count().await;
        assert!(values <= MAX / (16 << 10), "{values} values counted live");
    }

    #[tokio::test]
    async fn a_value_larger_than_the_whole_bound_is_not_kept() {
        let store = MemoryStore::new(64 << 10, Duration::from_secs(30));
        store.set(&entry("big:one", 128 << 10)).await;
        assert_eq!(store.weighted_size().await, 0);
        let lookup = store
            .get(&Key::parse("big:one".into(), "key").unwrap())
            .await;
        assert!(matches!(lookup, Lookup::Miss { .. }), "{lookup:?}");
    }
}
