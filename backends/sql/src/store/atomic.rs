//! `EventStore::append_atomic`: the streams of one append and its
//! conditions in one transaction of their own, all or nothing.
//!
//! The transaction first locks the position counter (a bump by zero), as
//! every append does before it writes: from then on no other append can
//! commit until this one ends, so the versions and scope heads it reads
//! are exact (PostgreSQL's next statement sees every commit before the
//! lock; SQLite's `BEGIN IMMEDIATE` holds the write lock throughout). The
//! conditions are then checked, each stream's version, and the events
//! inserted at the next positions.
//!
//! These appends do not go through the group committer: their unit is
//! the whole atomic append (every part and condition), which a batch of
//! the committer's isolated single-stream appends does not express. Their
//! cost is one transaction each; see the README's store model section.

use interlock::Position;
use interlock::store::{AtomicAppend, Committed, ExpectedVersion, Scope, StoreError};
use sqlx::Transaction;

use super::{DriverBatch, SqlStore};
use crate::driver::Param::{Int, Text};
use crate::driver::SqlRow;
use crate::error::is_unavailable;
use crate::rows::stored_u64;

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
    /// and the last position written (`None` when nothing was).
    async fn write_atomic(
        &self,
        tx: &mut Transaction<'static, D::Database>,
        append: AtomicAppend,
    ) -> Result<(Vec<Committed>, Option<i64>), StoreError> {
        let queries = self.queries();
        // The counter's lock first: every append takes it before writing.
        let head = D::fetch_all(tx, queries.bump_positions.clone(), &[Int(0)])
            .await
            .and_then(|rows| rows.first().ok_or(sqlx::Error::RowNotFound)?.int(0))
            .map_err(Self::error)?;
        for condition in &append.conditions {
            let actual = match &condition.scope {
                Scope::Log => head,
                Scope::Category(category) => {
                    let params = [Text(category.as_ref())];
                    self.int_in(tx, queries.last_in_category.clone(), &params).await?
                }
                Scope::Stream(stream) => {
                    let params = [Text(stream.aggregate_type()), Text(stream.aggregate_id())];
                    self.int_in(tx, queries.last_in_stream.clone(), &params).await?
                }
            };
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
        let mut committed = Vec::with_capacity(append.streams.len());
        let mut last = None;
        for part in append.streams {
            let actual = self.version_in(tx, &part.stream).await.map_err(Self::error)?;
            if let ExpectedVersion::Exact(expected) = part.expected
                && expected != actual
            {
                return Err(StoreError::Conflict {
                    stream: part.stream,
                    expected: part.expected,
                    actual,
                });
            }
            if part.events.is_empty() {
                committed.push(Committed {
                    stream: part.stream,
                    version: actual,
                    positions: Vec::new(),
                });
                continue;
            }
            let outbox = D::records_outbox(self);
            match self.insert_events(tx, &part.stream, actual, part.events, outbox).await {
                Ok((version, positions, at)) => {
                    last = Some(at);
                    committed.push(Committed {
                        stream: part.stream,
                        version,
                        positions,
                    });
                }
                // The counter is locked, so no other append wrote to the
                // stream: the database refused a value of this one (a
                // duplicate event id, a trigger).
                Err(e) if is_unavailable(&e) => return Err(Self::error(e)),
                Err(e) => return Err(super::isolated::refused(D::NAME, &part.stream, &e)),
            }
        }
        Ok((committed, last))
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
