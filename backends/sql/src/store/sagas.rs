//! `SagaStateStore`: saga state per (saga, key) with a version, and the
//! deadlines scheduled with it, changed together in one transaction.

use bytes::Bytes;
use interlock::store::{
    BoxFuture, SagaChange, SagaFailure, SagaInstance, SagaStateStore, ScheduledDeadline, StoreError,
};
use interlock::{CorrelationId, Position, SchemaVersion, Timestamp, Ulid, Version};

use super::SqlStore;
use crate::driver::Param::{Bytes as Blob, Int, OptText, Text};
use crate::driver::{Driver, SqlRow};
use crate::rows::{i64_of, i64_of_usize, stored};

impl<D: Driver> SagaStateStore for SqlStore<D> {
    fn load<'a>(&'a self, saga: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<SagaInstance>, StoreError>> {
        Box::pin(async move {
            let row = self
                .fetch_optional(self.queries().saga_load.clone(), &[Text(saga), Text(key)])
                .await?;
            let Some(row) = row else { return Ok(None) };
            let version = row.int(1).map_err(Self::error)?;
            let last_position = row.int(2).map_err(Self::error)?;
            let location = || format!("saga `{saga}` instance `{key}`");
            let failure = match row.opt_text(3).map_err(Self::error)? {
                None => None,
                Some(json) => Some(
                    serde_json::from_str::<SagaFailure>(&json).map_err(|e| StoreError::Corrupt {
                        backend: D::NAME,
                        location: location(),
                        reason: format!("the recorded failure is not readable: {e}"),
                    })?,
                ),
            };
            Ok(Some(SagaInstance {
                state: Bytes::from(row.bytes(0).map_err(Self::error)?),
                version: Version(stored(D::NAME, location, "version", version)?),
                last_position: Position(stored(D::NAME, location, "last position", last_position)?),
                failure,
            }))
        })
    }

    fn apply<'a>(
        &'a self,
        saga: &'a str,
        key: &'a str,
        expected: Version,
        change: SagaChange,
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        Box::pin(async move {
            let q = self.queries();
            let mut tx = self.begin_write().await.map_err(Self::error)?;
            let new_version =
                match change {
                    SagaChange::Save {
                        state,
                        last_position,
                        schedule,
                        cancel,
                        failure,
                    } => {
                        let failure = failure.map(|f| serde_json::to_string(&f)).transpose().map_err(|e| {
                            StoreError::Backend {
                                backend: D::NAME,
                                source: Box::new(e),
                            }
                        })?;
                        let changed = if expected == Version::INITIAL {
                            let params = [
                                Text(saga),
                                Text(key),
                                Blob(state.as_ref()),
                                Int(i64_of(last_position.0)),
                                OptText(failure.as_deref()),
                            ];
                            D::execute(&mut tx, q.saga_create.clone(), &params).await
                        } else {
                            let params = [
                                Text(saga),
                                Text(key),
                                Blob(state.as_ref()),
                                Int(i64_of(last_position.0)),
                                Int(i64_of(expected.0)),
                                OptText(failure.as_deref()),
                            ];
                            D::execute(&mut tx, q.saga_update.clone(), &params).await
                        }
                        .map_err(Self::error)?;
                        if changed != 1 {
                            drop(tx);
                            return Err(self.saga_conflict(saga, key, expected).await);
                        }
                        for id in cancel {
                            let id = id.to_string();
                            D::execute(&mut tx, q.deadline_cancel.clone(), &[Text(&id)])
                                .await
                                .map_err(Self::error)?;
                        }
                        for d in schedule {
                            let id = d.id.to_string();
                            let correlation = d.correlation_id.map(|c| c.to_string());
                            let params = [
                                Text(&id),
                                Text(&d.saga),
                                Text(&d.key),
                                Int(d.due.0),
                                Text(&d.name),
                                Int(i64::from(d.schema_version.0)),
                                Blob(d.payload.as_ref()),
                                OptText(correlation.as_deref()),
                            ];
                            D::execute(&mut tx, q.deadline_insert.clone(), &params)
                                .await
                                .map_err(Self::error)?;
                        }
                        expected.next()
                    }
                    SagaChange::Delete => {
                        if expected != Version::INITIAL {
                            let params = [Text(saga), Text(key), Int(i64_of(expected.0))];
                            let deleted = D::execute(&mut tx, q.saga_delete.clone(), &params)
                                .await
                                .map_err(Self::error)?;
                            if deleted != 1 {
                                drop(tx);
                                return Err(self.saga_conflict(saga, key, expected).await);
                            }
                        }
                        D::execute(&mut tx, q.deadline_delete_key.clone(), &[Text(saga), Text(key)])
                            .await
                            .map_err(Self::error)?;
                        Version::INITIAL
                    }
                };
            tx.commit().await.map_err(Self::error)?;
            Ok(new_version)
        })
    }

    fn due<'a>(
        &'a self,
        saga: &'a str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ScheduledDeadline>, StoreError>> {
        Box::pin(async move {
            let params = [Text(saga), Int(now.0), Int(i64_of_usize(limit))];
            let rows = self.fetch_all(self.queries().deadline_due.clone(), &params).await?;
            rows.iter().map(deadline::<D>).collect()
        })
    }

    fn is_scheduled<'a>(&'a self, saga: &'a str, id: Ulid) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let id = id.to_string();
            let count = self
                .fetch_int(self.queries().deadline_exists.clone(), &[Text(&id), Text(saga)])
                .await?;
            Ok(count > 0)
        })
    }
}

impl<D: Driver> SqlStore<D> {
    /// The conflict of a saga change that found another version (read
    /// after the change's transaction ended).
    async fn saga_conflict(&self, saga: &str, key: &str, expected: Version) -> StoreError {
        match SagaStateStore::load(self, saga, key).await {
            Ok(instance) => {
                let actual = instance.map_or(Version::INITIAL, |i| i.version);
                StoreError::saga_conflict(saga, key, expected, actual)
            }
            Err(e) => e,
        }
    }
}

/// A row of `deadline_due`.
fn deadline<D: Driver>(row: &impl SqlRow) -> Result<ScheduledDeadline, StoreError> {
    let err = SqlStore::<D>::error;
    let id = row.text(0).map_err(err)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        backend: D::NAME,
        location: format!("deadline {id}"),
        reason,
    };
    let correlation = row.opt_text(7).map_err(err)?;
    Ok(ScheduledDeadline {
        id: id.parse().map_err(|e| corrupt(format!("id: {e}")))?,
        saga: row.text(1).map_err(err)?,
        key: row.text(2).map_err(err)?,
        due: Timestamp(row.int(3).map_err(err)?),
        name: row.text(4).map_err(err)?,
        schema_version: SchemaVersion(u32::try_from(row.int(5).map_err(err)?).unwrap_or(0)),
        payload: Bytes::from(row.bytes(6).map_err(err)?),
        correlation_id: correlation
            .map(|c| c.parse::<CorrelationId>())
            .transpose()
            .map_err(|e| corrupt(format!("correlation id: {e}")))?,
    })
}
