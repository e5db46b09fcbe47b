//! The cache as the service sees it: Redis when it answers, the in-process store when it does not,
//! statistics for both, and the journal that keeps invalidations made during an outage.
use std::{
    collections::{BTreeSet, HashSet},
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use learnhub_proto::cache::v1::CacheStats;
use tokio::sync::{Notify, RwLock};
use tokio_util::sync::CancellationToken;

use crate::{
    error::Error,
    key::{Key, Pattern},
    stats::{Event, Stats},
    store::{Lookup, MemoryStore, RedisStore, SetEntry, redis::RedisOptions},
};

/// Journal entries kept one by one; past this, the journal keeps only the namespaces they touch
/// (a namespace bump on replay removes at least as much).
const JOURNAL_LIMIT: usize = 10_000;
const RECONNECT_FIRST: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Where requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Redis,
    /// Redis is down (or being caught up): the in-process store serves, invalidations are journaled.
    Memory,
}

/// Invalidations made while Redis was away, replayed on Redis before it serves again.
#[derive(Debug, Default, Clone)]
struct Journal {
    clear: bool,
    namespaces: BTreeSet<String>,
    patterns: Vec<(String, String)>,
    keys: HashSet<Key>,
}

impl Journal {
    fn is_empty(&self) -> bool {
        !self.clear && self.len() == 0
    }

    /// Invalidations held (namespaces, patterns and keys; a clear is not counted).
    fn len(&self) -> usize {
        self.namespaces.len() + self.patterns.len() + self.keys.len()
    }

    fn add_keys<'a>(&mut self, keys: impl IntoIterator<Item = &'a Key>) {
        for key in keys {
            if !self.namespaces.contains(key.namespace()) {
                self.keys.insert(key.clone());
            }
        }
        self.compact();
    }

    fn add_pattern(&mut self, pattern: &Pattern) {
        match pattern {
            Pattern::Namespace(namespace) => {
                self.namespaces.insert(namespace.clone());
                self.keys.retain(|key| key.namespace() != namespace);
                self.patterns.retain(|(ns, _)| ns != namespace);
            }
            Pattern::Match { namespace, glob } => {
                if !self.namespaces.contains(namespace) {
                    self.patterns.push((namespace.clone(), glob.clone()));
                }
            }
        }
        self.compact();
    }

    fn merge(&mut self, other: Journal) {
        self.clear |= other.clear;
        self.namespaces.extend(other.namespaces);
        self.patterns.extend(other.patterns);
        self.keys.extend(other.keys);
        self.compact();
    }

    fn compact(&mut self) {
        if self.keys.len() + self.patterns.len() <= JOURNAL_LIMIT {
            return;
        }
        let namespaces: Vec<String> = self
            .keys
            .drain()
            .map(|key| key.namespace().to_owned())
            .chain(self.patterns.drain(..).map(|(ns, _)| ns))
            .collect();
        self.namespaces.extend(namespaces);
    }
}

/// How [`Cache::recover`] caught Redis up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// The journal was replayed (a clear included).
    Replayed,
    /// Redis held nothing of this cache (restarted empty, or new): the journal was dropped
    /// unreplayed, this many invalidations in it.
    Empty(usize),
}

/// Settings of the cache itself (the service adds request limits).
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Bytes the in-process store may hold.
    pub memory_max_bytes: u64,
    pub lease_ttl: Duration,
    /// None: the in-process store only.
    pub redis: Option<RedisOptions>,
}

struct RedisSide {
    store: RedisStore,
    mode: RwLock<Mode>,
    journal: Mutex<Journal>,
    reconnecting: AtomicBool,
    /// Poked after a namespace bump so the old generation is deleted soon.
    sweep_now: Arc<Notify>,
}

