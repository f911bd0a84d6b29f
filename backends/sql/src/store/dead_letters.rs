//! `DeadLetterStore`: events parked per subscriber, with the error.

use interlock::store::{BoxFuture, DeadLetter, DeadLetterStore, StoreError};
use interlock::{EventId, Timestamp};

use super::SqlStore;
use crate::driver::Param::{Bytes as Blob, Int, Text};
use crate::driver::{Driver, SqlRow};
use crate::queries::tenant_of;
use crate::rows::{EventRow, i64_of};

impl<D: Driver> DeadLetterStore for SqlStore<D> {
    fn park(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let e = &letter.event;
            let metadata = serde_json::to_string(&e.metadata).map_err(|err| StoreError::Backend {
                backend: D::NAME,
                source: Box::new(err),
            })?;
            let event_id = e.event_id.to_string();
            let params = [
                Text(&letter.subscriber),
                Text(&event_id),
                Int(i64_of(e.position.0)),
                Text(e.stream.aggregate_type()),
                Text(e.stream.aggregate_id()),
                Int(i64_of(e.version.0)),
                Text(e.name.as_ref()),
                Int(i64::from(e.schema_version.0)),
                Blob(e.payload.as_ref()),
                Text(&metadata),
                Text(&letter.error),
                Int(i64::from(letter.attempts)),
                Int(letter.parked_at.0),
                Text(tenant_of(&e.stream)),
            ];
            self.execute(self.queries().dlq_park.clone(), &params).await?;
            Ok(())
        })
    }

    fn list<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let rows = self
                .fetch_all(self.queries().dlq_list.clone(), &[Text(subscriber)])
                .await?;
            let mut letters = Vec::with_capacity(rows.len());
            for row in &rows {
                let event = EventRow::read(row).map_err(Self::error)?.into_event(D::NAME)?;
                let error = row.text(11).map_err(Self::error)?;
                let attempts = row.int(12).map_err(Self::error)?;
                let parked_at = row.int(13).map_err(Self::error)?;
                letters.push(DeadLetter {
                    subscriber: subscriber.to_owned(),
                    event,
                    error,
                    attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                    parked_at: Timestamp(parked_at),
                });
            }
            Ok(letters)
        })
    }

    fn remove<'a>(&'a self, subscriber: &'a str, event: EventId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let event_id = event.to_string();
            let params = [Text(subscriber), Text(&event_id)];
            self.execute(self.queries().dlq_remove.clone(), &params).await?;
            Ok(())
        })
    }
}
