//! Events as documents: the layout of `events`, and the payload codec.
//!
//! A payload is stored as the BSON value of its JSON (a document for an
//! object), so it can be queried from the mongo shell. The conversion is
//! checked at write: when the JSON written back from the BSON value is
//! not byte for byte the JSON given (an integer above `i64::MAX`, a key
//! starting with `$` or holding `.` or NUL, a number written in another
//! form than serde_json writes it), the payload is stored as its raw
//! bytes instead, a BSON binary (subtype 0). A JSON payload is never a
//! binary, so the two never mix up.

use bytes::Bytes;
use interlock::store::{EventMetadata, NewEvent, RecordedEvent, StoreError};
use interlock::{EventId, Position, SchemaVersion, StreamId, TenantId, Timestamp, Version};
use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};
use serde_json::Value;

pub(crate) const BACKEND: &str = "mongodb";

/// The `_id` of a stream's document in `streams`: tenant, type and id
/// joined by the unit separator (which no tenant id or type holds).
pub(crate) fn stream_key(stream: &StreamId) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}",
        stream.tenant().map_or("", TenantId::as_str),
        stream.aggregate_type(),
        stream.aggregate_id()
    )
}

/// The filter of a stream's events in `events`.
pub(crate) fn stream_filter(stream: &StreamId) -> Document {
    doc! {
        "tenant": stream.tenant().map_or("", TenantId::as_str),
        "aggregate_type": stream.aggregate_type(),
        "aggregate_id": stream.aggregate_id(),
    }
}

/// A `u64` stored as BSON's `i64` (saturating; versions and positions
/// never come near it).
pub(crate) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The BSON value of a JSON value, when it converts back to the same JSON.
fn bson_of(value: &Value) -> Option<Bson> {
    Some(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Bson::Int64(i),
            (None, Some(_)) if n.is_u64() => return None,
            (None, Some(f)) => Bson::Double(f),
            (None, None) => return None,
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(bson_of).collect::<Option<_>>()?),
        Value::Object(map) => {
            let mut document = Document::new();
            for (key, value) in map {
                if key.starts_with('$') || key.contains('.') || key.contains('\0') {
                    return None;
                }
                document.insert(key.clone(), bson_of(value)?);
            }
            Bson::Document(document)
        }
    })
}

/// The JSON value of a stored BSON value; `None` for a BSON type JSON
/// has no value for (the document was not written by this store).
fn json_of(value: &Bson) -> Option<Value> {
    Some(match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => Value::from(*i),
        Bson::Int64(i) => Value::from(*i),
        Bson::Double(f) => Value::Number(serde_json::Number::from_f64(*f)?),
        Bson::String(s) => Value::String(s.clone()),
        Bson::Array(items) => Value::Array(items.iter().map(json_of).collect::<Option<_>>()?),
        Bson::Document(document) => Value::Object(
            document
                .iter()
                .map(|(k, v)| Some((k.clone(), json_of(v)?)))
                .collect::<Option<_>>()?,
        ),
        _ => return None,
    })
}

/// The stored form of a JSON payload: its BSON value, or its bytes.
pub(crate) fn payload_to_bson(payload: &[u8]) -> Bson {
    let converted = serde_json::from_slice::<Value>(payload).ok().and_then(|value| {
        let bson = bson_of(&value)?;
        let back = serde_json::to_vec(&json_of(&bson)?).ok()?;
        (back == payload).then_some(bson)
    });
    converted.unwrap_or_else(|| {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: payload.to_vec(),
        })
    })
}

/// The JSON bytes of a stored payload.
pub(crate) fn payload_from_bson(stored: &Bson) -> Result<Bytes, String> {
    match stored {
        Bson::Binary(binary) => Ok(Bytes::from(binary.bytes.clone())),
        other => {
            let value =
                json_of(other).ok_or_else(|| format!("payload holds a {:?}, not JSON", other.element_type()))?;
            serde_json::to_vec(&value)
                .map(Bytes::from)
                .map_err(|e| format!("payload: {e}"))
        }
    }
}

/// The stored form of metadata: a document (its JSON as BSON), or its
/// JSON text when that does not convert.
fn metadata_to_bson(metadata: &EventMetadata) -> Bson {
    match serde_json::to_value(metadata) {
        Ok(value) => bson_of(&value).unwrap_or_else(|| Bson::String(value.to_string())),
        Err(_) => Bson::Document(Document::new()),
    }
}

fn metadata_from_bson(stored: &Bson) -> Result<EventMetadata, String> {
    let parsed = match stored {
        Bson::String(text) => serde_json::from_str(text),
        other => {
            let value = json_of(other).ok_or("metadata is not a document")?;
            serde_json::from_value(value)
        }
    };
    parsed.map_err(|e| format!("metadata: {e}"))
}

