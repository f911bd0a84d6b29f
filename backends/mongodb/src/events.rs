//! The event store: appends in multi-document transactions that allocate
//! positions from one counter document, reads, scans and rewrites.
//!
//! **Gap safety.** Every append increments the counter document inside
//! its transaction, so two appending transactions always write the same
//! document: the server lets one commit and aborts the other with a
//! write conflict (retried here). Positions therefore become visible in
//! order, and a reader that resumes after the last position it saw never
//! misses one. The same write serializes the conditions of atomic
//! appends: a category checked in one transaction cannot gain an event
//! from another that commits meanwhile.
//!
//! **A writer killed mid-append.** The server keeps a transaction whose
//! client died open until its `transactionLifetimeLimitSeconds` (60 s by
//! default), and its uncommitted writes (the counter, the events' `_id`s)
//! make every other append conflict until then. Appends retry conflicts
//! until the configured operation timeout (30 s by default), then fail
//! with `StoreError::Unavailable`; lower the server parameter where a
//! faster recovery matters.

use std::collections::HashMap;
use std::ops::Bound;

use futures_util::TryStreamExt;
use interlock::store::{
    AppendRequest, AtomicAppend, BatchAppend, BoxFuture, Committed, Direction, EventFilter, EventStore,
    ExpectedVersion, NewEvent, RecordedEvent, RewrittenEvent, Scan, Scope, StoreError,
};
use interlock::{Position, StreamId, TenantId, Timestamp, Version};
use mongodb::ClientSession;
use mongodb::bson::{Document, doc};
use mongodb::options::ReturnDocument;

use crate::documents::{
    BACKEND, event_document, event_of, int, log_event_of, payload_to_bson, stream_filter, stream_key,
};
use crate::driver::{as_u64, back_off, commit, transient};
use crate::store::{MongoStore, POSITION_COUNTER};

/// The outcome of one planned transaction: what each request gets, and
/// the last position written (`None` when nothing was).
struct Written {
    outcomes: Vec<Result<Committed, StoreError>>,
    last: Option<Position>,
}

