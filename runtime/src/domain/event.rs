//! Events: named, versioned serde types, and their upcaster chains.

use std::any::TypeId;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::ids::SchemaVersion;

/// A domain event type: a stable name, a schema version and, for versions
/// above 1, the older type it upcasts from.
///
/// Implemented by `#[derive(Event)]`; never by hand.
///
/// # Examples
///
/// ```
/// use interlock::prelude::*;
///
/// #[derive(Event, Serialize, Deserialize)]
/// #[event(name = "bank.money_deposited", version = 1)]
/// pub struct MoneyDepositedV1 { pub amount: u64 }
///
/// #[derive(Event, Serialize, Deserialize)]
/// #[event(name = "bank.money_deposited", version = 2, upcast_from = MoneyDepositedV1)]
/// pub struct MoneyDeposited { pub amount: u64, pub currency: String }
///
/// impl From<MoneyDepositedV1> for MoneyDeposited {
///     fn from(old: MoneyDepositedV1) -> Self {
///         MoneyDeposited { amount: old.amount, currency: "EUR".into() }
///     }
/// }
///
/// // A payload stored as version 1 decodes into the current type.
/// let e = MoneyDeposited::decode_payload(SchemaVersion(1), br#"{"amount":5}"#).unwrap();
/// assert_eq!(e.currency, "EUR");
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an event",
    label = "not an event",
    note = "add `#[derive(Event)]` and `#[event(name = \"...\", version = N)]` to `{Self}`"
)]
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The stable name the event is stored under.
    const NAME: &'static str;
    /// The schema version of this type.
    const VERSION: SchemaVersion;
    /// The oldest schema version the upcaster chain ending here decodes.
    #[doc(hidden)]
    const OLDEST: SchemaVersion;

    /// Decodes a payload stored at `version` into this type, running the
    /// upcaster chain when `version` is older than [`Event::VERSION`].
    ///
    /// # Errors
    ///
    /// [`EventDecodeError::UnknownVersion`] for a version the chain does not
    /// reach (newer than the code, or older than the oldest type), and
    /// [`EventDecodeError::Payload`] when the JSON does not fit the type.
    fn decode_payload(version: SchemaVersion, payload: &[u8]) -> Result<Self, EventDecodeError>;

    /// Encodes the event as its JSON payload.
    ///
    /// # Errors
    ///
    /// When the `Serialize` implementation fails.
    fn encode_payload(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// The oldest type of the upcaster chain this type ends: itself, or
    /// the root of the type it upcasts from.
    #[doc(hidden)]
    fn chain_root() -> TypeId {
        TypeId::of::<Self>()
    }
}

/// One event type of an [`EventSet`], as `build()` compares them: two
/// types stored under one name must be one upcaster chain.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
pub struct EventType {
    /// The stored name.
    pub name: &'static str,
    /// The schema version of the type.
    pub version: SchemaVersion,
    /// The Rust type, for messages.
    pub type_name: &'static str,
    /// The type.
    pub type_id: TypeId,
    /// The oldest type of its upcaster chain.
    pub chain_root: TypeId,
}

impl EventType {
    /// The description of `E`.
    pub fn of<E: Event>() -> Self {
        Self {
            name: E::NAME,
            version: E::VERSION,
            type_name: std::any::type_name::<E>(),
            type_id: TypeId::of::<E>(),
            chain_root: E::chain_root(),
        }
    }

    /// Whether events stored under this type's name can be read by both
    /// types: the same name, one upcaster chain, and not two different
    /// types at one version of it.
    pub fn clashes_with(&self, other: &EventType) -> bool {
        self.name == other.name
            && self.type_id != other.type_id
            && (self.chain_root != other.chain_root || self.version == other.version)
    }
}

