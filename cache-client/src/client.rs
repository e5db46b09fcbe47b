//! [`CacheClient`]: get-or-load with single flight, leases, bypass and a circuit breaker.
//!
//! Each `get_or_load` is a span `cache get` (`cache.key_namespace`, `cache.result` = hit | miss |
//! bypass | coalesced) around its cache calls and its loader; `invalidate` and `delete` are spans
//! `cache invalidate` / `cache delete`. Metrics, labelled `service` = the caller:
//! `learnhub_cache_client_breaker_open` (0/1) and `learnhub_cache_client_bypasses_total`.
use std::{
    any::Any,
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex, MutexGuard, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use learnhub_kit::client::{self, ClientOptions, ServiceChannel};
use learnhub_proto::cache::v1::{
    DeleteRequest, GetManyRequest, GetRequest, GetResponse, InvalidatePatternRequest,
    InvalidatedKeys, SetRequest, SubscribeRequest, cache_service_client::CacheServiceClient,
    invalidation::Change,
};
use prost::Message;
use tokio::sync::{oneshot, watch};
use tonic::Request;
use tracing::{Instrument, Span, field::Empty};

use crate::{
    CacheClientOptions, CacheError, CacheKey, CachePattern,
    breaker::Breaker,
    lookups::Lookups,
    near::NearCache,
    reads::{ReadQueue, Waiting},
};

/// What a finished flight hands its followers: the leader's value (`T`) or error (`E`).
type Shared = Result<Arc<dyn Any + Send + Sync>, Arc<dyn Any + Send + Sync>>;
type FlightResult = watch::Receiver<Option<Shared>>;

const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Most TTL cache-svc accepts.
const MAX_TTL_SECS: u64 = 30 * 24 * 3600;

/// Counters since the client was built (shared by its clones).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCounters {
    /// gRPC calls made to cache-svc (a batch on the Lookup stream counts as one).
    pub calls: u64,
    /// Of those, batches sent on the Lookup stream.
    pub streamed: u64,
    /// Keys read from cache-svc: one per `Get`, one per key of a `GetMany` (concurrent reads are
    /// coalesced, so `calls` may be fewer).
    pub reads: u64,
    pub hits: u64,
    pub misses: u64,
    /// Calls that failed or timed out.
    pub errors: u64,
    /// Loads that skipped the cache (breaker open, pending invalidations, or the read failed).
    pub bypasses: u64,
    pub loader_runs: u64,
    /// Callers that missed and waited for another caller's load of the same key (same lease)
    /// instead of loading.
    pub coalesced: u64,
    pub stored: u64,
    /// Fills refused by cache-svc because the key was invalidated during the load.
    pub refused: u64,
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    streamed: AtomicU64,
    reads: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    bypasses: AtomicU64,
    loader_runs: AtomicU64,
    coalesced: AtomicU64,
    stored: AtomicU64,
    refused: AtomicU64,
}

/// An invalidation cache-svc did not acknowledge, retried in the background.
#[derive(Debug, Clone)]
enum Pending {
    Pattern(String),
    Keys(Vec<String>),
}

struct Inner {
    client: CacheServiceClient<ServiceChannel>,
    options: CacheClientOptions,
    breaker: Breaker,
    /// Loads under way by (key, lease).
    flights: Mutex<HashMap<(String, u64), FlightResult>>,
    /// Reads waiting for a call slot, coalesced into one `GetMany` (`crate::reads`).
    reads: Mutex<ReadQueue>,
    /// The stream those batches go on (`crate::lookups`).
    lookups: Arc<Lookups>,
    pending: Mutex<Vec<Pending>>,
    retrying: AtomicBool,
    counters: Counters,
    /// The L1 (`CacheClientOptions::near`), and the task that keeps it subscribed.
    near: Option<Arc<NearCache>>,
    subscription: Option<tokio::task::AbortHandle>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(subscription) = &self.subscription {
            subscription.abort();
        }
    }
}

/// A cache-svc client for one process. Clone it freely (clones share flights, breaker, counters).
#[derive(Clone)]
pub struct CacheClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CacheClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheClient")
            .field("options", &self.inner.options)
            .field("counters", &self.counters())
            .finish()
    }
}

