//! PostgreSQL's batch append in one statement: one round trip per batch.

use std::collections::HashSet;
use std::sync::Arc;

use interlock::store::{AppendRequest, Committed, ExpectedVersion, StoreError};
use interlock::{Position, StreamId, Timestamp, Version};
use sqlx::{AssertSqlSafe, Row, SqlSafeStr, SqlStr};

use super::{PostgresDriver, PostgresStore};
use crate::append::{BatchFailure, stored_metadata};
use crate::driver::Driver;
use crate::error::{is_unavailable, is_unique_violation};
use crate::rows::{i64_of, i64_of_usize, u64_of};
use crate::schema::Tables;

/// Commits a batch of appends to distinct streams in one statement (one
/// round trip, autocommit): every expected version is checked, the
/// position counter bumped once, the accepted appends' events inserted
/// (and recorded in the outbox), and listeners notified. Returns one
/// outcome per request, or `None` when the batch must take the savepoint
/// path instead: two appends to one stream, an event that cannot be
/// encoded here, or a unique violation (another process appended first;
/// nothing was written).
pub(super) async fn append(
    store: &PostgresStore,
    batch: &[AppendRequest],
) -> Option<Vec<Result<Committed, StoreError>>> {
    let distinct: HashSet<&StreamId> = batch.iter().map(|r| &r.stream).collect();
    if distinct.len() != batch.len() {
        return None;
    }
    let columns = Columns::of(batch, Timestamp::now())?;
    let state = store.state();
    let config = store.config();
    let rows = sqlx::query(state.fast_append.clone())
        .bind(columns.types)
        .bind(columns.ids)
        .bind(columns.expected)
        .bind(columns.counts)
        .bind(columns.req_no)
        .bind(columns.idx)
        .bind(columns.event_ids)
        .bind(columns.names)
        .bind(columns.schema_versions)
        .bind(columns.payloads)
        .bind(columns.metadata)
        .bind(columns.recorded_at)
        .bind(&state.channel)
        .bind(config.notify)
        .bind(config.outbox)
        .bind(columns.tenants)
        .fetch_all(store.pool())
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        // Nothing was written (one statement, autocommit). Another process
        // appended first, or the database refused a value of one append:
        // the savepoint path decides each append alone. Only an unreachable
        // server fails them all.
        Err(e) if !is_unavailable(&e) || is_unique_violation(&e) => return None,
        Err(e) => {
            let failure = BatchFailure::sqlx(PostgresDriver::NAME, "the batch append failed", &e);
            return Some(batch.iter().map(|_| Err(failure.error())).collect());
        }
    };
    // One row per request, in order: the stream's version before the batch
    // and the counter after it. The statement has committed: an answer
    // that cannot be read fails every append (their outcome is unknown)
    // rather than appending them again.
    let unreadable = |reason: &str| {
        let failure = BatchFailure::other(PostgresDriver::NAME, "the batch append's answer cannot be read", reason);
        Some(batch.iter().map(|_| Err(failure.error())).collect())
    };
    let mut actuals = Vec::with_capacity(rows.len());
    let mut last = 0i64;
    for row in &rows {
        match (row.try_get::<i64, _>(1), row.try_get::<Option<i64>, _>(2)) {
            (Ok(actual), Ok(l)) => {
                let Ok(actual) = u64::try_from(actual) else {
                    return unreadable(&format!("a stream's stored version is {actual}, out of range"));
                };
                actuals.push(Version(actual));
                last = l.unwrap_or(0);
            }
            (Err(e), _) | (_, Err(e)) => return unreadable(&e.to_string()),
        }
    }
    if actuals.len() != batch.len() {
        return unreadable(&format!("{} rows for {} appends", actuals.len(), batch.len()));
    }
    let accepted = |request: &AppendRequest, actual: Version| match request.expected {
        ExpectedVersion::Any => true,
        ExpectedVersion::Exact(v) => v == actual,
    };
    // The positions of the accepted appends, in batch order, end at `last`.
    let accepted_events: i64 = batch
        .iter()
        .zip(&actuals)
        .filter(|(request, actual)| accepted(request, **actual))
        .map(|(request, _)| i64_of_usize(request.events.len()))
        .sum();
    let mut next = u64_of(last - accepted_events + 1);
    let outcomes = batch
        .iter()
        .zip(actuals)
        .map(|(request, actual)| {
            if !accepted(request, actual) {
                return Err(StoreError::Conflict {
                    stream: request.stream.clone(),
                    expected: request.expected,
                    actual,
                });
            }
            let n = request.events.len() as u64;
            let positions = (next..next + n).map(Position).collect();
            next += n;
            Ok(Committed {
                stream: request.stream.clone(),
                version: Version(actual.0 + n),
                positions,
            })
        })
        .collect();
    if accepted_events > 0 {
        store.advance_head(Position(u64_of(last)));
    }
    Some(outcomes)
}