/// The document of `event`, the `version`-th of `stream`, at `position`.
pub(crate) fn event_document(stream: &StreamId, version: Version, position: Position, event: &NewEvent) -> Document {
    let mut metadata = event.metadata.clone();
    metadata.timestamp.get_or_insert_with(Timestamp::now);
    document_of(&RecordedEvent {
        event_id: event.event_id,
        stream: stream.clone(),
        version,
        position,
        name: event.name.clone(),
        schema_version: event.schema_version,
        payload: event.payload.clone(),
        metadata,
    })
}

/// The document of a recorded event (in `events`, or inside a dead letter).
pub(crate) fn document_of(event: &RecordedEvent) -> Document {
    let recorded = event.metadata.timestamp.unwrap_or_else(Timestamp::now);
    let stream = &event.stream;
    doc! {
        "_id": int(event.position.0),
        "event_id": event.event_id.to_string(),
        "tenant": stream.tenant().map_or("", TenantId::as_str),
        "aggregate_type": stream.aggregate_type(),
        "aggregate_id": stream.aggregate_id(),
        "version": int(event.version.0),
        "name": event.name.as_ref(),
        "schema_version": i64::from(event.schema_version.0),
        "payload": payload_to_bson(&event.payload),
        "metadata": metadata_to_bson(&event.metadata),
        "recorded_at": mongodb::bson::DateTime::from_millis(recorded.0 / 1000),
    }
}

/// Where a stored event is, for messages: as much as can be read of it.
fn location(document: &Document) -> String {
    let text = |key| document.get_str(key).unwrap_or("?");
    let tenant = text("tenant");
    format!(
        "{}{}/{} version {} (position {})",
        if tenant.is_empty() || tenant == "?" {
            String::new()
        } else {
            format!("{tenant}:")
        },
        text("aggregate_type"),
        text("aggregate_id"),
        document.get("version").map_or("?".into(), ToString::to_string),
        document.get("_id").map_or("?".into(), ToString::to_string)
    )
}

fn non_negative(document: &Document, key: &str) -> Result<u64, String> {
    let value = match document.get(key) {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(other) => return Err(format!("`{key}` is a {:?}, not an integer", other.element_type())),
        None => return Err(format!("`{key}` is missing")),
    };
    u64::try_from(value).map_err(|_| format!("`{key}` is {value}, out of range"))
}

fn text<'d>(document: &'d Document, key: &str) -> Result<&'d str, String> {
    match document.get(key) {
        Some(Bson::String(s)) => Ok(s),
        Some(other) => Err(format!("`{key}` is a {:?}, not a string", other.element_type())),
        None => Err(format!("`{key}` is missing")),
    }
}

fn decode(document: &Document) -> Result<RecordedEvent, String> {
    let position = Position(non_negative(document, "_id")?);
    let event_id = text(document, "event_id")?;
    let event_id = event_id
        .parse::<EventId>()
        .map_err(|e| format!("event id `{event_id}`: {e}"))?;
    let tenant = match text(document, "tenant")? {
        "" => None,
        t => Some(TenantId::new(t).map_err(|e| e.to_string())?),
    };
    let stream = StreamId::new(text(document, "aggregate_type")?, text(document, "aggregate_id")?).in_tenant(tenant);
    let schema_version = u32::try_from(non_negative(document, "schema_version")?)
        .map_err(|_| "`schema_version` is out of range".to_owned())?;
    let payload = payload_from_bson(document.get("payload").ok_or("`payload` is missing")?)?;
    let mut metadata = metadata_from_bson(document.get("metadata").ok_or("`metadata` is missing")?)?;
    if metadata.timestamp.is_none()
        && let Ok(recorded) = document.get_datetime("recorded_at")
    {
        metadata.timestamp = Some(Timestamp(recorded.timestamp_millis().saturating_mul(1000)));
    }
    Ok(RecordedEvent {
        event_id,
        stream,
        version: Version(non_negative(document, "version")?),
        position,
        name: text(document, "name")?.to_owned().into(),
        schema_version: SchemaVersion(schema_version),
        payload,
        metadata,
    })
}

/// A stored event; a document that does not decode is a typed `Corrupt`
/// error naming its stream, version and position.
pub(crate) fn event_of(document: &Document) -> Result<RecordedEvent, StoreError> {
    decode(document).map_err(|reason| StoreError::Corrupt {
        backend: BACKEND,
        location: location(document),
        reason,
    })
}