impl CacheClient {
    /// A client for `addr` (`host:port` or `http://host:port`) that connects on first use, so a
    /// service starts even when cache-svc is not up yet. Only a malformed address fails. The
    /// channel comes from the kit's one client constructor (balancing, trace context, deadline).
    pub fn connect_lazy(addr: &str, options: CacheClientOptions) -> Result<Self, CacheError> {
        Self::connect(addr, options, &client::Resolver::default())
    }

    /// [`CacheClient::connect_lazy`] with host names resolved by `resolver`.
    pub fn connect(
        addr: &str,
        options: CacheClientOptions,
        resolver: &client::Resolver,
    ) -> Result<Self, CacheError> {
        let channel_options = ClientOptions {
            // The channel's bound is the longest call this client makes; each call asks for its
            // own (shorter) deadline.
            timeout: options.call_timeout.max(options.invalidate_timeout),
            resolver: resolver.clone(),
            tls: options.tls.clone(),
            memory: options.memory.clone(),
        };
        let channel = client::connect("cache-svc", "--cache-addr", addr, &channel_options)
            .map_err(|err| CacheError::InvalidAddress {
                addr: addr.to_owned(),
                reason: err.reason,
            })?;
        Ok(Self::from_channel(channel, options))
    }

    /// A client on a channel made by `learnhub_kit::client::connect` (the gateway shares one
    /// channel between its cache admin calls and its page cache).
    pub fn from_channel(channel: ServiceChannel, options: CacheClientOptions) -> Self {
        // The series exists from the start: a dashboard can tell "closed" from "no client".
        metrics::gauge!("learnhub_cache_client_breaker_open", "service" => options.caller).set(0.0);
        let client = CacheServiceClient::new(channel);
        // The L1 needs the subscription, which needs a runtime to run on.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let near = options
            .near
            .as_ref()
            .filter(|near| !near.ttl.is_zero() && runtime.is_some())
            .map(|near| Arc::new(NearCache::new(near, options.caller)));
        let subscription = near.as_ref().zip(runtime).map(|(near, runtime)| {
            runtime
                .spawn(subscribe(client.clone(), Arc::downgrade(near)))
                .abort_handle()
        });
        Self {
            inner: Arc::new(Inner {
                client,
                breaker: Breaker::new(options.breaker_failures, options.breaker_cooldown),
                options,
                flights: Mutex::new(HashMap::new()),
                reads: Mutex::new(ReadQueue::default()),
                lookups: Arc::default(),
                pending: Mutex::new(Vec::new()),
                retrying: AtomicBool::new(false),
                counters: Counters::default(),
                near,
                subscription,
            }),
        }
    }

    /// The L1, when configured (`CacheClientOptions::near`).
    pub fn near(&self) -> Option<&NearCache> {
        self.inner.near.as_deref()
    }

    /// Drops what `pattern` matches from this process's L1 only (cache-svc is not called): for a
    /// process that saw a write acknowledged by another service, which invalidates cache-svc
    /// itself, and wants its own next read to see it without waiting for the push.
    pub fn forget(&self, pattern: &str) {
        if let Some(near) = self.near() {
            near.apply(&Change::Pattern(pattern.to_owned()));
        }
    }

