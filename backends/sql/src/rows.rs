//! Decoding stored rows, and the integer conversions of bound values:
//! a bad stored value is a typed `Corrupt` error naming the row, never a
//! panic.

use bytes::Bytes;
use interlock::store::StoreError;
use interlock::store::{EventMetadata, RecordedEvent};
use interlock::{EventId, Position, SchemaVersion, StreamId, TenantId, Timestamp, Version};

use crate::driver::SqlRow;

/// A stored event row, decoded into fields before the checks.
pub(crate) struct EventRow {
    pub(crate) position: i64,
    pub(crate) event_id: String,
    pub(crate) aggregate_type: String,
    pub(crate) aggregate_id: String,
    pub(crate) version: i64,
    pub(crate) event_name: String,
    pub(crate) schema_version: i64,
    pub(crate) payload: Vec<u8>,
    pub(crate) metadata: String,
    pub(crate) recorded_at: i64,
    /// `''` for a stream of no tenant.
    pub(crate) tenant: String,
}

impl EventRow {
    /// Reads the columns of [`EVENT_COLUMNS`](crate::queries::EVENT_COLUMNS),
    /// in that order, from the start of `row`.
    pub(crate) fn read(row: &impl SqlRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: row.int(0)?,
            event_id: row.text(1)?,
            aggregate_type: row.text(2)?,
            aggregate_id: row.text(3)?,
            version: row.int(4)?,
            event_name: row.text(5)?,
            schema_version: row.int(6)?,
            payload: row.bytes(7)?,
            metadata: row.text(8)?,
            recorded_at: row.int(9)?,
            tenant: row.text(10)?,
        })
    }

    /// Checks and converts the row; a bad id or metadata is a typed
    /// `Corrupt` error naming the row, never a panic.
    pub(crate) fn into_event(self, backend: &'static str) -> Result<RecordedEvent, StoreError> {
        let location = format!(
            "{}{}/{} version {} (position {})",
            if self.tenant.is_empty() {
                String::new()
            } else {
                format!("{}:", self.tenant)
            },
            self.aggregate_type,
            self.aggregate_id,
            self.version,
            self.position
        );
        let corrupt = |reason: String| StoreError::Corrupt {
            backend,
            location: location.clone(),
            reason,
        };
        let event_id = self
            .event_id
            .parse::<EventId>()
            .map_err(|e| corrupt(format!("event id `{}`: {e}", self.event_id)))?;
        let mut metadata: EventMetadata =
            serde_json::from_str(&self.metadata).map_err(|e| corrupt(format!("metadata is not valid JSON: {e}")))?;
        if metadata.timestamp.is_none() {
            metadata.timestamp = Some(Timestamp(self.recorded_at));
        }
        let non_negative = |v: i64, what: &str| u64::try_from(v).map_err(|_| corrupt(format!("negative {what} {v}")));
        let schema_version = u32::try_from(self.schema_version)
            .map_err(|_| corrupt(format!("schema version {} out of range", self.schema_version)))?;
        let tenant = stored_tenant(&self.tenant).map_err(corrupt)?;
        Ok(RecordedEvent {
            event_id,
            stream: StreamId::new(self.aggregate_type.as_str(), self.aggregate_id.as_str()).in_tenant(tenant),
            version: Version(non_negative(self.version, "version")?),
            position: Position(non_negative(self.position, "position")?),
            name: self.event_name.into(),
            schema_version: SchemaVersion(schema_version),
            payload: Bytes::from(self.payload),
            metadata,
        })
    }
}

/// A stored tenant column: `''` is no tenant; anything else must be a
/// tenant id (the reason when it is not).
pub(crate) fn stored_tenant(stored: &str) -> Result<Option<TenantId>, String> {
    if stored.is_empty() {
        return Ok(None);
    }
    TenantId::new(stored).map(Some).map_err(|e| e.to_string())
}

