//! `CheckpointStore`, and checkpoints saved in a caller's transaction (a
//! SQL read model and its checkpoint committed together).

use std::any::Any;

use std::time::Duration;

use interlock::store::{
    BoxFuture, CheckpointStore, Lease, LeaseClaim, ReadModelTransaction, ReadModelTransactions, StoreError,
};
use interlock::{Position, Timestamp};
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

    fn advance<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let params = [Text(subscriber), Int(i64_of(position.0))];
            self.execute(self.queries().checkpoint_advance.clone(), &params).await?;
            Ok(())
        })
    }

    fn claim_lease<'a>(
        &'a self,
        subscriber: &'a str,
        owner: &'a str,
        now: Timestamp,
        duration: Duration,
    ) -> BoxFuture<'a, Result<LeaseClaim, StoreError>> {
        Box::pin(async move {
            let until = now.plus(duration).0;
            let params = [Text(subscriber), Text(owner), Int(now.0), Int(until)];
            if let Some(row) = self.fetch_optional(self.queries().lease_claim.clone(), &params).await? {
                return Ok(LeaseClaim::Held(self.lease_of(subscriber, &row, 0)?));
            }
            // Held by another, unexpired: who, until when.
            match self
                .fetch_optional(self.queries().lease_load.clone(), &[Text(subscriber)])
                .await?
            {
                Some(row) => Ok(LeaseClaim::Taken(self.lease_of(subscriber, &row, 0)?)),
                None => Err(StoreError::Backend {
                    backend: D::NAME,
                    source: format!("the lease of `{subscriber}` was neither claimed nor found").into(),
                }),
            }
        })
    }

    fn release_lease<'a>(&'a self, subscriber: &'a str, token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let params = [Text(subscriber), Int(i64_of(token))];
            self.execute(self.queries().lease_release.clone(), &params).await?;
            Ok(())
        })
    }

    fn save_fenced<'a>(
        &'a self,
        subscriber: &'a str,
        position: Position,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let params = [Text(subscriber), Int(i64_of(position.0)), Int(i64_of(token))];
            let saved = self
                .execute(self.queries().checkpoint_save_fenced.clone(), &params)
                .await?;
            if saved == 0 {
                return Err(StoreError::LeaseLost {
                    subscriber: subscriber.to_owned(),
                    token,
                });
            }
            Ok(())
        })
    }

    fn leases(&self) -> BoxFuture<'_, Result<Vec<Lease>, StoreError>> {
        Box::pin(async move {
            let rows = self.fetch_all(self.queries().lease_list.clone(), &[]).await?;
            rows.iter()
                .map(|row| {
                    let subscriber = row.text(0).map_err(Self::error)?;
                    self.lease_of(&subscriber, row, 1)
                })
                .collect()
        })
    }
}

impl<D: Driver> SqlStore<D> {
    /// The lease of `subscriber` from the row's owner, token and expiry,
    /// starting at column `first`.
    fn lease_of(&self, subscriber: &str, row: &impl SqlRow, first: usize) -> Result<Lease, StoreError> {
        let owner = row.text(first).map_err(Self::error)?;
        let token = row.int(first + 1).map_err(Self::error)?;
        let expires_at = row.int(first + 2).map_err(Self::error)?;
        let location = || format!("lease of `{subscriber}`");
        Ok(Lease {
            subscriber: subscriber.to_owned(),
            owner,
            token: stored(D::NAME, location, "token", token)?,
            expires_at: Timestamp(expires_at),
        })
    }

    /// [`SqlStore::save_checkpoint_in`] fenced by the lease: saved only
    /// while `token` holds it, so a read model's rows written by an owner
    /// that lost its lease never commit.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseLost`] when another instance holds the lease.
    pub async fn save_checkpoint_fenced_in(
        &self,
        tx: &mut Transaction<'static, D::Database>,
        subscriber: &str,
        position: Position,
        token: u64,
    ) -> Result<(), StoreError> {
        let params = [Text(subscriber), Int(i64_of(position.0)), Int(i64_of(token))];
        let saved = D::execute(&mut **tx, self.queries().checkpoint_advance_fenced.clone(), &params)
            .await
            .map_err(Self::error)?;
        // Not moved (already at or past `position`) also affects no row:
        // tell the two apart by the lease.
        if saved == 0 {
            let not_moved = StoreError::AlreadyApplied {
                subscriber: subscriber.to_owned(),
                position,
            };
            let rows = D::fetch_all(&mut **tx, self.queries().lease_load.clone(), &[Text(subscriber)])
                .await
                .map_err(Self::error)?;
            let holds = match rows.first() {
                Some(row) => row.int(1).map_err(Self::error)? == i64_of(token),
                None => false,
            };
            if !holds {
                return Err(StoreError::LeaseLost {
                    subscriber: subscriber.to_owned(),
                    token,
                });
            }
            return Err(not_moved);
        }
        Ok(())
    }
}

impl<D: Driver> SqlStore<D> {
    /// Saves a checkpoint inside the caller's transaction, so a SQL read
    /// model and its checkpoint commit together (exactly-once projections
    /// into the same database). It only moves forward.
    ///
    /// # Errors
    ///
    /// [`StoreError::AlreadyApplied`] when the stored checkpoint is at or
    /// past `position` (nothing saved; the transaction stays usable: commit
    /// it anyway for an event knowingly applied again, a replayed dead
    /// letter, else roll back); a database failure.
    pub async fn save_checkpoint_in(
        &self,
        tx: &mut Transaction<'static, D::Database>,
        subscriber: &str,
        position: Position,
    ) -> Result<(), StoreError> {
        let params = [Text(subscriber), Int(i64_of(position.0))];
        let saved = D::execute(&mut **tx, self.queries().checkpoint_advance.clone(), &params)
            .await
            .map_err(Self::error)?;
        if saved == 0 {
            return Err(StoreError::AlreadyApplied {
                subscriber: subscriber.to_owned(),
                position,
            });
        }
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
        token: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match token {
                Some(token) => {
                    self.store
                        .save_checkpoint_fenced_in(&mut self.tx, subscriber, position, token)
                        .await
                }
                None => self.store.save_checkpoint_in(&mut self.tx, subscriber, position).await,
            }
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move { self.tx.commit().await.map_err(SqlStore::<D>::error) })
    }
}
