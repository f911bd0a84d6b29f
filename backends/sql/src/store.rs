//! The storage traits, implemented once for both backends by a macro. Each
//! backend type provides `pool`, `queries`, `dialect`, `begin_write` (a
//! write transaction) and `after_append` (PostgreSQL notifies listeners).

use bytes::Bytes;
use interlock::store::StoreError;
use interlock::store::{EventMetadata, RecordedEvent};
use interlock::{EventId, Position, SchemaVersion, StreamId, Timestamp, Version};

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
}

impl EventRow {
    /// Checks and converts the row; a bad id or metadata is a typed
    /// `Corrupt` error naming the row, never a panic.
    pub(crate) fn into_event(self, backend: &'static str) -> Result<RecordedEvent, StoreError> {
        let location = format!(
            "{}/{} version {} (position {})",
            self.aggregate_type, self.aggregate_id, self.version, self.position
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
        Ok(RecordedEvent {
            event_id,
            stream: StreamId::new(self.aggregate_type.as_str(), self.aggregate_id.as_str()),
            version: Version(non_negative(self.version, "version")?),
            position: Position(non_negative(self.position, "position")?),
            name: self.event_name.into(),
            schema_version: SchemaVersion(schema_version),
            payload: Bytes::from(self.payload),
            metadata,
        })
    }
}

/// `u64` → `i64` for a bound parameter.
pub(crate) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `i64` column → `u64`, clamping corrupt negatives to 0.
pub(crate) fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        const _: () = {
            use std::borrow::Cow;
            use std::time::Duration;

            use bytes::Bytes;
            use interlock::store::StoreError;
            use interlock::store::{
                BoxFuture, Committed, EventFilter, EventStore, ExpectedVersion, NewEvent, RecordedEvent, RewrittenEvent,
            };
            use interlock::store::{CheckpointStore, DeadLetter, DeadLetterStore};
            use interlock::store::{Claim, IdempotencyRecord, IdempotencyStore};
            use interlock::store::{SagaChange, SagaInstance, SagaStateStore, ScheduledDeadline};
            use interlock::store::{Snapshot, SnapshotStore};
            use interlock::{CommandId, CorrelationId, Position, SchemaVersion, StreamId, Timestamp, Version};
            use sqlx::{AssertSqlSafe, Row};

            use crate::sql::{is_unique_violation, store_error};
            use crate::store::{EventRow, i64_of, u64_of};

            type DbRow = <$db as sqlx::Database>::Row;

            fn event_row(row: &DbRow) -> Result<EventRow, sqlx::Error> {
                Ok(EventRow {
                    position: row.try_get(0)?,
                    event_id: row.try_get(1)?,
                    aggregate_type: row.try_get(2)?,
                    aggregate_id: row.try_get(3)?,
                    version: row.try_get(4)?,
                    event_name: row.try_get(5)?,
                    schema_version: row.try_get(6)?,
                    payload: row.try_get(7)?,
                    metadata: row.try_get(8)?,
                    recorded_at: row.try_get(9)?,
                })
            }

            impl $store {
                fn err(&self, e: sqlx::Error) -> StoreError {
                    store_error(self.dialect().backend(), e)
                }

                fn rows_to_events(&self, rows: Vec<DbRow>) -> Result<Vec<RecordedEvent>, StoreError> {
                    rows.iter()
                        .map(|r| {
                            event_row(r)
                                .map_err(|e| self.err(e))?
                                .into_event(self.dialect().backend())
                        })
                        .collect()
                }

                async fn current_version(&self, stream: &StreamId) -> Result<Version, StoreError> {
                    let v: i64 = sqlx::query_scalar(AssertSqlSafe(self.queries().stream_version.clone()))
                        .bind(stream.aggregate_type())
                        .bind(stream.aggregate_id())
                        .fetch_one(self.pool())
                        .await
                        .map_err(|e| self.err(e))?;
                    Ok(Version(u64_of(v)))
                }

                async fn append_now(
                    &self,
                    stream: &StreamId,
                    expected: ExpectedVersion,
                    events: Vec<NewEvent>,
                ) -> Result<Committed, StoreError> {
                    self.committer().submit(stream, expected, events).await
                }

                /// Inserts one append's events at the next positions, on a
                /// connection inside the batch's transaction. The counter row
                /// is locked until commit: appends commit in position order,
                /// so no reader sees a position before an earlier one is
                /// visible (gap safety).
                async fn insert_events(
                    &self,
                    conn: &mut <$db as sqlx::Database>::Connection,
                    stream: &StreamId,
                    actual: Version,
                    events: Vec<NewEvent>,
                ) -> Result<(Version, Vec<Position>, i64), sqlx::Error> {
                    let q = self.queries();
                    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
                    let last: i64 = sqlx::query_scalar(AssertSqlSafe(q.bump_positions.clone()))
                        .bind(count)
                        .fetch_one(&mut *conn)
                        .await?;
                    let first = last - count + 1;
                    let now = Timestamp::now();
                    let mut version = actual;
                    let mut positions = Vec::with_capacity(events.len());
                    for (i, event) in events.into_iter().enumerate() {
                        version = version.next();
                        let position = first + i64::try_from(i).unwrap_or(0);
                        let mut metadata = event.metadata;
                        if metadata.timestamp.is_none() {
                            metadata.timestamp = Some(now);
                        }
                        let recorded_at = metadata.timestamp.map_or(now.0, |t| t.0);
                        let metadata_json =
                            serde_json::to_string(&metadata).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
                        sqlx::query(AssertSqlSafe(q.insert_event.clone()))
                            .bind(position)
                            .bind(event.event_id.to_string())
                            .bind(stream.aggregate_type())
                            .bind(stream.aggregate_id())
                            .bind(i64_of(version.0))
                            .bind(event.name.as_ref())
                            .bind(i64::from(event.schema_version.0))
                            .bind(event.payload.as_ref())
                            .bind(metadata_json)
                            .bind(recorded_at)
                            .execute(&mut *conn)
                            .await?;
                        positions.push(Position(u64_of(position)));
                    }
                    Ok((version, positions, last))
                }

                async fn version_in(
                    &self,
                    conn: &mut <$db as sqlx::Database>::Connection,
                    stream: &StreamId,
                ) -> Result<Version, sqlx::Error> {
                    let v: i64 = sqlx::query_scalar(AssertSqlSafe(self.queries().stream_version.clone()))
                        .bind(stream.aggregate_type())
                        .bind(stream.aggregate_id())
                        .fetch_one(&mut *conn)
                        .await?;
                    Ok(Version(u64_of(v)))
                }

                /// Commits a batch of appends in one transaction, each in a
                /// savepoint; answers every request exactly.
                async fn commit_appends(&self, batch: Vec<crate::group::AppendRequest>) {
                    use std::collections::HashMap;
                    // A backend may commit the whole batch in one statement.
                    let Some(batch) = self.fast_append(batch).await else {
                        return;
                    };
                    let backend = self.dialect().backend();
                    let mut tx = match self.begin_write().await {
                        Ok(tx) => tx,
                        Err(e) => {
                            let unavailable = matches!(store_error(backend, e), StoreError::Unavailable { .. });
                            for request in batch {
                                let _ =
                                    request
                                        .reply
                                        .send(Err(failed(backend, unavailable, "cannot begin a transaction")));
                            }
                            return;
                        }
                    };
                    let mut versions: HashMap<StreamId, Version> = HashMap::new();
                    let mut committed = Vec::with_capacity(batch.len());
                    let mut last_position = None;
                    for request in batch {
                        let crate::group::AppendRequest {
                            stream,
                            expected,
                            events,
                            reply,
                        } = request;
                        let actual = match versions.get(&stream) {
                            Some(v) => Ok(*v),
                            None => self.version_in(&mut *tx, &stream).await,
                        };
                        let actual = match actual {
                            Ok(v) => v,
                            Err(e) => {
                                let _ = reply.send(Err(self.err(e)));
                                continue;
                            }
                        };
                        if let ExpectedVersion::Exact(v) = expected
                            && v != actual
                        {
                            let _ = reply.send(Err(StoreError::Conflict {
                                stream,
                                expected,
                                actual,
                            }));
                            continue;
                        }
                        if events.is_empty() {
                            let _ = reply.send(Ok(Committed {
                                stream,
                                version: actual,
                                positions: Vec::new(),
                            }));
                            continue;
                        }
                        let mut savepoint = match sqlx::Connection::begin(&mut *tx).await {
                            Ok(sp) => sp,
                            Err(e) => {
                                let _ = reply.send(Err(self.err(e)));
                                continue;
                            }
                        };
                        let inserted = match self.insert_events(&mut *savepoint, &stream, actual, events).await {
                            Ok((version, positions, last)) if self.outbox_enabled() => {
                                let first = positions.first().map_or(last, |p| i64_of(p.0));
                                sqlx::query(AssertSqlSafe(self.queries().outbox_insert_range.clone()))
                                    .bind(first)
                                    .bind(last)
                                    .execute(&mut *savepoint)
                                    .await
                                    .map(|_| (version, positions, last))
                            }
                            other => other,
                        };
                        match inserted {
                            Ok((version, positions, last)) => match savepoint.commit().await {
                                Ok(()) => {
                                    versions.insert(stream.clone(), version);
                                    last_position = Some(last);
                                    committed.push((
                                        reply,
                                        Committed {
                                            stream,
                                            version,
                                            positions,
                                        },
                                    ));
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(self.err(e)));
                                }
                            },
                            Err(e) => {
                                let _ = savepoint.rollback().await;
                                if is_unique_violation(&e) {
                                    // Another process appended to the stream first.
                                    let actual = self.version_in(&mut *tx, &stream).await.unwrap_or(actual);
                                    versions.insert(stream.clone(), actual);
                                    let _ = reply.send(Err(StoreError::Conflict {
                                        stream,
                                        expected,
                                        actual,
                                    }));
                                } else {
                                    let _ = reply.send(Err(self.err(e)));
                                }
                            }
                        }
                    }
                    let outcome = match last_position {
                        Some(last) => match self.after_append(&mut tx, last).await {
                            Ok(()) => tx.commit().await,
                            Err(e) => Err(e),
                        },
                        None => tx.commit().await,
                    };
                    match outcome {
                        Ok(()) => {
                            if let Some(last) = last_position {
                                self.appended(Position(u64_of(last)));
                            }
                            for (reply, done) in committed {
                                let _ = reply.send(Ok(done));
                            }
                        }
                        Err(e) => {
                            let unavailable = matches!(store_error(backend, e), StoreError::Unavailable { .. });
                            for (reply, _) in committed {
                                let _ = reply.send(Err(failed(backend, unavailable, "the commit failed")));
                            }
                        }
                    }
                }
            }