/// A stored event of the log: as [`event_of`], except that a document
/// whose position can be read is an [`StoreError::UnreadableEvent`]
/// carrying what could be salvaged, so a subscriber can park it.
pub(crate) fn log_event_of(document: &Document) -> Result<RecordedEvent, StoreError> {
    decode(document).map_err(|reason| match non_negative(document, "_id") {
        Ok(position) => {
            let position = Position(position);
            let unreadable = "<unreadable>";
            let mut metadata = EventMetadata::default();
            match document.get("metadata").map(metadata_from_bson) {
                Some(Ok(parsed)) => metadata = parsed,
                Some(Err(_)) => {
                    let raw = document.get("metadata").map(ToString::to_string).unwrap_or_default();
                    metadata.headers.insert(StoreError::RAW_METADATA_HEADER.to_owned(), raw);
                }
                None => {}
            }
            let salvaged = RecordedEvent {
                event_id: document
                    .get_str("event_id")
                    .ok()
                    .and_then(|id| id.parse().ok())
                    .unwrap_or(EventId(ulid::Ulid::from_parts(0, u128::from(position.0)))),
                stream: StreamId::new(
                    document.get_str("aggregate_type").unwrap_or(unreadable).to_owned(),
                    document
                        .get_str("aggregate_id")
                        .map_or_else(|_| position.to_string(), ToOwned::to_owned),
                ),
                version: Version(non_negative(document, "version").unwrap_or(0)),
                position,
                name: document.get_str("name").unwrap_or(unreadable).to_owned().into(),
                schema_version: SchemaVersion(
                    non_negative(document, "schema_version")
                        .ok()
                        .and_then(|v| u32::try_from(v).ok())
                        .unwrap_or(0),
                ),
                payload: document
                    .get("payload")
                    .and_then(|p| payload_from_bson(p).ok())
                    .unwrap_or_default(),
                metadata,
            };
            StoreError::UnreadableEvent {
                backend: BACKEND,
                position,
                reason,
                salvaged: Box::new(salvaged),
            }
        }
        Err(_) => StoreError::Corrupt {
            backend: BACKEND,
            location: location(document),
            reason,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(json: &str) -> (Bson, Bytes) {
        let stored = payload_to_bson(json.as_bytes());
        let back = payload_from_bson(&stored).expect("decodes");
        (stored, back)
    }

    #[test]
    fn payloads_round_trip_byte_for_byte() {
        for json in [
            r#"{"amount":1}"#,
            r#"{"big":9223372036854775807,"small":-9223372036854775808,"f":0.1,"e":1e300}"#,
            r#"{"nested":{"map":{"a":[1,2,{"b":null}]}},"unicode":"žluťoučký kůň 🐎","empty":{}}"#,
            r#"null"#,
            r#"[1,"two",3.5]"#,
            r#""just a string""#,
            r#"{"too_big":18446744073709551615}"#,
            r#"{"$where":"x","a.b":1}"#,
            r#"{ "spaced" : 1 }"#,
            r#"{"x":1.0e2}"#,
        ] {
            let (_, back) = round_trip(json);
            assert_eq!(back, json.as_bytes(), "{json}");
        }
    }

    #[test]
    fn queryable_payloads_are_documents_and_the_rest_binary() {
        assert!(matches!(round_trip(r#"{"amount":1}"#).0, Bson::Document(_)));
        assert!(matches!(round_trip("null").0, Bson::Null));
        for fallback in [
            r#"{"too_big":18446744073709551615}"#,
            r#"{"$where":"x"}"#,
            r#"{ "spaced" : 1 }"#,
            "not json",
        ] {
            assert!(matches!(round_trip(fallback).0, Bson::Binary(_)), "{fallback}");
        }
    }

    #[test]
    fn corrupt_documents_are_typed_errors_naming_the_event() {
        let good = event_document(
            &StreamId::new("bank.account", "a-1"),
            Version(3),
            Position(17),
            &NewEvent {
                event_id: EventId(ulid::Ulid::new()),
                name: "bank.deposited".into(),
                schema_version: SchemaVersion(1),
                payload: Bytes::from_static(br#"{"amount":5}"#),
                metadata: EventMetadata::default(),
            },
        );
        assert!(event_of(&good).is_ok());
        let mut bad_version = good.clone();
        bad_version.insert("version", "three");
        let mut bad_id = good.clone();
        bad_id.insert("event_id", "nope");
        let mut no_payload = good.clone();
        no_payload.remove("payload");
        let mut bad_metadata = good.clone();
        bad_metadata.insert("metadata", Bson::Int32(4));
        let mut negative = good.clone();
        negative.insert("schema_version", -1_i64);
        for (bad, says) in [
            (bad_version, "`version` is a"),
            (bad_id, "event id `nope`"),
            (no_payload, "`payload` is missing"),
            (bad_metadata, "metadata"),
            (negative, "`schema_version` is -1"),
        ] {
            match event_of(&bad) {
                Err(StoreError::Corrupt { location, reason, .. }) => {
                    assert!(location.contains("bank.account/a-1"), "{location}");
                    assert!(location.contains("position 17"), "{location}");
                    assert!(reason.contains(says), "{reason}");
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
            assert!(matches!(
                log_event_of(&bad),
                Err(StoreError::UnreadableEvent {
                    position: Position(17),
                    ..
                })
            ));
        }
    }
}
