//! The checkpoint seam: each subscriber's position in the global log.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::StoreError;
use crate::domain::ids::Position;
use crate::future::BoxFuture;

/// Storage of subscribers' positions in the global log.
pub trait CheckpointStore: Send + Sync + 'static {
    /// The last position `subscriber` processed, if it ever saved one.
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>>;
    /// Records that `subscriber` processed everything up to `position`.
    fn save<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Checkpoints kept in process memory.
#[derive(Debug, Default)]
pub struct MemoryCheckpointStore {
    positions: Mutex<HashMap<String, Position>>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>> {
        let position = self.positions.lock().get(subscriber).copied();
        Box::pin(std::future::ready(Ok(position)))
    }

    fn save<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        self.positions.lock().insert(subscriber.to_owned(), position);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl<S: CheckpointStore + ?Sized> CheckpointStore for Arc<S> {
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>> {
        (**self).load(subscriber)
    }
    fn save<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).save(subscriber, position)
    }
}
