//! The seams: one file per storage trait, each with its in-memory
//! implementation, plus the batch-append primitive. Published as
//! `interlock::store`.
//!
//! This layer sits on the domain's ids only; nothing here knows about
//! commands, aggregates or subscribers.

mod backend;
mod batch;
mod cache;
mod checkpoint;
mod dead_letter;
mod error;
mod event_store;
mod idempotency;
mod read_model;
mod saga_state;
mod snapshot;
mod transport;

pub use self::backend::{Backend, StoreSet};
pub use self::batch::{BatchAppend, GroupCommit, GroupCommitter};
pub use self::cache::{AggregateCache, CacheEntry, CacheRead, CachedState, MemoryAggregateCache};
pub use self::checkpoint::{CheckpointStore, Lease, LeaseClaim, MemoryCheckpointStore};
pub use self::dead_letter::{DeadLetter, DeadLetterStore, MemoryDeadLetterStore};
pub use self::error::StoreError;
pub use self::event_store::{
    AppendRequest, AtomicAppend, Committed, Direction, EventFilter, EventMetadata, EventStore, ExpectedVersion,
    Headers, MemoryEventStore, NewEvent, Positions, RecordedEvent, RewrittenEvent, Scan, ScanPages, Scope, TenantStore,
    Unchanged,
};
pub use self::idempotency::{
    Claim, FINGERPRINT_HEADER, IdempotencyRecord, IdempotencyStore, MemoryIdempotencyStore, OUTCOME_HEADER,
};
pub use self::read_model::{ReadModelTransaction, ReadModelTransactions};
pub use self::saga_state::{
    MemorySagaStateStore, SagaChange, SagaFailure, SagaInstance, SagaStateStore, ScheduledDeadline,
};
pub use self::snapshot::{MemorySnapshotStore, Snapshot, SnapshotStore};
pub use self::transport::{
    Delivery, Envelope, EnvelopeError, EventTransport, MemoryTransport, Outbox, Receipt, header,
};
pub use crate::future::BoxFuture;
