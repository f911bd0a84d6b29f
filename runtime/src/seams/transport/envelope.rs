//! The envelope of an event on a broker: the stored payload as the
//! message body, unchanged, and everything else of the recorded event in
//! message headers, so broker tools show them and a consumer rebuilds the
//! event exactly. Both brokers (NATS, Kafka) write the same headers.
//!
//! Values are visible ASCII: the texts a user chose (stream type and id,
//! tenant, event name, user headers) are percent-encoded where they hold
//! a control character, a `%` or anything outside ASCII; a user header's
//! key becomes part of a header name, encoded where it is not
//! alphanumeric, `-` or `_`.

use std::borrow::Cow;

use bytes::Bytes;
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::domain::ids::{
    CausationId, CommandId, CorrelationId, EventId, Position, SchemaVersion, StreamId, TenantId, Timestamp, Version,
};
use crate::domain::meta::EventMetadata;
use crate::store::RecordedEvent;

/// The header names.
pub mod header {
    /// The event id (also the broker's de-duplication id where it has one).
    pub const EVENT_ID: &str = "Interlock-Event-Id";
    /// The aggregate type of the stream.
    pub const STREAM_TYPE: &str = "Interlock-Stream-Type";
    /// The aggregate id of the stream.
    pub const STREAM_ID: &str = "Interlock-Stream-Id";
    /// The stream's tenant, when it has one.
    pub const TENANT: &str = "Interlock-Tenant";
    /// The event's version in its stream.
    pub const VERSION: &str = "Interlock-Version";
    /// The event's position in the producer's global log.
    pub const POSITION: &str = "Interlock-Position";
    /// The stored event name.
    pub const NAME: &str = "Interlock-Name";
    /// The payload's schema version.
    pub const SCHEMA_VERSION: &str = "Interlock-Schema-Version";
    /// When it was recorded (RFC 3339, microseconds).
    pub const RECORDED_AT: &str = "Interlock-Recorded-At";
    /// The correlation id.
    pub const CORRELATION_ID: &str = "Interlock-Correlation-Id";
    /// The causation id (`command:<id>`, `event:<id>`, `deadline:<id>`).
    pub const CAUSATION_ID: &str = "Interlock-Causation-Id";
    /// The id of the command that emitted it.
    pub const COMMAND_ID: &str = "Interlock-Command-Id";
    /// The prefix of a user header: `Interlock-Header-<key>`.
    pub const USER_PREFIX: &str = "Interlock-Header-";
}

/// What a value keeps as is: visible ASCII but `%`.
const VALUE: &AsciiSet = &CONTROLS.add(b'%');
/// What a header name keeps as is: letters, digits, `-`, `_`.
const NAME: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// Why a message is not an Interlock event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// A header every event has is missing.
    #[error("the message has no `{0}` header: not an event published by Interlock")]
    Missing(&'static str),
    /// A header's value cannot be read.
    #[error("the message's `{header}` header is invalid ({value:?}): {reason}")]
    Invalid {
        /// The header.
        header: String,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
}

/// The headers of one event, in the order a broker writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Header names and values.
    pub headers: Vec<(Cow<'static, str>, String)>,
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, VALUE).to_string()
}

fn invalid(header: &str, value: &str, reason: impl ToString) -> EnvelopeError {
    EnvelopeError::Invalid {
        header: header.to_owned(),
        value: value.chars().take(200).collect(),
        reason: reason.to_string(),
    }
}

fn decode(header: &str, value: &str) -> Result<String, EnvelopeError> {
    percent_decode_str(value)
        .decode_utf8()
        .map(Cow::into_owned)
        .map_err(|e| invalid(header, value, e))
}

fn parse<T: std::str::FromStr>(header: &'static str, value: &str) -> Result<T, EnvelopeError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| invalid(header, value, e))
}

fn causation(value: &str) -> Result<CausationId, EnvelopeError> {
    let bad = || {
        invalid(
            header::CAUSATION_ID,
            value,
            "expected `command:`, `event:` or `deadline:` and a ULID",
        )
    };
    let (kind, id) = value.split_once(':').ok_or_else(bad)?;
    let id = ulid::Ulid::from_string(id).map_err(|_| bad())?;
    match kind {
        "command" => Ok(CausationId::Command(CommandId(id))),
        "event" => Ok(CausationId::Event(EventId(id))),
        "deadline" => Ok(CausationId::Deadline(id)),
        _ => Err(bad()),
    }
}