impl MongoStore {
    /// Runs `appends` in one transaction, retrying conflicts between
    /// transactions. With `atomic`, a request that cannot be applied
    /// fails the whole transaction (its error is the outcome of all).
    async fn transact_appends(
        &self,
        appends: &[AppendRequest],
        conditions: &[interlock::store::Unchanged],
        atomic: bool,
    ) -> Result<Vec<Result<Committed, StoreError>>, StoreError> {
        let mut session = self.inner.client.start_session().await.map_err(|e| self.error(e))?;
        let deadline = tokio::time::Instant::now() + self.inner.config.operation_timeout;
        let mut attempt = 0;
        loop {
            attempt += 1;
            session.start_transaction().await.map_err(|e| self.error(e))?;
            let written = self.write_appends(&mut session, appends, conditions, atomic).await;
            let result = match written {
                Ok(Ok(written)) if written.last.is_none() => {
                    let _ = session.abort_transaction().await;
                    return Ok(written.outcomes);
                }
                Ok(Ok(written)) => commit(&mut session).await.map(|()| written),
                Ok(Err(refused)) => {
                    let _ = session.abort_transaction().await;
                    return Err(refused);
                }
                Err(e) => {
                    let _ = session.abort_transaction().await;
                    Err(e)
                }
            };
            match result {
                Ok(written) => {
                    if let Some(last) = written.last {
                        self.publish_head(last);
                    }
                    return Ok(written.outcomes);
                }
                Err(e) if transient(&e) && tokio::time::Instant::now() < deadline => back_off(attempt).await,
                Err(e) if transient(&e) => {
                    return Err(StoreError::Unavailable {
                        backend: BACKEND,
                        source: format!(
                            "appends kept conflicting for {:?} (another writer, or the open transaction of one that died): {}",
                            self.inner.config.operation_timeout,
                            self.error(e)
                        )
                        .into(),
                    });
                }
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    /// One run of the transaction: checks, then writes. `Ok(Err(_))` is a
    /// refusal (a failed condition, or a conflict of an atomic append):
    /// nothing may be committed.
    async fn write_appends(
        &self,
        session: &mut ClientSession,
        appends: &[AppendRequest],
        conditions: &[interlock::store::Unchanged],
        atomic: bool,
    ) -> Result<Result<Written, StoreError>, mongodb::error::Error> {
        let c = self.collections();
        for condition in conditions {
            let mut filter = scope_filter(&condition.scope);
            filter.insert("_id", doc! { "$gt": int(condition.since.0) });
            let later = c
                .events
                .find_one(filter)
                .sort(doc! { "_id": -1 })
                .projection(doc! { "_id": 1 })
                .session(&mut *session)
                .await?;
            if let Some(later) = later {
                return Ok(Err(StoreError::ScopeChanged {
                    scope: condition.scope.clone(),
                    since: condition.since,
                    actual: Position(u64::try_from(later.get_i64("_id").unwrap_or(0)).unwrap_or(0)),
                }));
            }
        }
        // The versions of the streams appended to with `Any` or as new
        // (`Exact(0)`) are read; a stream whose first append expects a
        // version above 0 is instead moved by an update guarded by that
        // version (one round trip, not a read and a write: the common
        // command on an existing aggregate).
        let keys: Vec<String> = appends.iter().map(|a| stream_key(&a.stream)).collect();
        let mut first_seen: HashMap<&str, ExpectedVersion> = HashMap::new();
        for (append, key) in appends.iter().zip(&keys) {
            first_seen.entry(key.as_str()).or_insert(append.expected);
        }
        let to_read: Vec<&str> = first_seen
            .iter()
            .filter(|(_, expected)| !matches!(expected, ExpectedVersion::Exact(v) if *v != Version::INITIAL))
            .map(|(key, _)| *key)
            .collect();
        let mut versions: HashMap<String, Version> = HashMap::new();
        if !to_read.is_empty() {
            let mut cursor = c
                .streams
                .find(doc! { "_id": { "$in": to_read } })
                .session(&mut *session)
                .await?;
            while let Some(stream) = cursor.next(&mut *session).await {
                let stream = stream?;
                if let (Ok(key), Some(version)) = (stream.get_str("_id"), stream.get("version").and_then(as_u64)) {
                    versions.insert(key.to_owned(), Version(version));
                }
            }
        }
        let now = mongodb::bson::DateTime::from_millis(Timestamp::now().0 / 1000);
        // The version each guarded update left a stream at.
        let mut written: HashMap<&str, Version> = HashMap::new();
        let mut plans = Vec::with_capacity(appends.len());
        let mut total = 0u64;
        for (append, key) in appends.iter().zip(&keys) {
            let count = append.events.len() as u64;
            let actual = match (versions.get(key), append.expected) {
                (Some(known), _) => *known,
                (None, ExpectedVersion::Exact(expected)) if expected != Version::INITIAL => {
                    let moved = c
                        .streams
                        .update_one(
                            doc! { "_id": key, "version": int(expected.0) },
                            doc! { "$set": { "version": int(expected.0 + count), "updated_at": now } },
                        )
                        .session(&mut *session)
                        .await?;
                    if moved.matched_count == 1 {
                        written.insert(key.as_str(), Version(expected.0 + count));
                        expected
                    } else {
                        let found = c.streams.find_one(doc! { "_id": key }).session(&mut *session).await?;
                        found
                            .as_ref()
                            .and_then(|d| d.get("version"))
                            .and_then(as_u64)
                            .map_or(Version::INITIAL, Version)
                    }
                }
                (None, _) => Version::INITIAL,
            };
            match append.expected {
                ExpectedVersion::Exact(expected) if expected != actual => {
                    versions.insert(key.clone(), actual);
                    let conflict = StoreError::Conflict {
                        stream: append.stream.clone(),
                        expected: append.expected,
                        actual,
                    };
                    if atomic {
                        return Ok(Err(conflict));
                    }
                    plans.push(Err(conflict));
                }
                _ => {
                    versions.insert(key.clone(), Version(actual.0 + count));
                    total += count;
                    plans.push(Ok(actual));
                }
            }
        }
        if total == 0 {
            let outcomes = plans
                .into_iter()
                .zip(appends)
                .map(|(plan, append)| {
                    plan.map(|version| Committed {
                        stream: append.stream.clone(),
                        version,
                        positions: Default::default(),
                    })
                })
                .collect();
            return Ok(Ok(Written { outcomes, last: None }));
        }
        let counter = c
            .counters
            .find_one_and_update(
                doc! { "_id": POSITION_COUNTER },
                doc! { "$inc": { "last": int(total) } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .session(&mut *session)
            .await?;
        let last = counter
            .as_ref()
            .and_then(|d| d.get("last"))
            .and_then(as_u64)
            .unwrap_or(total);
        let mut position = last - total;
        let mut documents = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        let mut outcomes = Vec::with_capacity(appends.len());
        let mut touched: Vec<(&StreamId, Version)> = Vec::new();
        for (plan, append) in plans.into_iter().zip(appends) {
            let from = match plan {
                Ok(from) => from,
                Err(conflict) => {
                    outcomes.push(Err(conflict));
                    continue;
                }
            };
            let mut version = from;
            let mut positions = Vec::with_capacity(append.events.len());
            for event in &append.events {
                position += 1;
                version = Version(version.0 + 1);
                documents.push(event_document(&append.stream, version, Position(position), event));
                positions.push(Position(position));
            }
            if !append.events.is_empty() {
                touched.retain(|(s, _)| *s != &append.stream);
                touched.push((&append.stream, version));
            }
            outcomes.push(Ok(Committed {
                stream: append.stream.clone(),
                version,
                positions: positions.into(),
            }));
        }
        if self.inner.config.outbox {
            let first = last - total;
            let pending: Vec<Document> = (first + 1..=last).map(|p| doc! { "_id": int(p) }).collect();
            c.outbox.insert_many(pending).session(&mut *session).await?;
        }
        c.events.insert_many(documents).session(&mut *session).await?;
        for (stream, version) in touched {
            let key = stream_key(stream);
            if written.get(key.as_str()) == Some(&version) {
                continue; // moved by its guarded update already
            }
            c.streams
                .update_one(
                    doc! { "_id": key },
                    doc! {
                        "$set": { "version": int(version.0), "updated_at": now },
                        "$setOnInsert": {
                            "tenant": stream.tenant().map_or("", TenantId::as_str),
                            "aggregate_type": stream.aggregate_type(),
                            "aggregate_id": stream.aggregate_id(),
                            "created_at": now,
                        },
                    },
                )
                .upsert(true)
                .session(&mut *session)
                .await?;
        }
        Ok(Ok(Written {
            outcomes,
            last: Some(Position(last)),
        }))
    }

    async fn find_events(
        &self,
        filter: Document,
        sort: Document,
        limit: Option<usize>,
        log: bool,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut find = self.collections().events.find(filter).sort(sort);
        if let Some(limit) = limit {
            find = find.limit(i64::try_from(limit).unwrap_or(i64::MAX));
        }
        let documents: Vec<Document> = find
            .await
            .map_err(|e| self.error(e))?
            .try_collect()
            .await
            .map_err(|e| self.error(e))?;
        documents
            .iter()
            .map(|d| if log { log_event_of(d) } else { event_of(d) })
            .collect()
    }
}

/// The filter of the events of `scope`.
fn scope_filter(scope: &Scope) -> Document {
    match scope {
        Scope::Stream(stream) => stream_filter(stream),
        Scope::Category(category) => doc! { "aggregate_type": category.as_ref() },
        Scope::Log => Document::new(),
        Scope::TenantCategory(tenant, category) => {
            doc! { "tenant": tenant.as_str(), "aggregate_type": category.as_ref() }
        }
        Scope::Tenant(tenant) => doc! { "tenant": tenant.as_str() },
    }
}

/// The filter of `filter` over the log.
fn log_filter(after: Position, filter: &EventFilter) -> Document {
    let mut document = doc! { "_id": { "$gt": int(after.0) } };
    if let Some(names) = &filter.event_names {
        document.insert(
            "name",
            doc! { "$in": names.iter().map(|n| n.as_ref()).collect::<Vec<_>>() },
        );
    }
    if let Some(types) = &filter.aggregate_types {
        document.insert(
            "aggregate_type",
            doc! { "$in": types.iter().map(|t| t.as_ref()).collect::<Vec<_>>() },
        );
    }
    if let Some(tenant) = &filter.tenant {
        document.insert("tenant", tenant.as_str());
    }
    document
}

impl BatchAppend for MongoStore {
    fn append_batch(&self, batch: Vec<AppendRequest>) -> BoxFuture<'_, Vec<Result<Committed, StoreError>>> {
        Box::pin(async move {
            match self.transact_appends(&batch, &[], false).await {
                Ok(outcomes) => outcomes,
                Err(e) if batch.len() == 1 => vec![Err(e)],
                // Unreachable: every request fails with it.
                Err(StoreError::Unavailable { source, .. }) => {
                    let message = source.to_string();
                    let unavailable = || StoreError::Unavailable {
                        backend: BACKEND,
                        source: message.clone().into(),
                    };
                    batch.iter().map(|_| Err(unavailable())).collect()
                }
                // Refused by the server (a validator, a limit): the request
                // that caused it must fail alone, so each is committed on
                // its own, with its own outcome.
                Err(e) => {
                    tracing::debug!(error = %e, appends = batch.len(), "a batch was refused; committing its appends one by one");
                    let mut outcomes = Vec::with_capacity(batch.len());
                    for request in &batch {
                        let alone = self.transact_appends(std::slice::from_ref(request), &[], false).await;
                        outcomes.push(alone.and_then(|mut one| {
                            one.pop().unwrap_or_else(|| {
                                Err(StoreError::Backend {
                                    backend: BACKEND,
                                    source: "an append had no outcome".into(),
                                })
                            })
                        }));
                    }
                    outcomes
                }
            }
        })
    }
}

impl EventStore for MongoStore {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        Box::pin(self.inner.committer.append(stream, expected, events))
    }

    fn append_atomic(&self, append: AtomicAppend) -> BoxFuture<'_, Result<Vec<Committed>, StoreError>> {
        Box::pin(async move {
            self.transact_appends(&append.streams, &append.conditions, true)
                .await?
                .into_iter()
                .collect()
        })
    }

    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        to: Option<Version>,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            let mut filter = stream_filter(stream);
            let mut range = doc! { "$gte": int(from.0) };
            if let Some(to) = to {
                range.insert("$lte", int(to.0));
            }
            // A version that is not a number (a corrupt document) matches
            // no range: read it too, so it is reported, not skipped.
            filter.insert(
                "$or",
                vec![
                    doc! { "version": range },
                    doc! { "version": { "$not": { "$type": "number" } } },
                ],
            );
            self.find_events(filter, doc! { "version": 1 }, None, false).await
        })
    }

    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            self.find_events(log_filter(after, filter), doc! { "_id": 1 }, Some(limit), true)
                .await
        })
    }

    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
        Box::pin(async move {
            let found = self
                .collections()
                .streams
                .find_one(doc! { "_id": stream_key(stream) })
                .await
                .map_err(|e| self.error(e))?;
            Ok(found
                .as_ref()
                .and_then(|d| d.get("version"))
                .and_then(as_u64)
                .map_or(Version::INITIAL, Version))
        })
    }

    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        Box::pin(async move {
            let counter = self
                .collections()
                .counters
                .find_one(doc! { "_id": POSITION_COUNTER })
                .await
                .map_err(|e| self.error(e))?;
            Ok(Position(
                counter
                    .as_ref()
                    .and_then(|d| d.get("last"))
                    .and_then(as_u64)
                    .unwrap_or(0),
            ))
        })
    }

    fn scan<'a>(&'a self, scan: &'a Scan) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        Box::pin(async move {
            let mut filter = scope_filter(&scan.scope);
            let mut range = Document::new();
            match scan.from {
                Bound::Included(p) => range.insert("$gte", int(p.0)),
                Bound::Excluded(p) => range.insert("$gt", int(p.0)),
                Bound::Unbounded => None,
            };
            match scan.to {
                Bound::Included(p) => range.insert("$lte", int(p.0)),
                Bound::Excluded(p) => range.insert("$lt", int(p.0)),
                Bound::Unbounded => None,
            };
            if !range.is_empty() {
                filter.insert("_id", range);
            }
            let order = match scan.direction {
                Direction::Forward => 1,
                Direction::Backward => -1,
            };
            self.find_events(filter, doc! { "_id": order }, Some(scan.limit), false)
                .await
        })
    }

    fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let updated = self
                .collections()
                .events
                .update_one(
                    doc! { "_id": int(position.0) },
                    doc! { "$set": {
                        "name": event.name.as_ref(),
                        "schema_version": i64::from(event.schema_version.0),
                        "payload": payload_to_bson(&event.payload),
                    } },
                )
                .await
                .map_err(|e| self.error(e))?;
            if updated.matched_count == 0 {
                return Err(StoreError::NotFound(position));
            }
            Ok(())
        })
    }

    fn watch_head(&self) -> Option<tokio::sync::watch::Receiver<Position>> {
        Some(self.inner.head.subscribe())
    }
}
