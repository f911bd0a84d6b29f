//! The batch append with every append isolated: one transaction, one
//! savepoint per append. The drivers take this path for the batches their
//! fast statement cannot take (PostgreSQL: two appends to one stream, a
//! race lost to another process) and whenever the database refuses the
//! fast path's statement: an append the database will not store (a value
//! it cannot index, a trigger's refusal) then fails alone, with the
//! database's cause, and every other append of its batch commits.

use std::collections::HashMap;

use interlock::store::{AppendRequest, Committed, ExpectedVersion, NewEvent, StoreError};
use interlock::{Position, StreamId, Timestamp, Version};
use sqlx::Transaction;

use super::SqlStore;
use crate::append::{BatchFailure, Outcomes, stored_metadata};
use crate::driver::Param::{Bytes as Blob, Int, Text};
use crate::driver::{Connection, Driver, SqlRow};
use crate::error::is_unique_violation;
use crate::queries::tenant_of;
use crate::rows::{i64_of, i64_of_usize, stored_u64};

/// What [`SqlStore::append_each`] wrote in the transaction: the committed
/// appends (decided by the caller once the transaction commits) and the
/// last position written.
pub(crate) struct Written {
    pub(crate) committed: Vec<(usize, Committed)>,
    pub(crate) last_position: Option<i64>,
}

impl Written {
    /// Decides the committed appends, after the transaction committed.
    pub(crate) fn decide(self, outcomes: &mut Outcomes) -> Option<Position> {
        for (index, done) in self.committed {
            outcomes.set(index, Ok(done));
        }
        self.last_position.and_then(|p| u64::try_from(p).ok()).map(Position)
    }
}

impl<D: Driver> SqlStore<D> {
    /// Writes each request in a savepoint of its own, inside `tx`: an
    /// append whose expected version is wrong, that loses a race to
    /// another process, or that the database refuses gets its own error in
    /// `outcomes`; the others are returned to be decided once `tx`
    /// commits. The position counter is bumped inside each savepoint, so a
    /// refused append leaves no gap.
    ///
    /// A failure outside a savepoint (reading a version, opening, releasing
    /// or rolling back a savepoint) may have aborted the whole transaction
    /// (PostgreSQL then rolls back at commit without an error): it fails
    /// the batch, so nothing written is reported committed.
    pub(crate) async fn append_each(
        &self,
        tx: &mut Transaction<'static, D::Database>,
        batch: Vec<AppendRequest>,
        outbox: bool,
        outcomes: &mut Outcomes,
    ) -> Result<Written, BatchFailure> {
        let fail = |what: &'static str| move |e: sqlx::Error| BatchFailure::sqlx(D::NAME, what, &e);
        let mut versions: HashMap<StreamId, Version> = HashMap::new();
        let mut written = Written {
            committed: Vec::with_capacity(batch.len()),
            last_position: None,
        };
        for (index, request) in batch.into_iter().enumerate() {
            let AppendRequest {
                stream,
                expected,
                events,
            } = request;
            let actual = match versions.get(&stream) {
                Some(v) => *v,
                None => self
                    .version_in(tx, &stream)
                    .await
                    .map_err(fail("cannot read a stream's version"))?,
            };
            if let ExpectedVersion::Exact(v) = expected
                && v != actual
            {
                let conflict = StoreError::Conflict {
                    stream,
                    expected,
                    actual,
                };
                outcomes.set(index, Err(conflict));
                continue;
            }
            if events.is_empty() {
                let unchanged = Committed {
                    stream,
                    version: actual,
                    positions: Default::default(),
                };
                outcomes.set(index, Ok(unchanged));
                continue;
            }
            let mut savepoint = sqlx::Connection::begin(&mut **tx)
                .await
                .map_err(fail("cannot open a savepoint"))?;
            match self
                .insert_events(&mut savepoint, &stream, actual, events, outbox)
                .await
            {
                Ok((version, positions, last)) => {
                    savepoint.commit().await.map_err(fail("cannot release a savepoint"))?;
                    versions.insert(stream.clone(), version);
                    written.last_position = Some(last);
                    let done = Committed {
                        stream,
                        version,
                        positions: positions.into(),
                    };
                    written.committed.push((index, done));
                }
                Err(e) => {
                    savepoint
                        .rollback()
                        .await
                        .map_err(fail("cannot roll a savepoint back"))?;
                    if is_unique_violation(&e) {
                        // Another process appended to the stream first.
                        let actual = self
                            .version_in(tx, &stream)
                            .await
                            .map_err(fail("cannot read a stream's version"))?;
                        versions.insert(stream.clone(), actual);
                        let conflict = StoreError::Conflict {
                            stream,
                            expected,
                            actual,
                        };
                        outcomes.set(index, Err(conflict));
                    } else {
                        outcomes.set(index, Err(refused(D::NAME, &stream, &e)));
                    }
                }
            }
        }
        Ok(written)
    }

