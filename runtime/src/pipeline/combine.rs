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
//! conflict.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::domain::ids::{StreamId, Version};
use crate::store::{Committed, EventStore, ExpectedVersion, NewEvent, StoreError};

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
}

struct Batch {
    expected: Version,
    events: Vec<NewEvent>,
    /// Each command's number of events, and where its outcome goes.
    members: Vec<(usize, Reply)>,
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
    pub(crate) fn join(
        self: &Arc<Self>,
        store: &Arc<dyn EventStore>,
        stream: &StreamId,
        expected: Version,
        events: Vec<NewEvent>,
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
        match queue.batches.back_mut() {
            Some(last) if last.end() == expected.0 && last.events.len() + n <= MAX_EVENTS => {
                last.events.extend(events);
                last.members.push((n, reply));
            }
            _ => queue.batches.push_back(Batch {
                expected,
                events,
                members: vec![(n, reply)],
            }),
        }
        if !queue.flushing {
            queue.flushing = true;
            // A task of its own: a caller that stops waiting (a timeout)
            // does not cancel the append of the other commands.
            tokio::spawn(flush(Arc::clone(self), Arc::clone(store), stream.clone()));
        }
        outcome
    }

    /// The next batch of `stream`, or `None` (and the flusher stops).
    fn next(&self, stream: &StreamId) -> Option<Batch> {
        let mut queues = self.queues.lock();
        let queue = queues.get_mut(stream)?;
        let batch = queue.batches.pop_front();
        if batch.is_none() {
            queue.flushing = false;
            if !queue.poisoned {
                queues.remove(stream);
            }
        }
        batch
    }

    /// After a failed batch: poisons the stream and takes every batch
    /// behind it.
    fn fail(&self, stream: &StreamId) -> VecDeque<Batch> {
        let mut queues = self.queues.lock();
        let Some(queue) = queues.get_mut(stream) else {
            return VecDeque::new();
        };
        queue.poisoned = true;
        std::mem::take(&mut queue.batches)
    }
}

/// Appends the batches of `stream` in order until its queue is empty.
async fn flush(combiner: Arc<Combiner>, store: Arc<dyn EventStore>, stream: StreamId) {
    while let Some(batch) = combiner.next(&stream) {
        let Batch {
            expected,
            events,
            members,
        } = batch;
        match store.append(&stream, ExpectedVersion::Exact(expected), events).await {
            Ok(committed) => {
                let mut offset = 0usize;
                for (n, reply) in members {
                    let positions = committed.positions.get(offset..offset + n).unwrap_or_default().to_vec();
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
                let behind = combiner.fail(&stream);
                for (_, reply) in members {
                    let _ = reply.send(Err(copy(&error)));
                }
                for later in behind {
                    for (_, reply) in later.members {
                        let _ = reply.send(Err(conflict(&stream, later.expected)));
                    }
                }
            }
        }
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
