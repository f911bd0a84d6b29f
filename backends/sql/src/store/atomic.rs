//! `EventStore::append_atomic`: the streams of one append and its
//! conditions in one transaction of their own, all or nothing.
//!
//! The transaction first bumps the position counter by the append's event
//! count, as every append does before it writes: that takes the counter's
//! lock, and from then on no other append can commit until this one ends,
//! so the versions and scope heads it reads next are exact (PostgreSQL's
//! next statement sees every commit before the lock; SQLite's
//! `BEGIN IMMEDIATE` holds the write lock throughout). The conditions and
//! each stream's version are then checked, and the events inserted at the
//! positions taken; a refusal rolls the bump back with the rest.
//!
//! These appends do not go through the group committer: their unit is
//! the whole atomic append (every part and condition), which a batch of
//! the committer's isolated single-stream appends does not express. Their
//! cost is one transaction each; see the README's store model section.

use std::collections::HashMap;

use interlock::store::{AtomicAppend, Committed, ExpectedVersion, Scope, StoreError};
use interlock::{Position, StreamId, Timestamp, Version};
use sqlx::{AssertSqlSafe, SqlSafeStr, Transaction};

use super::{DriverBatch, SqlStore};
use crate::append::{EventRow, ROWS_PER_INSERT, insert_rows, stored_metadata};
use crate::driver::Param::{self, Int, Text};
use crate::driver::SqlRow;
use crate::error::is_unavailable;
use crate::queries::tenant_of;
use crate::rows::{i64_of, i64_of_usize, stored_u64, u64_of};

impl<D: DriverBatch> SqlStore<D> {
    /// Commits `append` in one transaction, or nothing of it.
    pub(crate) async fn append_atomic_now(&self, append: AtomicAppend) -> Result<Vec<Committed>, StoreError> {
        let mut tx = self.begin_write().await.map_err(Self::error)?;
        let written = self.write_atomic(&mut tx, append).await;
        let (committed, last) = match written {
            Ok(done) => done,
            Err(e) => {
                // Dropping the transaction rolls it back; say so explicitly
                // so the connection goes back to the pool clean.
                let _ = tx.rollback().await;
                return Err(e);
            }
        };
        if let Some(last) = last {
            D::after_write(self, &mut tx, last).await.map_err(Self::error)?;
        }
        tx.commit().await.map_err(Self::error)?;
        if let Some(last) = last.and_then(|l| u64::try_from(l).ok()) {
            self.advance_head(Position(last));
        }
        Ok(committed)
    }

