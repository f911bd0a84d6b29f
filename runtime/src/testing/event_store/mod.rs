//! The [`EventStore`] conformance suite, one file per concern, and the
//! helpers its cases share.

mod basics;
mod constraints;
mod scans;
mod tenants;

pub use self::basics::*;
pub use self::constraints::*;
pub use self::scans::*;
pub use self::tenants::*;

use bytes::Bytes;

use crate::domain::ids::{EventId, SchemaVersion, StreamId};
#[cfg(doc)]
use crate::store::EventStore;
use crate::store::{EventMetadata, NewEvent};

pub(super) fn stream(kind: &str) -> StreamId {
    StreamId::new(kind, ulid::Ulid::new().to_string())
}

pub(super) fn event(name: &'static str, n: u64) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        name: name.into(),
        schema_version: SchemaVersion(1),
        payload: Bytes::from(format!(r#"{{"n":{n}}}"#)),
        metadata: EventMetadata::default(),
    }
}

pub(super) fn n_of(payload: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(payload).expect("json")["n"]
        .as_u64()
        .expect("n")
}
