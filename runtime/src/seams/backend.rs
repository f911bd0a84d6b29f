//! A backend: the set of stores one technology provides, so generic code
//! names one bound and the application takes them in one call.

use std::fmt;
use std::sync::Arc;

use super::{CheckpointStore, DeadLetterStore, EventStore, IdempotencyStore, Outbox, SagaStateStore, SnapshotStore};

/// The stores a backend provides; a `None` is a seam it does not cover
/// (the application then keeps its in-memory default, or another
/// backend's store). Build one by hand to mix technologies, or get one from
/// [`Backend::stores`].
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct StoreSet {
    /// The event store.
    pub events: Option<Arc<dyn EventStore>>,
    /// The snapshot store.
    pub snapshots: Option<Arc<dyn SnapshotStore>>,
    /// The idempotency store.
    pub idempotency: Option<Arc<dyn IdempotencyStore>>,
    /// The checkpoint store.
    pub checkpoints: Option<Arc<dyn CheckpointStore>>,
    /// The dead-letter store.
    pub dead_letters: Option<Arc<dyn DeadLetterStore>>,
    /// The saga state store.
    pub sagas: Option<Arc<dyn SagaStateStore>>,
    /// The transactional outbox, when the backend records one.
    pub outbox: Option<Arc<dyn Outbox>>,
}

impl StoreSet {
    /// No stores.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// One value serving every storage seam (a SQL store, say).
    #[must_use]
    pub fn all<B>(backend: B) -> Self
    where
        B: EventStore + SnapshotStore + IdempotencyStore + CheckpointStore + DeadLetterStore + SagaStateStore,
    {
        let shared = Arc::new(backend);
        Self {
            events: Some(shared.clone()),
            snapshots: Some(shared.clone()),
            idempotency: Some(shared.clone()),
            checkpoints: Some(shared.clone()),
            dead_letters: Some(shared.clone()),
            sagas: Some(shared),
            outbox: None,
        }
    }

    /// Adds a transactional outbox.
    #[must_use]
    pub fn with_outbox(mut self, outbox: impl Outbox) -> Self {
        self.outbox = Some(Arc::new(outbox));
        self
    }

    /// The stores of `other` where this set has none.
    #[must_use]
    pub fn or(self, other: StoreSet) -> Self {
        Self {
            events: self.events.or(other.events),
            snapshots: self.snapshots.or(other.snapshots),
            idempotency: self.idempotency.or(other.idempotency),
            checkpoints: self.checkpoints.or(other.checkpoints),
            dead_letters: self.dead_letters.or(other.dead_letters),
            sagas: self.sagas.or(other.sagas),
            outbox: self.outbox.or(other.outbox),
        }
    }
}

impl fmt::Debug for StoreSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSet")
            .field("events", &self.events.is_some())
            .field("snapshots", &self.snapshots.is_some())
            .field("idempotency", &self.idempotency.is_some())
            .field("checkpoints", &self.checkpoints.is_some())
            .field("dead_letters", &self.dead_letters.is_some())
            .field("sagas", &self.sagas.is_some())
            .field("outbox", &self.outbox.is_some())
            .finish()
    }
}

/// A backend: something that provides a [`StoreSet`]. Every type that
/// implements all six storage traits (and `Clone`) is one; a backend that
/// covers only some seams (a cache, say) implements it by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a backend",
    note = "a backend implements every storage trait of `interlock::store`, or `Backend::stores` returning the stores it has"
)]
pub trait Backend: Send + Sync + 'static {
    /// The stores this backend provides.
    fn stores(&self) -> StoreSet;
}

impl Backend for StoreSet {
    fn stores(&self) -> StoreSet {
        self.clone()
    }
}

#[diagnostic::do_not_recommend]
impl<B> Backend for B
where
    B: EventStore + SnapshotStore + IdempotencyStore + CheckpointStore + DeadLetterStore + SagaStateStore + Clone,
{
    fn stores(&self) -> StoreSet {
        StoreSet::all(self.clone())
    }
}
