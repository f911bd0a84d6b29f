//! `CheckpointStore`, and checkpoints saved in a caller's transaction (a
//! SQL read model and its checkpoint committed together).

use std::any::Any;

use interlock::Position;
use interlock::store::{BoxFuture, CheckpointStore, ReadModelTransaction, ReadModelTransactions, StoreError};
use sqlx::Transaction;

use super::SqlStore;
use crate::driver::Param::{Int, Text};
use crate::driver::{Driver, SqlRow};
use crate::rows::{i64_of, stored};

impl<D: Driver> CheckpointStore for SqlStore<D> {
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>> {
        Box::pin(async move {
            let row = self
                .fetch_optional(self.queries().checkpoint_load.clone(), &[Text(subscriber)])
                .await?;
            let Some(position) = row.map(|row| row.int(0)).transpose().map_err(Self::error)? else {
                return Ok(None);
            };
            let location = || format!("checkpoint of `{subscriber}`");
            Ok(Some(Position(stored(D::NAME, location, "position", position)?)))
        })
    }

    fn save<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let params = [Text(subscriber), Int(i64_of(position.0))];
            self.execute(self.queries().checkpoint_save.clone(), &params).await?;
            Ok(())
        })
    }
}

impl<D: Driver> SqlStore<D> {
    /// Saves a checkpoint inside the caller's transaction, so a SQL read
    /// model and its checkpoint commit together (exactly-once projections
    /// into the same database). It only moves forward: an event handled
    /// again out of order (a replayed dead letter) leaves it where it is.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn save_checkpoint_in(
        &self,
        tx: &mut Transaction<'static, D::Database>,
        subscriber: &str,
        position: Position,
    ) -> Result<(), StoreError> {
        let params = [Text(subscriber), Int(i64_of(position.0))];
        D::execute(&mut **tx, self.queries().checkpoint_advance.clone(), &params)
            .await
            .map_err(Self::error)?;
        Ok(())
    }

    /// Starts a write transaction on the store's pool, for a SQL read model
    /// updated together with its checkpoint.
    ///
    /// # Errors
    ///
    /// When the database fails.
    pub async fn begin(&self) -> Result<Transaction<'static, D::Database>, StoreError> {
        self.begin_write().await.map_err(Self::error)
    }
}

/// A transaction of the store in which a projection writes its rows and
/// its checkpoint ([`ReadModelTransactions`]).
struct ReadModelTx<D: Driver> {
    store: SqlStore<D>,
    tx: Transaction<'static, D::Database>,
}

impl<D: Driver> ReadModelTransactions for SqlStore<D>
where
    for<'c> Transaction<'c, D::Database>: Send,
{
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn ReadModelTransaction>, StoreError>> {
        Box::pin(async move {
            let tx = self.begin_write().await.map_err(Self::error)?;
            Ok(Box::new(ReadModelTx {
                store: self.clone(),
                tx,
            }) as Box<dyn ReadModelTransaction>)
        })
    }
}

impl<D: Driver> ReadModelTransaction for ReadModelTx<D>
where
    for<'c> Transaction<'c, D::Database>: Send,
{
    fn inner(&mut self) -> &mut (dyn Any + Send) {
        &mut self.tx
    }

    fn save_checkpoint<'a>(
        &'a mut self,
        subscriber: &'a str,
        position: Position,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.store.save_checkpoint_in(&mut self.tx, subscriber, position).await })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move { self.tx.commit().await.map_err(SqlStore::<D>::error) })
    }
}