    /// The checks and writes of `append` inside `tx`; the parts' outcomes
    /// and the last position written (`None` when nothing was). Four
    /// statements whatever the size of the append: the counter's bump (its
    /// lock, held to the end), one query for every scope head and stream
    /// version, one multi-row insert (and the outbox's rows).
    async fn write_atomic(
        &self,
        tx: &mut Transaction<'static, D::Database>,
        append: AtomicAppend,
    ) -> Result<(Vec<Committed>, Option<i64>), StoreError> {
        let queries = self.queries();
        let total = i64_of_usize(append.event_count());
        // The positions are taken first, with the counter's lock: a refused
        // append rolls the bump back with everything else.
        let last = self.int_in(tx, queries.bump_positions.clone(), &[Int(total)]).await?;
        let head = last - total;
        let (scope_heads, mut versions) = self.heads_and_versions(tx, &append, head).await?;
        for (condition, actual) in append.conditions.iter().zip(scope_heads) {
            let actual = Position(
                stored_u64(|| format!("the last position of {}", condition.scope), actual).map_err(Self::error)?,
            );
            if actual > condition.since {
                return Err(StoreError::ScopeChanged {
                    scope: condition.scope.clone(),
                    since: condition.since,
                    actual,
                });
            }
        }
        let now = Timestamp::now();
        let mut next = head + 1;
        let mut rows = Vec::with_capacity(append.event_count());
        let mut committed = Vec::with_capacity(append.streams.len());
        for part in &append.streams {
            let actual = versions.get(&part.stream).copied().unwrap_or(Version::INITIAL);
            if let ExpectedVersion::Exact(expected) = part.expected
                && expected != actual
            {
                return Err(StoreError::Conflict {
                    stream: part.stream.clone(),
                    expected: part.expected,
                    actual,
                });
            }
            let mut positions = Vec::with_capacity(part.events.len());
            for (i, event) in part.events.iter().enumerate() {
                let (metadata, recorded_at) =
                    stored_metadata(event.metadata.clone(), now).map_err(|e| StoreError::Backend {
                        backend: D::NAME,
                        source: format!("cannot encode the metadata of an event of {}: {e}", part.stream).into(),
                    })?;
                rows.push(EventRow {
                    position: next,
                    event_id: event.event_id.to_string(),
                    stream: &part.stream,
                    version: i64_of(actual.0).saturating_add(i64_of_usize(i) + 1),
                    name: event.name.as_ref(),
                    schema_version: i64::from(event.schema_version.0),
                    payload: event.payload.as_ref(),
                    metadata,
                    recorded_at,
                });
                positions.push(Position(u64_of(next)));
                next += 1;
            }
            let version = Version(actual.0 + part.events.len() as u64);
            versions.insert(part.stream.clone(), version);
            committed.push(Committed {
                stream: part.stream.clone(),
                version,
                positions: positions.into(),
            });
        }
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let (sql, params) = insert_rows(&queries.tables.events, chunk);
            D::execute(tx, sql, &params).await.map_err(|e| {
                // The counter is locked, so no other append wrote to these
                // streams: the database refused a value of this append (a
                // duplicate event id, a trigger).
                if is_unavailable(&e) {
                    Self::error(e)
                } else {
                    StoreError::Backend {
                        backend: D::NAME,
                        source: format!("the atomic append was refused: {e}").into(),
                    }
                }
            })?;
        }
        if total > 0 && D::records_outbox(self) {
            let range = [Int(head + 1), Int(last)];
            D::execute(tx, queries.outbox_insert_range.clone(), &range)
                .await
                .map_err(Self::error)?;
        }
        Ok((committed, (total > 0).then_some(last)))
    }

    /// In one query: the last position of each condition's scope (in the
    /// order of the conditions; the log's is `head`), and the version of
    /// every stream of the append.
    async fn heads_and_versions(
        &self,
        tx: &mut Transaction<'static, D::Database>,
        append: &AtomicAppend,
        head: i64,
    ) -> Result<(Vec<i64>, HashMap<StreamId, Version>), StoreError> {
        let events = &self.queries().tables.events;
        let mut columns: Vec<String> = Vec::new();
        let mut params: Vec<Param<'_>> = Vec::new();
        let next_param = |params: &mut Vec<Param<'_>>| params.len() + 1;
        for condition in &append.conditions {
            match &condition.scope {
                Scope::Log => columns.push(format!("CAST({head} AS BIGINT)")),
                Scope::Category(category) => {
                    let n = next_param(&mut params);
                    params.push(Text(category.as_ref()));
                    columns.push(format!(
                        "(SELECT COALESCE(MAX(position), 0) FROM {events} WHERE aggregate_type = ${n})"
                    ));
                }
                Scope::Stream(stream) => {
                    let n = next_param(&mut params);
                    params.push(Text(stream.aggregate_type()));
                    params.push(Text(stream.aggregate_id()));
                    params.push(Text(tenant_of(stream)));
                    columns.push(format!(
                        "(SELECT COALESCE(MAX(position), 0) FROM {events} WHERE aggregate_type = ${n} AND aggregate_id = ${} AND tenant = ${})",
                        n + 1,
                        n + 2
                    ));
                }
                Scope::TenantCategory(tenant, category) => {
                    let n = next_param(&mut params);
                    params.push(Text(category.as_ref()));
                    params.push(Text(tenant.as_str()));
                    columns.push(format!(
                        "(SELECT COALESCE(MAX(position), 0) FROM {events} WHERE aggregate_type = ${n} AND tenant = ${})",
                        n + 1
                    ));
                }
                Scope::Tenant(tenant) => {
                    let n = next_param(&mut params);
                    params.push(Text(tenant.as_str()));
                    columns.push(format!(
                        "(SELECT COALESCE(MAX(position), 0) FROM {events} WHERE tenant = ${n})"
                    ));
                }
            }
        }
        let mut streams: Vec<&StreamId> = Vec::new();
        for part in &append.streams {
            if !streams.contains(&&part.stream) {
                streams.push(&part.stream);
            }
        }
        for stream in &streams {
            let n = next_param(&mut params);
            params.push(Text(stream.aggregate_type()));
            params.push(Text(stream.aggregate_id()));
            params.push(Text(tenant_of(stream)));
            columns.push(format!(
                "(SELECT COALESCE(MAX(version), 0) FROM {events} WHERE aggregate_type = ${n} AND aggregate_id = ${} AND tenant = ${})",
                n + 1,
                n + 2
            ));
        }
        if columns.is_empty() {
            return Ok((Vec::new(), HashMap::new()));
        }
        let sql = AssertSqlSafe(format!("SELECT {}", columns.join(", "))).into_sql_str();
        let rows = D::fetch_all(tx, sql, &params).await.map_err(Self::error)?;
        let row = rows.first().ok_or(sqlx::Error::RowNotFound).map_err(Self::error)?;
        let mut heads = Vec::with_capacity(append.conditions.len());
        for i in 0..append.conditions.len() {
            heads.push(row.int(i).map_err(Self::error)?);
        }
        let mut versions = HashMap::with_capacity(streams.len());
        for (i, stream) in streams.into_iter().enumerate() {
            let version = row.int(append.conditions.len() + i).map_err(Self::error)?;
            let version = stored_u64(|| format!("the version of stream {stream}"), version).map_err(Self::error)?;
            versions.insert(stream.clone(), Version(version));
        }
        Ok((heads, versions))
    }

    /// A query answering one integer, inside `tx`.
    async fn int_in(
        &self,
        tx: &mut Transaction<'static, D::Database>,
        sql: sqlx::SqlStr,
        params: &[crate::driver::Param<'_>],
    ) -> Result<i64, StoreError> {
        D::fetch_all(tx, sql, params)
            .await
            .and_then(|rows| rows.first().ok_or(sqlx::Error::RowNotFound)?.int(0))
            .map_err(Self::error)
    }
}
