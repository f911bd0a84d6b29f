//! Dead letters: one document per (subscriber, event) in `dead_letters`,
//! holding the event as it is stored in `events`.

use futures_util::TryStreamExt;
use interlock::EventId;
use interlock::Timestamp;
use interlock::store::{BoxFuture, DeadLetter, DeadLetterStore, StoreError};
use mongodb::bson::{Document, doc};

use crate::documents::{BACKEND, document_of, event_of, int};
use crate::store::MongoStore;

fn key(subscriber: &str, event: EventId) -> String {
    format!("{subscriber}\u{1f}{event}")
}

fn letter_of(document: &Document) -> Result<DeadLetter, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        backend: BACKEND,
        location: format!("dead letter `{}`", document.get_str("_id").unwrap_or("?")),
        reason: reason.into(),
    };
    Ok(DeadLetter {
        subscriber: document
            .get_str("subscriber")
            .map_err(|_| corrupt("`subscriber` is not a string"))?
            .to_owned(),
        event: event_of(
            document
                .get_document("event")
                .map_err(|_| corrupt("`event` is not a document"))?,
        )?,
        error: document
            .get_str("error")
            .map_err(|_| corrupt("`error` is not a string"))?
            .to_owned(),
        attempts: u32::try_from(
            document
                .get_i64("attempts")
                .map_err(|_| corrupt("`attempts` is not an integer"))?,
        )
        .map_err(|_| corrupt("`attempts` is out of range"))?,
        parked_at: Timestamp(
            document
                .get_i64("parked_at")
                .map_err(|_| corrupt("`parked_at` is not an integer"))?,
        ),
    })
}

impl DeadLetterStore for MongoStore {
    fn park(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let id = key(&letter.subscriber, letter.event.event_id);
            let document = doc! {
                "_id": &id,
                "subscriber": &letter.subscriber,
                "position": int(letter.event.position.0),
                "event": document_of(&letter.event),
                "error": &letter.error,
                "attempts": i64::from(letter.attempts),
                "parked_at": letter.parked_at.0,
            };
            self.collections()
                .dead_letters
                .replace_one(doc! { "_id": &id }, document)
                .upsert(true)
                .await
                .map_err(|e| self.error(e))?;
            Ok(())
        })
    }

    fn list<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Vec<DeadLetter>, StoreError>> {
        Box::pin(async move {
            let documents: Vec<Document> = self
                .collections()
                .dead_letters
                .find(doc! { "subscriber": subscriber })
                .sort(doc! { "position": 1 })
                .await
                .map_err(|e| self.error(e))?
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            documents.iter().map(letter_of).collect()
        })
    }

    fn remove<'a>(&'a self, subscriber: &'a str, event: EventId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.collections()
                .dead_letters
                .delete_one(doc! { "_id": key(subscriber, event) })
                .await
                .map_err(|e| self.error(e))?;
            Ok(())
        })
    }
}
