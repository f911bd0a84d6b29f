//! The application's view of its event store: reads and appends go
//! straight through; a rewrite (schema migration of one stored event)
//! waits for the stream's turn, so no command of this instance holds a
//! state folded from the old event, then drops the stream's cached state
//! and snapshot, so the next load folds the rewritten one, and the views
//! of its category and of the log, which the next command that reads one
//! rebuilds.
//!
//! Projections built from the old payload are not touched: rebuild them
//! (`Application::rebuild_projection`) after a migration that changes what
//! they read.

use std::sync::Arc;

use super::dispatcher::Dispatcher;
use crate::domain::ids::{Position, StreamId, Version};
use crate::future::BoxFuture;
use crate::store::{
    AtomicAppend, Committed, EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent, RewrittenEvent, Scan,
    StoreError,
};

/// [`EventStore`] over the application's store that keeps its caches
/// right across rewrites.
pub(crate) struct ApplicationStore {
    dispatcher: Arc<Dispatcher>,
}

impl ApplicationStore {
    pub(crate) fn new(dispatcher: Arc<Dispatcher>) -> Self {
        Self { dispatcher }
    }

    fn store(&self) -> &dyn EventStore {
        &*self.dispatcher.repository.store
    }

    async fn rewrite_and_invalidate(&self, position: Position, event: RewrittenEvent) -> Result<(), StoreError> {
        let Some(stream) = self.store().event_at(position).await?.map(|e| e.stream) else {
            return Err(StoreError::NotFound(position));
        };
        let repository = &self.dispatcher.repository;
        let _turn = self.dispatcher.turns.wait(&stream).await;
        // Commands decided before the turn may still be committing (and
        // saving their snapshot): let them finish first.
        self.dispatcher.combiner.idle(&stream).await;
        // The snapshot first: if the rewrite then fails, a state is only
        // rebuilt from events, never folded from a half-migrated stream.
        repository.snapshots.delete(&stream).await?;
        let rewritten = self.store().rewrite(position, event).await;
        repository.cache.invalidate(&stream);
        self.dispatcher.views.forget(&stream);
        rewritten
    }
}

impl EventStore for ApplicationStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        self.store().append(stream, expected, events)
    }
    fn append_atomic(&self, append: AtomicAppend) -> BoxFuture<'_, Result<Vec<Committed>, StoreError>> {
        self.store().append_atomic(append)
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        to: Option<Version>,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.store().read_stream(stream, from, to)
    }
    fn read_stream_for_load<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.store().read_stream_for_load(stream, from)
    }
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.store().read_all(after, limit, filter)
    }
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
        self.store().stream_version(stream)
    }
    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        self.store().head()
    }
    fn scan<'a>(&'a self, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.store().scan(scan)
    }
    fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.rewrite_and_invalidate(position, event))
    }
    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<Position>> {
        self.store().watch_head()
    }
    fn try_append_now(
        &self,
        stream: &StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<Result<Committed, StoreError>, Vec<NewEvent>> {
        self.store().try_append_now(stream, expected, events)
    }
}
