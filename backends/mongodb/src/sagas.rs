//! Saga state (`sagas`: one document per (saga, key), `_id` the two
//! joined by U+001F, with an optimistic `version`) and deadlines
//! (`deadlines`: one document per deadline, `_id` its id). A change of
//! state and its deadlines commit in one transaction; a version that moved
//! meanwhile is a conflict, and nothing is written.

use futures_util::TryStreamExt;
use interlock::store::{
    BoxFuture, SagaChange, SagaFailure, SagaInstance, SagaStateStore, ScheduledDeadline, StoreError,
};
use interlock::{CorrelationId, Position, SchemaVersion, Timestamp, Version};
use mongodb::ClientSession;
use mongodb::bson::{Bson, Document, doc};
use ulid::Ulid;

use crate::documents::{BACKEND, int, payload_from_bson, payload_to_bson};
use crate::driver::{DUPLICATE_KEY, as_u64, back_off, code, commit, transient};
use crate::store::MongoStore;

fn key_of(saga: &str, key: &str) -> String {
    format!("{saga}\u{1f}{key}")
}

fn instance_of(saga: &str, key: &str, document: &Document) -> Result<SagaInstance, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        backend: BACKEND,
        location: format!("saga `{saga}` instance `{key}`"),
        reason,
    };
    let number = |field: &str| {
        document
            .get(field)
            .and_then(as_u64)
            .ok_or_else(|| corrupt(format!("`{field}` is missing or not a non-negative integer")))
    };
    let failure = match document.get("failure") {
        None | Some(Bson::Null) => None,
        Some(stored) => Some(
            mongodb::bson::from_bson::<SagaFailure>(stored.clone())
                .map_err(|e| corrupt(format!("the recorded failure is not readable: {e}")))?,
        ),
    };
    Ok(SagaInstance {
        state: payload_from_bson(
            document
                .get("state")
                .ok_or_else(|| corrupt("`state` is missing".into()))?,
        )
        .map_err(corrupt)?,
        version: Version(number("version")?),
        last_position: Position(number("last_position")?),
        failure,
    })
}

fn deadline_document(deadline: &ScheduledDeadline) -> Document {
    doc! {
        "_id": deadline.id.to_string(),
        "saga": &deadline.saga,
        "key": &deadline.key,
        "due": deadline.due.0,
        "name": &deadline.name,
        "schema_version": i64::from(deadline.schema_version.0),
        "payload": payload_to_bson(&deadline.payload),
        "correlation_id": deadline.correlation_id.map(|c| c.to_string()),
    }
}

fn deadline_of(document: &Document) -> Result<ScheduledDeadline, StoreError> {
    let id = document.get_str("_id").unwrap_or("?");
    let corrupt = |reason: String| StoreError::Corrupt {
        backend: BACKEND,
        location: format!("saga deadline `{id}`"),
        reason,
    };
    let text = |field: &str| {
        document
            .get_str(field)
            .map_err(|_| corrupt(format!("`{field}` is not a string")))
    };
    let correlation_id = match document.get("correlation_id") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(c)) => Some(
            c.parse::<CorrelationId>()
                .map_err(|e| corrupt(format!("correlation id `{c}`: {e}")))?,
        ),
        Some(_) => return Err(corrupt("`correlation_id` is not a string".into())),
    };
    Ok(ScheduledDeadline {
        id: Ulid::from_string(id).map_err(|e| corrupt(format!("id: {e}")))?,
        saga: text("saga")?.to_owned(),
        key: text("key")?.to_owned(),
        due: Timestamp(
            document
                .get_i64("due")
                .map_err(|_| corrupt("`due` is not an integer".into()))?,
        ),
        name: text("name")?.to_owned(),
        schema_version: SchemaVersion(
            u32::try_from(
                document
                    .get("schema_version")
                    .and_then(as_u64)
                    .ok_or_else(|| corrupt("`schema_version` is not a non-negative integer".into()))?,
            )
            .map_err(|_| corrupt("`schema_version` is out of range".into()))?,
        ),
        payload: payload_from_bson(
            document
                .get("payload")
                .ok_or_else(|| corrupt("`payload` is missing".into()))?,
        )
        .map_err(corrupt)?,
        correlation_id,
    })
}

impl MongoStore {
    /// The version the instance is at now (for a conflict's message).
    async fn saga_version(&self, saga: &str, key: &str) -> Result<Version, StoreError> {
        let found = self
            .collections()
            .sagas
            .find_one(doc! { "_id": key_of(saga, key) })
            .await
            .map_err(|e| self.error(e))?;
        Ok(found
            .as_ref()
            .and_then(|d| d.get("version"))
            .and_then(as_u64)
            .map_or(Version::INITIAL, Version))
    }