struct Inner {
    memory: MemoryStore,
    redis: Option<RedisSide>,
    stats: Arc<Stats>,
    stop: CancellationToken,
    /// Background tasks, joined by [`Cache::shutdown`] so none writes to Redis after it returns.
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Cheap to clone; background tasks stop when the last clone is dropped or on [`Cache::shutdown`].
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Cache {
    /// With Redis configured, connects once: if Redis does not answer the cache starts on the
    /// in-process store and keeps trying in the background.
    ///
    /// Whatever Redis holds is cleared (every namespace's generation bumped) before this process
    /// serves from it: while no cache-svc was running, writers' invalidations had nowhere to go,
    /// and the journal of the process that died is gone with it. The price is a cold cache after
    /// each start of cache-svc; the alternative, entries invalidated during the restart coming
    /// back, is a stale read nobody can see coming. A Redis that holds nothing of this cache (see
    /// [`RedisStore::check_empty`]) needs no clear.
    pub async fn start(options: CacheOptions, stats: Arc<Stats>) -> Result<Self, Error> {
        let redis = match options.redis {
            Some(redis_options) => Some(RedisSide {
                store: RedisStore::new(redis_options, stats.clone())?,
                mode: RwLock::new(Mode::Memory),
                journal: Mutex::new(Journal {
                    clear: true,
                    ..Journal::default()
                }),
                reconnecting: AtomicBool::new(false),
                sweep_now: Arc::new(Notify::new()),
            }),
            None => None,
        };
        let cache = Self {
            inner: Arc::new(Inner {
                memory: MemoryStore::new(options.memory_max_bytes, options.lease_ttl),
                redis,
                stats,
                stop: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
            }),
        };
        // Without Redis the in-process store is the cache, not a fallback.
        report_fallback(false);
        if let Some(redis) = &cache.inner.redis {
            match cache.recover().await {
                Ok(Recovery::Replayed) => {
                    tracing::info!(
                        prefix = redis.store.prefix(),
                        "using redis (cleared at start)"
                    );
                }
                Ok(Recovery::Empty(_)) => {
                    tracing::info!(
                        prefix = redis.store.prefix(),
                        "using redis (empty at start: nothing to clear)"
                    );
                }
                Err(err) => {
                    tracing::warn!(%err, "redis unreachable at start: serving from the in-process store");
                    report_fallback(true);
                    cache.spawn_reconnect();
                }
            }
            cache.spawn_sweeper();
        }
        Ok(cache)
    }

    /// Stops the background tasks and waits for them. A journal replay under way is finished
    /// first (its calls are bounded by the Redis timeout): cutting it short would lose
    /// invalidations Redis has not seen yet.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        for task in tasks {
            if let Err(err) = task.await {
                tracing::warn!(%err, "cache background task failed");
            }
        }
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.inner.tasks);
        tasks.retain(|task| !task.is_finished());
        tasks.push(tokio::spawn(task));
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// `true` while requests are served by Redis.
    pub async fn on_redis(&self) -> bool {
        match &self.inner.redis {
            Some(redis) => *redis.mode.read().await == Mode::Redis,
            None => false,
        }
    }

    pub async fn get_many(&self, keys: &[Key]) -> Vec<Lookup> {
        if keys.is_empty() {
            return Vec::new();
        }
        let found = match self.redis_if_up().await {
            Some(redis) => match redis.store.get_many(keys).await {
                Ok(found) => Some(found),
                Err(err) => {
                    self.failed(&err, keys.iter().map(Key::namespace)).await;
                    None
                }
            },
            None => None,
        };
        let found = match found {
            Some(found) => found,
            None => {
                let _mode = self.memory_mode().await;
                self.inner.memory.get_many(keys).await
            }
        };
        for (key, lookup) in keys.iter().zip(&found) {
            let event = match lookup {
                Lookup::Hit(_) => Event::Hit,
                Lookup::Miss { .. } => Event::Miss,
            };
            self.inner.stats.record(key.namespace(), event);
        }
        found
    }

    pub async fn set_many(&self, entries: &[SetEntry]) -> Vec<bool> {
        if entries.is_empty() {
            return Vec::new();
        }
        let stored = match self.redis_if_up().await {
            Some(redis) => match redis.store.set_many(entries).await {
                Ok(stored) => Some(stored),
                Err(err) => {
                    self.failed(&err, entries.iter().map(|e| e.key.namespace()))
                        .await;
                    None
                }
            },
            None => None,
        };
        let stored = match stored {
            Some(stored) => stored,
            None => {
                let _mode = self.memory_mode().await;
                // A write of fresh data must also reach Redis's copy: replay deletes it there.
                self.journal(|journal| {
                    journal.add_keys(entries.iter().filter(|e| e.lease == 0).map(|e| &e.key))
                });
                self.inner.memory.set_many(entries).await
            }
        };
        for (entry, stored) in entries.iter().zip(&stored) {
            let event = if *stored {
                Event::Stored
            } else {
                Event::Refused
            };
            self.inner.stats.record(entry.key.namespace(), event);
        }
        stored
    }

    /// Returns the number of values deleted.
    pub async fn delete(&self, keys: &[Key]) -> u64 {
        if keys.is_empty() {
            return 0;
        }
        let deleted = match self.redis_if_up().await {
            Some(redis) => match redis.store.delete(keys).await {
                Ok(deleted) => Some(deleted),
                Err(err) => {
                    self.failed(&err, keys.iter().map(Key::namespace)).await;
                    None
                }
            },
            None => None,
        };
        let deleted = match deleted {
            Some(deleted) => deleted,
            None => {
                let _mode = self.memory_mode().await;
                self.journal(|journal| journal.add_keys(keys));
                self.inner.memory.delete(keys).await
            }
        };
        let mut total = 0;
        for (key, deleted) in keys.iter().zip(deleted) {
            if deleted {
                total += 1;
                self.inner.stats.record(key.namespace(), Event::Deleted(1));
            }
        }
        total
    }

    /// Returns the number of values removed.
    pub async fn invalidate(&self, pattern: &Pattern) -> u64 {
        let removed = match self.redis_if_up().await {
            Some(redis) => match redis.store.invalidate(pattern).await {
                Ok(removed) => {
                    if matches!(pattern, Pattern::Namespace(_)) {
                        redis.sweep_now.notify_one();
                    }
                    Some(removed)
                }
                Err(err) => {
                    self.failed(&err, [pattern.namespace()]).await;
                    None
                }
            },
            None => None,
        };
        let removed = match removed {
            Some(removed) => removed,
            None => {
                let _mode = self.memory_mode().await;
                self.journal(|journal| journal.add_pattern(pattern));
                self.inner.memory.invalidate(pattern).await
            }
        };
        self.inner
            .stats
            .record(pattern.namespace(), Event::Invalidated(removed));
        removed
    }

    pub async fn clear(&self) {
        if let Some(redis) = self.redis_if_up().await {
            match redis.store.clear().await {
                Ok(()) => {
                    // The in-process store may hold entries from an earlier outage.
                    self.inner.memory.clear().await;
                    return;
                }
                Err(err) => {
                    self.inner.stats.record_unattributed_error();
                    self.fail_over(&err).await;
                }
            }
        }
        let _mode = self.memory_mode().await;
        self.journal(|journal| journal.clear = true);
        self.inner.memory.clear().await;
    }

    /// Counters, store, Redis figures and latency.
    pub async fn snapshot(&self) -> CacheStats {
        let mut redis_info = None;
        if let Some(redis) = self.redis_if_up().await {
            match redis.store.info().await {
                Ok(info) => redis_info = Some(info),
                Err(err) => {
                    self.inner.stats.record_unattributed_error();
                    self.fail_over(&err).await;
                }
            }
        }
        let (store, connected, used_memory, key_count) = match redis_info {
            Some(info) => ("redis", true, info.used_memory, info.key_count),
            None => ("memory", false, 0, self.inner.memory.key_count().await),
        };
        let stats = &self.inner.stats;
        let (p50, p99) = stats.redis_latency_ms();
        CacheStats {
            total: Some(stats.total()),
            namespaces: stats.namespaces(),
            store: store.to_owned(),
            redis_connected: connected,
            redis_used_memory_bytes: used_memory,
            key_count,
            uptime_seconds: stats.uptime().as_secs(),
            redis_latency_p50_ms: p50,
            redis_latency_p99_ms: p99,
            near_caches: Vec::new(),
        }
    }

    /// Redis, if it is the active store.
    async fn redis_if_up(&self) -> Option<&RedisSide> {
        let redis = self.inner.redis.as_ref()?;
        (*redis.mode.read().await == Mode::Redis).then_some(redis)
    }

    /// Held across a memory-mode operation and its journal entry, so that the switch back to
    /// Redis (which takes the write side) sees every journaled invalidation before Redis serves.
    async fn memory_mode(&self) -> Option<tokio::sync::RwLockReadGuard<'_, Mode>> {
        match &self.inner.redis {
            Some(redis) => Some(redis.mode.read().await),
            None => None,
        }
    }

    fn journal(&self, record: impl FnOnce(&mut Journal)) {
        if let Some(redis) = &self.inner.redis {
            record(&mut lock(&redis.journal));
        }
    }

    /// A Redis call failed while serving a request: count it per key, then fail over.
    async fn failed<'a>(&self, err: &Error, namespaces: impl IntoIterator<Item = &'a str>) {
        for namespace in namespaces {
            self.inner.stats.record(namespace, Event::Error);
        }
        self.fail_over(err).await;
    }

    async fn fail_over(&self, err: &Error) {
        let Some(redis) = &self.inner.redis else {
            return;
        };
        let mut mode = redis.mode.write().await;
        if *mode == Mode::Redis {
            tracing::warn!(%err, "redis failed: serving from the in-process store");
            // Entries left from an earlier outage may have been invalidated on Redis since.
            self.inner.memory.clear().await;
            *mode = Mode::Memory;
            report_fallback(true);
            drop(mode);
            self.spawn_reconnect();
        }
    }

    fn spawn_reconnect(&self) {
        let Some(redis) = &self.inner.redis else {
            return;
        };
        if redis.reconnecting.swap(true, Ordering::SeqCst) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        self.spawn(async move {
            let mut delay = RECONNECT_FIRST;
            loop {
                // Jitter so replicas do not reconnect in lockstep.
                let pause = delay.mul_f64(0.5 + fastrand::f64());
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                delay = (delay * 2).min(RECONNECT_MAX);
                let Some(inner) = weak.upgrade() else { return };
                let cache = Cache { inner };
                match cache.recover().await {
                    Ok(Recovery::Replayed) => {
                        tracing::info!("redis is back: journal replayed, serving from redis");
                        return;
                    }
                    Ok(Recovery::Empty(dropped)) => {
                        tracing::info!(
                            "Redis came back empty: {dropped} journaled invalidations not replayed"
                        );
                        return;
                    }
                    Err(err) => tracing::debug!(%err, ?delay, "redis still unavailable"),
                }
            }
        });
    }

    /// Connects, replays the journal until it is empty, then switches requests back to Redis.
    ///
    /// When Redis holds nothing of this cache (it restarted empty; see
    /// [`RedisStore::check_empty`]), no entry in it can be stale: what was journaled before the
    /// check is dropped, not replayed (hundreds of SCANs and deletes, each deletion creating a
    /// generation key, on a Redis that needs none). The journal is taken before the check: an
    /// invalidation made after it may concern an entry another replica has written into the
    /// fresh Redis since, so it stays journaled and is replayed as usual. Anything another
    /// replica wrote before the check makes Redis not empty (a generation, or the marker written
    /// with it), and the whole journal is replayed.
    async fn recover(&self) -> Result<Recovery, Error> {
        let Some(redis) = &self.inner.redis else {
            return Ok(Recovery::Replayed);
        };
        redis.store.connect().await?;
        let mut pending = std::mem::take(&mut *lock(&redis.journal));
        let mut recovery = Recovery::Replayed;
        match redis.store.check_empty().await {
            Ok(true) => {
                recovery = Recovery::Empty(pending.len());
                pending = Journal::default();
            }
            Ok(false) => {}
            Err(err) => {
                lock(&redis.journal).merge(pending);
                return Err(err);
            }
        }
        loop {
            if pending.is_empty() {
                let mut mode = redis.mode.write().await;
                // Memory-mode operations journal under the read side: none is half done now.
                if lock(&redis.journal).is_empty() {
                    *mode = Mode::Redis;
                    report_fallback(false);
                    redis.reconnecting.store(false, Ordering::SeqCst);
                    return Ok(recovery);
                }
            } else if let Err(err) = self.replay(&redis.store, &pending).await {
                lock(&redis.journal).merge(pending);
                return Err(err);
            }
            pending = std::mem::take(&mut *lock(&redis.journal));
        }
    }

    async fn replay(&self, store: &RedisStore, journal: &Journal) -> Result<(), Error> {
        tracing::info!(
            clear = journal.clear,
            namespaces = journal.namespaces.len(),
            patterns = journal.patterns.len(),
            keys = journal.keys.len(),
            "replaying invalidations made while redis was away"
        );
        if journal.clear {
            store.clear().await?;
        }
        let namespaces: Vec<&str> = journal.namespaces.iter().map(String::as_str).collect();
        for chunk in namespaces.chunks(crate::store::redis::BATCH) {
            store.bump(chunk).await?;
        }
        for (namespace, glob) in &journal.patterns {
            store
                .invalidate(&Pattern::Match {
                    namespace: namespace.clone(),
                    glob: glob.clone(),
                })
                .await?;
        }
        let keys: Vec<Key> = journal.keys.iter().cloned().collect();
        for chunk in keys.chunks(crate::store::redis::BATCH) {
            store.delete(chunk).await?;
        }
        Ok(())
    }

    fn spawn_sweeper(&self) {
        let Some(redis) = &self.inner.redis else {
            return;
        };
        let wake = redis.sweep_now.clone();
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let stop = self.inner.stop.clone();
        self.spawn(async move {
            loop {
                {
                    let Some(inner) = weak.upgrade() else { return };
                    let cache = Cache { inner };
                    if let Some(redis) = cache.redis_if_up().await {
                        // Each step is one atomic script: stopping between two is harmless.
                        tokio::select! {
                            () = stop.cancelled() => return,
                            swept = redis.store.sweep() => if let Err(err) = swept {
                                tracing::debug!(%err, "sweep interrupted");
                            },
                        }
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(SWEEP_EVERY) => {}
                }
            }
        });
    }
}

