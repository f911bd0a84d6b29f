//! SQLite's batch append: three statements per group-commit batch.

use std::collections::HashMap;

use interlock::store::{AppendRequest, Committed, ExpectedVersion, StoreError};
use interlock::{Position, StreamId, Timestamp, Version};
use sqlx::sqlite::SqliteConnection;
use sqlx::{AssertSqlSafe, SqlSafeStr};

use super::{SqliteDriver, SqliteStore};
use crate::append::{BatchFailure, EventRow, Outcomes, ROWS_PER_INSERT, insert_rows, stored_metadata};
use crate::driver::Param::{self, Int, Text};
use crate::driver::{Driver, SqlRow};
use crate::rows::{i64_of, i64_of_usize, stored_u64, u64_of};

/// Commits a batch; one outcome per request, in order.
///
/// When the database refuses a statement of the batch (a trigger, a value
/// it will not store), nothing was written: the batch is decided again on
/// the isolated path, one savepoint per append, so the refused append
/// fails alone with the database's cause. Only an unreachable database
/// fails every append at once.
pub(super) async fn append(store: &SqliteStore, batch: Vec<AppendRequest>) -> Vec<Result<Committed, StoreError>> {
    let mut outcomes = Outcomes::new(batch.len());
    if batch.is_empty() {
        return outcomes.finish(SqliteDriver::NAME);
    }
    match commit(store, &batch, &mut outcomes).await {
        Ok(()) => {}
        Err(failure) if failure.is_unavailable() => outcomes.fail_rest(&failure),
        Err(_) => {
            // Decided from scratch: the first pass's conflicts were judged
            // against appends that did not commit.
            outcomes = Outcomes::new(batch.len());
            if let Err(failure) = isolated(store, batch, &mut outcomes).await {
                outcomes.fail_rest(&failure);
            }
        }
    }
    outcomes.finish(SqliteDriver::NAME)
}

/// The isolated path: one transaction, one savepoint per append.
async fn isolated(store: &SqliteStore, batch: Vec<AppendRequest>, outcomes: &mut Outcomes) -> Result<(), BatchFailure> {
    let fail = |what: &'static str| move |e: sqlx::Error| BatchFailure::sqlx(SqliteDriver::NAME, what, &e);
    let mut tx = store.begin_write().await.map_err(fail("cannot begin a transaction"))?;
    let written = store
        .append_each(&mut tx, batch, store.config().outbox, outcomes)
        .await?;
    tx.commit().await.map_err(fail("the commit failed"))?;
    if let Some(head) = written.decide(outcomes) {
        store.advance_head(head);
    }
    Ok(())
}

/// An accepted append: its request, the stream's version before it, and
/// the position of its first event.
struct Accepted<'a> {
    index: usize,
    request: &'a AppendRequest,
    actual: Version,
    first: i64,
}

