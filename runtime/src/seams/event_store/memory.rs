//! The in-memory event store, the default.

use std::collections::HashMap;

use parking_lot::RwLock;
use tokio::sync::watch;

use std::borrow::Cow;

use bytes::Bytes;
use ulid::Ulid;

use super::{
    AtomicAppend, BoxFuture, Committed, Direction, EventFilter, EventMetadata, EventStore, ExpectedVersion, Headers,
    NewEvent, RecordedEvent, RewrittenEvent, Scan, Scope, StoreError,
};
use crate::domain::ids::{
    CausationId, CommandId, CorrelationId, EventId, Position, SchemaVersion, StreamId, TenantId, Timestamp, Version,
};

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
    log: Vec<Stored>,
    /// Per stream, its number in `stream_ids` and the log indexes of its
    /// events in version order (foldhash: fast, and seeded per process).
    streams: HashMap<StreamId, StreamEntry, foldhash::fast::RandomState>,
    /// Every stream, by number.
    stream_ids: Vec<StreamId>,
    /// Every event name, by number, and the numbers by name.
    names: Vec<Cow<'static, str>>,
    name_numbers: HashMap<Cow<'static, str>, u32, foldhash::fast::RandomState>,
    /// The number of the last name appended: most appends repeat it.
    last_name: u32,
    /// Every category (aggregate type, per tenant) by number, and the
    /// position of its last event (for the conditions of atomic appends).
    category_numbers: HashMap<(Option<TenantId>, Box<str>), u32, foldhash::fast::RandomState>,
    category_heads: Vec<u64>,
}

struct StreamEntry {
    number: u32,
    category: u32,
    events: Vec<u32>,
}

/// An event as the store keeps it: 136 bytes where a `RecordedEvent` takes
/// 272 (measured in W1-MEMORY: 1 000 000 dispatched events then hold about
/// 200 MB instead of 330). The ids are byte arrays (no 16-byte alignment
/// and its padding), the stream and the name numbers into tables, the
/// position the log index, the metadata packed; a read builds the
/// `RecordedEvent` back.
struct Stored {
    event_id: [u8; 16],
    version: u64,
    /// `i64::MIN` when the event has none.
    timestamp: i64,
    payload: Bytes,
    /// `None` when there are none (the common case: no allocation).
    headers: Option<Box<Headers>>,
    stream: u32,
    name: u32,
    schema_version: u32,
    correlation: Option<[u8; 16]>,
    /// The kind (1 command, 2 event, 3 deadline; 0 none) and the id.
    causation: (u8, [u8; 16]),
    command_id: Option<[u8; 16]>,
}

const NO_TIMESTAMP: i64 = i64::MIN;

impl Stored {
    fn pack_causation(causation: Option<CausationId>) -> (u8, [u8; 16]) {
        match causation {
            None => (0, [0; 16]),
            Some(CausationId::Command(id)) => (1, id.0.to_bytes()),
            Some(CausationId::Event(id)) => (2, id.0.to_bytes()),
            Some(CausationId::Deadline(id)) => (3, id.to_bytes()),
        }
    }

    fn causation(&self) -> Option<CausationId> {
        let id = Ulid::from_bytes(self.causation.1);
        match self.causation.0 {
            1 => Some(CausationId::Command(CommandId(id))),
            2 => Some(CausationId::Event(EventId(id))),
            3 => Some(CausationId::Deadline(id)),
            _ => None,
        }
    }
}

/// The number of event name `name`, added to the table if new (the caller
/// checked the table has room).
fn intern(
    names: &mut Vec<Cow<'static, str>>,
    numbers: &mut HashMap<Cow<'static, str>, u32, foldhash::fast::RandomState>,
    last: &mut u32,
    name: Cow<'static, str>,
) -> u32 {
    if names.get(*last as usize).is_some_and(|n| *n == name) {
        return *last;
    }
    let n = match numbers.get(&name) {
        Some(n) => *n,
        None => {
            let n = names.len() as u32;
            names.push(name.clone());
            numbers.insert(name, n);
            n
        }
    };
    *last = n;
    n
}

