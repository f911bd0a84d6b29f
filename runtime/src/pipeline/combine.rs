//! Combined appends: commands to one aggregate share one append.
//!
//! Within an instance, commands to one aggregate take turns (`turns.rs`).
//! With a store that commits later (a group committer in front of a
//! database), a command does not keep its turn until its commit: it
//! applies its events to the state, puts that state back in the cache,
//! hands its events to the stream's queue here, and gives the turn to the
//! next command, which decides on that state. One flusher task per stream
//! appends the queue's batches in order, each as one append (atomic: every
//! command of it commits, or none does) expecting the version the previous
//! batch ended at, and sends every command its own part of the outcome.
//! While a batch commits, the next fills up: W4 (16 tasks on 4 aggregates,
//! PostgreSQL) goes from one command per aggregate per commit to all the
//! commands that arrived meanwhile.
//!
//! A batch that fails fails every batch behind it too (they were decided
//! on its state), and poisons the stream: a command whose state came from
//! the cache is refused with a conflict until one decides on state freshly
//! loaded from the store. Every refused command re-runs as after any
//! conflict. A batch of several commands that the store refuses (not a
//! conflict) gives each a conflict, and the stream's next batches take one
//! command each until one commits, so the command whose events are refused
//! gets the store's own error, alone.
//!
//! What the dispatcher must keep, holding the stream's turn: a load from
//! the store waits until the stream is [idle](Combiner::idle) (its state
//! in the store is then the last committed one); an answer given without
//! an append (no events, a rejection) on a state taken from the cache
//! waits for idle too and re-runs if the stream was
//! [poisoned](Combiner::poisoned) meanwhile.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::domain::ids::{StreamId, Version};
use crate::domain::unwind::catch_panic;
use crate::store::{Committed, EventStore, ExpectedVersion, NewEvent, Snapshot, SnapshotStore, StoreError};

/// Events per combined append at most.
const MAX_EVENTS: usize = 512;

type Reply = oneshot::Sender<Result<Committed, StoreError>>;

/// The queues of combined appends, per stream.
#[derive(Default)]
pub(crate) struct Combiner {
    queues: Mutex<HashMap<StreamId, Queue, foldhash::fast::RandomState>>,
}

#[derive(Default)]
struct Queue {
    /// Batches not yet handed to the store, in order.
    batches: VecDeque<Batch>,
    /// Whether a flusher task runs for the stream.
    flushing: bool,
    /// A batch failed: states in the cache may hold its events.
    poisoned: bool,
    /// A batch of several commands was refused: one command per batch
    /// until one commits.
    solo: bool,
    /// Who waits for the stream to be idle.
    idle: Vec<oneshot::Sender<()>>,
}

impl Queue {
    fn is_idle(&self) -> bool {
        !self.flushing && self.batches.is_empty()
    }
}

struct Batch {
    expected: Version,
    events: Vec<NewEvent>,
    /// Each command's number of events, and where its outcome goes.
    members: Vec<(usize, Reply)>,
    /// The latest snapshot taken by its commands, saved once it commits.
    snapshot: Option<Snapshot>,
}

impl Batch {
    fn end(&self) -> u64 {
        self.expected.0 + self.events.len() as u64
    }
}

