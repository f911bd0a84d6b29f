//! What travels with an event besides its payload: the metadata stored
//! with it, and the whole of where an event came from as handlers see it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::ids::{
    CausationId, CommandId, CorrelationId, EventId, Position, SchemaVersion, StreamId, Timestamp, Version,
};

/// User headers carried in event metadata.
pub type Headers = BTreeMap<String, String>;

/// What travels with every event besides its payload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// When the event was recorded (set by the application at append).
    pub timestamp: Option<Timestamp>,
    /// The correlation id of the request that led to this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<CorrelationId>,
    /// The message that caused this event (usually the command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<CausationId>,
    /// The id of the command that emitted the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<CommandId>,
    /// User headers (tenant, user, trace ids ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: Headers,
}

/// Where an event came from, for handlers that take `&EventMeta`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventMeta {
    /// The event id.
    pub event_id: EventId,
    /// The stream.
    pub stream: StreamId,
    /// The version in the stream.
    pub version: Version,
    /// The global position.
    pub position: Position,
    /// The stored name.
    pub name: String,
    /// The stored schema version (before upcasting).
    pub schema_version: SchemaVersion,
    /// Timestamp, correlation, causation, headers.
    pub metadata: EventMetadata,
}
