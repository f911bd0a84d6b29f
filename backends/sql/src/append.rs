//! Pieces shared by the drivers' batch appends: the outcomes of a batch,
//! filled in as they are decided, a failure shared by several appends, and
//! the stored form of an event's metadata.

use std::fmt::Display;

use interlock::store::{Committed, EventMetadata, StoreError};
use interlock::{StreamId, Timestamp};
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::driver::Param::{self, Bytes as Blob, Int, Text};
use crate::queries::EVENT_COLUMNS;

use crate::error::is_unavailable;

/// The outcome of each append of a batch, in the order of the requests.
pub(crate) struct Outcomes {
    slots: Vec<Option<Result<Committed, StoreError>>>,
}

impl Outcomes {
    /// A batch of `n` appends, none decided yet.
    pub(crate) fn new(n: usize) -> Self {
        Self {
            slots: (0..n).map(|_| None).collect(),
        }
    }

    /// Decides append `index`.
    pub(crate) fn set(&mut self, index: usize, outcome: Result<Committed, StoreError>) {
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(outcome);
        }
    }

    /// Every append not decided yet fails with `failure`.
    pub(crate) fn fail_rest(&mut self, failure: &BatchFailure) {
        for slot in self.slots.iter_mut().filter(|slot| slot.is_none()) {
            *slot = Some(Err(failure.error()));
        }
    }

    /// The outcomes, one per request; an append left undecided (a bug)
    /// fails rather than vanishing.
    pub(crate) fn finish(self, backend: &'static str) -> Vec<Result<Committed, StoreError>> {
        self.slots
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| {
                    Err(StoreError::Backend {
                        backend,
                        source: "the batch append left this append undecided".into(),
                    })
                })
            })
            .collect()
    }
}

/// A failure of a step shared by several appends of a batch (the
/// transaction could not begin, a statement or the commit failed): each
/// append gets its own copy, `Unavailable` when the cause is.
pub(crate) struct BatchFailure {
    backend: &'static str,
    unavailable: bool,
    message: String,
}

impl BatchFailure {
    /// The failure of step `what`, caused by the driver error `error`.
    pub(crate) fn sqlx(backend: &'static str, what: &str, error: &sqlx::Error) -> Self {
        Self {
            backend,
            unavailable: is_unavailable(error),
            message: format!("{what}: {error}"),
        }
    }

    /// The failure of step `what`, caused by something other than the
    /// database (an event that cannot be encoded).
    pub(crate) fn other(backend: &'static str, what: &str, error: impl Display) -> Self {
        Self {
            backend,
            unavailable: false,
            message: format!("{what}: {error}"),
        }
    }

    /// Whether the database could not be reached (rather than refusing
    /// something of the batch).
    #[cfg(feature = "sqlite")]
    pub(crate) fn is_unavailable(&self) -> bool {
        self.unavailable
    }

    /// One append's copy of the failure.
    pub(crate) fn error(&self) -> StoreError {
        let source = self.message.clone().into();
        if self.unavailable {
            StoreError::Unavailable {
                backend: self.backend,
                source,
            }
        } else {
            StoreError::Backend {
                backend: self.backend,
                source,
            }
        }
    }
}

/// An event's metadata as stored: its timestamp set to `now` when it has
/// none. Returns the JSON and the timestamp (the `recorded_at` column).
pub(crate) fn stored_metadata(mut metadata: EventMetadata, now: Timestamp) -> Result<(String, i64), serde_json::Error> {
    let at = *metadata.timestamp.get_or_insert(now);
    Ok((serde_json::to_string(&metadata)?, at.0))
}

/// The columns of an event row ([`EVENT_COLUMNS`]).
const COLUMNS: usize = 11;

/// Event rows per `INSERT` (11 parameters each, under SQLite's limit of
/// 32766 parameters per statement).
pub(crate) const ROWS_PER_INSERT: usize = 2900;

/// One event row of the multi-row insert.
pub(crate) struct EventRow<'a> {
    pub(crate) position: i64,
    pub(crate) event_id: String,
    pub(crate) stream: &'a StreamId,
    pub(crate) version: i64,
    pub(crate) name: &'a str,
    pub(crate) schema_version: i64,
    pub(crate) payload: &'a [u8],
    pub(crate) metadata: String,
    pub(crate) recorded_at: i64,
}

/// The multi-row `INSERT` of `rows`, and its parameters.
pub(crate) fn insert_rows<'a>(events_table: &str, rows: &'a [EventRow<'a>]) -> (sqlx::SqlStr, Vec<Param<'a>>) {
    let placeholders: Vec<String> = (0..rows.len())
        .map(|r| {
            let params: Vec<String> = (1..=COLUMNS).map(|k| format!("${}", r * COLUMNS + k)).collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO {events_table} ({EVENT_COLUMNS}) VALUES {}",
        placeholders.join(", ")
    );
    let mut params = Vec::with_capacity(rows.len() * COLUMNS);
    for row in rows {
        params.extend([
            Int(row.position),
            Text(&row.event_id),
            Text(row.stream.aggregate_type()),
            Text(row.stream.aggregate_id()),
            Int(row.version),
            Text(row.name),
            Int(row.schema_version),
            Blob(row.payload),
            Text(&row.metadata),
            Int(row.recorded_at),
            Text(crate::queries::tenant_of(row.stream)),
        ]);
    }
    (AssertSqlSafe(sql).into_sql_str(), params)
}
