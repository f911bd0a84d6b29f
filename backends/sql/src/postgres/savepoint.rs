//! PostgreSQL's fallback batch append: one transaction, one savepoint per
//! append, for the batches the one statement cannot take (two appends to
//! one stream, or a race lost to another process).

use std::collections::HashMap;

use interlock::store::{AppendRequest, Committed, ExpectedVersion, NewEvent, StoreError};
use interlock::{Position, StreamId, Timestamp, Version};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use super::{PostgresDriver, PostgresStore};
use crate::append::{BatchFailure, Outcomes, stored_metadata};
use crate::driver::Param::{Bytes as Blob, Int, Text};
use crate::driver::{Driver, SqlRow};
use crate::error::is_unique_violation;
use crate::queries::EVENT_COLUMNS;
use crate::rows::{i64_of, i64_of_usize, stored_u64, u64_of};
use crate::schema::Tables;

/// Commits a batch in one transaction, each append in a savepoint of its
/// own: an append whose expected version is wrong, or that loses a race to
/// another process, gets its exact `Conflict` and the others still commit.
/// One outcome per request, in order.
pub(super) async fn append(store: &PostgresStore, batch: Vec<AppendRequest>) -> Vec<Result<Committed, StoreError>> {
    let mut outcomes = Outcomes::new(batch.len());
    if let Err(failure) = commit(store, batch, &mut outcomes).await {
        outcomes.fail_rest(&failure);
    }
    outcomes.finish(PostgresDriver::NAME)
}

/// Decides every append in `outcomes`, except the committed ones when the
/// transaction fails (they are left undecided, with the error returned).
async fn commit(store: &PostgresStore, batch: Vec<AppendRequest>, outcomes: &mut Outcomes) -> Result<(), BatchFailure> {
    let fail = |what: &'static str| move |e: sqlx::Error| BatchFailure::sqlx(PostgresDriver::NAME, what, &e);
    let mut tx = store.begin_write().await.map_err(fail("cannot begin a transaction"))?;
    let mut versions: HashMap<StreamId, Version> = HashMap::new();
    let mut committed = Vec::with_capacity(batch.len());
    let mut last_position = None;
    for (index, request) in batch.into_iter().enumerate() {
        let AppendRequest {
            stream,
            expected,
            events,
        } = request;
        let actual = match versions.get(&stream) {
            Some(v) => *v,
            None => match version_in(store, &mut tx, &stream).await {
                Ok(v) => v,
                Err(e) => {
                    outcomes.set(index, Err(PostgresStore::error(e)));
                    continue;
                }
            },
        };
        if let ExpectedVersion::Exact(v) = expected
            && v != actual
        {
            outcomes.set(
                index,
                Err(StoreError::Conflict {
                    stream,
                    expected,
                    actual,
                }),
            );
            continue;
        }
        if events.is_empty() {
            let unchanged = Committed {
                stream,
                version: actual,
                positions: Vec::new(),
            };
            outcomes.set(index, Ok(unchanged));
            continue;
        }
        let mut savepoint = match sqlx::Connection::begin(&mut *tx).await {
            Ok(savepoint) => savepoint,
            Err(e) => {
                outcomes.set(index, Err(PostgresStore::error(e)));
                continue;
            }
        };
        match insert_events(store, &mut savepoint, &stream, actual, events).await {
            Ok((version, positions, last)) => match savepoint.commit().await {
                Ok(()) => {
                    versions.insert(stream.clone(), version);
                    last_position = Some(last);
                    let done = Committed {
                        stream,
                        version,
                        positions,
                    };
                    committed.push((index, done));
                }
                Err(e) => outcomes.set(index, Err(PostgresStore::error(e))),
            },
            Err(e) => {
                let _ = savepoint.rollback().await;
                if is_unique_violation(&e) {
                    // Another process appended to the stream first.
                    let actual = version_in(store, &mut tx, &stream).await.unwrap_or(actual);
                    versions.insert(stream.clone(), actual);
                    let conflict = StoreError::Conflict {
                        stream,
                        expected,
                        actual,
                    };
                    outcomes.set(index, Err(conflict));
                } else {
                    outcomes.set(index, Err(PostgresStore::error(e)));
                }
            }
        }
    }
    if let Some(last) = last_position
        && store.config().notify
    {
        let params = [Text(&store.state().channel), Text(&last.to_string())];
        let notify = SqlStr::from_static("SELECT pg_notify($1, $2)");
        PostgresDriver::execute(&mut tx, notify, &params)
            .await
            .map_err(fail("cannot notify listeners"))?;
    }
    tx.commit().await.map_err(fail("the commit failed"))?;
    for (index, done) in committed {
        outcomes.set(index, Ok(done));
    }
    if let Some(last) = last_position {
        store.advance_head(Position(u64_of(last)));
    }
    Ok(())
}

/// The stream's version, inside the batch's transaction.
async fn version_in(store: &PostgresStore, conn: &mut PgConnection, stream: &StreamId) -> Result<Version, sqlx::Error> {
    let params = [Text(stream.aggregate_type()), Text(stream.aggregate_id())];
    let rows = PostgresDriver::fetch_all(conn, store.queries().stream_version.clone(), &params).await?;
    let version = rows.first().ok_or(sqlx::Error::RowNotFound)?.int(0)?;
    Ok(Version(stored_u64(
        || format!("the version of stream {stream}"),
        version,
    )?))
}

/// Inserts one append's events at the next positions (and their outbox
/// rows), in the append's savepoint. The counter row is locked until the
/// batch commits: appends commit in position order, so no reader sees a
/// position before an earlier one is visible (gap safety). Returns the
/// stream's new version, the positions and the last of them.
async fn insert_events(
    store: &PostgresStore,
    conn: &mut PgConnection,
    stream: &StreamId,
    actual: Version,
    events: Vec<NewEvent>,
) -> Result<(Version, Vec<Position>, i64), sqlx::Error> {
    let queries = store.queries();
    let count = i64_of_usize(events.len());
    let rows = PostgresDriver::fetch_all(conn, queries.bump_positions.clone(), &[Int(count)]).await?;
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
        ];
        PostgresDriver::execute(conn, store.state().insert_event.clone(), &params).await?;
        positions.push(Position(u64_of(position)));
    }
    if store.config().outbox {
        let range = [Int(first), Int(last)];
        PostgresDriver::execute(conn, queries.outbox_insert_range.clone(), &range).await?;
    }
    Ok((version, positions, last))
}

/// The insert of one event row.
pub(super) fn insert_event(t: &Tables) -> SqlStr {
    let sql = format!(
        "INSERT INTO {} ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        t.events
    );
    AssertSqlSafe(std::sync::Arc::<str>::from(sql)).into_sql_str()
}