/// Why a stored event could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventDecodeError {
    /// No event type of the aggregate or projection has this name.
    #[error("unknown event name `{name}`")]
    UnknownEvent {
        /// The stored name.
        name: String,
    },
    /// The name is known but the upcaster chain does not reach this version.
    #[error("event `{name}` has no schema version {version} (the code knows {oldest} to {newest})")]
    UnknownVersion {
        /// The event name.
        name: &'static str,
        /// The stored version.
        version: SchemaVersion,
        /// The oldest version the chain decodes.
        oldest: SchemaVersion,
        /// The current version.
        newest: SchemaVersion,
    },
    /// The payload is not valid JSON for the event type of that version.
    #[error("payload of `{name}` {version} does not decode: {source}")]
    Payload {
        /// The event name.
        name: &'static str,
        /// The version whose type was decoded.
        version: SchemaVersion,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
}

/// The `From` impl that moves an event from an older schema to a newer one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be upcast from `{Old}`",
    label = "no `From<{Old}>` for `{Self}`",
    note = "`upcast_from = {Old}` needs `impl From<{Old}> for {Self}` that turns the old version into the new one"
)]
pub trait UpcastFrom<Old>: Sized {
    /// Turns the older event into this one.
    fn upcast(old: Old) -> Self;
}

#[diagnostic::do_not_recommend]
impl<Old, New: From<Old>> UpcastFrom<Old> for New {
    fn upcast(old: Old) -> Self {
        New::from(old)
    }
}

/// One event encoded for storage.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedEvent {
    /// The event name.
    pub name: &'static str,
    /// The schema version it was encoded with.
    pub version: SchemaVersion,
    /// The JSON payload.
    pub payload: bytes::Bytes,
}

/// The closed set of events one aggregate applies; generated by
/// `#[aggregate]` as a hidden enum, one variant per `#[applies_event]`.
pub trait EventSet: Send + Sync + Sized + 'static {
    /// The names of every event in the set.
    const NAMES: &'static [&'static str];

    /// The stored name of this event.
    fn name(&self) -> &'static str;

    /// Encodes this event for storage.
    ///
    /// # Errors
    ///
    /// When the event's `Serialize` implementation fails.
    fn encode(&self) -> Result<EncodedEvent, serde_json::Error>;

    /// Decodes a stored event through the upcaster chain of its type.
    ///
    /// # Errors
    ///
    /// [`EventDecodeError::UnknownEvent`] when no event of the set has this name,
    /// else as [`Event::decode_payload`].
    fn decode(name: &str, version: SchemaVersion, payload: &[u8]) -> Result<Self, EventDecodeError>;

    /// Every event type of the set.
    #[doc(hidden)]
    fn event_types() -> Vec<EventType> {
        Vec::new()
    }
}

/// Support for generated code: decode one version of an event type that
/// starts a chain, or step back through `Old`.
#[doc(hidden)]
pub fn decode_exact<E: Event>(
    version: SchemaVersion,
    payload: &[u8],
    oldest: SchemaVersion,
) -> Result<E, EventDecodeError> {
    if version == E::VERSION {
        serde_json::from_slice(payload).map_err(|source| EventDecodeError::Payload {
            name: E::NAME,
            version,
            source,
        })
    } else {
        Err(EventDecodeError::UnknownVersion {
            name: E::NAME,
            version,
            oldest,
            newest: E::VERSION,
        })
    }
}

/// Support for generated code: decode `version` into `New`, stepping through
/// `Old` for older versions.
#[doc(hidden)]
pub fn decode_upcast<New, Old>(
    version: SchemaVersion,
    payload: &[u8],
    oldest: SchemaVersion,
) -> Result<New, EventDecodeError>
where
    New: Event + UpcastFrom<Old>,
    Old: Event,
{
    if version == New::VERSION {
        serde_json::from_slice(payload).map_err(|source| EventDecodeError::Payload {
            name: New::NAME,
            version,
            source,
        })
    } else if version < New::VERSION && version >= oldest {
        Old::decode_payload(version, payload)
            .map(New::upcast)
            .map_err(|e| match e {
                EventDecodeError::UnknownVersion { name, version, .. } => EventDecodeError::UnknownVersion {
                    name,
                    version,
                    oldest,
                    newest: New::VERSION,
                },
                other => other,
            })
    } else {
        Err(EventDecodeError::UnknownVersion {
            name: New::NAME,
            version,
            oldest,
            newest: New::VERSION,
        })
    }
}

/// Support for generated code: byte equality of two names in a const context.
#[doc(hidden)]
#[must_use]
pub const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}