    /// The cached value of `key`, or `loader`'s, stored for `ttl` — the `@cached(timeout)` of the
    /// original. Each call reads the cache; concurrent calls in this process that miss one key
    /// under the same lease share one load (`T` and `E` are cloned to every caller: use
    /// `tonic::Status` or an `Arc`'d error), so no caller gets a load begun before a write it
    /// has seen acknowledged. A fill
    /// carries the lease of the miss, so a value loaded before an invalidation is never stored
    /// after it. Cache trouble never fails the call: it loads instead, within `call_timeout`.
    pub async fn get_or_load<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        ttl: Duration,
        loader: F,
    ) -> Result<T, E>
    where
        T: Message + Default + Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let span = tracing::info_span!(
            "cache get",
            cache.key_namespace = key.namespace(),
            cache.result = Empty,
        );
        let near = self.near().filter(|near| near.holds(key.namespace()));
        let Some(near) = near else {
            return self
                .get_or_load_in(&span, key, ttl, loader)
                .instrument(span.clone())
                .await;
        };
        if let Some(value) = near.get::<T>(key) {
            span.record("cache.result", "near");
            return Ok(value);
        }
        let ticket = near.ticket();
        let value = self
            .get_or_load_in(&span, key, ttl, loader)
            .instrument(span.clone())
            .await?;
        near.keep(ticket, key, &value);
        Ok(value)
    }

    /// [`CacheClient::get_or_load`] inside its span, which it tells how the value was found.
    ///
    /// Every caller reads the cache itself; only loads are shared, and only between callers
    /// whose reads missed under the same lease. A lease is issued by the first miss after the
    /// key was last set or invalidated and is gone once it is invalidated again, so a caller
    /// that holds it read the cache after the last invalidation — after the write that caused
    /// it, in whichever process that write happened — and the load it joins began after that
    /// read. Keying flights by the key alone let a read-back join a load begun before the
    /// reader's own acknowledged write (issue 15, defect 1).
    async fn get_or_load_in<T, E, F, Fut>(
        &self,
        span: &Span,
        key: &CacheKey,
        ttl: Duration,
        loader: F,
    ) -> Result<T, E>
    where
        T: Message + Default + Clone + Send + Sync + 'static,
        E: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = &self.inner.counters;
        loop {
            if !self.cache_usable() {
                // No cache to tell a load from before a write from one after it: each caller
                // loads for itself.
                self.bypassed(span);
                break;
            }
            let found = match self.read(key).await {
                Ok(found) => found,
                Err(_) => {
                    self.bypassed(span);
                    break;
                }
            };
            if found.found {
                match T::decode(found.value.as_slice()) {
                    Ok(value) => {
                        counters.hits.fetch_add(1, Relaxed);
                        span.record("cache.result", "hit");
                        return Ok(value);
                    }
                    // An entry of another shape (e.g. an older message version): load, and
                    // skip the fill (no lease) rather than fight over the key.
                    Err(err) => {
                        tracing::warn!(key = key.as_str(), %err, "undecodable cache entry");
                        counters.misses.fetch_add(1, Relaxed);
                        span.record("cache.result", "miss");
                        break;
                    }
                }
            }
            counters.misses.fetch_add(1, Relaxed);
            span.record("cache.result", "miss");
            // Lease 0 would be an unconditional write and says nothing about when the load
            // began: such a miss loads alone and fills nothing.
            if found.lease == 0 {
                break;
            }
            match self.join_flight(key.as_str(), found.lease) {
                Flight::Lead(sender, guard) => {
                    let result = self.lead(key, ttl, found.lease, loader).await;
                    let shared: Shared = match &result {
                        Ok(value) => Ok(Arc::new(value.clone())),
                        Err(err) => Err(Arc::new(err.clone())),
                    };
                    sender.send_replace(Some(shared));
                    drop(guard);
                    return result;
                }
                Flight::Follow(mut receiver) => {
                    let shared = match receiver.wait_for(Option::is_some).await {
                        Ok(value) => value.clone(),
                        // The leader was cancelled before it finished: read again.
                        Err(_) => continue,
                    };
                    counters.coalesced.fetch_add(1, Relaxed);
                    span.record("cache.result", "coalesced");
                    match shared {
                        Some(Ok(value)) => {
                            if let Some(value) = value.downcast_ref::<T>() {
                                return Ok(value.clone());
                            }
                        }
                        Some(Err(err)) => {
                            if let Some(err) = err.downcast_ref::<E>() {
                                return Err(err.clone());
                            }
                        }
                        None => {}
                    }
                    // Another type under the same key (a caller's bug): load for ourselves.
                    self.bypassed(span);
                    break;
                }
            }
        }
        counters.loader_runs.fetch_add(1, Relaxed);
        loader().await
    }

    /// Removes every key matching `pattern`; returns how many entries cache-svc removed. Call it
    /// after the database commit. If cache-svc does not answer, the invalidation is retried in
    /// the background and, until it succeeds, this process's loads bypass the cache.
    pub async fn invalidate(&self, pattern: &CachePattern) -> Result<u64, CacheError> {
        let span = tracing::info_span!(
            "cache invalidate",
            cache.key_namespace = pattern.key_namespace(),
            cache.pattern = pattern.as_str(),
            cache.removed = Empty,
            cache.deferred = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        // Loads under way need no telling: a caller after this invalidation misses under a new
        // lease and so never joins them (see `get_or_load_in`).
        if let Some(near) = self.near() {
            near.apply(&Change::Pattern(pattern.as_str().to_owned()));
        }
        async {
            let result = self.send_pattern(pattern.as_str()).await;
            if let Err(err) = &result
                && err.is_outage()
            {
                self.defer(Pending::Pattern(pattern.as_str().to_owned()));
            }
            record_outcome(&Span::current(), &result);
            result
        }
        .instrument(span)
        .await
    }

    /// Deletes exact keys (same guarantees as [`CacheClient::invalidate`]).
    pub async fn delete(&self, keys: &[CacheKey]) -> Result<u64, CacheError> {
        let span = tracing::info_span!(
            "cache delete",
            cache.key_namespace = keys.first().map(CacheKey::namespace),
            cache.keys = keys.len(),
            cache.removed = Empty,
            cache.deferred = Empty,
            error.type = Empty,
            otel.status_code = Empty,
        );
        let keys: Vec<String> = keys.iter().map(|k| k.as_str().to_owned()).collect();
        if let Some(near) = self.near() {
            near.apply(&Change::Keys(InvalidatedKeys { keys: keys.clone() }));
        }
        async {
            let result = self.send_delete(keys.clone()).await;
            if let Err(err) = &result
                && err.is_outage()
            {
                self.defer(Pending::Keys(keys));
            }
            record_outcome(&Span::current(), &result);
            result
        }
        .instrument(span)
        .await
    }

    pub fn counters(&self) -> ClientCounters {
        let c = &self.inner.counters;
        ClientCounters {
            calls: c.calls.load(Relaxed),
            streamed: c.streamed.load(Relaxed),
            reads: c.reads.load(Relaxed),
            hits: c.hits.load(Relaxed),
            misses: c.misses.load(Relaxed),
            errors: c.errors.load(Relaxed),
            bypasses: c.bypasses.load(Relaxed),
            loader_runs: c.loader_runs.load(Relaxed),
            coalesced: c.coalesced.load(Relaxed),
            stored: c.stored.load(Relaxed),
            refused: c.refused.load(Relaxed),
        }
    }

    /// Whether the breaker is currently skipping the cache.
    pub fn breaker_open(&self) -> bool {
        self.inner.breaker.is_open()
    }

    /// Invalidations waiting to be retried.
    pub fn pending_invalidations(&self) -> usize {
        lock(&self.inner.pending).len()
    }

    /// One leader per (key, lease): the first caller that missed under the lease loads, the
    /// others that missed under it wait for its result.
    fn join_flight(&self, key: &str, lease: u64) -> Flight<'_> {
        let flight = (key.to_owned(), lease);
        let mut flights = lock(&self.inner.flights);
        if let Some(receiver) = flights.get(&flight) {
            return Flight::Follow(receiver.clone());
        }
        let (sender, receiver) = watch::channel(None);
        flights.insert(flight.clone(), receiver.clone());
        Flight::Lead(
            sender,
            FlightGuard {
                client: self,
                flight,
                receiver,
            },
        )
    }

    /// The load of a flight: the loader's value, stored under `lease` (refused by cache-svc if
    /// an invalidation removed the lease meanwhile).
    async fn lead<T, E, F, Fut>(
        &self,
        key: &CacheKey,
        ttl: Duration,
        lease: u64,
        loader: F,
    ) -> Result<T, E>
    where
        T: Message + Default,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let counters = &self.inner.counters;
        counters.loader_runs.fetch_add(1, Relaxed);
        let value = loader().await?;
        match self.fill(key, value.encode_to_vec(), ttl, lease).await {
            Ok(true) => counters.stored.fetch_add(1, Relaxed),
            Ok(false) => counters.refused.fetch_add(1, Relaxed),
            Err(_) => 0,
        };
        Ok(value)
    }

    /// A load that skips the cache: counted, and said on the `cache get` span.
    fn bypassed(&self, span: &Span) {
        self.inner.counters.bypasses.fetch_add(1, Relaxed);
        metrics::counter!(
            "learnhub_cache_client_bypasses_total",
            "service" => self.inner.options.caller
        )
        .increment(1);
        span.record("cache.result", "bypass");
    }

    fn cache_usable(&self) -> bool {
        lock(&self.inner.pending).is_empty() && self.inner.breaker.allow()
    }

    /// The raw entry of `key` in cache-svc (no L1, no loader): `None` on a miss. Concurrent
    /// reads are coalesced as `get_or_load`'s are.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<Vec<u8>>, CacheError> {
        let found = self.read(key).await?;
        Ok(found.found.then_some(found.value))
    }

    /// One read of `key`: sent at once while a read call slot is free, else with the reads that
    /// queue behind the calls under way (see `crate::reads`).
    async fn read(&self, key: &CacheKey) -> Result<GetResponse, CacheError> {
        let (answer, answered) = oneshot::channel();
        let read = Waiting {
            key: key.as_str().to_owned(),
            span: Span::current(),
            answer,
        };
        let slots = self.inner.options.reads_in_flight;
        let batch = lock(&self.inner.reads).join(read, slots);
        let Some(batch) = batch else {
            // Queued: bounded by `call_timeout` in all, the wait for a slot included, so a slow
            // cache-svc delays a queued read no more than a sent one.
            return match tokio::time::timeout(self.inner.options.call_timeout, answered).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) | Err(_) => Err(CacheError::Timeout),
            };
        };
        // Sent now (its call is bounded by `call_timeout`), from its own task: the calls go on
        // for the readers queued behind it should this one be dropped.
        tokio::spawn(self.clone().send_reads(batch));
        // The sender is dropped unanswered only if the task was (the runtime shutting down).
        answered.await.unwrap_or(Err(CacheError::Timeout))
    }

    /// Holds a read call slot: sends `batch`, then whatever queued meanwhile, until nothing has.
    async fn send_reads(self, mut batch: Vec<Waiting>) {
        loop {
            let span = batch
                .first()
                .map_or_else(Span::none, |read| read.span.clone());
            self.send_batch(batch).instrument(span).await;
            // The readers just answered run first and queue their next reads, so the next
            // batch takes them too (26.5 instead of 16.4 keys per call with one slot and 32
            // readers in `cache-svc bench`).
            tokio::task::yield_now().await;
            let next = lock(&self.inner.reads).next();
            match next {
                Some(next) => batch = next,
                None => return,
            }
        }
    }

    /// One `Get` for a lone read, one `GetMany` for several; every reader gets its answer.
    async fn send_batch(&self, mut batch: Vec<Waiting>) {
        // Readers that gave up while queued (their bound passed) need no call.
        batch.retain(|read| !read.answer.is_closed());
        if batch.is_empty() {
            return;
        }
        // Reads queued behind the call that opened the breaker are not sent either.
        if self.inner.breaker.refusing() {
            let status = tonic::Status::unavailable("cache-svc circuit breaker open");
            return fail_all(batch, &CacheError::Status(status));
        }
        if batch.len() == 1 {
            for read in batch {
                let _ = read.answer.send(self.get_one(read.key).await);
            }
            return;
        }
        match self.get_many(&batch).await {
            Ok(entries) if entries.len() == batch.len() => {
                for (read, entry) in batch.into_iter().zip(entries) {
                    let _ = read.answer.send(Ok(entry));
                }
            }
            Ok(entries) => {
                let status = tonic::Status::internal(format!(
                    "cache-svc answered {} entries for {} keys",
                    entries.len(),
                    batch.len()
                ));
                fail_all(batch, &CacheError::Status(status));
            }
            // A key cache-svc refuses (see `CacheKey::new`) fails the whole GetMany: each key
            // is asked alone, so only its reader is refused.
            Err(err) if !err.is_outage() => {
                for read in batch {
                    let _ = read.answer.send(self.get_one(read.key).await);
                }
            }
            Err(err) => fail_all(batch, &err),
        }
    }

    async fn get_one(&self, key: String) -> Result<GetResponse, CacheError> {
        let mut client = self.inner.client.clone();
        let timeout = self.inner.options.call_timeout;
        let request = request(GetRequest { key }, timeout);
        self.inner.counters.reads.fetch_add(1, Relaxed);
        self.call(timeout, async move { client.get(request).await })
            .await
    }

    /// A batch's entries: on the Lookup stream when it is open, else (or when the stream broke
    /// under the batch) as a `GetMany` call.
    async fn get_many(&self, batch: &[Waiting]) -> Result<Vec<GetResponse>, CacheError> {
        let timeout = self.inner.options.call_timeout;
        let keys = || {
            batch
                .iter()
                .map(|read| read.key.clone())
                .collect::<Vec<_>>()
        };
        let reads = batch.len() as u64;
        if let Some(answered) = self.inner.lookups.send(&self.inner.client, keys()) {
            self.inner.counters.reads.fetch_add(reads, Relaxed);
            self.inner.counters.streamed.fetch_add(1, Relaxed);
            let answer = async {
                match answered.await {
                    Ok(Ok(entries)) => Ok(tonic::Response::new(entries)),
                    Ok(Err(status)) => Err(status),
                    Err(_) => Err(tonic::Status::unavailable("lookup stream dropped")),
                }
            };
            match self.call(timeout, answer).await {
                Ok(entries) if entries.len() == batch.len() => return Ok(entries),
                // The time is up: asking again would outlast the reader's bound.
                Err(CacheError::Timeout) => return Err(CacheError::Timeout),
                // The stream broke under the batch (cache-svc stopping, another batch's refused
                // key): ask by a call.
                _ => {}
            }
        }
        let mut client = self.inner.client.clone();
        let request = request(GetManyRequest { keys: keys() }, timeout);
        self.inner.counters.reads.fetch_add(reads, Relaxed);
        self.call(timeout, async move { client.get_many(request).await })
            .await
            .map(|response| response.entries)
    }

    async fn fill(
        &self,
        key: &CacheKey,
        value: Vec<u8>,
        ttl: Duration,
        lease: u64,
    ) -> Result<bool, CacheError> {
        let mut client = self.inner.client.clone();
        let timeout = self.inner.options.call_timeout;
        let ttl_seconds = ttl.as_secs_f64().ceil().clamp(1.0, MAX_TTL_SECS as f64) as u32;
        let request = request(
            SetRequest {
                key: key.as_str().to_owned(),
                value,
                ttl_seconds,
                lease,
            },
            timeout,
        );
        self.call(timeout, async move { client.set(request).await })
            .await
            .map(|response| response.stored)
    }

    async fn send_pattern(&self, pattern: &str) -> Result<u64, CacheError> {
        let mut client = self.inner.client.clone();
        let timeout = self.inner.options.invalidate_timeout;
        let request = request(
            InvalidatePatternRequest {
                pattern: pattern.to_owned(),
                relay: None,
            },
            timeout,
        );
        self.call(
            timeout,
            async move { client.invalidate_pattern(request).await },
        )
        .await
        .map(|response| response.removed)
    }

    async fn send_delete(&self, keys: Vec<String>) -> Result<u64, CacheError> {
        let mut client = self.inner.client.clone();
        let timeout = self.inner.options.invalidate_timeout;
        let request = request(DeleteRequest { keys, relay: None }, timeout);
        self.call(timeout, async move { client.delete(request).await })
            .await
            .map(|response| response.deleted)
    }

    /// One call, bounded by `timeout`, counted and reported to the breaker.
    async fn call<R>(
        &self,
        timeout: Duration,
        call: impl Future<Output = Result<tonic::Response<R>, tonic::Status>>,
    ) -> Result<R, CacheError> {
        let counters = &self.inner.counters;
        counters.calls.fetch_add(1, Relaxed);
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(CacheError::Status(status)),
            Err(_) => Err(CacheError::Timeout),
        };
        match &result {
            Ok(_) => self.inner.breaker.success(),
            Err(err) => {
                counters.errors.fetch_add(1, Relaxed);
                if err.is_outage() {
                    self.inner.breaker.failure();
                }
                tracing::debug!(%err, "cache-svc call failed");
            }
        }
        // Only a call's outcome opens or closes the breaker, so this is where it changes.
        let open = if self.inner.breaker.is_open() {
            1.0
        } else {
            0.0
        };
        metrics::gauge!(
            "learnhub_cache_client_breaker_open",
            "service" => self.inner.options.caller
        )
        .set(open);
        result
    }

    fn defer(&self, pending: Pending) {
        lock(&self.inner.pending).push(pending);
        if self.inner.retrying.swap(true, Relaxed) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut delay = RETRY_FIRST;
            loop {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(RETRY_MAX);
                let Some(inner) = weak.upgrade() else { return };
                let client = CacheClient { inner };
                let queued = std::mem::take(&mut *lock(&client.inner.pending));
                let mut failed = Vec::new();
                for pending in queued {
                    let sent = match &pending {
                        Pending::Pattern(pattern) => client.send_pattern(pattern).await.map(drop),
                        Pending::Keys(keys) => client.send_delete(keys.clone()).await.map(drop),
                    };
                    if sent.is_err() {
                        failed.push(pending);
                    }
                }
                let mut pending = lock(&client.inner.pending);
                pending.extend(failed);
                if pending.is_empty() {
                    client.inner.retrying.store(false, Relaxed);
                    tracing::info!("deferred cache invalidations delivered");
                    return;
                }
            }
        });
    }
}

