//! The event store seam: append with an expected version, read streams and
//! the global log.

mod atomic;
mod memory;
mod scan;
mod tenant;

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::domain::ids::{EventId, Position, SchemaVersion, StreamId, TenantId, Version};
use crate::future::BoxFuture;

pub use self::atomic::{AppendRequest, AtomicAppend, Unchanged};
pub use self::memory::MemoryEventStore;
pub use self::scan::{Direction, Scan, ScanPages, Scope};
pub use self::tenant::TenantStore;
pub use crate::domain::meta::{EventMetadata, Headers};

impl crate::domain::meta::EventMeta {
    /// The metadata of a stored event.
    #[must_use]
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            event_id: event.event_id,
            stream: event.stream.clone(),
            version: event.version,
            position: event.position,
            name: event.name.to_string(),
            schema_version: event.schema_version,
            metadata: event.metadata.clone(),
        }
    }
}

/// An event ready to be appended.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// The event id.
    pub event_id: EventId,
    /// The stored event name.
    pub name: Cow<'static, str>,
    /// The schema version the payload was encoded with.
    pub schema_version: SchemaVersion,
    /// The JSON payload.
    pub payload: Bytes,
    /// The metadata.
    pub metadata: EventMetadata,
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    /// The event id.
    pub event_id: EventId,
    /// The stream it belongs to.
    pub stream: StreamId,
    /// Its version within the stream (1, 2, 3 ...).
    pub version: Version,
    /// Its position in the global log.
    pub position: Position,
    /// The stored event name.
    pub name: Cow<'static, str>,
    /// The schema version of the payload.
    pub schema_version: SchemaVersion,
    /// The JSON payload.
    pub payload: Bytes,
    /// The metadata.
    pub metadata: EventMetadata,
}

/// The version a writer expects a stream to be at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must be at exactly this version (`Version::INITIAL`: must not exist).
    Exact(Version),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::Exact(v) => v.fmt(f),
        }
    }
}

/// The global positions of one append's events, in order: inline up to
/// two (most appends hold one or two events), so an append allocates no
/// list for them (an allocation, where stored events are kept, was about
/// 300 instructions a command: measured in W1 with callgrind). Build one
/// with `Positions::new()` and `push`, `collect()`, or `Positions::from_vec`.
pub type Positions = smallvec::SmallVec<[Position; 2]>;

/// The result of a successful append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The stream appended to.
    pub stream: StreamId,
    /// The stream's version after the append.
    pub version: Version,
    /// The global positions of the appended events, in order.
    pub positions: Positions,
}

/// Which events a read of the global log returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Only events with one of these names (all when `None`).
    pub event_names: Option<Vec<Cow<'static, str>>>,
    /// Only events of streams of these aggregate types (all when `None`).
    pub aggregate_types: Option<Vec<Cow<'static, str>>>,
    /// Only events of this tenant's streams (of every tenant, and of none,
    /// when `None`).
    pub tenant: Option<TenantId>,
}

impl EventFilter {
    /// Every event.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// Only events with these names.
    #[must_use]
    pub fn event_names<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Cow<'static, str>>,
    {
        self.event_names = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Only events of these aggregate types.
    #[must_use]
    pub fn aggregate_types<I, S>(mut self, types: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Cow<'static, str>>,
    {
        self.aggregate_types = Some(types.into_iter().map(Into::into).collect());
        self
    }

    /// Only events of `tenant`'s streams.
    #[must_use]
    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Whether `event` passes the filter.
    #[must_use]
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.matches_parts(event.stream.tenant(), event.stream.aggregate_type(), &event.name)
    }

    /// Whether an event of this tenant, aggregate type and name passes the
    /// filter.
    #[must_use]
    pub fn matches_parts(&self, tenant: Option<&TenantId>, aggregate_type: &str, name: &str) -> bool {
        self.tenant.as_ref().is_none_or(|t| Some(t) == tenant)
            && self
                .event_names
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name))
            && self
                .aggregate_types
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t == aggregate_type))
    }
}

/// A new name, version and payload for an event rewritten in place
/// (schema migration). Id, stream, version, position and metadata stay.
#[derive(Clone, Debug, PartialEq)]
pub struct RewrittenEvent {
    /// The new event name.
    pub name: Cow<'static, str>,
    /// The new schema version.
    pub schema_version: SchemaVersion,
    /// The new payload.
    pub payload: Bytes,
}

