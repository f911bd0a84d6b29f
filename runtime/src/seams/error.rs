//! Why a store operation failed: the one error type of the seams layer.

use crate::domain::ids::{Position, StreamId, Version};

use super::ExpectedVersion;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The stream was not at the expected version; nothing was appended.
    #[error("stream `{stream}` is at version {actual}, expected {expected}")]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// The version the writer expected.
        expected: ExpectedVersion,
        /// The stream's actual version.
        actual: Version,
    },
    /// A condition of an atomic append failed: an event was written to
    /// `scope` after the position the writer's decision was based on.
    /// Nothing was appended; decide again from the newer state.
    #[error("{scope} changed after position {since}: its last event is at position {actual}")]
    ScopeChanged {
        /// The scope that changed.
        scope: super::Scope,
        /// The position the writer expected it to end at.
        since: Position,
        /// The position of its last event.
        actual: Position,
    },
    /// A tenant's handle was asked to read or write outside its tenant
    /// (another tenant's stream, or one of no tenant); nothing was done.
    #[error("`{target}` is not of tenant `{tenant}`")]
    OtherTenant {
        /// The handle's tenant.
        tenant: crate::domain::ids::TenantId,
        /// What it was asked for.
        target: String,
    },
    /// A checkpoint save fenced by a lease token that no longer holds the
    /// lease (another instance took the subscriber over); nothing was
    /// saved: the old owner steps down.
    #[error("the lease of `{subscriber}` is no longer held with token {token}")]
    LeaseLost {
        /// The subscriber.
        subscriber: String,
        /// The token the save carried.
        token: u64,
    },
    /// A checkpoint saved in a read model's transaction would not move:
    /// the stored one is already at or past `position`, so another
    /// instance applied that event first. The transaction must not commit
    /// (its rows would apply the event twice).
    #[error("`{subscriber}` has already processed position {position}")]
    AlreadyApplied {
        /// The subscriber.
        subscriber: String,
        /// The position the save carried.
        position: crate::domain::ids::Position,
    },
    /// The backend cannot be reached; the operation may succeed later.
    #[error("{backend} is unavailable: {source}")]
    Unavailable {
        /// The backend (e.g. `postgres`).
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored row cannot be read back.
    #[error("{backend}: corrupt stored data at {location}: {reason}")]
    Corrupt {
        /// The backend.
        backend: &'static str,
        /// Which row (stream and version, or position).
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An event of the log cannot be read (its id, metadata or a column of
    /// it is corrupt), though its position can: a subscriber parks it as a
    /// dead letter of that position, with what could be salvaged, and goes
    /// on. Returned by `read_all` for a page whose *first* event is
    /// unreadable, and may be returned for any page that holds one.
    #[error("{backend}: the event at position {position} cannot be read: {reason}")]
    UnreadableEvent {
        /// The backend.
        backend: &'static str,
        /// Its position in the log.
        position: Position,
        /// What is wrong with it.
        reason: String,
        /// What could be read of it: the raw payload bytes, the stored
        /// stream, name and versions where readable (placeholders where
        /// not: an event id derived from the position, the aggregate type
        /// `<unreadable>`), and the raw metadata text in the header
        /// [`StoreError::RAW_METADATA_HEADER`] when the metadata is what
        /// cannot be read.
        salvaged: Box<super::RecordedEvent>,
    },
    /// No event at this position.
    #[error("no event at position {0}")]
    NotFound(Position),
    /// Any other backend failure.
    #[error("{backend}: {source}")]
    Backend {
        /// The backend.
        backend: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// The header of a salvaged unreadable event holding its raw stored
    /// metadata.
    pub const RAW_METADATA_HEADER: &'static str = "interlock.raw_metadata";

    /// The conflict of a saga instance that is not at the version a writer
    /// expected (for implementers of `SagaStateStore`).
    #[must_use]
    pub fn saga_conflict(saga: &str, key: &str, expected: Version, actual: Version) -> Self {
        StoreError::Conflict {
            stream: StreamId::new(format!("saga.{saga}"), key),
            expected: ExpectedVersion::Exact(expected),
            actual,
        }
    }
}