/// Keeps `near` subscribed to cache-svc's invalidations for as long as it lives: applies each,
/// and drops the whole L1 whenever the stream breaks, skips a number or comes from another
/// instance (a restarted cache-svc, or another replica behind the Service), then subscribes again.
async fn subscribe(client: CacheServiceClient<ServiceChannel>, near: Weak<NearCache>) {
    let mut delay = RETRY_FIRST;
    loop {
        let reason = follow(client.clone(), &near, &mut delay).await;
        let Some(held) = near.upgrade() else { return };
        held.drop_all(reason);
        drop(held);
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(RETRY_MAX);
    }
}

/// One subscription, until it ends; returns why.
async fn follow(
    mut client: CacheServiceClient<ServiceChannel>,
    near: &Weak<NearCache>,
    delay: &mut Duration,
) -> &'static str {
    let mut stream = match client.subscribe(SubscribeRequest {}).await {
        Ok(response) => response.into_inner(),
        Err(_) => return "unreachable",
    };
    // (instance, seq) of the last message applied.
    let mut at: Option<(u64, u64)> = None;
    loop {
        let message = match stream.message().await {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => return "disconnected",
        };
        let Some(near) = near.upgrade() else {
            return "dropped";
        };
        match (at, message.change) {
            (None, None) => {
                near.went_live();
                *delay = RETRY_FIRST;
            }
            (Some((instance, seq)), Some(change))
                if message.instance == instance && message.seq == seq + 1 =>
            {
                near.pushed();
                near.apply(&change);
            }
            _ => return "gap",
        }
        at = Some((message.instance, message.seq));
    }
}