impl Combiner {
    /// Queues `events` of one command, decided on the state of `stream` at
    /// `expected` (`fresh`: loaded from the store, not taken from the
    /// cache); the outcome arrives on the returned channel. Starts the
    /// stream's flusher if none runs.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn join(
        self: &Arc<Self>,
        store: &Arc<dyn EventStore>,
        snapshots: &Arc<dyn SnapshotStore>,
        stream: &StreamId,
        expected: Version,
        events: Vec<NewEvent>,
        snapshot: Option<Snapshot>,
        fresh: bool,
    ) -> oneshot::Receiver<Result<Committed, StoreError>> {
        let (reply, outcome) = oneshot::channel();
        let mut queues = self.queues.lock();
        let queue = queues.entry(stream.clone()).or_default();
        if queue.poisoned {
            if !fresh {
                let _ = reply.send(Err(conflict(stream, expected)));
                return outcome;
            }
            queue.poisoned = false;
        }
        let n = events.len();
        let solo = queue.solo;
        match queue.batches.back_mut() {
            Some(last) if !solo && last.end() == expected.0 && last.events.len() + n <= MAX_EVENTS => {
                last.events.extend(events);
                last.members.push((n, reply));
                if snapshot.is_some() {
                    last.snapshot = snapshot;
                }
            }
            _ => queue.batches.push_back(Batch {
                expected,
                events,
                members: vec![(n, reply)],
                snapshot,
            }),
        }
        if !queue.flushing {
            queue.flushing = true;
            // A task of its own: a caller that stops waiting (a timeout)
            // does not cancel the append of the other commands.
            let flusher = Flusher {
                combiner: Arc::clone(self),
                stream: stream.clone(),
                done: false,
            };
            tokio::spawn(flusher.run(Arc::clone(store), Arc::clone(snapshots)));
        }
        outcome
    }

    /// Resolves when `stream` has nothing queued or being appended.
    pub(crate) fn idle(&self, stream: &StreamId) -> impl std::future::Future<Output = ()> + Send + 'static {
        let waiter = {
            let mut queues = self.queues.lock();
            match queues.get_mut(stream) {
                Some(queue) if !queue.is_idle() => {
                    let (tx, rx) = oneshot::channel();
                    queue.idle.push(tx);
                    Some(rx)
                }
                _ => None,
            }
        };
        async move {
            if let Some(rx) = waiter {
                // A sender dropped (the flusher ended abnormally) is idle too.
                let _ = rx.await;
            }
        }
    }

    /// Whether a batch of `stream` failed since a command last decided on
    /// state loaded from the store.
    /// The stream's state was just committed by other means (an atomic
    /// append at the version it was loaded at): a cached state is right
    /// again, whatever batch failed before.
    pub(crate) fn cure(&self, stream: &StreamId) {
        if let Some(queue) = self.queues.lock().get_mut(stream) {
            queue.poisoned = false;
        }
    }

    pub(crate) fn poisoned(&self, stream: &StreamId) -> bool {
        self.queues.lock().get(stream).is_some_and(|q| q.poisoned)
    }

    /// The next batch of `stream`, or `None` (and the flusher stops: the
    /// stream is idle).
    fn next(&self, stream: &StreamId) -> Option<Batch> {
        let mut queues = self.queues.lock();
        let queue = queues.get_mut(stream)?;
        let batch = queue.batches.pop_front();
        if batch.is_none() {
            queue.flushing = false;
            for waiter in queue.idle.drain(..) {
                let _ = waiter.send(());
            }
            if !queue.poisoned && !queue.solo {
                queues.remove(stream);
            }
        }
        batch
    }

    /// After a failed batch: poisons the stream (and, for a refused batch
    /// of several commands, makes the next batches solo); takes every
    /// batch behind it.
    fn fail(&self, stream: &StreamId, solo: bool) -> VecDeque<Batch> {
        let mut queues = self.queues.lock();
        let Some(queue) = queues.get_mut(stream) else {
            return VecDeque::new();
        };
        queue.poisoned = true;
        queue.solo |= solo;
        std::mem::take(&mut queue.batches)
    }

    /// A batch committed: merging may resume.
    fn committed(&self, stream: &StreamId) {
        if let Some(queue) = self.queues.lock().get_mut(stream) {
            queue.solo = false;
        }
    }
}

/// The flusher of one stream. Dropped without finishing (its append
/// panicked, or the runtime shut down), it fails what is still queued and
/// leaves the stream poisoned and idle, so that no caller waits forever.
struct Flusher {
    combiner: Arc<Combiner>,
    stream: StreamId,
    done: bool,
}

