//! The store: the client, the collections and their indexes, and the
//! group committer; opened in `open`.

use std::fmt;
use std::sync::{Arc, Weak};

use interlock::Position;
use interlock::store::{GroupCommitter, StoreError};
use mongodb::bson::{Document, doc};
use mongodb::options::IndexOptions;
use mongodb::{Client, Collection, Database, IndexModel};
use tokio::sync::watch;

use crate::config::MongoConfig;
use crate::driver::store_error;

/// Every Interlock store on one MongoDB database: events, snapshots,
/// idempotency records, checkpoints with their leases, dead letters and
/// saga state with deadlines. Cheap to clone (clones share the
/// client and its connection pool).
#[derive(Clone)]
pub struct MongoStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: MongoConfig,
    pub(crate) client: Client,
    pub(crate) collections: Collections,
    /// Queues appends for the batch append.
    pub(crate) committer: GroupCommitter,
    /// The last position known committed, for `watch_head`.
    pub(crate) head: watch::Sender<Position>,
}

/// The collections of one store (names from the configured prefix).
pub(crate) struct Collections {
    pub(crate) events: Collection<Document>,
    pub(crate) streams: Collection<Document>,
    /// One document, `{_id: "position", last}`: the head of the log.
    pub(crate) counters: Collection<Document>,
    pub(crate) snapshots: Collection<Document>,
    pub(crate) checkpoints: Collection<Document>,
    pub(crate) leases: Collection<Document>,
    pub(crate) idempotency: Collection<Document>,
    pub(crate) dead_letters: Collection<Document>,
    pub(crate) sagas: Collection<Document>,
    pub(crate) deadlines: Collection<Document>,
    /// `{_id: position}` of each event not yet published (with the outbox on).
    pub(crate) outbox: Collection<Document>,
}

/// The `_id` of the position counter in `counters`.
pub(crate) const POSITION_COUNTER: &str = "position";

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A store that does not keep the client open (for background tasks).
#[derive(Clone)]
pub(crate) struct WeakStore(Weak<Inner>);

impl WeakStore {
    pub(crate) fn upgrade(&self) -> Option<MongoStore> {
        self.0.upgrade().map(|inner| MongoStore { inner })
    }
}

impl MongoStore {
    /// The settings the store was opened with.
    pub fn config(&self) -> &MongoConfig {
        &self.inner.config
    }

    pub(crate) fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }

    pub(crate) fn collections(&self) -> &Collections {
        &self.inner.collections
    }

    /// A driver error as a store error, the URI redacted.
    pub(crate) fn error(&self, error: mongodb::error::Error) -> StoreError {
        store_error(&self.inner.config, error)
    }

    /// Moves the head watch to `last`, if that is forward.
    pub(crate) fn publish_head(&self, last: Position) {
        self.inner.head.send_if_modified(|head| {
            let moved = last > *head;
            if moved {
                *head = last;
            }
            moved
        });
    }
}

impl Collections {
    pub(crate) fn of(database: &Database, prefix: &str) -> Self {
        let collection = |name: &str| database.collection::<Document>(&format!("{prefix}{name}"));
        Self {
            events: collection("events"),
            streams: collection("streams"),
            counters: collection("counters"),
            snapshots: collection("snapshots"),
            checkpoints: collection("checkpoints"),
            leases: collection("leases"),
            idempotency: collection("idempotency"),
            dead_letters: collection("dead_letters"),
            sagas: collection("sagas"),
            deadlines: collection("deadlines"),
            outbox: collection("outbox"),
        }
    }

    /// The indexes every query of the store relies on (`_id` is the
    /// position of an event, the key of the other documents).
    pub(crate) async fn create_indexes(&self) -> Result<(), mongodb::error::Error> {
        let index = |keys: Document, unique: bool, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().unique(unique).name(name.to_owned()).build())
                .build()
        };
        self.events
            .create_indexes([
                index(
                    doc! { "tenant": 1, "aggregate_type": 1, "aggregate_id": 1, "version": 1 },
                    true,
                    "stream_version",
                ),
                index(doc! { "event_id": 1 }, true, "event_id"),
                index(doc! { "name": 1, "_id": 1 }, false, "name_position"),
                index(doc! { "aggregate_type": 1, "_id": 1 }, false, "type_position"),
                index(doc! { "tenant": 1, "_id": 1 }, false, "tenant_position"),
            ])
            .await?;
        self.idempotency
            .create_index(
                IndexModel::builder()
                    .keys(doc! { "expires": 1 })
                    .options(
                        IndexOptions::builder()
                            .name("expiry".to_owned())
                            .expire_after(std::time::Duration::ZERO)
                            .build(),
                    )
                    .build(),
            )
            .await?;
        self.dead_letters
            .create_indexes([index(
                doc! { "subscriber": 1, "position": 1 },
                false,
                "subscriber_position",
            )])
            .await?;
        self.deadlines
            .create_indexes([
                index(doc! { "saga": 1, "due": 1 }, false, "saga_due"),
                index(doc! { "saga": 1, "key": 1 }, false, "saga_key"),
            ])
            .await?;
        Ok(())
    }
}
