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