    /// The stream's version, inside the batch's transaction.
    async fn version_in(&self, conn: &mut Connection<D>, stream: &StreamId) -> Result<Version, sqlx::Error> {
        let params = [
            Text(stream.aggregate_type()),
            Text(stream.aggregate_id()),
            Text(tenant_of(stream)),
        ];
        let rows = D::fetch_all(conn, self.queries().stream_version.clone(), &params).await?;
        let version = rows.first().ok_or(sqlx::Error::RowNotFound)?.int(0)?;
        Ok(Version(stored_u64(
            || format!("the version of stream {stream}"),
            version,
        )?))
    }

    /// Inserts one append's events at the next positions (and their outbox
    /// rows), in the append's savepoint. The counter row stays locked until
    /// the batch commits: appends commit in position order, so no reader
    /// sees a position before an earlier one is visible (gap safety).
    /// Returns the stream's new version, the positions and the last of them.
    async fn insert_events(
        &self,
        conn: &mut Connection<D>,
        stream: &StreamId,
        actual: Version,
        events: Vec<NewEvent>,
        outbox: bool,
    ) -> Result<(Version, Vec<Position>, i64), sqlx::Error> {
        let queries = self.queries();
        let count = i64_of_usize(events.len());
        let rows = D::fetch_all(conn, queries.bump_positions.clone(), &[Int(count)]).await?;
        let last = rows.first().ok_or(sqlx::Error::RowNotFound)?.int(0)?;
        let first = last - count + 1;
        let now = Timestamp::now();
        let mut version = actual;
        let mut positions = Vec::with_capacity(events.len());
        for (i, event) in events.into_iter().enumerate() {
            version = version.next();
            let position = first + i64_of_usize(i);
            let (metadata, recorded_at) =
                stored_metadata(event.metadata, now).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            let event_id = event.event_id.to_string();
            let params = [
                Int(position),
                Text(&event_id),
                Text(stream.aggregate_type()),
                Text(stream.aggregate_id()),
                Int(i64_of(version.0)),
                Text(event.name.as_ref()),
                Int(i64::from(event.schema_version.0)),
                Blob(event.payload.as_ref()),
                Text(&metadata),
                Int(recorded_at),
                Text(tenant_of(stream)),
            ];
            D::execute(conn, queries.insert_event.clone(), &params).await?;
            positions.push(Position(stored_u64(|| "a new position".to_owned(), position)?));
        }
        if outbox {
            let range = [Int(first), Int(last)];
            D::execute(conn, queries.outbox_insert_range.clone(), &range).await?;
        }
        Ok((version, positions, last))
    }
}

/// An append the database would not store: its own error, naming the
/// stream and keeping the database's words.
fn refused(backend: &'static str, stream: &StreamId, e: &sqlx::Error) -> StoreError {
    let source = format!("the append to {stream} was refused: {e}").into();
    if crate::error::is_unavailable(e) {
        StoreError::Unavailable { backend, source }
    } else {
        StoreError::Backend { backend, source }
    }
}
