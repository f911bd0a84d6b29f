//! SQLite's batch append: three statements per group-commit batch.

use std::collections::HashMap;

use interlock::store::StoreError;
use interlock::store::{Committed, ExpectedVersion};
use interlock::{Position, StreamId, Timestamp, Version};
use sqlx::{AssertSqlSafe, Row};

use crate::group::AppendRequest;
use crate::sqlite::SqliteStore;
use crate::store::{i64_of, u64_of};

/// Answers every request with the same kind of failure.
fn fail(
    replies: impl IntoIterator<Item = tokio::sync::oneshot::Sender<Result<Committed, StoreError>>>,
    e: sqlx::Error,
) {
    let unavailable = matches!(crate::sql::store_error("sqlite", e), StoreError::Unavailable { .. });
    for reply in replies {
        let error = if unavailable {
            StoreError::Unavailable {
                backend: "sqlite",
                source: "the batch append failed".into(),
            }
        } else {
            StoreError::Backend {
                backend: "sqlite",
                source: "the batch append failed".into(),
            }
        };
        let _ = reply.send(Err(error));
    }
}

/// One event row of the multi-row insert.
struct Row10 {
    position: i64,
    event_id: String,
    stream: StreamId,
    version: Version,
    name: String,
    schema_version: i64,
    payload: Vec<u8>,
    metadata: String,
    recorded_at: i64,
}

