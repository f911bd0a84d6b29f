//! Idempotency records: one document per command id in `idempotency`,
//! `state` `"claimed"` (with `until`, the claim's lease) or `"done"` (with
//! the recorded outcome and `expires_at`). A TTL index on `expires` (the
//! expiry as a date, set on done records only) lets the server delete
//! expired outcomes by itself; `purge_expired` does it at once.

use std::time::Duration;

use bytes::Bytes;
use interlock::store::{BoxFuture, Claim, IdempotencyRecord, IdempotencyStore, StoreError};
use interlock::{CommandId, StreamId, TenantId, Timestamp, Version};
use mongodb::bson::{Binary, Bson, Document, doc, spec::BinarySubtype};

use crate::documents::{BACKEND, int};
use crate::driver::{DUPLICATE_KEY, as_u64, code};
use crate::store::MongoStore;

fn record_of(command_id: CommandId, document: &Document) -> Result<IdempotencyRecord, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        backend: BACKEND,
        location: format!("the idempotency record of command {command_id}"),
        reason: reason.into(),
    };
    let text = |key: &str| {
        document
            .get_str(key)
            .map_err(|_| corrupt(&format!("`{key}` is not a string")))
    };
    let tenant = match text("tenant")? {
        "" => None,
        t => Some(TenantId::new(t).map_err(|e| corrupt(&e.to_string()))?),
    };
    let fingerprint = match document.get("fingerprint") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(hex)) => Some(interlock::CommandFingerprint(
            u64::from_str_radix(hex, 16).map_err(|_| corrupt(&format!("fingerprint `{hex}` is not hex")))?,
        )),
        Some(_) => return Err(corrupt("`fingerprint` is not a string")),
    };
    let output = match document.get("output") {
        Some(Bson::Binary(b)) => Bytes::from(b.bytes.clone()),
        _ => return Err(corrupt("`output` is not binary")),
    };
    let time = |key: &str| {
        document
            .get_i64(key)
            .map(Timestamp)
            .map_err(|_| corrupt(&format!("`{key}` is not an integer")))
    };
    Ok(IdempotencyRecord {
        command_id,
        stream: StreamId::new(text("aggregate_type")?, text("aggregate_id")?).in_tenant(tenant),
        version: Version(
            document
                .get("version")
                .and_then(as_u64)
                .ok_or_else(|| corrupt("`version` is not a non-negative integer"))?,
        ),
        output,
        recorded_at: time("recorded_at")?,
        expires_at: time("expires_at")?,
        fingerprint,
    })
}

impl IdempotencyStore for MongoStore {
    fn claim(
        &self,
        command_id: CommandId,
        now: Timestamp,
        lease: Duration,
    ) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(async move {
            let records = &self.collections().idempotency;
            let id = command_id.to_string();
            let until = now.plus(lease).0;
            for _ in 0..5 {
                match records
                    .insert_one(doc! { "_id": &id, "state": "claimed", "until": until })
                    .await
                {
                    Ok(_) => return Ok(Claim::Claimed),
                    Err(e) if code(&e) == Some(DUPLICATE_KEY) => {}
                    Err(e) => return Err(self.error(e)),
                }
                let Some(found) = records.find_one(doc! { "_id": &id }).await.map_err(|e| self.error(e))? else {
                    continue; // released meanwhile: claim again
                };
                let done = found.get_str("state") == Ok("done");
                if done {
                    let record = record_of(command_id, &found)?;
                    if record.expires_at > now {
                        return Ok(Claim::Completed(record));
                    }
                } else if found.get_i64("until").is_ok_and(|u| u > now.0) {
                    return Ok(Claim::InProgress);
                }
                // Expired: taken over by exactly one claimer, the one whose
                // update still sees what was read.
                let mut unchanged = doc! { "_id": &id, "state": if done { "done" } else { "claimed" } };
                if done {
                    unchanged.insert("expires_at", doc! { "$lte": now.0 });
                } else {
                    unchanged.insert("until", doc! { "$lte": now.0 });
                }
                let taken = records
                    .replace_one(unchanged, doc! { "_id": &id, "state": "claimed", "until": until })
                    .await
                    .map_err(|e| self.error(e))?;
                if taken.matched_count == 1 {
                    return Ok(if done { Claim::Claimed } else { Claim::Reclaimed });
                }
            }
            Err(StoreError::Backend {
                backend: BACKEND,
                source: format!("the idempotency record of {command_id} kept changing during a claim").into(),
            })
        })
    }

    fn complete(&self, record: IdempotencyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let stream = &record.stream;
            let document = doc! {
                "_id": record.command_id.to_string(),
                "state": "done",
                "tenant": stream.tenant().map_or("", TenantId::as_str),
                "aggregate_type": stream.aggregate_type(),
                "aggregate_id": stream.aggregate_id(),
                "version": int(record.version.0),
                "output": Binary { subtype: BinarySubtype::Generic, bytes: record.output.to_vec() },
                "recorded_at": record.recorded_at.0,
                "expires_at": record.expires_at.0,
                "expires": mongodb::bson::DateTime::from_millis(record.expires_at.0 / 1000),
                "fingerprint": record.fingerprint.map(|f| f.to_string()),
            };
            self.collections()
                .idempotency
                .replace_one(doc! { "_id": record.command_id.to_string() }, document)
                .upsert(true)
                .await
                .map_err(|e| self.error(e))?;
            Ok(())
        })
    }

    fn release(&self, command_id: CommandId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.collections()
                .idempotency
                .delete_one(doc! { "_id": command_id.to_string(), "state": "claimed" })
                .await
                .map_err(|e| self.error(e))?;
            Ok(())
        })
    }

    fn purge_expired(&self, now: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let deleted = self
                .collections()
                .idempotency
                .delete_many(doc! { "state": "done", "expires_at": { "$lte": now.0 } })
                .await
                .map_err(|e| self.error(e))?;
            Ok(deleted.deleted_count)
        })
    }
}
