//! The `learnhub.cache.v1.CacheService` handlers: validate the request, call the cache, map back.
//!
//! Each data call runs in a span `cache {Rpc}` (a child of the server's span of the RPC; the Redis
//! round trips are its children) saying the key's namespace and what came of it: `cache.result`
//! hit | miss for a Get, counts for the batch calls.
//!
//! Invalidations and deletes are logged at `debug` each and counted in the periodic
//! [`Summary`]; an operator's (the gateway's admin route, or a caller that did not authenticate
//! and so cannot be told from one) invalidation, and every Clear, is an INFO audit event.
use std::{fmt, net::SocketAddr, sync::Arc, time::Duration};

use learnhub_kit::{enduser::EndUser, tls::Peer};

use futures::StreamExt;
use tracing::{Instrument, Span, field::Empty};

use learnhub_proto::cache::v1::{
    CacheStats, ClearRequest, ClearResponse, DeleteRequest, DeleteResponse, GetManyRequest,
    GetManyResponse, GetRequest, GetResponse, GetStatsRequest, InvalidatePatternRequest,
    InvalidatePatternResponse, PeerRelay, ResetStatsRequest, ResetStatsResponse, SetManyRequest,
    SetManyResponse, SetRequest, SetResponse, SubscribeRequest, cache_service_server::CacheService,
};
use tonic::{Request, Response, Status};

use crate::{
    cache::Cache,
    error::Error,
    key::{Key, Pattern},
    peers::{Peers, Relayed},
    push::{InvalidationStream, Push},
    store::{Lookup, SetEntry},
    summary::Summary,
};

/// Longest TTL accepted.
pub const MAX_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Most keys or entries in one batch call.
pub const MAX_BATCH: usize = 10_000;

/// Batches of one Lookup stream looked up at once.
pub const LOOKUPS_IN_FLIGHT: usize = 16;

/// The answers of a Lookup stream.
pub type LookupStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<GetManyResponse, Status>> + Send>>;

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub default_ttl: Duration,
    pub max_value_bytes: usize,
}

pub struct CacheApi {
    cache: Cache,
    limits: Limits,
    /// Where invalidations and deletes are counted; `None` when no summary is logged.
    summary: Option<Arc<Summary>>,
    /// The other replicas, which get every invalidation and delete; `None`: a lone replica.
    peers: Option<Arc<Peers>>,
    /// The subscribers' near-caches, told of every change applied here.
    push: Arc<Push>,
}

impl CacheApi {
    pub fn new(
        cache: Cache,
        limits: Limits,
        summary: Option<Arc<Summary>>,
        peers: Option<Arc<Peers>>,
        push: Arc<Push>,
    ) -> Self {
        Self {
            cache,
            limits,
            summary,
            peers,
            push,
        }
    }

    /// A relay this replica sent itself: its subscribers were told when it was applied here.
    fn own(&self, relay: Option<&PeerRelay>) -> bool {
        relay.is_some_and(|relay| self.peers.as_ref().is_some_and(|peers| peers.is_own(relay)))
    }

    /// Whether an invalidation or delete is to be applied here: always a caller's; a peer's
    /// relay unless it is this replica's own, or it was applied on Redis and Redis serves here
    /// too.
    async fn takes(&self, relay: Option<&PeerRelay>) -> bool {
        let Some(relay) = relay else { return true };
        if self.peers.as_ref().is_some_and(|peers| peers.is_own(relay)) {
            return false;
        }
        !(relay.applied_on_redis && self.cache.on_redis().await)
    }

    /// Passes a caller's invalidation or delete, applied here, on to every replica.
    async fn relay(&self, what: Relayed) -> Result<(), Status> {
        match &self.peers {
            Some(peers) => peers.relay(what, self.cache.on_redis().await).await,
            None => Ok(()),
        }
    }

