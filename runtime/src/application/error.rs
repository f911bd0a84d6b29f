//! The errors of the application layer: building it and answering queries.

use crate::domain::services::ServiceKey;
use crate::store::StoreError;

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The projection that answers the query is not registered.
    #[error("projection `{projection}` is not registered; add `.projection(...)` to the application builder")]
    NotRegistered {
        /// The projection.
        projection: &'static str,
    },
    /// The query handler panicked.
    #[error("the handler of query `{query}` panicked: {message}")]
    HandlerPanicked {
        /// The query type.
        query: &'static str,
        /// The panic's message.
        message: String,
    },
    /// An interceptor refused the query.
    #[error("query `{query}` refused: {reason}")]
    Rejected {
        /// The query type.
        query: &'static str,
        /// Why.
        reason: String,
    },
}

/// Why `ApplicationBuilder::build` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A handler of a registered aggregate takes a service that is not registered.
    #[error("aggregate `{aggregate}` needs service `{service}`; register it with `.service(...)`")]
    MissingService {
        /// The aggregate.
        aggregate: &'static str,
        /// The service type.
        service: ServiceKey,
    },
    /// Two registered aggregate types share one name, so their streams would mix.
    #[error("aggregates `{first}` and `{second}` are both named `{name}`")]
    DuplicateAggregateName {
        /// The shared name.
        name: &'static str,
        /// The first Rust type.
        first: &'static str,
        /// The second Rust type.
        second: &'static str,
    },
    /// Two different event types are stored under one name (outside one
    /// upcaster chain): a subscriber reading that name would decode the
    /// other's events as its own, or dead-letter them.
    #[error(
        "event types `{first}` (of {first_owner}) and `{second}` (of {second_owner}) are both stored as `{name}`; give one another `#[event(name = ...)]`, or make one upcast from the other"
    )]
    EventNameClash {
        /// The stored name.
        name: &'static str,
        /// The first type.
        first: &'static str,
        /// The aggregate, projection or saga that registered it.
        first_owner: String,
        /// The second type.
        second: &'static str,
        /// The aggregate, projection or saga that registered it.
        second_owner: String,
    },
    /// A setting has a value that cannot work.
    #[error("invalid setting `{setting}`: {reason}")]
    InvalidConfig {
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// A projection's or saga's subscriber configuration cannot work.
    #[error("subscriber `{subscriber}`: invalid setting `{setting}`: {reason}")]
    InvalidSubscriberConfig {
        /// The subscriber (`projection:<name>` or `saga:<name>`).
        subscriber: String,
        /// The setting.
        setting: &'static str,
        /// Why.
        reason: String,
    },
    /// A backend could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
}