    /// One run of a change: `Ok(false)` when the version moved.
    async fn write_saga(
        &self,
        session: &mut ClientSession,
        saga: &str,
        key: &str,
        expected: Version,
        change: &SagaChange,
    ) -> Result<bool, mongodb::error::Error> {
        let c = self.collections();
        let id = key_of(saga, key);
        match change {
            SagaChange::Save {
                state,
                last_position,
                schedule,
                cancel,
                failure,
            } => {
                let failure = match failure {
                    Some(f) => mongodb::bson::to_bson(f)?,
                    None => Bson::Null,
                };
                let fields = doc! {
                    "saga": saga,
                    "key": key,
                    "state": payload_to_bson(state),
                    "version": int(expected.0 + 1),
                    "last_position": int(last_position.0),
                    "failure": failure,
                    "updated_at": Timestamp::now().0,
                };
                if expected == Version::INITIAL {
                    let mut document = fields;
                    document.insert("_id", &id);
                    match c.sagas.insert_one(document).session(&mut *session).await {
                        Ok(_) => {}
                        Err(e) if code(&e) == Some(DUPLICATE_KEY) => return Ok(false),
                        Err(e) => return Err(e),
                    }
                } else {
                    let updated = c
                        .sagas
                        .update_one(doc! { "_id": &id, "version": int(expected.0) }, doc! { "$set": fields })
                        .session(&mut *session)
                        .await?;
                    if updated.matched_count == 0 {
                        return Ok(false);
                    }
                }
                if !cancel.is_empty() {
                    let ids: Vec<String> = cancel.iter().map(ToString::to_string).collect();
                    c.deadlines
                        .delete_many(doc! { "_id": { "$in": ids } })
                        .session(&mut *session)
                        .await?;
                }
                if !schedule.is_empty() {
                    c.deadlines
                        .insert_many(schedule.iter().map(deadline_document))
                        .session(&mut *session)
                        .await?;
                }
            }
            SagaChange::Delete => {
                let deleted = c
                    .sagas
                    .delete_one(doc! { "_id": &id, "version": int(expected.0) })
                    .session(&mut *session)
                    .await?;
                if deleted.deleted_count == 0 {
                    return Ok(false);
                }
                c.deadlines
                    .delete_many(doc! { "saga": saga, "key": key })
                    .session(&mut *session)
                    .await?;
            }
        }
        Ok(true)
    }
}

impl SagaStateStore for MongoStore {
    fn load<'a>(&'a self, saga: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<SagaInstance>, StoreError>> {
        Box::pin(async move {
            let found = self
                .collections()
                .sagas
                .find_one(doc! { "_id": key_of(saga, key) })
                .await
                .map_err(|e| self.error(e))?;
            found.map(|d| instance_of(saga, key, &d)).transpose()
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
            let mut session = self.inner.client.start_session().await.map_err(|e| self.error(e))?;
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                session.start_transaction().await.map_err(|e| self.error(e))?;
                let outcome = match self.write_saga(&mut session, saga, key, expected, &change).await {
                    Ok(true) => commit(&mut session).await.map(|()| true),
                    Ok(false) => {
                        let _ = session.abort_transaction().await;
                        Ok(false)
                    }
                    Err(e) => {
                        let _ = session.abort_transaction().await;
                        Err(e)
                    }
                };
                match outcome {
                    Ok(true) => {
                        return Ok(match change {
                            SagaChange::Save { .. } => expected.next(),
                            SagaChange::Delete => Version::INITIAL,
                        });
                    }
                    Ok(false) => {
                        let actual = self.saga_version(saga, key).await?;
                        return Err(StoreError::saga_conflict(saga, key, expected, actual));
                    }
                    // A write conflict: the other writer's change may have
                    // moved the version; the next run sees it.
                    Err(e) if transient(&e) && code(&e) != Some(DUPLICATE_KEY) && attempt < 20 => {
                        back_off(attempt).await
                    }
                    Err(e) => return Err(self.error(e)),
                }
            }
        })
    }

    fn due<'a>(
        &'a self,
        saga: &'a str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ScheduledDeadline>, StoreError>> {
        Box::pin(async move {
            let documents: Vec<Document> = self
                .collections()
                .deadlines
                .find(doc! { "saga": saga, "due": { "$lte": now.0 } })
                .sort(doc! { "due": 1, "_id": 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .await
                .map_err(|e| self.error(e))?
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            documents.iter().map(deadline_of).collect()
        })
    }

    fn is_scheduled<'a>(&'a self, saga: &'a str, id: Ulid) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let found = self
                .collections()
                .deadlines
                .find_one(doc! { "_id": id.to_string(), "saga": saga })
                .await
                .map_err(|e| self.error(e))?;
            Ok(found.is_some())
        })
    }
}