impl Envelope {
    /// The headers of `event`.
    #[must_use]
    pub fn of(event: &RecordedEvent) -> Self {
        let meta = &event.metadata;
        let mut headers: Vec<(Cow<'static, str>, String)> = Vec::with_capacity(12 + meta.headers.len());
        let mut put = |name: &'static str, value: String| headers.push((Cow::Borrowed(name), value));
        put(header::EVENT_ID, event.event_id.to_string());
        put(header::STREAM_TYPE, encode(event.stream.aggregate_type()));
        put(header::STREAM_ID, encode(event.stream.aggregate_id()));
        if let Some(tenant) = event.stream.tenant() {
            put(header::TENANT, encode(tenant.as_str()));
        }
        put(header::VERSION, event.version.0.to_string());
        put(header::POSITION, event.position.0.to_string());
        put(header::NAME, encode(&event.name));
        put(header::SCHEMA_VERSION, event.schema_version.0.to_string());
        if let Some(at) = meta.timestamp {
            put(header::RECORDED_AT, at.to_string());
        }
        if let Some(id) = meta.correlation_id {
            put(header::CORRELATION_ID, id.to_string());
        }
        if let Some(id) = meta.causation_id {
            put(header::CAUSATION_ID, id.to_string());
        }
        if let Some(id) = meta.command_id {
            put(header::COMMAND_ID, id.to_string());
        }
        for (key, value) in &meta.headers {
            headers.push((
                Cow::Owned(format!("{}{}", header::USER_PREFIX, utf8_percent_encode(key, NAME))),
                encode(value),
            ));
        }
        Self { headers }
    }

    /// The event carried by a message with these headers and `payload`.
    ///
    /// # Errors
    ///
    /// [`EnvelopeError`] when a header is missing or unreadable (a message
    /// another producer wrote to the same subject or topic, say).
    pub fn open<'h>(
        headers: impl IntoIterator<Item = (&'h str, &'h str)>,
        payload: Bytes,
    ) -> Result<RecordedEvent, EnvelopeError> {
        let mut found: [Option<&str>; 12] = [None; 12];
        const NAMES: [&str; 12] = [
            header::EVENT_ID,
            header::STREAM_TYPE,
            header::STREAM_ID,
            header::TENANT,
            header::VERSION,
            header::POSITION,
            header::NAME,
            header::SCHEMA_VERSION,
            header::RECORDED_AT,
            header::CORRELATION_ID,
            header::CAUSATION_ID,
            header::COMMAND_ID,
        ];
        let mut user = crate::domain::meta::Headers::new();
        for (name, value) in headers {
            if let Some(key) = name.strip_prefix(header::USER_PREFIX) {
                user.insert(decode(name, key)?, decode(name, value)?);
            } else if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
                found[i] = Some(value);
            }
        }
        let required = |i: usize| found[i].ok_or(EnvelopeError::Missing(NAMES[i]));
        let event_id: EventId = parse(header::EVENT_ID, required(0)?)?;
        let aggregate_type = decode(header::STREAM_TYPE, required(1)?)?;
        let aggregate_id = decode(header::STREAM_ID, required(2)?)?;
        let tenant = match found[3] {
            None => None,
            Some(value) => {
                Some(TenantId::new(decode(header::TENANT, value)?).map_err(|e| invalid(header::TENANT, value, e))?)
            }
        };
        let version = Version(parse(header::VERSION, required(4)?)?);
        let position = Position(parse(header::POSITION, required(5)?)?);
        let name = decode(header::NAME, required(6)?)?;
        let schema_version = SchemaVersion(parse(header::SCHEMA_VERSION, required(7)?)?);
        let timestamp = found[8]
            .map(|v| parse::<Timestamp>(header::RECORDED_AT, v))
            .transpose()?;
        let correlation_id = found[9]
            .map(|v| parse::<CorrelationId>(header::CORRELATION_ID, v))
            .transpose()?;
        let causation_id = found[10].map(causation).transpose()?;
        let command_id = found[11]
            .map(|v| parse::<CommandId>(header::COMMAND_ID, v))
            .transpose()?;
        Ok(RecordedEvent {
            event_id,
            stream: StreamId::new(aggregate_type, aggregate_id).in_tenant(tenant),
            version,
            position,
            name: Cow::Owned(name),
            schema_version,
            payload,
            metadata: EventMetadata {
                timestamp,
                correlation_id,
                causation_id,
                command_id,
                headers: user,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event() -> RecordedEvent {
        let mut headers = crate::domain::meta::Headers::new();
        headers.insert("user.id".into(), "zoë %20 \r\n".into());
        headers.insert("trace".into(), "abc".into());
        RecordedEvent {
            event_id: EventId::new(),
            stream: StreamId::new("order.v2", "a/b c\u{0}ü%").in_tenant(Some(TenantId::new("acme").unwrap())),
            version: Version(3),
            position: Position(42),
            name: Cow::Borrowed("OrderPlaced"),
            schema_version: SchemaVersion(2),
            payload: Bytes::from_static(b"{\"x\":1}"),
            metadata: EventMetadata {
                timestamp: Some(Timestamp(1_780_000_000_123_456)),
                correlation_id: Some(CorrelationId::new()),
                causation_id: Some(CausationId::Event(EventId::new())),
                command_id: Some(CommandId::new()),
                headers,
            },
        }
    }

    #[test]
    fn round_trips_hostile_texts_in_visible_ascii() {
        let event = event();
        let envelope = Envelope::of(&event);
        for (name, value) in &envelope.headers {
            assert!(
                name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_%".contains(&b)),
                "{name}"
            );
            assert!(value.bytes().all(|b| (0x20..0x7f).contains(&b)), "{name}: {value:?}");
        }
        let opened = Envelope::open(
            envelope.headers.iter().map(|(n, v)| (n.as_ref(), v.as_str())),
            event.payload.clone(),
        )
        .unwrap();
        assert_eq!(opened, event);
    }

    #[test]
    fn a_foreign_message_is_a_typed_error() {
        let missing = Envelope::open([("Content-Type", "json")], Bytes::new()).unwrap_err();
        assert_eq!(missing, EnvelopeError::Missing(header::EVENT_ID));
        let mut headers: Vec<(String, String)> = Envelope::of(&event())
            .headers
            .into_iter()
            .map(|(n, v)| (n.into_owned(), v))
            .collect();
        headers[5].1 = "minus one".into(); // the position
        let bad = Envelope::open(headers.iter().map(|(n, v)| (n.as_str(), v.as_str())), Bytes::new()).unwrap_err();
        assert!(
            matches!(bad, EnvelopeError::Invalid { ref header, .. } if header == header::POSITION),
            "{bad}"
        );
    }
}
