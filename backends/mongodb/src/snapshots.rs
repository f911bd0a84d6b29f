//! Snapshots: one document per stream in `snapshots`, keyed like the
//! stream, replaced only by a snapshot of a later (or the same) version.

use interlock::store::{BoxFuture, Snapshot, SnapshotStore, StoreError};
use interlock::{StreamId, Timestamp, Version};
use mongodb::bson::doc;

use crate::documents::{BACKEND, int, payload_from_bson, payload_to_bson, stream_key};
use crate::driver::{DUPLICATE_KEY, as_u64, code};
use crate::store::MongoStore;

impl SnapshotStore for MongoStore {
    fn load<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        Box::pin(async move {
            let Some(found) = self
                .collections()
                .snapshots
                .find_one(doc! { "_id": stream_key(stream) })
                .await
                .map_err(|e| self.error(e))?
            else {
                return Ok(None);
            };
            let corrupt = |reason: String| StoreError::Corrupt {
                backend: BACKEND,
                location: format!("the snapshot of {stream}"),
                reason,
            };
            let number = |key: &str| {
                found
                    .get(key)
                    .and_then(as_u64)
                    .ok_or_else(|| corrupt(format!("`{key}` is missing or not a non-negative integer")))
            };
            let payload = payload_from_bson(
                found
                    .get("payload")
                    .ok_or_else(|| corrupt("`payload` is missing".into()))?,
            )
            .map_err(corrupt)?;
            Ok(Some(Snapshot {
                version: Version(number("version")?),
                state_version: u32::try_from(number("state_version")?)
                    .map_err(|_| corrupt("`state_version` is out of range".into()))?,
                payload,
                taken_at: Timestamp(i64::try_from(number("taken_at")?).unwrap_or(i64::MAX)),
            }))
        })
    }

    fn save<'a>(&'a self, stream: &'a StreamId, snapshot: Snapshot) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let saved = self
                .collections()
                .snapshots
                .update_one(
                    doc! { "_id": stream_key(stream), "version": { "$lte": int(snapshot.version.0) } },
                    doc! { "$set": {
                        "version": int(snapshot.version.0),
                        "state_version": i64::from(snapshot.state_version),
                        "payload": payload_to_bson(&snapshot.payload),
                        "taken_at": snapshot.taken_at.0,
                    } },
                )
                .upsert(true)
                .await;
            match saved {
                Ok(_) => Ok(()),
                // A later snapshot is stored: the upsert's insert met it.
                Err(e) if code(&e) == Some(DUPLICATE_KEY) => Ok(()),
                Err(e) => Err(self.error(e)),
            }
        })
    }

    fn delete<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.collections()
                .snapshots
                .delete_one(doc! { "_id": stream_key(stream) })
                .await
                .map_err(|e| self.error(e))?;
            Ok(())
        })
    }
}