impl Inner {
    /// The number of event name `name`, adding it to the table if new.
    fn name_number(&mut self, name: Cow<'static, str>) -> Result<u32, StoreError> {
        if self.names.len() >= u32::MAX as usize {
            return Err(too_many("event names"));
        }
        Ok(intern(
            &mut self.names,
            &mut self.name_numbers,
            &mut self.last_name,
            name,
        ))
    }

    /// The event at log index `index`, as read.
    fn recorded(&self, index: usize, s: &Stored) -> Option<RecordedEvent> {
        Some(RecordedEvent {
            event_id: EventId(Ulid::from_bytes(s.event_id)),
            stream: self.stream_ids.get(s.stream as usize)?.clone(),
            version: Version(s.version),
            position: Position(index as u64 + 1),
            name: self.names.get(s.name as usize)?.clone(),
            schema_version: SchemaVersion(s.schema_version),
            payload: s.payload.clone(),
            metadata: EventMetadata {
                timestamp: (s.timestamp != NO_TIMESTAMP).then_some(Timestamp(s.timestamp)),
                correlation_id: s.correlation.map(|b| CorrelationId(Ulid::from_bytes(b))),
                causation_id: s.causation(),
                command_id: s.command_id.map(|b| CommandId(Ulid::from_bytes(b))),
                headers: s.headers.as_deref().cloned().unwrap_or_default(),
            },
        })
    }

    /// The version of `stream`.
    fn version_of(&self, stream: &StreamId) -> Version {
        Version(self.streams.get(stream).map_or(0, |s| s.events.len() as u64))
    }

    /// The position of the last event of `scope` (0 when it has none).
    fn last_position_in(&self, scope: &Scope) -> u64 {
        match scope {
            Scope::Stream(stream) => self
                .streams
                .get(stream)
                .and_then(|s| s.events.last())
                .map_or(0, |i| u64::from(*i) + 1),
            Scope::Log => self.log.len() as u64,
            // The heads of the categories (per tenant) the scope holds.
            _ => self
                .category_numbers
                .iter()
                .filter(|((tenant, category), _)| match scope {
                    Scope::Category(c) => category.as_ref() == c.as_ref(),
                    Scope::TenantCategory(t, c) => tenant.as_ref() == Some(t) && category.as_ref() == c.as_ref(),
                    Scope::Tenant(t) => tenant.as_ref() == Some(t),
                    Scope::Stream(_) | Scope::Log => false,
                })
                .filter_map(|(_, n)| self.category_heads.get(*n as usize))
                .copied()
                .max()
                .unwrap_or(0),
        }
    }

    /// Whether `events` more events (and as many names and streams) fit:
    /// the only ways an append can fail once its checks passed.
    fn check_room(&self, events: usize, streams: usize) -> Result<(), StoreError> {
        if self.log.len() + events > u32::MAX as usize {
            return Err(too_many("events"));
        }
        if self.names.len() + events > u32::MAX as usize
            || self.stream_ids.len() + streams > u32::MAX as usize
            || self.category_heads.len() + streams > u32::MAX as usize
        {
            return Err(too_many("names or streams"));
        }
        Ok(())
    }

