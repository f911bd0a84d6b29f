//! The one error of the processes layer.

use crate::store::StoreError;

/// Why catching up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The event, checkpoint or dead-letter store failed.
    #[error("subscriber `{subscriber}`: {source}")]
    Store {
        /// The subscriber.
        subscriber: String,
        /// The store error.
        #[source]
        source: StoreError,
    },
    /// The subscriber stopped on a failing event (policy `ParkAndStop`).
    #[error("subscriber `{subscriber}` is stopped: {reason}")]
    Stopped {
        /// The subscriber.
        subscriber: String,
        /// Why.
        reason: String,
    },
    /// A saga deadline handler failed; the deadline stays scheduled.
    #[error("deadline of saga `{saga}` failed: {source}")]
    Deadline {
        /// The saga.
        saga: &'static str,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another instance of the application owns the subscriber (holds its
    /// lease): ask that one, or wait until this one takes it over.
    #[error("subscriber `{subscriber}` is run by another instance (it holds the lease)")]
    OwnedElsewhere {
        /// The subscriber.
        subscriber: String,
    },
    /// A rebuild of a projection that takes over from an earlier count of
    /// segments (`ProjectionConfig::resegment_from`): the old checkpoints
    /// would make the rebuild skip events. Remove the setting first.
    #[error(
        "subscriber `{subscriber}` takes over from an earlier count of segments; remove `resegment_from` before rebuilding it"
    )]
    Resegmenting {
        /// The subscriber (segment).
        subscriber: String,
    },
    /// No subscriber of that type is registered.
    #[error("`{0}` is not registered on the application")]
    NotRegistered(&'static str),
}