/// Says on an invalidate/delete span what came of it.
fn record_outcome(span: &Span, result: &Result<u64, CacheError>) {
    match result {
        Ok(removed) => {
            span.record("cache.removed", removed);
        }
        Err(err) => {
            span.record("cache.deferred", err.is_outage());
            span.record("otel.status_code", "ERROR");
            span.record(
                "error.type",
                match err {
                    CacheError::InvalidAddress { .. } => "invalid_address",
                    CacheError::Timeout => "timeout",
                    CacheError::Status(_) => "grpc_status",
                },
            );
        }
    }
}

/// Loads through `cache` when there is one, straight from `loader` otherwise — for services that
/// hold an `Option<CacheClient>` (no `CACHE_ADDR`: no caching).
pub async fn get_or_load<T, E, F, Fut>(
    cache: Option<&CacheClient>,
    key: &CacheKey,
    ttl: Duration,
    loader: F,
) -> Result<T, E>
where
    T: Message + Default + Clone + Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    match cache {
        Some(cache) => cache.get_or_load(key, ttl, loader).await,
        None => loader().await,
    }
}

enum Flight<'a> {
    Lead(watch::Sender<Option<Shared>>, FlightGuard<'a>),
    Follow(FlightResult),
}

/// Ends a flight however its leader ends (done or cancelled), so later calls start a new one.
struct FlightGuard<'a> {
    client: &'a CacheClient,
    flight: (String, u64),
    receiver: FlightResult,
}

impl Drop for FlightGuard<'_> {
    fn drop(&mut self) {
        let mut flights = lock(&self.client.inner.flights);
        if flights
            .get(&self.flight)
            .is_some_and(|current| current.same_channel(&self.receiver))
        {
            flights.remove(&self.flight);
        }
    }
}

fn request<M>(message: M, timeout: Duration) -> Request<M> {
    let mut request = Request::new(message);
    // Lets cache-svc drop work its caller has given up on.
    request.set_timeout(timeout);
    request
}

/// Every reader of `batch` gets `err`.
fn fail_all(batch: Vec<Waiting>, err: &CacheError) {
    for read in batch {
        let _ = read.answer.send(Err(err.clone()));
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