impl Drop for Flusher {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let left = self.combiner.fail(&self.stream, false);
        fail_all(&self.stream, left);
        // Idle now (what joined meanwhile fails too): the next join starts
        // a flusher again.
        while let Some(batch) = self.combiner.next(&self.stream) {
            fail_all(&self.stream, VecDeque::from([batch]));
        }
    }
}

/// Fails every command of `batches` with a conflict (they re-run).
fn fail_all(stream: &StreamId, batches: VecDeque<Batch>) {
    for later in batches {
        for (_, reply) in later.members {
            let _ = reply.send(Err(conflict(stream, later.expected)));
        }
    }
}

impl Flusher {
    /// Appends the batches of the stream in order until its queue is empty.
    async fn run(mut self, store: Arc<dyn EventStore>, snapshots: Arc<dyn SnapshotStore>) {
        let stream = self.stream.clone();
        while let Some(batch) = self.combiner.next(&stream) {
            let Batch {
                expected,
                events,
                members,
                snapshot,
            } = batch;
            // A panicking backend fails the batch like any error.
            let appended = catch_panic(store.append(&stream, ExpectedVersion::Exact(expected), events))
                .await
                .unwrap_or_else(|panic| {
                    Err(StoreError::Backend {
                        backend: "combined append",
                        source: format!("the store panicked: {panic}").into(),
                    })
                });
            match appended {
                Ok(committed) => {
                    self.combiner.committed(&stream);
                    // Saved before anyone hears of the commit, and before
                    // the stream is idle (a rewrite waits for idle).
                    if let Some(snapshot) = snapshot
                        && let Err(e) = snapshots.save(&stream, snapshot).await
                    {
                        tracing::warn!(%stream, error = %e, "snapshot not saved");
                    }
                    let mut offset = 0usize;
                    for (n, reply) in members {
                        let positions = crate::store::Positions::from_slice(
                            committed.positions.get(offset..offset + n).unwrap_or_default(),
                        );
                        offset += n;
                        let version = Version(expected.0 + offset as u64);
                        let _ = reply.send(Ok(Committed {
                            stream: committed.stream.clone(),
                            version,
                            positions,
                        }));
                    }
                }
                Err(error) => {
                    // Refused (not a conflict) with several commands in it:
                    // whose events were refused is unknown; each re-runs,
                    // alone, and the refused one then gets the error itself.
                    let shared = members.len() > 1 && !matches!(error, StoreError::Conflict { .. });
                    let behind = self.combiner.fail(&stream, shared);
                    for (_, reply) in members {
                        let outcome = if shared {
                            conflict(&stream, expected)
                        } else {
                            copy(&error)
                        };
                        let _ = reply.send(Err(outcome));
                    }
                    fail_all(&stream, behind);
                }
            }
        }
        self.done = true;
    }
}

/// The conflict of a command decided on a state that did not commit.
fn conflict(stream: &StreamId, expected: Version) -> StoreError {
    StoreError::Conflict {
        stream: stream.clone(),
        expected: ExpectedVersion::Exact(expected),
        actual: expected,
    }
}

/// One command's copy of a batch's failure.
fn copy(error: &StoreError) -> StoreError {
    match error {
        StoreError::Conflict {
            stream,
            expected,
            actual,
        } => StoreError::Conflict {
            stream: stream.clone(),
            expected: *expected,
            actual: *actual,
        },
        StoreError::Unavailable { backend, source } => StoreError::Unavailable {
            backend,
            source: source.to_string().into(),
        },
        StoreError::Corrupt {
            backend,
            location,
            reason,
        } => StoreError::Corrupt {
            backend,
            location: location.clone(),
            reason: reason.clone(),
        },
        StoreError::NotFound(position) => StoreError::NotFound(*position),
        other => StoreError::Backend {
            backend: "combined append",
            source: other.to_string().into(),
        },
    }
}
