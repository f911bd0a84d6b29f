//! Snapshots: an aggregate's serialized state at a version.

use std::collections::HashMap;

use bytes::Bytes;
use parking_lot::RwLock;

use super::StoreError;
use crate::domain::ids::{StreamId, Timestamp, Version};
use crate::future::BoxFuture;

/// An aggregate's state at a version.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// The version of the last event folded into the state.
    pub version: Version,
    /// The aggregate's `STATE_VERSION` when the snapshot was taken.
    pub state_version: u32,
    /// The serialized state (JSON).
    pub payload: Bytes,
    /// When the snapshot was taken.
    pub taken_at: Timestamp,
}

/// Storage of the latest snapshot of each stream.
pub trait SnapshotStore: Send + Sync + 'static {
    /// The latest snapshot of `stream`, if any.
    fn load<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>>;

    /// Stores `snapshot` unless a snapshot of a later version is already stored.
    fn save<'a>(&'a self, stream: &'a StreamId, snapshot: Snapshot) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes the snapshot of `stream`, if any: its events were rewritten,
    /// so a state folded from the old ones must not be loaded.
    fn delete<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Snapshots kept in process memory.
#[derive(Debug, Default)]
pub struct MemorySnapshotStore {
    snapshots: RwLock<HashMap<StreamId, Snapshot>>,
}

impl MemorySnapshotStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl SnapshotStore for MemorySnapshotStore {
    fn load<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        let snapshot = self.snapshots.read().get(stream).cloned();
        Box::pin(std::future::ready(Ok(snapshot)))
    }

    fn save<'a>(&'a self, stream: &'a StreamId, snapshot: Snapshot) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut snapshots = self.snapshots.write();
        match snapshots.get(stream) {
            Some(existing) if existing.version > snapshot.version => {}
            _ => {
                snapshots.insert(stream.clone(), snapshot);
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn delete<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<(), StoreError>> {
        self.snapshots.write().remove(stream);
        Box::pin(std::future::ready(Ok(())))
    }
}

impl<S: SnapshotStore + ?Sized> SnapshotStore for std::sync::Arc<S> {
    fn load<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        (**self).load(stream)
    }
    fn save<'a>(&'a self, stream: &'a StreamId, snapshot: Snapshot) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).save(stream, snapshot)
    }
    fn delete<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).delete(stream)
    }
}
