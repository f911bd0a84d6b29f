//! The transactional outbox: with `MongoConfig::outbox(true)`, each
//! append's transaction also records the positions of its events in
//! `outbox`; a relay publishes them in order and deletes them once the
//! transport took them.

use futures_util::TryStreamExt;
use interlock::Position;
use interlock::store::{BoxFuture, Outbox, RecordedEvent, StoreError};
use mongodb::bson::{Document, doc};

use crate::documents::{event_of, int};
use crate::driver::as_u64;
use crate::store::MongoStore;

impl Outbox for MongoStore {
    fn pending(&self, limit: usize) -> BoxFuture<'_, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            let c = self.collections();
            let pending: Vec<Document> = c
                .outbox
                .find(doc! {})
                .sort(doc! { "_id": 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .await
                .map_err(|e| self.error(e))?
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            let positions: Vec<i64> = pending
                .iter()
                .filter_map(|d| d.get("_id").and_then(as_u64))
                .map(int)
                .collect();
            if positions.is_empty() {
                return Ok(Vec::new());
            }
            let events: Vec<Document> = c
                .events
                .find(doc! { "_id": { "$in": positions } })
                .sort(doc! { "_id": 1 })
                .await
                .map_err(|e| self.error(e))?
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            events.iter().map(event_of).collect()
        })
    }

    fn mark_published<'a>(&'a self, positions: &'a [Position]) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let positions: Vec<i64> = positions.iter().map(|p| int(p.0)).collect();
            self.collections()
                .outbox
                .delete_many(doc! { "_id": { "$in": positions } })
                .await
                .map_err(|e| self.error(e))?;
            Ok(())
        })
    }
}
