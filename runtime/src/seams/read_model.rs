//! Transactions shared by a read model and its checkpoint: a store that
//! holds both (a SQL database) lets a projection write its rows and its
//! checkpoint in one transaction, so a crash can neither apply an event
//! twice nor skip one.

use std::any::Any;

use super::StoreError;
use crate::domain::ids::Position;
use crate::future::BoxFuture;

/// A store that can open a transaction holding both a projection's rows
/// and its checkpoint. Given to a projection with
/// `ProjectionConfig::transactions`.
pub trait ReadModelTransactions: Send + Sync + 'static {
    /// Begins a write transaction.
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn ReadModelTransaction>, StoreError>>;
}

/// One open transaction of a [`ReadModelTransactions`] store.
pub trait ReadModelTransaction: Send + 'static {
    /// The driver's own transaction, for the handler's statements: the
    /// `#[handles_event]` method's `&mut T` parameter is this, downcast to
    /// `T` (for the SQL backends, `interlock::sql::SqliteTransaction` or
    /// `PostgresTransaction`).
    fn inner(&mut self) -> &mut (dyn Any + Send);

    /// Saves `subscriber`'s checkpoint at `position` inside the
    /// transaction, only moving it forward; with a lease `token`, only
    /// while it holds the subscriber's lease.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseLost`] when the token no longer holds the lease;
    /// [`StoreError::AlreadyApplied`] when the stored checkpoint is already
    /// at or past `position` (another instance applied the event: the
    /// caller rolls back, unless it knowingly re-applies an old event, a
    /// replayed dead letter). Nothing is saved either way, and the
    /// transaction stays usable.
    fn save_checkpoint<'a>(
        &'a mut self,
        subscriber: &'a str,
        position: Position,
        token: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Commits the rows and the checkpoint together.
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>>;
}

impl<S: ReadModelTransactions + ?Sized> ReadModelTransactions for std::sync::Arc<S> {
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn ReadModelTransaction>, StoreError>> {
        (**self).begin()
    }
}