/// Commits a batch in three statements inside one `BEGIN IMMEDIATE`
/// transaction: the versions of every stream of the batch, one bump of the
/// position counter, one multi-row insert (and, with the outbox, one more
/// for its rows). The write lock is held from the start, so the versions
/// read stay true and no savepoint is needed; appends to one stream are
/// checked in queue order, each seeing the versions the earlier ones wrote.
///
/// A conflict or an empty append is decided in `outcomes` on the way; on
/// an error of a shared step the accepted appends are left undecided and
/// nothing is written.
async fn commit(store: &SqliteStore, batch: &[AppendRequest], outcomes: &mut Outcomes) -> Result<(), BatchFailure> {
    let fail = |what: &'static str| move |e: sqlx::Error| BatchFailure::sqlx(SqliteDriver::NAME, what, &e);
    let queries = store.queries();
    let mut tx = store.begin_write().await.map_err(fail("cannot begin a transaction"))?;

    // 1. The versions of the batch's streams, in one query.
    let mut versions = current_versions(&mut tx, &queries.tables.events, batch)
        .await
        .map_err(fail("cannot read the stream versions"))?;

    // 2. Each append, in queue order.
    let mut accepted = Vec::new();
    let mut total = 0i64;
    for (index, request) in batch.iter().enumerate() {
        let actual = versions.get(&request.stream).copied().unwrap_or(Version::INITIAL);
        if let ExpectedVersion::Exact(v) = request.expected
            && v != actual
        {
            let conflict = StoreError::Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual,
            };
            outcomes.set(index, Err(conflict));
            continue;
        }
        if request.events.is_empty() {
            let unchanged = Committed {
                stream: request.stream.clone(),
                version: actual,
                positions: Default::default(),
            };
            outcomes.set(index, Ok(unchanged));
            continue;
        }
        let n = request.events.len() as u64;
        versions.insert(request.stream.clone(), Version(actual.0 + n));
        accepted.push(Accepted {
            index,
            request,
            actual,
            first: total, // made a position once the counter is bumped
        });
        total = total.saturating_add(i64_of(n));
    }
    if accepted.is_empty() {
        return tx.commit().await.map_err(fail("the commit failed"));
    }

    // 3. One bump of the counter (its row stays locked until commit).
    let bumped = SqliteDriver::fetch_all(&mut tx, queries.bump_positions.clone(), &[Int(total)])
        .await
        .and_then(|rows| rows.first().ok_or(sqlx::Error::RowNotFound)?.int(0))
        .map_err(fail("cannot bump the position counter"))?;
    let first = bumped - total + 1;
    for append in &mut accepted {
        append.first += first;
    }

    // 4. The rows, at consecutive positions, in one multi-row insert.
    let now = Timestamp::now();
    let mut rows = Vec::new();
    for append in &accepted {
        for (i, event) in append.request.events.iter().enumerate() {
            let (metadata, recorded_at) = stored_metadata(event.metadata.clone(), now)
                .map_err(|e| BatchFailure::other(SqliteDriver::NAME, "cannot encode the metadata", e))?;
            rows.push(EventRow {
                position: append.first + i64_of_usize(i),
                event_id: event.event_id.to_string(),
                stream: &append.request.stream,
                version: i64_of(append.actual.0).saturating_add(i64_of_usize(i) + 1),
                name: event.name.as_ref(),
                schema_version: i64::from(event.schema_version.0),
                payload: event.payload.as_ref(),
                metadata,
                recorded_at,
            });
        }
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let (sql, params) = insert_rows(&queries.tables.events, chunk);
        SqliteDriver::execute(&mut tx, sql, &params)
            .await
            .map_err(fail("cannot insert the events"))?;
    }
    drop(rows);
    if store.config().outbox {
        let range = [Int(first), Int(bumped)];
        SqliteDriver::execute(&mut tx, queries.outbox_insert_range.clone(), &range)
            .await
            .map_err(fail("cannot record the outbox rows"))?;
    }
    tx.commit().await.map_err(fail("the commit failed"))?;

    for append in accepted {
        let n = append.request.events.len() as u64;
        let start = u64_of(append.first);
        let committed = Committed {
            stream: append.request.stream.clone(),
            version: Version(append.actual.0 + n),
            positions: (start..start + n).map(Position).collect(),
        };
        outcomes.set(append.index, Ok(committed));
    }
    store.advance_head(Position(u64_of(bumped)));
    Ok(())
}

/// The current version of every stream of the batch, in one query.
async fn current_versions(
    tx: &mut SqliteConnection,
    events_table: &str,
    batch: &[AppendRequest],
) -> Result<HashMap<StreamId, Version>, sqlx::Error> {
    let mut streams: Vec<&StreamId> = Vec::new();
    for request in batch {
        if !streams.contains(&&request.stream) {
            streams.push(&request.stream);
        }
    }
    let columns: Vec<String> = (0..streams.len())
        .map(|i| {
            format!(
                "(SELECT COALESCE(MAX(version), 0) FROM {events_table} WHERE aggregate_type = ${} AND aggregate_id = ${} AND tenant = ${})",
                3 * i + 1,
                3 * i + 2,
                3 * i + 3
            )
        })
        .collect();
    let sql = AssertSqlSafe(format!("SELECT {}", columns.join(", "))).into_sql_str();
    let params: Vec<Param<'_>> = streams
        .iter()
        .flat_map(|s| {
            [
                Text(s.aggregate_type()),
                Text(s.aggregate_id()),
                Text(crate::queries::tenant_of(s)),
            ]
        })
        .collect();
    let rows = SqliteDriver::fetch_all(tx, sql, &params).await?;
    let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
    let mut versions = HashMap::with_capacity(streams.len());
    for (i, stream) in streams.into_iter().enumerate() {
        let version = stored_u64(|| format!("the version of stream {stream}"), row.int(i)?)?;
        versions.insert(stream.clone(), Version(version));
    }
    Ok(versions)
}
