//! `SnapshotStore`: the latest snapshot per stream.

use bytes::Bytes;
use interlock::store::{BoxFuture, Snapshot, SnapshotStore, StoreError};
use interlock::{StreamId, Timestamp, Version};

use super::SqlStore;
use crate::driver::Param::{Bytes as Blob, Int, Text};
use crate::driver::{Driver, SqlRow};
use crate::queries::tenant_of;
use crate::rows::{i64_of, stored};

impl<D: Driver> SnapshotStore for SqlStore<D> {
    fn load<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        Box::pin(async move {
            let params = [
                Text(stream.aggregate_type()),
                Text(stream.aggregate_id()),
                Text(tenant_of(stream)),
            ];
            let row = self
                .fetch_optional(self.queries().snapshot_load.clone(), &params)
                .await?;
            let Some(row) = row else { return Ok(None) };
            let version = row.int(0).map_err(Self::error)?;
            let state_version = row.int(1).map_err(Self::error)?;
            let location = || format!("snapshot of {stream}");
            Ok(Some(Snapshot {
                version: Version(stored(D::NAME, location, "version", version)?),
                state_version: stored(D::NAME, location, "state version", state_version)?,
                payload: Bytes::from(row.bytes(2).map_err(Self::error)?),
                taken_at: Timestamp(row.int(3).map_err(Self::error)?),
            }))
        })
    }

    fn save<'a>(&'a self, stream: &'a StreamId, snapshot: Snapshot) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut tx = self.begin_write().await.map_err(Self::error)?;
            let params = [
                Text(stream.aggregate_type()),
                Text(stream.aggregate_id()),
                Int(i64_of(snapshot.version.0)),
                Int(i64::from(snapshot.state_version)),
                Blob(snapshot.payload.as_ref()),
                Int(snapshot.taken_at.0),
                Text(tenant_of(stream)),
            ];
            D::execute(&mut tx, self.queries().snapshot_save.clone(), &params)
                .await
                .map_err(Self::error)?;
            tx.commit().await.map_err(Self::error)
        })
    }

    fn delete<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let params = [
                Text(stream.aggregate_type()),
                Text(stream.aggregate_id()),
                Text(tenant_of(stream)),
            ];
            self.execute(self.queries().snapshot_delete.clone(), &params).await?;
            Ok(())
        })
    }
}