    /// Appends `events` to `stream` if it is at `expected` (the room was
    /// checked by the caller). `now` is the time of recording, read once
    /// for the events that come without a timestamp.
    #[inline]
    fn write(
        &mut self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
        now: &mut Option<Timestamp>,
    ) -> Result<Committed, StoreError> {
        let first_index = self.log.len();
        let Inner {
            log,
            streams,
            stream_ids,
            names,
            name_numbers,
            last_name,
            category_numbers,
            category_heads,
        } = self;
        // One lookup of the stream, for its version and its entry (hashing
        // its id is a good part of an append's cost: measured in W1 with
        // callgrind).
        let found = streams.get_mut(stream);
        let actual = Version(found.as_ref().map_or(0, |e| e.events.len() as u64));
        if let ExpectedVersion::Exact(expected_version) = expected
            && expected_version != actual
        {
            return Err(StoreError::Conflict {
                stream: stream.clone(),
                expected,
                actual,
            });
        }
        let entry = match found {
            Some(entry) => entry,
            None => {
                let number = stream_ids.len() as u32;
                stream_ids.push(stream.clone());
                let key = (stream.tenant().cloned(), Box::<str>::from(stream.aggregate_type()));
                let category = match category_numbers.get(&key) {
                    Some(n) => *n,
                    None => {
                        let n = category_heads.len() as u32;
                        category_heads.push(0);
                        category_numbers.insert(key, n);
                        n
                    }
                };
                streams.entry(stream.clone()).or_insert(StreamEntry {
                    number,
                    category,
                    events: Vec::new(),
                })
            }
        };
        let mut version = actual;
        let mut positions = super::Positions::with_capacity(events.len());
        for (offset, e) in events.into_iter().enumerate() {
            let timestamp = match e.metadata.timestamp {
                Some(t) => t,
                None => *now.get_or_insert_with(Timestamp::now),
            };
            let name = intern(names, name_numbers, last_name, e.name);
            version = version.next();
            let index = first_index + offset;
            positions.push(Position(index as u64 + 1));
            entry.events.push(index as u32);
            let metadata = e.metadata;
            log.push(Stored {
                event_id: e.event_id.0.to_bytes(),
                version: version.0,
                timestamp: timestamp.0,
                payload: e.payload,
                headers: (!metadata.headers.is_empty()).then(|| Box::new(metadata.headers)),
                stream: entry.number,
                name,
                schema_version: e.schema_version.0,
                correlation: metadata.correlation_id.map(|c| c.0.to_bytes()),
                causation: Stored::pack_causation(metadata.causation_id),
                command_id: metadata.command_id.map(|c| c.0.to_bytes()),
            });
        }
        if let (Some(last), Some(head)) = (positions.last(), category_heads.get_mut(entry.category as usize)) {
            *head = last.0;
        }
        Ok(Committed {
            stream: stream.clone(),
            version,
            positions,
        })
    }

    /// Whether the event at `s` passes `filter`, without building it.
    fn matches(&self, filter: &EventFilter, s: &Stored) -> bool {
        let name = self.names.get(s.name as usize).map_or("", |n| n.as_ref());
        let stream = self.stream_ids.get(s.stream as usize);
        let aggregate_type = stream.map_or("", StreamId::aggregate_type);
        filter.matches_parts(stream.and_then(StreamId::tenant), aggregate_type, name)
    }
}