    fn set_entry(&self, request: SetRequest, field: &str) -> Result<SetEntry, Error> {
        let key = Key::parse(request.key, &join(field, "key"))?;
        if request.value.len() > self.limits.max_value_bytes {
            return Err(Error::invalid(
                &join(field, "value"),
                format!(
                    "is {} bytes, at most {} allowed",
                    request.value.len(),
                    self.limits.max_value_bytes
                ),
            ));
        }
        let ttl = match request.ttl_seconds {
            0 => self.limits.default_ttl,
            secs => Duration::from_secs(u64::from(secs)),
        };
        if ttl > MAX_TTL {
            return Err(Error::invalid(
                &join(field, "ttl_seconds"),
                format!("is {} s, at most 30 days allowed", ttl.as_secs()),
            ));
        }
        Ok(SetEntry {
            key,
            value: request.value,
            ttl,
            lease: request.lease,
        })
    }
}

#[tonic::async_trait]
impl CacheService for CacheApi {
    #[tracing::instrument(
        name = "cache Get",
        skip_all,
        fields(cache.key_namespace = Empty, cache.result = Empty)
    )]
    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let key = Key::parse(request.into_inner().key, "key")?;
        let span = Span::current();
        span.record("cache.key_namespace", key.namespace());
        let mut found = self.cache.get_many(std::slice::from_ref(&key)).await;
        let entry = found.pop().map(response).unwrap_or_default();
        span.record("cache.result", if entry.found { "hit" } else { "miss" });
        Ok(Response::new(entry))
    }

    #[tracing::instrument(
        name = "cache GetMany",
        skip_all,
        fields(cache.key_namespace = Empty, cache.keys = Empty, cache.hits = Empty)
    )]
    async fn get_many(
        &self,
        request: Request<GetManyRequest>,
    ) -> Result<Response<GetManyResponse>, Status> {
        let keys = parse_keys(request.into_inner().keys)?;
        let span = Span::current();
        span.record("cache.key_namespace", keys.first().map(Key::namespace));
        span.record("cache.keys", keys.len());
        let found = self.cache.get_many(&keys).await;
        let hits = found.iter().filter(|f| matches!(f, Lookup::Hit(_))).count();
        span.record("cache.hits", hits);
        Ok(Response::new(GetManyResponse {
            entries: found.into_iter().map(response).collect(),
        }))
    }

    #[tracing::instrument(
        name = "cache Set",
        skip_all,
        fields(cache.key_namespace = Empty, cache.stored = Empty)
    )]
    async fn set(&self, request: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
        let entry = self.set_entry(request.into_inner(), "")?;
        let span = Span::current();
        span.record("cache.key_namespace", entry.key.namespace());
        let stored = self.cache.set_many(std::slice::from_ref(&entry)).await;
        let stored = stored.first().copied().unwrap_or(false);
        span.record("cache.stored", stored);
        Ok(Response::new(SetResponse { stored }))
    }

    #[tracing::instrument(
        name = "cache SetMany",
        skip_all,
        fields(cache.key_namespace = Empty, cache.keys = Empty, cache.stored = Empty)
    )]
    async fn set_many(
        &self,
        request: Request<SetManyRequest>,
    ) -> Result<Response<SetManyResponse>, Status> {
        let entries = request.into_inner().entries;
        check_batch(entries.len(), "entries")?;
        let entries = entries
            .into_iter()
            .enumerate()
            .map(|(i, entry)| self.set_entry(entry, &format!("entries[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let span = Span::current();
        span.record(
            "cache.key_namespace",
            entries.first().map(|e| e.key.namespace()),
        );
        span.record("cache.keys", entries.len());
        let stored = self.cache.set_many(&entries).await;
        span.record("cache.stored", stored.iter().filter(|s| **s).count());
        Ok(Response::new(SetManyResponse { stored }))
    }

    #[tracing::instrument(
        name = "cache Delete",
        skip_all,
        fields(cache.key_namespace = Empty, cache.keys = Empty, cache.removed = Empty)
    )]
    async fn delete(
        &self,
        request: Request<DeleteRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let caller = Caller::of(&request);
        let DeleteRequest { keys: texts, relay } = request.into_inner();
        let keys = parse_keys(texts.clone())?;
        let span = Span::current();
        let namespace = keys.first().map(Key::namespace);
        span.record("cache.key_namespace", namespace);
        span.record("cache.keys", keys.len());
        if !self.takes(relay.as_ref()).await {
            // Applied on the Redis this replica serves from too: its subscribers still hold copies.
            if !self.own(relay.as_ref()) {
                self.push.keys(texts);
            }
            return Ok(Response::new(DeleteResponse { deleted: 0 }));
        }
        let deleted = self.cache.delete(&keys).await;
        span.record("cache.removed", deleted);
        self.push.keys(texts.clone());
        if relay.is_none() {
            self.relay(Relayed::Keys(texts)).await?;
        }
        if let Some(namespace) = namespace {
            tracing::debug!(
                caller = %caller,
                namespace,
                keys = keys.len(),
                removed = deleted,
                "cache delete"
            );
            if let Some(summary) = &self.summary {
                summary.delete(caller.service(), namespace, deleted);
            }
        }
        Ok(Response::new(DeleteResponse { deleted }))
    }

    #[tracing::instrument(
        name = "cache InvalidatePattern",
        skip_all,
        fields(cache.key_namespace = Empty, cache.removed = Empty)
    )]
    async fn invalidate_pattern(
        &self,
        request: Request<InvalidatePatternRequest>,
    ) -> Result<Response<InvalidatePatternResponse>, Status> {
        let caller = Caller::of(&request);
        let InvalidatePatternRequest {
            pattern: text,
            relay,
        } = request.into_inner();
        let pattern = Pattern::parse(&text)?;
        Span::current().record("cache.key_namespace", pattern.namespace());
        if !self.takes(relay.as_ref()).await {
            if !self.own(relay.as_ref()) {
                self.push.pattern(text);
            }
            return Ok(Response::new(InvalidatePatternResponse { removed: 0 }));
        }
        let removed = self.cache.invalidate(&pattern).await;
        Span::current().record("cache.removed", removed);
        self.push.pattern(text.clone());
        if relay.is_none() {
            self.relay(Relayed::Pattern(text)).await?;
        }
        if caller.is_operator() {
            tracing::info!(
                target: AUDIT,
                action = "cache.invalidate",
                resource = ?pattern,
                caller = %caller,
                enduser = caller.end_user(),
                outcome = "ok",
                removed,
                "audit"
            );
        } else {
            // A data service's invalidation after its own write: routine, counted in the summary.
            tracing::debug!(
                caller = %caller,
                pattern = ?pattern,
                removed,
                "cache invalidation"
            );
        }
        if let Some(summary) = &self.summary {
            summary.invalidation(caller.service(), pattern.namespace(), removed);
        }
        Ok(Response::new(InvalidatePatternResponse { removed }))
    }

    async fn get_stats(&self, _: Request<GetStatsRequest>) -> Result<Response<CacheStats>, Status> {
        Ok(Response::new(self.cache.snapshot().await))
    }

    async fn reset_stats(
        &self,
        _: Request<ResetStatsRequest>,
    ) -> Result<Response<ResetStatsResponse>, Status> {
        self.cache.stats().reset();
        Ok(Response::new(ResetStatsResponse {}))
    }

    async fn clear(
        &self,
        request: Request<ClearRequest>,
    ) -> Result<Response<ClearResponse>, Status> {
        let caller = Caller::of(&request);
        self.cache.clear().await;
        self.push.everything();
        tracing::info!(
            target: AUDIT,
            action = "cache.clear",
            resource = "*",
            caller = %caller,
            enduser = caller.end_user(),
            outcome = "ok",
            "audit"
        );
        Ok(Response::new(ClearResponse {}))
    }

    type SubscribeStream = InvalidationStream;
    type LookupStream = LookupStream;

    /// Each batch as GetMany answers it, in order, up to [`LOOKUPS_IN_FLIGHT`] of a stream at
    /// once. A refused batch ends the stream with its INVALID_ARGUMENT; so does the server
    /// stopping (without an error: a stream never ending would hold graceful shutdown).
    async fn lookup(
        &self,
        request: Request<tonic::Streaming<GetManyRequest>>,
    ) -> Result<Response<Self::LookupStream>, Status> {
        let cache = self.cache.clone();
        let answers = request
            .into_inner()
            .map(move |batch| {
                let cache = cache.clone();
                async move {
                    let keys = parse_keys(batch?.keys)?;
                    let span = tracing::info_span!(
                        "cache Lookup",
                        cache.key_namespace = keys.first().map(Key::namespace),
                        cache.keys = keys.len(),
                        cache.hits = Empty,
                    );
                    let found = cache.get_many(&keys).instrument(span.clone()).await;
                    let hits = found.iter().filter(|f| matches!(f, Lookup::Hit(_))).count();
                    span.record("cache.hits", hits);
                    Ok(GetManyResponse {
                        entries: found.into_iter().map(response).collect(),
                    })
                }
            })
            .buffered(LOOKUPS_IN_FLIGHT)
            .take_until(self.push.stopping().cancelled_owned());
        Ok(Response::new(Box::pin(answers)))
    }

    async fn subscribe(
        &self,
        _: Request<SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        Ok(Response::new(self.push.subscribe()))
    }
}