/// `learnhub_cache_fallback_active`: 1 while Redis is configured but the in-process store serves.
fn report_fallback(active: bool) {
    metrics::gauge!("learnhub_cache_fallback_active").set(if active { 1.0 } else { 0.0 });
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        Key::parse(text.to_owned(), "key").unwrap()
    }

    #[test]
    fn journal_namespace_bump_subsumes_keys_and_patterns() {
        let mut journal = Journal::default();
        journal.add_keys([&key("a:1"), &key("b:1")]);
        journal.add_pattern(&Pattern::parse("a:x:*").unwrap());
        journal.add_pattern(&Pattern::parse("a:*").unwrap());
        journal.add_keys([&key("a:2")]);
        assert_eq!(journal.namespaces.iter().collect::<Vec<_>>(), ["a"]);
        assert!(journal.patterns.is_empty());
        assert_eq!(journal.keys, HashSet::from([key("b:1")]));
    }

    #[test]
    fn journal_stays_bounded() {
        let mut journal = Journal::default();
        let keys: Vec<Key> = (0..JOURNAL_LIMIT + 1)
            .map(|i| key(&format!("ns{}:{i}", i % 3)))
            .collect();
        journal.add_keys(&keys);
        assert!(journal.keys.is_empty());
        assert_eq!(journal.namespaces.len(), 3);
    }
}
