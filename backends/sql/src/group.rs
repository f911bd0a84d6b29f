//! Group commit: concurrent appends (to any streams) share one transaction.
//!
//! Appends are queued to one committer task per store. It takes every
//! append already queued (up to `max_batch`, waiting up to `max_wait` for
//! more) and commits them in one transaction, each in a savepoint of its
//! own: an append whose expected version is wrong, or that loses a race to
//! another process, gets its exact `Conflict` and the others still commit.
//! With `max_wait` zero a lone append is committed at once, so a single
//! writer pays nothing; under concurrency the commits (and their fsyncs)
//! are shared.

use std::time::Duration;

use interlock::StreamId;
use interlock::store::StoreError;
use interlock::store::{BoxFuture, Committed, ExpectedVersion, NewEvent};
use tokio::sync::{mpsc, oneshot};

/// Settings of group commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    /// Appends per transaction at most (1 turns group commit off).
    pub max_batch: usize,
    /// How long the committer waits for more appends once it has one
    /// (default zero: it takes only those already queued).
    pub max_wait: Duration,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_batch: 64,
            max_wait: Duration::ZERO,
        }
    }
}

/// One queued append and where its outcome goes.
pub(crate) struct AppendRequest {
    pub(crate) stream: StreamId,
    pub(crate) expected: ExpectedVersion,
    pub(crate) events: Vec<NewEvent>,
    pub(crate) reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// A store that commits a batch of appends in one transaction.
pub(crate) trait CommitBatch: Send + Sync + 'static {
    /// Commits the batch, answering every request.
    fn commit_batch(&self, batch: Vec<AppendRequest>) -> BoxFuture<'_, ()>;
}

/// The queue in front of the committer task.
#[derive(Debug)]
pub(crate) struct Committer {
    queue: mpsc::Sender<AppendRequest>,
    backend: &'static str,
}

impl Committer {
    /// Starts the committer task; `store` gives the store while it lives
    /// (the task ends when the store is dropped).
    pub(crate) fn start<S, F>(backend: &'static str, config: GroupCommit, store: F) -> Self
    where
        S: CommitBatch,
        F: Fn() -> Option<S> + Send + 'static,
    {
        let (queue, mut rx) = mpsc::channel::<AppendRequest>(config.max_batch.max(1) * 16);
        let max_batch = config.max_batch.max(1);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + config.max_wait;
                while batch.len() < max_batch {
                    match rx.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) if config.max_wait.is_zero() => break,
                        Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                            Ok(Some(request)) => batch.push(request),
                            _ => break,
                        },
                    }
                }
                let Some(store) = store() else {
                    for request in batch {
                        let _ = request.reply.send(Err(StoreError::Unavailable {
                            backend,
                            source: "the store was closed".into(),
                        }));
                    }
                    return;
                };
                store.commit_batch(batch).await;
            }
        });
        Self { queue, backend }
    }

    /// Queues an append and waits for its outcome.
    pub(crate) async fn submit(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Committed, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let request = AppendRequest {
            stream: stream.clone(),
            expected,
            events,
            reply,
        };
        let stopped = || StoreError::Unavailable {
            backend: self.backend,
            source: "the group committer stopped".into(),
        };
        self.queue.send(request).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}
