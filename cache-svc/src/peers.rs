//! The other replicas of this cache-svc (`CACHE_PEERS`), and passing invalidations on to them.
//!
//! While Redis serves, every replica reads and writes the same Redis and one replica applying an
//! invalidation is enough. During an outage each replica serves from its own in-process store,
//! and a caller's invalidation reaches only the replica its call went to: the others would keep
//! serving what it removed until Redis came back. So a replica applies each invalidation and
//! delete itself, then passes it on to every replica (itself included when the name resolves to
//! it: it knows its own relays by their origin and skips them) and acknowledges the caller only
//! when all of them have it. A peer that cannot be reached fails the call with `UNAVAILABLE`:
//! the caller retries it (both calls are idempotent) and bypasses the cache meanwhile.
use std::{sync::Arc, time::Duration};

use futures::future::join_all;
use learnhub_kit::{
    client::{self, ClientOptions, ServiceChannel},
    tls::MutualTls,
};
use learnhub_proto::cache::v1::{
    DeleteRequest, InvalidatePatternRequest, PeerRelay, cache_service_client::CacheServiceClient,
};
use tonic::{Request, Status};

use crate::error::Error;

/// The longest a relay to one peer may take (a peer on Redis answers in a millisecond; one on
/// a dead Redis answers from its own store at once).
const RELAY_TIMEOUT: Duration = Duration::from_millis(1_000);
/// How long a relay waits for the peer address to be resolved the first time.
const RESOLVE_WAIT: Duration = Duration::from_millis(1_000);

/// What is passed on: a pattern or exact keys.
pub enum Relayed {
    Pattern(String),
    Keys(Vec<String>),
}

/// Every replica of this cache-svc, reached over one balanced channel.
pub struct Peers {
    /// This process's id in its relays.
    origin: u64,
    channel: ServiceChannel,
}

impl Peers {
    /// A client of the replicas at `addr` (see `--peers`), connecting lazily, with this replica's
    /// own identity when the services use mutual TLS.
    pub fn connect(addr: &str, tls: Option<Arc<MutualTls>>) -> Result<Self, Error> {
        let options = ClientOptions::new(RELAY_TIMEOUT).with_tls(tls);
        let channel = client::connect("cache-svc", "--peers", addr, &options)
            .map_err(|err| Error::invalid("peers", err.reason))?;
        Ok(Self {
            origin: fastrand::u64(1..=u64::MAX),
            channel,
        })
    }

    /// Whether `relay` came from this process (it then has it already).
    pub fn is_own(&self, relay: &PeerRelay) -> bool {
        relay.origin == self.origin
    }

    /// Passes `what` on to every replica; `applied_on_redis` says whether this replica applied
    /// it on Redis. Fails with the first peer that could not be reached.
    pub async fn relay(&self, what: Relayed, applied_on_redis: bool) -> Result<(), Status> {
        let relay = PeerRelay {
            origin: self.origin,
            applied_on_redis,
        };
        let mut replicas = self.channel.each_replica();
        let waited = tokio::time::Instant::now();
        while replicas.is_empty() && waited.elapsed() < RESOLVE_WAIT {
            tokio::time::sleep(Duration::from_millis(20)).await;
            replicas = self.channel.each_replica();
        }
        if replicas.is_empty() {
            return Err(Status::unavailable(
                "cache-svc peers: no replica resolved yet; retry",
            ));
        }
        let calls = replicas.into_iter().map(|(addr, channel)| {
            let mut client = CacheServiceClient::new(channel);
            let relay = Some(relay);
            let what = match &what {
                Relayed::Pattern(pattern) => Relayed::Pattern(pattern.clone()),
                Relayed::Keys(keys) => Relayed::Keys(keys.clone()),
            };
            async move {
                let sent = match what {
                    Relayed::Pattern(pattern) => client
                        .invalidate_pattern(timed(InvalidatePatternRequest { pattern, relay }))
                        .await
                        .map(drop),
                    Relayed::Keys(keys) => client
                        .delete(timed(DeleteRequest { keys, relay }))
                        .await
                        .map(drop),
                };
                sent.map_err(|status| {
                    let peer = addr.map_or_else(|| "a peer".to_owned(), |addr| addr.to_string());
                    metrics::counter!("learnhub_cache_peer_relay_failures_total").increment(1);
                    Status::unavailable(format!(
                        "cache-svc peer {peer} did not take the invalidation: {}",
                        status.message()
                    ))
                })
            }
        });
        join_all(calls).await.into_iter().collect()
    }
}

fn timed<M>(message: M) -> Request<M> {
    let mut request = Request::new(message);
    request.set_timeout(RELAY_TIMEOUT);
    request
}