/// The `tracing` target of audit events: an operator's invalidations and every clear, with who
/// asked (the calling service, or the peer's address when it did not authenticate; and the end
/// user the gateway acts for), what and the outcome; the log line's timestamp says when.
const AUDIT: &str = "learnhub::audit";

/// The service whose invalidations are an operator's: it calls InvalidatePattern only from its
/// admin route (`POST /v1/admin/cache/invalidate`, audited there too), and Clear likewise.
const OPERATOR_SERVICE: &str = "gateway";

/// Who called: the service mutual TLS or the in-memory network vouches for, else the address.
struct Caller {
    service: Option<&'static str>,
    addr: Option<SocketAddr>,
    user: Option<EndUser>,
}

impl Caller {
    fn of<T>(request: &Request<T>) -> Self {
        let peer = request.extensions().get::<Peer>();
        Self {
            service: peer.and_then(|peer| peer.service),
            addr: peer
                .and_then(|peer| peer.remote_addr)
                .or_else(|| request.remote_addr()),
            user: request.extensions().get::<EndUser>().cloned(),
        }
    }

    /// The caller's name in the summary: its service, or `unknown` (never an address: the
    /// summary stays small).
    fn service(&self) -> &'static str {
        self.service.unwrap_or("unknown")
    }

    /// An operator's call: the gateway's, or one whose caller is unknown (plaintext: a data
    /// service cannot be told from an operator, so it stays audited).
    fn is_operator(&self) -> bool {
        self.service
            .is_none_or(|service| service == OPERATOR_SERVICE)
    }

    /// The end user the gateway forwarded (the admin who asked).
    fn end_user(&self) -> Option<&str> {
        self.user.as_ref().map(|user| &*user.id)
    }
}

impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.service, self.addr) {
            (Some(service), _) => f.write_str(service),
            (None, Some(addr)) => write!(f, "{addr}"),
            (None, None) => f.write_str("unknown"),
        }
    }
}

fn response(lookup: Lookup) -> GetResponse {
    match lookup {
        Lookup::Hit(value) => GetResponse {
            found: true,
            value,
            lease: 0,
        },
        Lookup::Miss { lease } => GetResponse {
            found: false,
            value: Vec::new(),
            lease,
        },
    }
}

/// A batch of keys (GetMany, Delete): bounded in size, each valid, errors naming `keys[i]`.
fn parse_keys(keys: Vec<String>) -> Result<Vec<Key>, Status> {
    check_batch(keys.len(), "keys")?;
    keys.into_iter()
        .enumerate()
        .map(|(i, key)| Key::parse(key, &format!("keys[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(Status::from)
}

fn check_batch(len: usize, field: &str) -> Result<(), Error> {
    if len > MAX_BATCH {
        return Err(Error::invalid(
            field,
            format!("has {len} items, at most {MAX_BATCH} allowed"),
        ));
    }
    Ok(())
}

/// `entries[3]` + `key` = `entries[3].key`; a top-level field is its own name.
fn join(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}
