//! The in-memory event store, the default.

use std::collections::HashMap;

use parking_lot::RwLock;
use tokio::sync::watch;

use super::{
    BoxFuture, Committed, EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent, RewrittenEvent, StoreError,
};
use crate::domain::ids::{Position, StreamId, Version};

/// An event store that keeps everything in process memory.
///
/// Appends are serialized by one lock, so the global log is in commit order
/// by construction. Cheap to create; use one per test.
pub struct MemoryEventStore {
    inner: RwLock<Inner>,
    head: watch::Sender<Position>,
}

#[derive(Default)]
struct Inner {
    /// The global log; the event at index `i` has position `i + 1`.
    log: Vec<RecordedEvent>,
    /// Per stream, the log indexes of its events in version order (foldhash:
    /// fast, and seeded per process).
    streams: HashMap<StreamId, Vec<u32>, foldhash::fast::RandomState>,
}

impl Default for MemoryEventStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryEventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.inner.read();
        f.debug_struct("MemoryEventStore")
            .field("events", &inner.log.len())
            .field("streams", &inner.streams.len())
            .finish()
    }
}

impl MemoryEventStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            head: watch::channel(Position::START).0,
        }
    }

    /// An empty store with room for `events` events before reallocating.
    #[must_use]
    pub fn with_capacity(events: usize) -> Self {
        let store = Self::new();
        store.inner.write().log.reserve(events);
        store
    }

    fn append_now(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Committed, StoreError> {
        let mut guard = self.inner.write();
        let inner = &mut *guard;
        let actual = Version(inner.streams.get(stream).map_or(0, |s| s.len() as u64));
        if let ExpectedVersion::Exact(expected_version) = expected
            && expected_version != actual
        {
            return Err(StoreError::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            });
        }
        let first_index = inner.log.len();
        if first_index + events.len() > u32::MAX as usize {
            return Err(StoreError::Backend {
                backend: "memory",
                source: "the in-memory store holds at most 4 294 967 295 events".into(),
            });
        }
        let mut version = actual;
        let mut positions = Vec::with_capacity(events.len());
        let indexes = inner.streams.entry(stream.clone()).or_default();
        // The clock is read only for events that come without a timestamp.
        let mut now = None;
        for (offset, mut e) in events.into_iter().enumerate() {
            if e.metadata.timestamp.is_none() {
                e.metadata.timestamp = Some(*now.get_or_insert_with(crate::domain::ids::Timestamp::now));
            }
            version = version.next();
            let index = first_index + offset;
            let position = Position(index as u64 + 1);
            positions.push(position);
            indexes.push(index as u32);
            inner.log.push(RecordedEvent {
                event_id: e.event_id,
                stream: stream.clone(),
                version,
                position,
                name: e.name,
                schema_version: e.schema_version,
                payload: e.payload,
                metadata: e.metadata,
            });
        }
        let head = Position(inner.log.len() as u64);
        drop(guard);
        // Only a watched head needs moving (`watch_head` publishes the
        // current head when it subscribes).
        if self.head.receiver_count() > 0 {
            self.head.send_replace(head);
        }
        Ok(Committed {
            stream: stream.clone(),
            version,
            positions,
        })
    }
}

impl EventStore for MemoryEventStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        let result = self.append_now(stream, expected, events);
        Box::pin(std::future::ready(result))
    }

    fn try_append_now(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Result<Committed, StoreError>, Vec<NewEvent>> {
        Ok(self.append_now(stream, expected, events))
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        to: Option<Version>,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        let inner = self.inner.read();
        let events = match inner.streams.get(stream) {
            None => Vec::new(),
            Some(indexes) => {
                let start = from.0.saturating_sub(1).min(indexes.len() as u64) as usize;
                let end = to.map_or(indexes.len(), |t| (t.0 as usize).min(indexes.len()));
                indexes
                    .get(start..end.max(start))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|i| inner.log.get(*i as usize).cloned())
                    .collect()
            }
        };
        Box::pin(std::future::ready(Ok(events)))
    }

    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        let inner = self.inner.read();
        let start = (after.0 as usize).min(inner.log.len());
        let events = inner.log[start..]
            .iter()
            .filter(|e| filter.matches(e))
            .take(limit)
            .cloned()
            .collect();
        Box::pin(std::future::ready(Ok(events)))
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
        let version = Version(self.inner.read().streams.get(stream).map_or(0, |s| s.len() as u64));
        Box::pin(std::future::ready(Ok(version)))
    }

    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        let head = Position(self.inner.read().log.len() as u64);
        Box::pin(std::future::ready(Ok(head)))
    }

    fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut inner = self.inner.write();
        let result = match position.0.checked_sub(1).and_then(|i| inner.log.get_mut(i as usize)) {
            Some(stored) => {
                stored.name = event.name;
                stored.schema_version = event.schema_version;
                stored.payload = event.payload;
                Ok(())
            }
            None => Err(StoreError::NotFound(position)),
        };
        Box::pin(std::future::ready(result))
    }

    fn watch_head(&self) -> Option<watch::Receiver<Position>> {
        // Subscribe first: an append after this sees a receiver and sends.
        let receiver = self.head.subscribe();
        let head = Position(self.inner.read().log.len() as u64);
        self.head.send_if_modified(|h| {
            let moved = *h < head;
            if moved {
                *h = head;
            }
            moved
        });
        Some(receiver)
    }
}