/// Storage of event streams and the global log.
///
/// Implementations must pass the exported conformance suite
/// (`interlock::testing::event_store_conformance!`, feature `testing`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event store",
    note = "use `MemoryEventStore` or a backend crate's store, or implement `interlock::store::EventStore`"
)]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if the stream is at `expected`:
    /// either every event is appended, with consecutive versions and
    /// increasing positions, or none is. An event whose metadata has no
    /// timestamp is stamped with the time of recording.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when the stream is at another version.
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>>;

    /// Appends to every stream of `append` atomically if every stream is at
    /// its expected version and every condition holds: either all the
    /// events are appended (positions increasing through the streams in
    /// order) or none is. One [`Committed`] per stream part, in order.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a stream is at another version,
    /// [`StoreError::ScopeChanged`] when a scope has an event after the
    /// condition's position; nothing is appended then.
    fn append_atomic(&self, append: AtomicAppend) -> BoxFuture<'_, Result<Vec<Committed>, StoreError>>;

    /// The events of `stream` with versions in `from..=to` (to the end when
    /// `to` is `None`), in version order.
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        to: Option<Version>,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>>;

    /// The events of `stream` from version `from` on, for folding an
    /// aggregate: as [`EventStore::read_stream`], except that a store may
    /// leave the metadata empty (loading needs names, versions and
    /// payloads only). The default reads whole events.
    fn read_stream_for_load<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.read_stream(stream, from, None)
    }

    /// Up to `limit` events of the global log with positions after `after`,
    /// passing `filter`, in position order. A reader that resumes after the
    /// last position it saw never misses an event committed later.
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>>;

    /// The version of `stream` (`Version::INITIAL` when it has no events).
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>>;

    /// The position of the last event readers may see.
    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>>;

    /// One page of `scan`: the first `scan.limit` events of its scope and
    /// range, in its direction. Page on with `Scan::after`.
    fn scan<'a>(&'a self, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>>;

    /// The last event of `scope` (of a stream, of a category, of the log),
    /// if any.
    fn last_event<'a>(&'a self, scope: &'a Scope) -> BoxFuture<'a, Result<Option<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            let scan = Scan::of(scope.clone()).backward().limit(1);
            Ok(self.scan(&scan).await?.into_iter().next())
        })
    }

    /// The event at `position` in the log, if any.
    fn event_at(&self, position: Position) -> BoxFuture<'_, Result<Option<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            let at = std::ops::Bound::Included(position);
            let scan = Scan::log().between(at, at).limit(1);
            Ok(self.scan(&scan).await?.into_iter().next())
        })
    }

    /// Replaces the name, schema version and payload of the event at
    /// `position` (schema migration).
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when no event is at `position`.
    fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>>;

    /// A channel that changes whenever the head moves, for live
    /// subscriptions; `None` when the store can only be polled.
    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<Position>> {
        None
    }

    /// [`EventStore::append`] for a store that never waits (one in
    /// memory): the outcome at once, without a boxed future. The default
    /// hands the events back (`Err`), and the caller appends with `append`.
    ///
    /// # Errors
    ///
    /// The events, untouched, when the store cannot append without waiting.
    #[allow(clippy::type_complexity)]
    fn try_append_now(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Result<Committed, StoreError>, Vec<NewEvent>> {
        let _ = (stream, expected);
        Err(events)
    }
}

impl<S: EventStore + ?Sized> EventStore for std::sync::Arc<S> {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        (**self).append(stream, expected, events)
    }
    fn append_atomic(&self, append: AtomicAppend) -> BoxFuture<'_, Result<Vec<Committed>, StoreError>> {
        (**self).append_atomic(append)
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        to: Option<Version>,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        (**self).read_stream(stream, from, to)
    }
    fn read_stream_for_load<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        (**self).read_stream_for_load(stream, from)
    }
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        (**self).read_all(after, limit, filter)
    }
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
        (**self).stream_version(stream)
    }
    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        (**self).head()
    }
    fn scan<'a>(&'a self, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        (**self).scan(scan)
    }
    fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).rewrite(position, event)
    }
    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<Position>> {
        (**self).watch_head()
    }
    fn try_append_now(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Result<Committed, StoreError>, Vec<NewEvent>> {
        (**self).try_append_now(stream, expected, events)
    }
}