fn too_many(what: &str) -> StoreError {
    StoreError::Backend {
        backend: "memory",
        source: format!("the in-memory store holds at most 4 294 967 295 {what}").into(),
    }
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
        let mut inner = self.inner.write();
        inner.check_room(events.len(), 1)?;
        let committed = inner.write(stream, expected, events, &mut None)?;
        let head = Position(inner.log.len() as u64);
        drop(inner);
        self.moved(head);
        Ok(committed)
    }

    fn append_atomic_now(&self, append: AtomicAppend) -> Result<Vec<Committed>, StoreError> {
        let mut inner = self.inner.write();
        for condition in &append.conditions {
            let actual = inner.last_position_in(&condition.scope);
            if actual > condition.since.0 {
                return Err(StoreError::ScopeChanged {
                    scope: condition.scope.clone(),
                    since: condition.since,
                    actual: Position(actual),
                });
            }
        }
        // Every check before anything is written: the versions each part
        // starts from (a second part of a stream starts where the first
        // ends), then the room.
        let mut starts = Vec::with_capacity(append.streams.len());
        for (i, part) in append.streams.iter().enumerate() {
            let earlier = append.streams[..i].iter().filter(|p| p.stream == part.stream);
            let actual =
                Version(inner.version_of(&part.stream).0 + earlier.map(|p| p.events.len() as u64).sum::<u64>());
            if let ExpectedVersion::Exact(expected) = part.expected
                && expected != actual
            {
                return Err(StoreError::Conflict {
                    stream: part.stream.clone(),
                    expected: part.expected,
                    actual,
                });
            }
            starts.push(actual);
        }
        inner.check_room(append.event_count(), append.streams.len())?;
        let mut now = None;
        // Every check passed: the writes cannot fail (each expects the
        // version checked above).
        let mut committed = Vec::with_capacity(starts.len());
        for (part, actual) in append.streams.into_iter().zip(starts) {
            committed.push(inner.write(&part.stream, ExpectedVersion::Exact(actual), part.events, &mut now)?);
        }
        let head = Position(inner.log.len() as u64);
        drop(inner);
        self.moved(head);
        Ok(committed)
    }

    /// Moves the head watch, if anyone watches (`watch_head` publishes the
    /// current head when it subscribes).
    fn moved(&self, head: Position) {
        if self.head.receiver_count() > 0 {
            self.head.send_replace(head);
        }
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

    fn append_atomic(&self, append: AtomicAppend) -> BoxFuture<'_, Result<Vec<Committed>, StoreError>> {
        Box::pin(std::future::ready(self.append_atomic_now(append)))
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
            Some(entry) => {
                let indexes = &entry.events;
                let start = from.0.saturating_sub(1).min(indexes.len() as u64) as usize;
                let end = to.map_or(indexes.len(), |t| (t.0 as usize).min(indexes.len()));
                indexes
                    .get(start..end.max(start))
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|i| {
                        let i = *i as usize;
                        inner.recorded(i, inner.log.get(i)?)
                    })
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
            .enumerate()
            .filter(|(_, e)| inner.matches(filter, e))
            .take(limit)
            .filter_map(|(offset, e)| inner.recorded(start + offset, e))
            .collect();
        Box::pin(std::future::ready(Ok(events)))
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
        let version = Version(
            self.inner
                .read()
                .streams
                .get(stream)
                .map_or(0, |s| s.events.len() as u64),
        );
        Box::pin(std::future::ready(Ok(version)))
    }

    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        let head = Position(self.inner.read().log.len() as u64);
        Box::pin(std::future::ready(Ok(head)))
    }

    fn scan<'a>(&'a self, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        let inner = self.inner.read();
        let events = match scan.inclusive_range() {
            None => Vec::new(),
            Some((low, high)) => {
                // Log indexes of the range: position p is index p - 1.
                let len = inner.log.len() as u64;
                let first = low.max(1) - 1;
                let end = high.min(len);
                let indexes: Box<dyn Iterator<Item = usize>> = match &scan.scope {
                    Scope::Stream(stream) => {
                        let own = inner.streams.get(stream).map_or(&[][..], |e| e.events.as_slice());
                        let own = own
                            .iter()
                            .map(|i| *i as usize)
                            .filter(move |i| (*i as u64) >= first && (*i as u64) < end);
                        match scan.direction {
                            Direction::Forward => Box::new(own),
                            Direction::Backward => Box::new(own.rev()),
                        }
                    }
                    _ => {
                        let range = (first as usize)..(end.max(first) as usize);
                        match scan.direction {
                            Direction::Forward => Box::new(range),
                            Direction::Backward => Box::new(range.rev()),
                        }
                    }
                };
                let every = matches!(scan.scope, Scope::Log | Scope::Stream(_));
                indexes
                    .filter_map(|i| inner.log.get(i).map(|s| (i, s)))
                    .filter(|(_, s)| {
                        every
                            || inner
                                .stream_ids
                                .get(s.stream as usize)
                                .is_some_and(|id| scan.scope.contains(id))
                    })
                    .take(scan.limit)
                    .filter_map(|(i, s)| inner.recorded(i, s))
                    .collect()
            }
        };
        Box::pin(std::future::ready(Ok(events)))
    }

    fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut inner = self.inner.write();
        let index = position.0.checked_sub(1).map(|i| i as usize);
        let result = match index.filter(|i| *i < inner.log.len()) {
            Some(i) => inner.name_number(event.name).map(|name| {
                if let Some(stored) = inner.log.get_mut(i) {
                    stored.name = name;
                    stored.schema_version = event.schema_version.0;
                    stored.payload = event.payload;
                }
            }),
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_stored_event_stays_compact() {
        // W1-MEMORY's budget (300 MB for 1 000 000 events) rests on this.
        assert!(
            std::mem::size_of::<super::Stored>() <= 136,
            "{}",
            std::mem::size_of::<super::Stored>()
        );
    }
}