/// Decodes rows of [`EVENT_COLUMNS`](crate::queries::EVENT_COLUMNS) into
/// events.
pub(crate) fn events(backend: &'static str, rows: &[impl SqlRow]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter()
        .map(|row| {
            EventRow::read(row)
                .map_err(|e| crate::error::store_error(backend, e))?
                .into_event(backend)
        })
        .collect()
}

/// `u64` → `i64` for a bound parameter (saturating).
pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `usize` → `i64` for a bound parameter (saturating).
pub(crate) fn i64_of_usize(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored version or position inside a statement that reports
/// `sqlx::Error` (the batch paths): out of range is a decode error naming
/// `what`, never a clamped value.
pub(crate) fn stored_u64(what: impl FnOnce() -> String, value: i64) -> Result<u64, sqlx::Error> {
    u64::try_from(value).map_err(|_| sqlx::Error::Decode(format!("{} is {value}, out of range", what()).into()))
}

/// A stored integer converted to the type it stands for; out of range (a
/// negative version, say) is a typed `Corrupt` error naming `location`.
pub(crate) fn stored<T: TryFrom<i64>>(
    backend: &'static str,
    location: impl FnOnce() -> String,
    what: &str,
    value: i64,
) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Corrupt {
        backend,
        location: location(),
        reason: format!("{what} {value} is out of range"),
    })
}

/// `i64` column → `u64`, clamping corrupt negatives to 0 (for values the
/// store computed itself in this statement, such as counts).
pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// Decodes a page of the log: as [`events`], except that a row that
/// cannot be read but whose position can is an
/// [`StoreError::UnreadableEvent`] carrying what could be salvaged, so a
/// subscriber can park it and go on instead of stopping at it forever.
pub(crate) fn log_page(backend: &'static str, rows: &[impl SqlRow]) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter()
        .map(|row| {
            let read = EventRow::read(row)
                .map_err(|e| crate::error::store_error(backend, e))
                .and_then(|r| r.into_event(backend));
            read.map_err(|error| match salvage(row) {
                Some((position, salvaged)) => StoreError::UnreadableEvent {
                    backend,
                    position,
                    reason: match error {
                        StoreError::Corrupt { reason, .. } => reason,
                        other => other.to_string(),
                    },
                    salvaged: Box::new(salvaged),
                },
                None => error,
            })
        })
        .collect()
}

/// What can be read of an event row that does not decode, column by
/// column; `None` when not even its position can be.
fn salvage(row: &impl SqlRow) -> Option<(Position, RecordedEvent)> {
    let position = Position(u64::try_from(row.int(0).ok()?).ok()?);
    let unreadable = "<unreadable>";
    let text = |i| row.text(i).ok();
    let mut metadata = EventMetadata::default();
    if let Some(raw) = text(8)
        && let Ok(parsed) = serde_json::from_str::<EventMetadata>(&raw)
    {
        metadata = parsed;
    } else if let Some(raw) = text(8) {
        metadata.headers.insert(StoreError::RAW_METADATA_HEADER.to_owned(), raw);
    }
    let event = RecordedEvent {
        // A stored id that does not parse is replaced by one derived from
        // the position: dead letters are keyed by event id.
        event_id: text(1)
            .and_then(|id| id.parse::<EventId>().ok())
            .unwrap_or(EventId(ulid::Ulid::from_parts(0, u128::from(position.0)))),
        stream: StreamId::new(
            text(2).unwrap_or_else(|| unreadable.to_owned()),
            text(3).unwrap_or_else(|| position.to_string()),
        ),
        version: Version(row.int(4).ok().and_then(|v| u64::try_from(v).ok()).unwrap_or(0)),
        position,
        name: text(5).unwrap_or_else(|| unreadable.to_owned()).into(),
        schema_version: SchemaVersion(row.int(6).ok().and_then(|v| u32::try_from(v).ok()).unwrap_or(0)),
        payload: row.bytes(7).map(Bytes::from).unwrap_or_default(),
        metadata,
    };
    Some((position, event))
}
