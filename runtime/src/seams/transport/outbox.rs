//! The transactional outbox a relay publishes from.

use crate::domain::ids::Position;
use crate::future::BoxFuture;
use crate::store::{RecordedEvent, StoreError};

/// A transactional outbox: a store that records, in the same transaction as
/// each append, that the events are to be published. A relay reads the
/// pending events in position order, publishes them, then marks them
/// published, so every committed event is published at least once, also
/// by a relay running outside the application that wrote it.
pub trait Outbox: Send + Sync + 'static {
    /// Up to `limit` events not yet marked published, in position order.
    fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>>;

    /// Marks events published (by position).
    fn mark_published<'a>(&'a self, positions: &'a [Position]) -> BoxFuture<'a, Result<(), StoreError>>;
}

impl<O: Outbox + ?Sized> Outbox for std::sync::Arc<O> {
    fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        (**self).pending(limit)
    }
    fn mark_published<'a>(&'a self, positions: &'a [Position]) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).mark_published(positions)
    }
}