impl SqliteStore {
    /// Commits a batch in three statements inside one `BEGIN IMMEDIATE`
    /// transaction: the versions of every stream of the batch, one bump of
    /// the position counter, one multi-row insert. The write lock is held
    /// from the start, so the versions read stay true and no savepoint is
    /// needed; appends to one stream are checked in queue order. Always
    /// answers every request (returns `None`).
    pub(crate) async fn fast_append(&self, batch: Vec<AppendRequest>) -> Option<Vec<AppendRequest>> {
        let mut tx = match self.begin_write().await {
            Ok(tx) => tx,
            Err(e) => {
                fail(batch.into_iter().map(|r| r.reply), e);
                return None;
            }
        };
        let events_table = self.queries().tables.events.clone();

        // 1. The versions of the batch's streams, in one query.
        let mut streams: Vec<StreamId> = Vec::new();
        for request in &batch {
            if !streams.contains(&request.stream) {
                streams.push(request.stream.clone());
            }
        }
        let columns: Vec<String> = (0..streams.len())
            .map(|i| {
                format!(
                    "(SELECT COALESCE(MAX(version), 0) FROM {events_table} WHERE aggregate_type = ${} AND aggregate_id = ${})",
                    2 * i + 1,
                    2 * i + 2
                )
            })
            .collect();
        let mut query = sqlx::query(AssertSqlSafe(format!("SELECT {}", columns.join(", "))));
        for stream in &streams {
            query = query
                .bind(stream.aggregate_type().to_owned())
                .bind(stream.aggregate_id().to_owned());
        }
        let row = match query.fetch_one(&mut *tx).await {
            Ok(row) => row,
            Err(e) => {
                fail(batch.into_iter().map(|r| r.reply), e);
                return None;
            }
        };
        let mut versions: HashMap<StreamId, Version> = HashMap::with_capacity(streams.len());
        for (i, stream) in streams.into_iter().enumerate() {
            let v: i64 = row.try_get(i).unwrap_or(0);
            versions.insert(stream, Version(u64_of(v)));
        }

        // 2. Each append, in queue order.
        let mut accepted = Vec::new();
        let mut total = 0i64;
        for request in batch {
            let actual = versions.get(&request.stream).copied().unwrap_or(Version::INITIAL);
            if let ExpectedVersion::Exact(v) = request.expected
                && v != actual
            {
                let conflict = StoreError::Conflict {
                    stream: request.stream,
                    expected: request.expected,
                    actual,
                };
                let _ = request.reply.send(Err(conflict));
                continue;
            }
            if request.events.is_empty() {
                let _ = request.reply.send(Ok(Committed {
                    stream: request.stream,
                    version: actual,
                    positions: Vec::new(),
                }));
                continue;
            }
            let n = request.events.len() as u64;
            versions.insert(request.stream.clone(), Version(actual.0 + n));
            total += i64::try_from(n).unwrap_or(i64::MAX);
            accepted.push((request, actual));
        }
        if accepted.is_empty() {
            let _ = tx.commit().await;
            return None;
        }

        // 3. One bump of the counter.
        let last: i64 = match sqlx::query_scalar(AssertSqlSafe(self.queries().bump_positions.clone()))
            .bind(total)
            .fetch_one(&mut *tx)
            .await
        {
            Ok(last) => last,
            Err(e) => {
                fail(accepted.into_iter().map(|(r, _)| r.reply), e);
                return None;
            }
        };

        // 4. The rows, at consecutive positions.
        let now = Timestamp::now();
        let mut position = last - total + 1;
        let mut rows = Vec::new();
        let mut outcomes = Vec::with_capacity(accepted.len());
        for (request, actual) in accepted {
            let AppendRequest {
                stream, events, reply, ..
            } = request;
            let mut positions = Vec::with_capacity(events.len());
            let mut version = actual;
            for event in events {
                version = version.next();
                let mut meta = event.metadata;
                let at = *meta.timestamp.get_or_insert(now);
                let metadata = match serde_json::to_string(&meta) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = tx.rollback().await;
                        let replies = outcomes.into_iter().map(|(r, _)| r).chain(std::iter::once(reply));
                        fail(replies, sqlx::Error::Encode(Box::new(e)));
                        return None;
                    }
                };
                positions.push(Position(u64_of(position)));
                rows.push(Row10 {
                    position,
                    event_id: event.event_id.to_string(),
                    stream: stream.clone(),
                    version,
                    name: event.name.to_string(),
                    schema_version: i64::from(event.schema_version.0),
                    payload: event.payload.to_vec(),
                    metadata,
                    recorded_at: at.0,
                });
                position += 1;
            }
            outcomes.push((
                reply,
                Committed {
                    stream,
                    version,
                    positions,
                },
            ));
        }

        // 5. One multi-row insert (chunked under SQLite's parameter limit).
        for chunk in rows.chunks(3000) {
            let placeholders: Vec<String> = (0..chunk.len())
                .map(|r| {
                    let b = r * 10;
                    let params: Vec<String> = (1..=10).map(|k| format!("${}", b + k)).collect();
                    format!("({})", params.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO {events_table} ({}) VALUES {}",
                crate::sql::EVENT_COLUMNS,
                placeholders.join(", ")
            );
            let mut insert = sqlx::query(AssertSqlSafe(sql));
            for row in chunk {
                insert = insert
                    .bind(row.position)
                    .bind(row.event_id.clone())
                    .bind(row.stream.aggregate_type().to_owned())
                    .bind(row.stream.aggregate_id().to_owned())
                    .bind(i64_of(row.version.0))
                    .bind(row.name.clone())
                    .bind(row.schema_version)
                    .bind(row.payload.clone())
                    .bind(row.metadata.clone())
                    .bind(row.recorded_at);
            }
            if let Err(e) = insert.execute(&mut *tx).await {
                let _ = tx.rollback().await;
                fail(outcomes.into_iter().map(|(r, _)| r), e);
                return None;
            }
        }
        if self.outbox_enabled() {
            let recorded = sqlx::query(AssertSqlSafe(self.queries().outbox_insert_range.clone()))
                .bind(last - total + 1)
                .bind(last)
                .execute(&mut *tx)
                .await;
            if let Err(e) = recorded {
                let _ = tx.rollback().await;
                fail(outcomes.into_iter().map(|(r, _)| r), e);
                return None;
            }
        }
        match tx.commit().await {
            Ok(()) => {
                for (reply, committed) in outcomes {
                    let _ = reply.send(Ok(committed));
                }
            }
            Err(e) => fail(outcomes.into_iter().map(|(r, _)| r), e),
        }
        None
    }
}
