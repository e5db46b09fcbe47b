//! The Lookup stream: coalesced reads sent as messages of one long-lived call instead of a
//! `GetMany` call each.
//!
//! A unary call costs its HEADERS, trailers and the per-call layers on both ends; in
//! `cache-svc bench` that was most of a coalesced read's cost (about 130 µs of CPU per call
//! against 3.5 µs per key). On the stream a batch is one DATA frame each way. cache-svc answers
//! the batches in order, so the answers are matched to the batches by position.
//!
//! The stream is opened in the background the first time a batch is sent; until it is open, and
//! whenever it breaks (cache-svc stopped, a refused key ended it), batches go as `GetMany` calls
//! and the batches it held are asked again that way, so no reader sees the stream's trouble. A
//! stream that could not be opened (an older cache-svc without `Lookup`, say) is tried again
//! after [`REOPEN_AFTER`].
use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use learnhub_kit::client::ServiceChannel;
use learnhub_proto::cache::v1::{
    GetManyRequest, GetManyResponse, GetResponse, cache_service_client::CacheServiceClient,
};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::client::lock;

/// How long after a failed open (or a stream that broke) batches go as calls before the stream
/// is opened again.
pub const REOPEN_AFTER: Duration = Duration::from_secs(1);

/// What a batch on the stream gets: its entries, or the status the stream ended with.
pub type Answer = Result<Vec<GetResponse>, tonic::Status>;

/// One open stream: batches go out in the order their answers are queued, under one lock. Only
/// [`Lookups`] holds it, so the request stream ends (and cache-svc ends the call) when the client
/// is dropped.
struct Open {
    out: mpsc::UnboundedSender<GetManyRequest>,
    answers: Arc<Answers>,
}

/// The batches waiting for their answers, shared with the task that reads them.
struct Answers {
    waiting: Mutex<VecDeque<oneshot::Sender<Answer>>>,
    broken: AtomicBool,
}

impl Open {
    /// Sends `keys`; `None` when the stream is broken (send the batch as a call).
    fn send(&self, keys: Vec<String>) -> Option<oneshot::Receiver<Answer>> {
        let mut waiting = lock(&self.answers.waiting);
        if self.answers.broken.load(Relaxed) {
            return None;
        }
        self.out.send(GetManyRequest { keys }).ok()?;
        let (answer, answered) = oneshot::channel();
        waiting.push_back(answer);
        Some(answered)
    }
}

impl Answers {
    /// The stream ended: every batch still waiting gets `status`, and later ones are not sent.
    fn end(&self, status: &tonic::Status) {
        let mut waiting = lock(&self.waiting);
        self.broken.store(true, Relaxed);
        for answer in waiting.drain(..) {
            let _ = answer.send(Err(status.clone()));
        }
    }
}

/// The client's Lookup stream, opened on demand.
#[derive(Default)]
pub struct Lookups {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    open: Option<Arc<Open>>,
    opening: bool,
    /// No open before this (after a failed open or a break).
    not_before: Option<Instant>,
}

impl Lookups {
    /// Sends `keys` on the stream when it is open; `None` means: send them as a call (the
    /// stream is being opened, is broken, or may not be opened yet).
    pub fn send(
        self: &Arc<Self>,
        client: &CacheServiceClient<ServiceChannel>,
        keys: Vec<String>,
    ) -> Option<oneshot::Receiver<Answer>> {
        let open = {
            let mut state = lock(&self.state);
            match &state.open {
                Some(open) if !open.answers.broken.load(Relaxed) => Some(open.clone()),
                _ => {
                    let now = Instant::now();
                    let wait = state.not_before.is_some_and(|at| now < at);
                    if !state.opening && !wait {
                        state.opening = true;
                        state.open = None;
                        // No request's span: the stream outlives every request.
                        tokio::spawn(
                            self.clone()
                                .open(client.clone())
                                .instrument(tracing::Span::none()),
                        );
                    }
                    None
                }
            }
        };
        open?.send(keys)
    }

    async fn open(self: Arc<Self>, mut client: CacheServiceClient<ServiceChannel>) {
        let (out, mut outgoing) = mpsc::unbounded_channel();
        let requests = futures::stream::poll_fn(move |cx| outgoing.poll_recv(cx));
        let opened = client.lookup(requests).await;
        let mut state = lock(&self.state);
        state.opening = false;
        match opened {
            Ok(answers) => {
                let shared = Arc::new(Answers {
                    waiting: Mutex::new(VecDeque::new()),
                    broken: AtomicBool::new(false),
                });
                state.open = Some(Arc::new(Open {
                    out,
                    answers: shared.clone(),
                }));
                state.not_before = None;
                tokio::spawn(follow(shared, answers.into_inner(), Arc::downgrade(&self)));
            }
            Err(status) => {
                tracing::debug!(%status, "cache-svc lookup stream not opened: reads go as calls");
                state.not_before = Some(Instant::now() + REOPEN_AFTER);
            }
        }
    }
}

/// Hands each answer to the batch first in line; when the stream ends, fails the rest.
async fn follow(
    open: Arc<Answers>,
    mut answers: tonic::Streaming<GetManyResponse>,
    lookups: std::sync::Weak<Lookups>,
) {
    let status = loop {
        match answers.message().await {
            Ok(Some(answer)) => {
                let first = lock(&open.waiting).pop_front();
                if let Some(first) = first {
                    let _ = first.send(Ok(answer.entries));
                }
            }
            Ok(None) => break tonic::Status::unavailable("cache-svc ended the lookup stream"),
            Err(status) => break status,
        }
    };
    tracing::debug!(%status, "cache-svc lookup stream ended: reads go as calls until reopened");
    open.end(&status);
    if let Some(lookups) = lookups.upgrade() {
        lock(&lookups.state).not_before = Some(Instant::now() + REOPEN_AFTER);
    }
}
