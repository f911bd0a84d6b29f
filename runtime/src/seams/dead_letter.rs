//! The dead-letter seam: events a subscriber failed on, parked.

use std::sync::Arc;

use parking_lot::Mutex;

use super::{RecordedEvent, StoreError};
use crate::domain::ids::{EventId, Timestamp};
use crate::future::BoxFuture;

/// An event a subscriber failed on, parked after its retries.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetter {
    /// The subscriber that failed.
    pub subscriber: String,
    /// The event.
    pub event: RecordedEvent,
    /// The last error, as text.
    pub error: String,
    /// How many times the handler ran on it.
    pub attempts: u32,
    /// When it was parked (or last replayed).
    pub parked_at: Timestamp,
}

/// Storage of parked events.
pub trait DeadLetterStore: Send + Sync + 'static {
    /// Parks `letter`, replacing an earlier letter for the same subscriber and event.
    fn park(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), StoreError>>;
    /// The letters of `subscriber`, in global position order.
    fn list<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>>;
    /// Removes the letter of `subscriber` for `event`.
    fn remove<'a>(&'a self, subscriber: &'a str, event: EventId) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Dead letters kept in process memory.
#[derive(Debug, Default)]
pub struct MemoryDeadLetterStore {
    letters: Mutex<Vec<DeadLetter>>,
}

impl MemoryDeadLetterStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl DeadLetterStore for MemoryDeadLetterStore {
    fn park(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut letters = self.letters.lock();
        letters.retain(|l| !(l.subscriber == letter.subscriber && l.event.event_id == letter.event.event_id));
        letters.push(letter);
        letters.sort_by_key(|l| l.event.position);
        Box::pin(std::future::ready(Ok(())))
    }

    fn list<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        let letters = self
            .letters
            .lock()
            .iter()
            .filter(|l| l.subscriber == subscriber)
            .cloned()
            .collect();
        Box::pin(std::future::ready(Ok(letters)))
    }

    fn remove<'a>(&'a self, subscriber: &'a str, event: EventId) -> BoxFuture<'a, Result<(), StoreError>> {
        self.letters
            .lock()
            .retain(|l| !(l.subscriber == subscriber && l.event.event_id == event));
        Box::pin(std::future::ready(Ok(())))
    }
}

impl<S: DeadLetterStore + ?Sized> DeadLetterStore for Arc<S> {
    fn park(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).park(letter)
    }
    fn list<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        (**self).list(subscriber)
    }
    fn remove<'a>(&'a self, subscriber: &'a str, event: EventId) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).remove(subscriber, event)
    }
}
