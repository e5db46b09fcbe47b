//! Read coalescing: the reads of one process that wait while earlier reads are on the wire go to
//! cache-svc together, as one batch (a message of the Lookup stream, or a `GetMany` call).
//!
//! A read is sent at once while fewer than `reads_in_flight` read calls are under way; otherwise
//! it waits, and the next call to finish takes every read waiting (up to [`MAX_READ_BATCH`]) in
//! one batch. So a lone read costs one `Get`, as before, and under load the gRPC round trip
//! (its HEADERS, DATA and trailers on both ends, the handler's task) is shared by the reads that
//! queued behind it, the way a multiplexed Redis connection pipelines commands. Nothing waits on a
//! timer: a read waits only for a call already under way. Written here rather than taken from a
//! crate because the window is the client's own calls (their breaker, counters and deadlines).
use learnhub_proto::cache::v1::GetResponse;
use tokio::sync::oneshot;
use tracing::Span;

use crate::CacheError;

/// Most keys in one batch (cache-svc accepts up to 10,000).
pub const MAX_READ_BATCH: usize = 256;

/// A read waiting for its answer.
pub struct Waiting {
    pub key: String,
    /// The reader's span: a call made for a batch is a child of its first reader's.
    pub span: Span,
    pub answer: oneshot::Sender<Result<GetResponse, CacheError>>,
}

/// The reads waiting, and the read calls under way.
#[derive(Default)]
pub struct ReadQueue {
    waiting: Vec<Waiting>,
    in_flight: usize,
}

impl ReadQueue {
    /// Queues `read`; returns the batch to send now when a call slot is free (the caller then
    /// holds the slot until [`ReadQueue::next`] gives it back).
    pub fn join(&mut self, read: Waiting, in_flight: usize) -> Option<Vec<Waiting>> {
        self.waiting.push(read);
        if self.in_flight >= in_flight.max(1) {
            return None;
        }
        self.in_flight += 1;
        Some(self.take())
    }

    /// For the holder of a slot whose call finished: the reads that queued meanwhile, or `None`
    /// (and the slot is free again).
    pub fn next(&mut self) -> Option<Vec<Waiting>> {
        if self.waiting.is_empty() {
            self.in_flight -= 1;
            return None;
        }
        Some(self.take())
    }

    fn take(&mut self) -> Vec<Waiting> {
        if self.waiting.len() <= MAX_READ_BATCH {
            return std::mem::take(&mut self.waiting);
        }
        self.waiting.drain(..MAX_READ_BATCH).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(key: &str) -> (Waiting, oneshot::Receiver<Result<GetResponse, CacheError>>) {
        let (answer, receiver) = oneshot::channel();
        let waiting = Waiting {
            key: key.to_owned(),
            span: Span::none(),
            answer,
        };
        (waiting, receiver)
    }

    fn keys(batch: &[Waiting]) -> Vec<&str> {
        batch.iter().map(|w| w.key.as_str()).collect()
    }

    #[test]
    fn reads_wait_only_while_every_slot_is_taken() {
        let mut queue = ReadQueue::default();
        let first = queue.join(read("a").0, 2).unwrap();
        assert_eq!(keys(&first), ["a"]);
        let second = queue.join(read("b").0, 2).unwrap();
        assert_eq!(keys(&second), ["b"]);
        for key in ["c", "d", "e"] {
            assert!(queue.join(read(key).0, 2).is_none());
        }
        // The first call to finish takes every read that queued, in order.
        assert_eq!(keys(&queue.next().unwrap()), ["c", "d", "e"]);
        // Nothing queued: both slots are given back, and the next read goes at once.
        assert!(queue.next().is_none());
        assert!(queue.next().is_none());
        assert_eq!(keys(&queue.join(read("f").0, 2).unwrap()), ["f"]);
    }

    #[test]
    fn a_batch_holds_at_most_max_read_batch_keys() {
        let mut queue = ReadQueue::default();
        queue.join(read("first").0, 1).unwrap();
        for i in 0..MAX_READ_BATCH + 10 {
            assert!(queue.join(read(&format!("k{i}")).0, 1).is_none());
        }
        assert_eq!(queue.next().unwrap().len(), MAX_READ_BATCH);
        assert_eq!(queue.next().unwrap().len(), 10);
        assert!(queue.next().is_none());
        // A zero window still lets one call through.
        assert!(queue.join(read("z").0, 0).is_some());
    }
}
