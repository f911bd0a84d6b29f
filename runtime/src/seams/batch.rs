//! The batch-append primitive and the group committer built on it.
//!
//! A backend that can commit several appends in one round trip (one
//! transaction, one statement, one bulk write) implements [`BatchAppend`];
//! a [`GroupCommitter`] in front of it queues the appends of concurrent
//! writers and hands them over in batches, so their commits (and fsyncs)
//! are shared. With `max_wait` zero a lone append is committed at once:
//! a single writer pays nothing for it.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{AppendRequest, Committed, ExpectedVersion, NewEvent, StoreError};
use crate::domain::ids::StreamId;
use crate::future::BoxFuture;

/// A backend that commits many appends together.
///
/// The contract, checked by the event store conformance suite through the
/// store's `append`:
/// - one outcome per request, in the order of the requests;
/// - each append is atomic (all its events or none) and isolated: one that
///   conflicts or that the backend refuses fails alone, with its own cause,
///   and the others are still committed;
/// - requests for the same stream are applied in order, each seeing the
///   versions the earlier ones wrote;
/// - positions of the batch commit in order (gap safety for readers).
pub trait BatchAppend: Send + Sync + 'static {
    /// Commits `batch`; returns one outcome per request, in order.
    fn append_batch(&self, batch: Vec<AppendRequest>) -> BoxFuture<'_, Vec<Result<Committed, StoreError>>>;
}

/// Settings of group commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    /// Appends per batch at most (1 turns group commit off).
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

struct Queued {
    request: AppendRequest,
    reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// The queue in front of a committer task that batches concurrent appends
/// over a [`BatchAppend`] backend.
#[derive(Debug)]
pub struct GroupCommitter {
    queue: mpsc::Sender<Queued>,
    backend: &'static str,
}

impl GroupCommitter {
    /// Starts the committer task on the current tokio runtime. `target`
    /// gives the backend while it lives; the task ends when it returns
    /// `None` (the store was dropped) or the committer is dropped.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when called outside a tokio runtime.
    pub fn start<B, F>(backend: &'static str, config: GroupCommit, target: F) -> Result<Self, StoreError>
    where
        B: BatchAppend,
        F: Fn() -> Option<B> + Send + 'static,
    {
        let runtime = tokio::runtime::Handle::try_current().map_err(|e| StoreError::Unavailable {
            backend,
            source: format!("a store must be opened inside a tokio runtime: {e}").into(),
        })?;
        let max_batch = config.max_batch.max(1);
        let (queue, rx) = mpsc::channel::<Queued>(max_batch * 16);
        runtime.spawn(run(backend, config.max_wait, max_batch, rx, target));
        Ok(Self { queue, backend })
    }

    /// Queues an append and waits for its outcome.
    ///
    /// # Errors
    ///
    /// The append's own outcome, or [`StoreError::Unavailable`] when the
    /// committer has stopped.
    pub async fn append(
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
        };
        let stopped = || StoreError::Unavailable {
            backend: self.backend,
            source: "the group committer stopped".into(),
        };
        self.queue
            .send(Queued { request, reply })
            .await
            .map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

async fn run<B, F>(
    backend: &'static str,
    max_wait: Duration,
    max_batch: usize,
    mut rx: mpsc::Receiver<Queued>,
    target: F,
) where
    B: BatchAppend,
    F: Fn() -> Option<B>,
{
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + max_wait;
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(queued) => batch.push(queued),
                Err(_) if max_wait.is_zero() => break,
                Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(queued)) => batch.push(queued),
                    _ => break,
                },
            }
        }
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|q| (q.request, q.reply)).unzip();
        let Some(store) = target() else {
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable {
                    backend,
                    source: "the store was closed".into(),
                }));
            }
            return;
        };
        let expected = requests.len();
        let mut outcomes = store.append_batch(requests).await.into_iter();
        for reply in replies {
            let outcome = outcomes.next().unwrap_or_else(|| {
                Err(StoreError::Backend {
                    backend,
                    source: format!("the backend answered fewer than the {expected} appends of a batch").into(),
                })
            });
            // The writer may have stopped waiting (its task was cancelled).
            let _ = reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;
    use crate::domain::ids::{Position, Version};

    /// Commits every request, recording the size of each batch.
    #[derive(Clone, Default)]
    struct Recording {
        batches: Arc<Mutex<Vec<usize>>>,
    }

    impl BatchAppend for Recording {
        fn append_batch(&self, batch: Vec<AppendRequest>) -> BoxFuture<'_, Vec<Result<Committed, StoreError>>> {
            self.batches.lock().push(batch.len());
            let outcomes = batch
                .into_iter()
                .map(|r| match r.expected {
                    ExpectedVersion::Exact(v) if v != Version::INITIAL => Err(StoreError::Conflict {
                        stream: r.stream,
                        expected: r.expected,
                        actual: Version::INITIAL,
                    }),
                    _ => Ok(Committed {
                        stream: r.stream,
                        version: Version(1),
                        positions: [Position(1)].into_iter().collect(),
                    }),
                })
                .collect();
            Box::pin(async move {
                // Let more appends queue up behind this batch.
                tokio::time::sleep(Duration::from_millis(5)).await;
                outcomes
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_share_batches_and_keep_their_own_outcomes() {
        let backend = Recording::default();
        let shared = backend.clone();
        let committer = Arc::new(
            GroupCommitter::start("test", GroupCommit::default(), move || Some(shared.clone()))
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let mut tasks = Vec::new();
        for i in 0..16_u64 {
            let committer = Arc::clone(&committer);
            tasks.push(tokio::spawn(async move {
                let expected = if i % 4 == 0 {
                    ExpectedVersion::Exact(Version(7))
                } else {
                    ExpectedVersion::Any
                };
                committer
                    .append(&StreamId::new("t", i.to_string()), expected, Vec::new())
                    .await
            }));
        }
        let mut conflicts = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await.unwrap_or_else(|e| panic!("{e}")) {
                Err(StoreError::Conflict { .. }) => {
                    assert_eq!(i % 4, 0);
                    conflicts += 1;
                }
                Ok(committed) => assert_eq!(committed.stream.aggregate_id(), i.to_string()),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(conflicts, 4);
        let batches = backend.batches.lock().clone();
        assert_eq!(batches.iter().sum::<usize>(), 16);
        assert!(batches.iter().any(|&n| n > 1), "no batch formed: {batches:?}");
    }

    #[test]
    fn starting_outside_a_runtime_is_a_typed_error() {
        let result = GroupCommitter::start("test", GroupCommit::default(), || None::<Recording>);
        assert!(matches!(result, Err(StoreError::Unavailable { .. })));
    }
}
