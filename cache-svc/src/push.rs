//! Subscribe: every invalidation, delete and clear this replica applies, pushed to the callers'
//! near-caches (L1) as it is applied.
//!
//! A change is published after it is applied (on Redis or the fallback store), so a subscriber
//! that drops its copy on the push and reads again finds the new state. Changes are numbered per
//! process (`instance`, `seq`); a subscriber too slow to keep up is cut off rather than skipped
//! silently, and so drops its L1 — as it does on a gap, a new instance or a lost stream.
use std::{
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicI64, Ordering},
    },
};

use futures::{Stream, StreamExt, stream};
use learnhub_proto::cache::v1::{InvalidatedKeys, Invalidation, invalidation::Change};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// Changes a subscriber may fall behind by before it is cut off (and drops its L1).
const BACKLOG: usize = 4096;

pub type InvalidationStream = Pin<Box<dyn Stream<Item = Result<Invalidation, Status>> + Send>>;

/// The changes of this process, numbered, to every subscriber.
pub struct Push {
    instance: u64,
    /// The last number given; held while sending so numbers reach the channel in order.
    seq: Mutex<u64>,
    sender: broadcast::Sender<Invalidation>,
    /// Streams end when the server stops (a stream never ending would hold graceful shutdown).
    stop: CancellationToken,
    subscribers: Arc<AtomicI64>,
}

impl Push {
    /// Cancelled when the server stops: every long-lived stream ends with it.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    pub fn new(stop: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(BACKLOG);
        metrics::gauge!("learnhub_cache_subscribers").set(0.0);
        Self {
            instance: fastrand::u64(1..=u64::MAX),
            seq: Mutex::new(0),
            sender,
            stop,
            subscribers: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn keys(&self, keys: Vec<String>) {
        self.publish(Change::Keys(InvalidatedKeys { keys }));
    }

    pub fn pattern(&self, pattern: String) {
        self.publish(Change::Pattern(pattern));
    }

    pub fn everything(&self) {
        self.publish(Change::Everything(true));
    }

    fn publish(&self, change: Change) {
        let mut seq = self
            .seq
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *seq += 1;
        // No subscriber is not an error: nobody holds a copy.
        let _ = self.sender.send(Invalidation {
            instance: self.instance,
            seq: *seq,
            change: Some(change),
        });
    }

    /// A greeting with the number reached, then every change from it on, until the server stops
    /// or the subscriber falls more than [`BACKLOG`] changes behind (then `ABORTED`).
    pub fn subscribe(&self) -> InvalidationStream {
        let (receiver, seq) = {
            let seq = self
                .seq
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // Subscribed under the lock: no change between the greeting's number and the first
            // change received can be missed.
            (self.sender.subscribe(), *seq)
        };
        let greeting = Invalidation {
            instance: self.instance,
            seq,
            change: None,
        };
        let subscribed = Subscribed::new(self.subscribers.clone());
        let stop = self.stop.clone();
        let changes = stream::unfold(Some((receiver, stop, subscribed)), |state| async move {
            let (mut receiver, stop, subscribed) = state?;
            let next = tokio::select! {
                _ = stop.cancelled() => return None,
                next = receiver.recv() => next,
            };
            match next {
                Ok(change) => Some((Ok(change), Some((receiver, stop, subscribed)))),
                Err(RecvError::Lagged(missed)) => Some((
                    Err(Status::aborted(format!(
                        "subscriber fell {missed} invalidations behind: drop the near-cache and subscribe again"
                    ))),
                    None,
                )),
                Err(RecvError::Closed) => None,
            }
        });
        Box::pin(stream::once(async { Ok(greeting) }).chain(changes))
    }
}

/// Counts a subscription while its stream lives (`learnhub_cache_subscribers`).
struct Subscribed(Arc<AtomicI64>);

impl Subscribed {
    fn new(count: Arc<AtomicI64>) -> Self {
        let now = count.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("learnhub_cache_subscribers").set(now as f64);
        Self(count)
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        let now = self.0.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("learnhub_cache_subscribers").set(now as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_gets_a_greeting_then_every_change_in_order() {
        let push = Push::new(CancellationToken::new());
        push.pattern("catalog:*".into());
        let mut changes = push.subscribe();
        push.keys(vec!["course:7".into()]);
        push.everything();
        let greeting = changes.next().await.unwrap().unwrap();
        assert_eq!((greeting.seq, greeting.change), (1, None));
        let first = changes.next().await.unwrap().unwrap();
        assert_eq!(first.seq, 2);
        assert_eq!(
            first.change,
            Some(Change::Keys(InvalidatedKeys {
                keys: vec!["course:7".into()]
            }))
        );
        let second = changes.next().await.unwrap().unwrap();
        assert_eq!(
            (second.seq, second.change, second.instance),
            (3, Some(Change::Everything(true)), greeting.instance)
        );
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_cut_off_and_streams_end_with_the_server() {
        let stop = CancellationToken::new();
        let push = Push::new(stop.clone());
        let mut slow = push.subscribe();
        for i in 0..=BACKLOG {
            push.keys(vec![format!("course:{i}")]);
        }
        assert!(slow.next().await.unwrap().is_ok(), "greeting");
        let cut = slow.next().await.unwrap().unwrap_err();
        assert_eq!(cut.code(), tonic::Code::Aborted);
        assert!(slow.next().await.is_none());

        let mut other = push.subscribe();
        assert!(other.next().await.unwrap().is_ok());
        stop.cancel();
        assert!(other.next().await.is_none());
    }
}
