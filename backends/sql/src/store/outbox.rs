//! `Outbox`: the positions appended but not yet published (written by the
//! drivers' batch appends with the `outbox` setting).

use interlock::Position;
use interlock::store::{BoxFuture, Outbox, RecordedEvent, StoreError};

use super::SqlStore;
use crate::driver::Driver;
use crate::driver::Param::{self, Int};
use crate::rows::{i64_of, i64_of_usize};

/// Positions deleted per statement by `mark_published`.
const MARK_CHUNK: usize = 500;

impl<D: Driver> Outbox for SqlStore<D> {
    fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            let params = [Int(i64_of_usize(limit))];
            let rows = self.fetch_all(self.queries().outbox_pending.clone(), &params).await?;
            crate::rows::events(D::NAME, &rows)
        })
    }

    fn mark_published<'a>(&'a self, positions: &'a [Position]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            for chunk in positions.chunks(MARK_CHUNK) {
                let params: Vec<Param<'_>> = chunk.iter().map(|p| Int(i64_of(p.0))).collect();
                self.execute(self.queries().outbox_mark(chunk.len()), &params).await?;
            }
            Ok(())
        })
    }
}
