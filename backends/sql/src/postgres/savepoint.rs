//! PostgreSQL's fallback batch append: the store's isolated path (one
//! transaction, one savepoint per append), then the notification of
//! listeners, for the batches the one statement cannot take (two appends
//! to one stream, a race lost to another process, a statement the
//! database refused).

use super::{PostgresDriver, PostgresStore};
use crate::append::{BatchFailure, Outcomes};
use crate::driver::Driver;
use crate::store::DriverBatch;
use interlock::store::{AppendRequest, Committed, StoreError};

/// Commits a batch in one transaction, each append in a savepoint of its
/// own: an append whose expected version is wrong, that loses a race to
/// another process or that the database refuses gets its own error, and
/// the others still commit. One outcome per request, in order.
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
    let written = store
        .append_each(&mut tx, batch, store.config().outbox, outcomes)
        .await?;
    if let Some(last) = written.last_position {
        PostgresDriver::after_write(store, &mut tx, last)
            .await
            .map_err(fail("cannot notify listeners"))?;
    }
    tx.commit().await.map_err(fail("the commit failed"))?;
    if let Some(head) = written.decide(outcomes) {
        store.advance_head(head);
    }
    Ok(())
}
