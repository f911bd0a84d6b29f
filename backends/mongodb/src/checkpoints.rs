//! Checkpoints (`checkpoints`: `{_id: subscriber, position}`) and their
//! ownership leases (`leases`: `{_id: subscriber, owner, token,
//! expires_at}`, microseconds since the epoch). Every lease change is one
//! single-document update; a fenced save writes the lease document in
//! the transaction that saves the checkpoint, so a takeover committing
//! meanwhile makes it conflict instead of slipping past it.

use std::time::Duration;

use futures_util::TryStreamExt;
use interlock::store::{BoxFuture, CheckpointStore, Lease, LeaseClaim, StoreError};
use interlock::{Position, Timestamp};
use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;

use crate::documents::{BACKEND, int};
use crate::driver::{DUPLICATE_KEY, as_u64, back_off, code, commit, transient};
use crate::store::MongoStore;

fn lease_of(subscriber: &str, document: &Document) -> Result<Lease, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        backend: BACKEND,
        location: format!("the lease of `{subscriber}`"),
        reason: reason.into(),
    };
    Ok(Lease {
        subscriber: subscriber.to_owned(),
        owner: document
            .get_str("owner")
            .map_err(|_| corrupt("`owner` is not a string"))?
            .to_owned(),
        token: document
            .get("token")
            .and_then(as_u64)
            .ok_or_else(|| corrupt("`token` is not a non-negative integer"))?,
        expires_at: Timestamp(
            document
                .get_i64("expires_at")
                .map_err(|_| corrupt("`expires_at` is not an integer"))?,
        ),
    })
}

impl CheckpointStore for MongoStore {
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>> {
        Box::pin(async move {
            let found = self
                .collections()
                .checkpoints
                .find_one(doc! { "_id": subscriber })
                .await
                .map_err(|e| self.error(e))?;
            match found {
                None => Ok(None),
                Some(d) => d
                    .get("position")
                    .and_then(as_u64)
                    .map(|p| Some(Position(p)))
                    .ok_or_else(|| StoreError::Corrupt {
                        backend: BACKEND,
                        location: format!("the checkpoint of `{subscriber}`"),
                        reason: "`position` is not a non-negative integer".into(),
                    }),
            }
        })
    }

    fn save<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.collections()
                .checkpoints
                .update_one(
                    doc! { "_id": subscriber },
                    doc! { "$set": { "position": int(position.0) } },
                )
                .upsert(true)
                .await
                .map_err(|e| self.error(e))?;
            Ok(())
        })
    }

    fn advance<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let moved = self
                .collections()
                .checkpoints
                .update_one(
                    doc! { "_id": subscriber, "position": { "$lt": int(position.0) } },
                    doc! { "$set": { "position": int(position.0) } },
                )
                .upsert(true)
                .await;
            match moved {
                Ok(_) => Ok(()),
                // Already at or past it: the upsert's insert met it.
                Err(e) if code(&e) == Some(DUPLICATE_KEY) => Ok(()),
                Err(e) => Err(self.error(e)),
            }
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
            let leases = &self.collections().leases;
            let until = now.plus(duration).0;
            for _ in 0..3 {
                // Renewed by its owner (the token stays).
                let renewed = leases
                    .find_one_and_update(
                        doc! { "_id": subscriber, "owner": owner },
                        doc! { "$set": { "expires_at": until } },
                    )
                    .return_document(ReturnDocument::After)
                    .await
                    .map_err(|e| self.error(e))?;
                if let Some(lease) = renewed {
                    return Ok(LeaseClaim::Held(lease_of(subscriber, &lease)?));
                }
                // Taken over once expired (a new token).
                let taken = leases
                    .find_one_and_update(
                        doc! { "_id": subscriber, "owner": { "$ne": owner }, "expires_at": { "$lte": now.0 } },
                        doc! { "$set": { "owner": owner, "expires_at": until }, "$inc": { "token": 1_i64 } },
                    )
                    .return_document(ReturnDocument::After)
                    .await
                    .map_err(|e| self.error(e))?;
                if let Some(lease) = taken {
                    return Ok(LeaseClaim::Held(lease_of(subscriber, &lease)?));
                }
                // Claimed for the first time.
                let first = leases
                    .insert_one(doc! { "_id": subscriber, "owner": owner, "token": 1_i64, "expires_at": until })
                    .await;
                match first {
                    Ok(_) => {
                        return Ok(LeaseClaim::Held(Lease {
                            subscriber: subscriber.to_owned(),
                            owner: owner.to_owned(),
                            token: 1,
                            expires_at: Timestamp(until),
                        }));
                    }
                    Err(e) if code(&e) == Some(DUPLICATE_KEY) => {}
                    Err(e) => return Err(self.error(e)),
                }
                // Someone else's: held unexpired, or it changed since.
                let held = leases
                    .find_one(doc! { "_id": subscriber })
                    .await
                    .map_err(|e| self.error(e))?;
                if let Some(held) = held {
                    let lease = lease_of(subscriber, &held)?;
                    if lease.owner != owner && lease.expires_at > now {
                        return Ok(LeaseClaim::Taken(lease));
                    }
                }
            }
            Err(StoreError::Backend {
                backend: BACKEND,
                source: format!("the lease of `{subscriber}` kept changing during a claim").into(),
            })
        })
    }

    fn release_lease<'a>(&'a self, subscriber: &'a str, token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.collections()
                .leases
                .update_one(
                    doc! { "_id": subscriber, "token": int(token) },
                    doc! { "$set": { "expires_at": i64::MIN } },
                )
                .await
                .map_err(|e| self.error(e))?;
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
            let c = self.collections();
            let mut session = self.inner.client.start_session().await.map_err(|e| self.error(e))?;
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                session.start_transaction().await.map_err(|e| self.error(e))?;
                let run = async {
                    let held = c
                        .leases
                        .update_one(
                            doc! { "_id": subscriber, "token": int(token) },
                            doc! { "$set": { "fenced_at": Timestamp::now().0 } },
                        )
                        .session(&mut session)
                        .await?;
                    if held.matched_count == 0 {
                        return Ok(false);
                    }
                    c.checkpoints
                        .update_one(
                            doc! { "_id": subscriber },
                            doc! { "$set": { "position": int(position.0) } },
                        )
                        .upsert(true)
                        .session(&mut session)
                        .await?;
                    Ok::<_, mongodb::error::Error>(true)
                }
                .await;
                let outcome = match run {
                    Ok(true) => commit(&mut session).await.map(|()| true),
                    Ok(false) => {
                        let _ = session.abort_transaction().await;
                        return Err(StoreError::LeaseLost {
                            subscriber: subscriber.to_owned(),
                            token,
                        });
                    }
                    Err(e) => {
                        let _ = session.abort_transaction().await;
                        Err(e)
                    }
                };
                match outcome {
                    Ok(_) => return Ok(()),
                    Err(e) if transient(&e) && attempt < 20 => back_off(attempt).await,
                    Err(e) => return Err(self.error(e)),
                }
            }
        })
    }

    fn leases(&self) -> BoxFuture<'_, Result<Vec<Lease>, StoreError>> {
        Box::pin(async move {
            let documents: Vec<Document> = self
                .collections()
                .leases
                .find(doc! {})
                .sort(doc! { "_id": 1 })
                .await
                .map_err(|e| self.error(e))?
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            documents
                .iter()
                .map(|d| {
                    let subscriber = d.get_str("_id").unwrap_or("?");
                    lease_of(subscriber, d)
                })
                .collect()
        })
    }
}