/// The batch as the statement's array parameters: one entry per request
/// (`$1` to `$4`), one per event (`$5` to `$12`).
struct Columns {
    types: Vec<String>,
    ids: Vec<String>,
    tenants: Vec<String>,
    expected: Vec<i64>,
    counts: Vec<i64>,
    req_no: Vec<i64>,
    idx: Vec<i64>,
    event_ids: Vec<String>,
    names: Vec<String>,
    schema_versions: Vec<i64>,
    payloads: Vec<Vec<u8>>,
    metadata: Vec<String>,
    recorded_at: Vec<i64>,
}

impl Columns {
    /// `None` when an event's metadata cannot be encoded (the savepoint
    /// path then fails that append alone).
    fn of(batch: &[AppendRequest], now: Timestamp) -> Option<Self> {
        let events: usize = batch.iter().map(|r| r.events.len()).sum();
        let mut c = Self {
            types: Vec::with_capacity(batch.len()),
            ids: Vec::with_capacity(batch.len()),
            tenants: Vec::with_capacity(batch.len()),
            expected: Vec::with_capacity(batch.len()),
            counts: Vec::with_capacity(batch.len()),
            req_no: Vec::with_capacity(events),
            idx: Vec::with_capacity(events),
            event_ids: Vec::with_capacity(events),
            names: Vec::with_capacity(events),
            schema_versions: Vec::with_capacity(events),
            payloads: Vec::with_capacity(events),
            metadata: Vec::with_capacity(events),
            recorded_at: Vec::with_capacity(events),
        };
        for (r, request) in batch.iter().enumerate() {
            c.types.push(request.stream.aggregate_type().to_owned());
            c.ids.push(request.stream.aggregate_id().to_owned());
            c.tenants.push(crate::queries::tenant_of(&request.stream).to_owned());
            c.expected.push(match request.expected {
                ExpectedVersion::Any => -1,
                ExpectedVersion::Exact(v) => i64_of(v.0),
            });
            c.counts.push(i64_of_usize(request.events.len()));
            for (i, event) in request.events.iter().enumerate() {
                let (json, at) = stored_metadata(event.metadata.clone(), now).ok()?;
                c.req_no.push(i64_of_usize(r + 1));
                c.idx.push(i64_of_usize(i));
                c.event_ids.push(event.event_id.to_string());
                c.names.push(event.name.to_string());
                c.schema_versions.push(i64::from(event.schema_version.0));
                c.payloads.push(event.payload.to_vec());
                c.metadata.push(json);
                c.recorded_at.push(at);
            }
        }
        Some(c)
    }
}

/// The one-statement batch append: `$13` the channel, `$14` whether to
/// notify, `$15` whether to record the outbox rows, `$16` the tenants.
pub(super) fn statement(t: &Tables) -> SqlStr {
    let (events, positions, outbox) = (&t.events, &t.positions, &t.outbox);
    let sql = format!(
        "WITH req AS (
            SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $16::text[]) WITH ORDINALITY
                AS r(agg_type, agg_id, expected, n, tenant, req_no)
        ),
        cur AS (
            SELECT r.req_no, r.agg_type, r.agg_id, r.tenant, r.expected, r.n,
                   COALESCE((SELECT MAX(e.version) FROM {events} e
                             WHERE e.aggregate_type = r.agg_type AND e.aggregate_id = r.agg_id
                               AND e.tenant = r.tenant), 0) AS actual
            FROM req r
        ),
        ok AS (SELECT * FROM cur WHERE expected < 0 OR expected = actual),
        total AS (SELECT COALESCE(SUM(n), 0)::bigint AS n FROM ok),
        bump AS (UPDATE {positions} SET last = last + (SELECT n FROM total) WHERE id = 1 RETURNING last),
        base AS (
            SELECT ok.req_no, ok.agg_type, ok.agg_id, ok.tenant, ok.actual,
                   (SELECT last FROM bump) - (SELECT n FROM total)
                     + SUM(ok.n) OVER (ORDER BY ok.req_no) - ok.n + 1 AS first_position
            FROM ok
        ),
        ev AS (
            SELECT * FROM unnest($5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::bigint[], $10::bytea[],
                                 $11::text[], $12::bigint[])
                AS e(req_no, idx, event_id, event_name, schema_version, payload, metadata, recorded_at)
        ),
        ins AS (
            INSERT INTO {events} (position, event_id, aggregate_type, aggregate_id, version, event_name,
                                  schema_version, payload, metadata, recorded_at, tenant)
            SELECT b.first_position + e.idx, e.event_id, b.agg_type, b.agg_id, b.actual + e.idx + 1, e.event_name,
                   e.schema_version, e.payload, e.metadata, e.recorded_at, b.tenant
            FROM ev e JOIN base b ON b.req_no = e.req_no
            RETURNING position
        ),
        ob AS (INSERT INTO {outbox} (position) SELECT position FROM ins WHERE $15),
        note AS (SELECT pg_notify($13, (SELECT last FROM bump)::text) AS sent WHERE $14 AND (SELECT COUNT(*) FROM ins) > 0)
        SELECT c.req_no, c.actual, (SELECT last FROM bump) AS last, (SELECT COUNT(*) FROM note) AS notified
        FROM cur c ORDER BY c.req_no"
    );
    AssertSqlSafe(Arc::<str>::from(sql)).into_sql_str()
}