            /// An error for one of several appends whose shared step failed.
            fn failed(backend: &'static str, unavailable: bool, what: &'static str) -> StoreError {
                if unavailable {
                    StoreError::Unavailable {
                        backend,
                        source: what.into(),
                    }
                } else {
                    StoreError::Backend {
                        backend,
                        source: what.into(),
                    }
                }
            }

            impl crate::group::CommitBatch for $store {
                fn commit_batch(&self, batch: Vec<crate::group::AppendRequest>) -> BoxFuture<'_, ()> {
                    Box::pin(self.commit_appends(batch))
                }
            }

            impl EventStore for $store {
                fn append<'a>(
                    &'a self,
                    stream: &'a StreamId,
                    expected: ExpectedVersion,
                    events: Vec<NewEvent>,
                ) -> BoxFuture<'a, Result<Committed, StoreError>> {
                    Box::pin(self.append_now(stream, expected, events))
                }

                fn read_stream<'a>(
                    &'a self,
                    stream: &'a StreamId,
                    from: Version,
                    to: Option<Version>,
                ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
                    Box::pin(async move {
                        let rows = sqlx::query(AssertSqlSafe(self.queries().read_stream.clone()))
                            .bind(stream.aggregate_type())
                            .bind(stream.aggregate_id())
                            .bind(i64_of(from.0))
                            .bind(to.map_or(i64::MAX, |t| i64_of(t.0)))
                            .fetch_all(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        self.rows_to_events(rows)
                    })
                }

                fn read_stream_for_load<'a>(
                    &'a self,
                    stream: &'a StreamId,
                    from: Version,
                ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
                    Box::pin(async move {
                        let rows = sqlx::query(AssertSqlSafe(self.queries().read_stream_for_load.clone()))
                            .bind(stream.aggregate_type())
                            .bind(stream.aggregate_id())
                            .bind(i64_of(from.0))
                            .fetch_all(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        let backend = self.dialect().backend();
                        let mut events = Vec::with_capacity(rows.len());
                        for row in &rows {
                            let light = || -> Result<(i64, String, i64, String, i64, Vec<u8>), sqlx::Error> {
                                Ok((
                                    row.try_get(0)?,
                                    row.try_get(1)?,
                                    row.try_get(2)?,
                                    row.try_get(3)?,
                                    row.try_get(4)?,
                                    row.try_get(5)?,
                                ))
                            };
                            let (position, event_id, version, name, schema_version, payload) =
                                light().map_err(|e| self.err(e))?;
                            let corrupt = |reason: String| StoreError::Corrupt {
                                backend,
                                location: format!("{stream} version {version} (position {position})"),
                                reason,
                            };
                            events.push(RecordedEvent {
                                event_id: event_id
                                    .parse()
                                    .map_err(|e| corrupt(format!("event id `{event_id}`: {e}")))?,
                                stream: stream.clone(),
                                version: Version(u64_of(version)),
                                position: Position(u64_of(position)),
                                name: name.into(),
                                schema_version: SchemaVersion(
                                    u32::try_from(schema_version).map_err(|_| {
                                        corrupt(format!("schema version {schema_version} out of range"))
                                    })?,
                                ),
                                payload: Bytes::from(payload),
                                metadata: interlock::store::EventMetadata::default(),
                            });
                        }
                        Ok(events)
                    })
                }

                fn read_all<'a>(
                    &'a self,
                    after: Position,
                    limit: usize,
                    filter: &'a EventFilter,
                ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
                    Box::pin(async move {
                        let names: &[Cow<'static, str>] = filter.event_names.as_deref().unwrap_or(&[]);
                        let types: &[Cow<'static, str>] = filter.aggregate_types.as_deref().unwrap_or(&[]);
                        if filter.event_names.as_ref().is_some_and(Vec::is_empty)
                            || filter.aggregate_types.as_ref().is_some_and(Vec::is_empty)
                        {
                            return Ok(Vec::new()); // an empty list matches nothing
                        }
                        let sql = self.queries().read_all(names.len(), types.len());
                        let mut query = sqlx::query(AssertSqlSafe(sql))
                            .bind(i64_of(after.0))
                            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
                        for value in names.iter().chain(types) {
                            query = query.bind(value.as_ref());
                        }
                        let rows = query.fetch_all(self.pool()).await.map_err(|e| self.err(e))?;
                        self.rows_to_events(rows)
                    })
                }

                fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
                    Box::pin(self.current_version(stream))
                }

                fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
                    Box::pin(async move {
                        let last: i64 = sqlx::query_scalar(AssertSqlSafe(self.queries().head.clone()))
                            .fetch_one(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        Ok(Position(u64_of(last)))
                    })
                }

                fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
                    Box::pin(async move {
                        let done = sqlx::query(AssertSqlSafe(self.queries().rewrite.clone()))
                            .bind(event.name.as_ref())
                            .bind(i64::from(event.schema_version.0))
                            .bind(event.payload.as_ref())
                            .bind(i64_of(position.0))
                            .execute(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        if done.rows_affected() == 0 {
                            Err(StoreError::NotFound(position))
                        } else {
                            Ok(())
                        }
                    })
                }

                fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<Position>> {
                    self.head_watch()
                }
            }

            impl SnapshotStore for $store {
                fn load<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
                    Box::pin(async move {
                        let row = sqlx::query(AssertSqlSafe(self.queries().snapshot_load.clone()))
                            .bind(stream.aggregate_type())
                            .bind(stream.aggregate_id())
                            .fetch_optional(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        let Some(row) = row else { return Ok(None) };
                        let decode = || -> Result<Snapshot, sqlx::Error> {
                            Ok(Snapshot {
                                version: Version(u64_of(row.try_get(0)?)),
                                state_version: u32::try_from(row.try_get::<i64, _>(1)?).unwrap_or(u32::MAX),
                                payload: Bytes::from(row.try_get::<Vec<u8>, _>(2)?),
                                taken_at: Timestamp(row.try_get(3)?),
                            })
                        };
                        decode().map(Some).map_err(|e| self.err(e))
                    })
                }

                fn save<'a>(
                    &'a self,
                    stream: &'a StreamId,
                    snapshot: Snapshot,
                ) -> BoxFuture<'a, Result<(), StoreError>> {
                    Box::pin(async move {
                        let mut tx = self.begin_write().await.map_err(|e| self.err(e))?;
                        sqlx::query(AssertSqlSafe(self.queries().snapshot_save.clone()))
                            .bind(stream.aggregate_type())
                            .bind(stream.aggregate_id())
                            .bind(i64_of(snapshot.version.0))
                            .bind(i64::from(snapshot.state_version))
                            .bind(snapshot.payload.as_ref())
                            .bind(snapshot.taken_at.0)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| self.err(e))?;
                        tx.commit().await.map_err(|e| self.err(e))
                    })
                }
            }

            impl IdempotencyStore for $store {
                fn claim(
                    &self,
                    command_id: CommandId,
                    now: Timestamp,
                    lease: Duration,
                ) -> BoxFuture<'_, Result<Claim, StoreError>> {
                    Box::pin(async move {
                        let q = self.queries();
                        let id = command_id.to_string();
                        let until = now
                            .0
                            .saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
                        for _ in 0..8 {
                            let inserted = sqlx::query(AssertSqlSafe(q.idem_insert.clone()))
                                .bind(&id)
                                .bind(until)
                                .execute(self.pool())
                                .await
                                .map_err(|e| self.err(e))?;
                            if inserted.rows_affected() == 1 {
                                return Ok(Claim::Claimed);
                            }
                            let row = sqlx::query(AssertSqlSafe(q.idem_select.clone()))
                                .bind(&id)
                                .fetch_optional(self.pool())
                                .await
                                .map_err(|e| self.err(e))?;
                            let Some(row) = row else { continue }; // released meanwhile
                            let status: String = row.try_get(0).map_err(|e| self.err(e))?;
                            let row_until: i64 = row.try_get(1).map_err(|e| self.err(e))?;
                            if row_until > now.0 {
                                if status != "done" {
                                    return Ok(Claim::InProgress);
                                }
                                let read = || -> Result<IdempotencyRecord, sqlx::Error> {
                                    let aggregate_type: String = row.try_get(2)?;
                                    let aggregate_id: String = row.try_get(3)?;
                                    Ok(IdempotencyRecord {
                                        command_id,
                                        stream: StreamId::new(aggregate_type, aggregate_id),
                                        version: Version(u64_of(row.try_get(4)?)),
                                        output: Bytes::from(row.try_get::<Vec<u8>, _>(5)?),
                                        recorded_at: Timestamp(row.try_get(6)?),
                                        expires_at: Timestamp(row_until),
                                    })
                                };
                                return read().map(Claim::Completed).map_err(|e| self.err(e));
                            }
                            // Expired (a dead holder, or an old record): take it over.
                            let taken = sqlx::query(AssertSqlSafe(q.idem_reclaim.clone()))
                                .bind(&id)
                                .bind(until)
                                .bind(now.0)
                                .execute(self.pool())
                                .await
                                .map_err(|e| self.err(e))?;
                            if taken.rows_affected() == 1 {
                                return Ok(Claim::Claimed);
                            }
                        }
                        Ok(Claim::InProgress)
                    })
                }

                fn complete(&self, record: IdempotencyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
                    Box::pin(async move {
                        sqlx::query(AssertSqlSafe(self.queries().idem_complete.clone()))
                            .bind(record.command_id.to_string())
                            .bind(record.expires_at.0)
                            .bind(record.stream.aggregate_type())
                            .bind(record.stream.aggregate_id())
                            .bind(i64_of(record.version.0))
                            .bind(record.output.as_ref())
                            .bind(record.recorded_at.0)
                            .execute(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        Ok(())
                    })
                }

                fn release(&self, command_id: CommandId) -> BoxFuture<'_, Result<(), StoreError>> {
                    Box::pin(async move {
                        sqlx::query(AssertSqlSafe(self.queries().idem_release.clone()))
                            .bind(command_id.to_string())
                            .execute(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        Ok(())
                    })
                }

                fn purge_expired(&self, now: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
                    Box::pin(async move {
                        let done = sqlx::query(AssertSqlSafe(self.queries().idem_purge.clone()))
                            .bind(now.0)
                            .execute(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        Ok(done.rows_affected())
                    })
                }
            }

            impl CheckpointStore for $store {
                fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>> {
                    Box::pin(async move {
                        let position: Option<i64> =
                            sqlx::query_scalar(AssertSqlSafe(self.queries().checkpoint_load.clone()))
                                .bind(subscriber)
                                .fetch_optional(self.pool())
                                .await
                                .map_err(|e| self.err(e))?;
                        Ok(position.map(|p| Position(u64_of(p))))
                    })
                }

                fn save<'a>(
                    &'a self,
                    subscriber: &'a str,
                    position: Position,
                ) -> BoxFuture<'a, Result<(), StoreError>> {
                    Box::pin(async move {
                        sqlx::query(AssertSqlSafe(self.queries().checkpoint_save.clone()))
                            .bind(subscriber)
                            .bind(i64_of(position.0))
                            .execute(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        Ok(())
                    })
                }
            }

            impl DeadLetterStore for $store {
                fn park(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), StoreError>> {
                    Box::pin(async move {
                        let e = &letter.event;
                        let metadata = serde_json::to_string(&e.metadata).map_err(|err| StoreError::Backend {
                            backend: self.dialect().backend(),
                            source: Box::new(err),
                        })?;
                        sqlx::query(AssertSqlSafe(self.queries().dlq_park.clone()))
                            .bind(&letter.subscriber)
                            .bind(e.event_id.to_string())
                            .bind(i64_of(e.position.0))
                            .bind(e.stream.aggregate_type())
                            .bind(e.stream.aggregate_id())
                            .bind(i64_of(e.version.0))
                            .bind(e.name.as_ref())
                            .bind(i64::from(e.schema_version.0))
                            .bind(e.payload.as_ref())
                            .bind(metadata)
                            .bind(&letter.error)
                            .bind(i64::from(letter.attempts))
                            .bind(letter.parked_at.0)
                            .execute(self.pool())
                            .await
                            .map_err(|err| self.err(err))?;
                        Ok(())
                    })
                }

                fn list<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
                    Box::pin(async move {
                        let rows = sqlx::query(AssertSqlSafe(self.queries().dlq_list.clone()))
                            .bind(subscriber)
                            .fetch_all(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        let mut letters = Vec::with_capacity(rows.len());
                        for row in &rows {
                            let event = event_row(row)
                                .map_err(|e| self.err(e))?
                                .into_event(self.dialect().backend())?;
                            let error: String = row.try_get(10).map_err(|e| self.err(e))?;
                            let attempts: i64 = row.try_get(11).map_err(|e| self.err(e))?;
                            let parked_at: i64 = row.try_get(12).map_err(|e| self.err(e))?;
                            letters.push(DeadLetter {
                                subscriber: subscriber.to_owned(),
                                event,
                                error,
                                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                                parked_at: Timestamp(parked_at),
                            });
                        }
                        Ok(letters)
                    })
                }

                fn remove<'a>(
                    &'a self,
                    subscriber: &'a str,
                    event: interlock::EventId,
                ) -> BoxFuture<'a, Result<(), StoreError>> {
                    Box::pin(async move {
                        sqlx::query(AssertSqlSafe(self.queries().dlq_remove.clone()))
                            .bind(subscriber)
                            .bind(event.to_string())
                            .execute(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        Ok(())
                    })
                }
            }

            impl SagaStateStore for $store {
                fn load<'a>(
                    &'a self,
                    saga: &'a str,
                    key: &'a str,
                ) -> BoxFuture<'a, Result<Option<SagaInstance>, StoreError>> {
                    Box::pin(async move {
                        let row = sqlx::query(AssertSqlSafe(self.queries().saga_load.clone()))
                            .bind(saga)
                            .bind(key)
                            .fetch_optional(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        let Some(row) = row else { return Ok(None) };
                        let read = || -> Result<SagaInstance, sqlx::Error> {
                            Ok(SagaInstance {
                                state: Bytes::from(row.try_get::<Vec<u8>, _>(0)?),
                                version: Version(u64_of(row.try_get(1)?)),
                                last_position: Position(u64_of(row.try_get(2)?)),
                            })
                        };
                        read().map(Some).map_err(|e| self.err(e))
                    })
                }

                fn apply<'a>(
                    &'a self,
                    saga: &'a str,
                    key: &'a str,
                    expected: Version,
                    change: SagaChange,
                ) -> BoxFuture<'a, Result<Version, StoreError>> {
                    Box::pin(async move {
                        let q = self.queries();
                        let mut tx = self.begin_write().await.map_err(|e| self.err(e))?;
                        let conflict = |actual| interlock::store::saga_conflict(saga, key, expected, actual);
                        let new_version = match change {
                            SagaChange::Save {
                                state,
                                last_position,
                                schedule,
                                cancel,
                            } => {
                                let changed = if expected == Version::INITIAL {
                                    sqlx::query(AssertSqlSafe(q.saga_create.clone()))
                                        .bind(saga)
                                        .bind(key)
                                        .bind(state.as_ref())
                                        .bind(i64_of(last_position.0))
                                        .execute(&mut *tx)
                                        .await
                                } else {
                                    sqlx::query(AssertSqlSafe(q.saga_update.clone()))
                                        .bind(saga)
                                        .bind(key)
                                        .bind(state.as_ref())
                                        .bind(i64_of(last_position.0))
                                        .bind(i64_of(expected.0))
                                        .execute(&mut *tx)
                                        .await
                                }
                                .map_err(|e| self.err(e))?;
                                if changed.rows_affected() != 1 {
                                    drop(tx);
                                    let actual = self.saga_version(saga, key).await?;
                                    return Err(conflict(actual));
                                }
                                for id in cancel {
                                    sqlx::query(AssertSqlSafe(q.deadline_cancel.clone()))
                                        .bind(id.to_string())
                                        .execute(&mut *tx)
                                        .await
                                        .map_err(|e| self.err(e))?;
                                }
                                for d in schedule {
                                    sqlx::query(AssertSqlSafe(q.deadline_insert.clone()))
                                        .bind(d.id.to_string())
                                        .bind(&d.saga)
                                        .bind(&d.key)
                                        .bind(d.due.0)
                                        .bind(&d.name)
                                        .bind(i64::from(d.schema_version.0))
                                        .bind(d.payload.as_ref())
                                        .bind(d.correlation_id.map(|c| c.to_string()))
                                        .execute(&mut *tx)
                                        .await
                                        .map_err(|e| self.err(e))?;
                                }
                                expected.next()
                            }
                            SagaChange::Delete => {
                                if expected != Version::INITIAL {
                                    let deleted = sqlx::query(AssertSqlSafe(q.saga_delete.clone()))
                                        .bind(saga)
                                        .bind(key)
                                        .bind(i64_of(expected.0))
                                        .execute(&mut *tx)
                                        .await
                                        .map_err(|e| self.err(e))?;
                                    if deleted.rows_affected() != 1 {
                                        drop(tx);
                                        let actual = self.saga_version(saga, key).await?;
                                        return Err(conflict(actual));
                                    }
                                }
                                sqlx::query(AssertSqlSafe(q.deadline_delete_key.clone()))
                                    .bind(saga)
                                    .bind(key)
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(|e| self.err(e))?;
                                Version::INITIAL
                            }
                        };
                        tx.commit().await.map_err(|e| self.err(e))?;
                        Ok(new_version)
                    })
                }

                fn due<'a>(
                    &'a self,
                    saga: &'a str,
                    now: Timestamp,
                    limit: usize,
                ) -> BoxFuture<'a, Result<Vec<ScheduledDeadline>, StoreError>> {
                    Box::pin(async move {
                        let rows = sqlx::query(AssertSqlSafe(self.queries().deadline_due.clone()))
                            .bind(saga)
                            .bind(now.0)
                            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                            .fetch_all(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        let backend = self.dialect().backend();
                        let mut due = Vec::with_capacity(rows.len());
                        for row in &rows {
                            let id: String = row.try_get(0).map_err(|e| self.err(e))?;
                            let corrupt = |reason: String| StoreError::Corrupt {
                                backend,
                                location: format!("deadline {id}"),
                                reason,
                            };
                            let correlation: Option<String> = row.try_get(7).map_err(|e| self.err(e))?;
                            due.push(ScheduledDeadline {
                                id: id.parse().map_err(|e| corrupt(format!("id: {e}")))?,
                                saga: row.try_get(1).map_err(|e| self.err(e))?,
                                key: row.try_get(2).map_err(|e| self.err(e))?,
                                due: Timestamp(row.try_get(3).map_err(|e| self.err(e))?),
                                name: row.try_get(4).map_err(|e| self.err(e))?,
                                schema_version: SchemaVersion(
                                    u32::try_from(row.try_get::<i64, _>(5).map_err(|e| self.err(e))?).unwrap_or(0),
                                ),
                                payload: Bytes::from(row.try_get::<Vec<u8>, _>(6).map_err(|e| self.err(e))?),
                                correlation_id: correlation
                                    .map(|c| c.parse::<CorrelationId>())
                                    .transpose()
                                    .map_err(|e| corrupt(format!("correlation id: {e}")))?,
                            });
                        }
                        Ok(due)
                    })
                }
            }

            impl interlock::store::Outbox for $store {
                fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
                    Box::pin(async move {
                        let rows = sqlx::query(AssertSqlSafe(self.queries().outbox_pending.clone()))
                            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                            .fetch_all(self.pool())
                            .await
                            .map_err(|e| self.err(e))?;
                        self.rows_to_events(rows)
                    })
                }

                fn mark_published<'a>(&'a self, positions: &'a [Position]) -> BoxFuture<'a, Result<(), StoreError>> {
                    Box::pin(async move {
                        for chunk in positions.chunks(500) {
                            let mut query = sqlx::query(AssertSqlSafe(self.queries().outbox_mark(chunk.len())));
                            for p in chunk {
                                query = query.bind(i64_of(p.0));
                            }
                            query.execute(self.pool()).await.map_err(|e| self.err(e))?;
                        }
                        Ok(())
                    })
                }
            }

            impl $store {
                async fn saga_version(&self, saga: &str, key: &str) -> Result<Version, StoreError> {
                    Ok(SagaStateStore::load(self, saga, key)
                        .await?
                        .map_or(Version::INITIAL, |i| i.version))
                }
            }
        };
    };
}

pub(crate) use impl_sql_store;
