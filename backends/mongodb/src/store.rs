//! The store: the client, the collections and their indexes, the group
//! committer, and the mapping of driver errors to store errors.

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

use interlock::Position;
use interlock::store::{GroupCommit, GroupCommitter, StoreError};
use mongodb::bson::{Document, doc};
use mongodb::options::{
    Acknowledgment, ClientOptions, IndexOptions, ReadConcern, ReadPreference, SelectionCriteria, WriteConcern,
};
use mongodb::{Client, Collection, Database, IndexModel};
use tokio::sync::watch;

use crate::config::{MongoConfig, MongoConfigError, redact};
use crate::documents::BACKEND;

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

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MongoOpenError {
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] MongoConfigError),
    /// The server could not be reached, or refused the setup.
    #[error("cannot open the MongoDB store at {uri}: {source}")]
    Unavailable {
        /// The URI, password redacted.
        uri: String,
        /// What failed.
        #[source]
        source: StoreError,
    },
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
    /// Connects, creates the collections' indexes and the position
    /// counter when missing, and starts the group committer and the
    /// change-stream follower of the head.
    ///
    /// # Errors
    ///
    /// [`MongoOpenError::Config`] for an invalid configuration;
    /// [`MongoOpenError::Unavailable`] when no server answers within the
    /// connect timeout (the message names the redacted URI), or it refuses
    /// the indexes.
    pub async fn open(config: MongoConfig) -> Result<Self, MongoOpenError> {
        config.validate()?;
        let uri = config.redacted_uri();
        let unavailable = |source: StoreError| MongoOpenError::Unavailable {
            uri: uri.clone(),
            source,
        };
        let store_cell: Arc<OnceLock<WeakStore>> = Arc::default();
        let committer = {
            let cell = Arc::clone(&store_cell);
            GroupCommitter::start(
                BACKEND,
                GroupCommit {
                    max_batch: config.max_batch,
                    max_wait: std::time::Duration::ZERO,
                },
                move || cell.get().and_then(WeakStore::upgrade),
            )
            .map_err(unavailable)?
        };
        let mut options = ClientOptions::parse(&config.uri)
            .await
            .map_err(|e| unavailable(store_error(&config, e)))?;
        options.app_name = Some("interlock".into());
        // The URI's own `connectTimeoutMS` / `serverSelectionTimeoutMS` win.
        options.connect_timeout.get_or_insert(config.connect_timeout);
        options.server_selection_timeout.get_or_insert(config.connect_timeout);
        let mut write = WriteConcern::builder().journal(config.journal).build();
        if config.majority {
            write.w = Some(Acknowledgment::Majority);
        }
        options.write_concern = Some(write);
        options.read_concern = Some(if config.majority {
            ReadConcern::majority()
        } else {
            ReadConcern::local()
        });
        options.selection_criteria = Some(SelectionCriteria::ReadPreference(ReadPreference::Primary));
        let client = Client::with_options(options).map_err(|e| unavailable(store_error(&config, e)))?;
        let database = client.database(&config.database);
        let collections = Collections::of(&database, &config.prefix);
        database
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(|e| unavailable(store_error(&config, e)))?;
        collections
            .create_indexes()
            .await
            .map_err(|e| unavailable(store_error(&config, e)))?;
        // The counter starts at 0; an existing one stays as it is.
        collections
            .counters
            .update_one(
                doc! { "_id": POSITION_COUNTER },
                doc! { "$setOnInsert": { "last": 0_i64 } },
            )
            .upsert(true)
            .await
            .map_err(|e| unavailable(store_error(&config, e)))?;
        let store = Self {
            inner: Arc::new(Inner {
                config,
                client,
                collections,
                committer,
                head: watch::channel(Position::START).0,
            }),
        };
        let _ = store_cell.set(store.downgrade());
        crate::watch::follow_head(&store);
        Ok(store)
    }

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
}

impl Collections {
    fn of(database: &Database, prefix: &str) -> Self {
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
    async fn create_indexes(&self) -> Result<(), mongodb::error::Error> {
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

/// The code of a duplicate key.
pub(crate) const DUPLICATE_KEY: i32 = 11000;

/// The server's code of an error, if it has one (a write error, a
/// command error, the first write error of a bulk insert).
pub(crate) fn code(error: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Command(e) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::InsertMany(e) => e.write_errors.as_ref().and_then(|w| w.first()).map(|w| w.code),
        _ => None,
    }
}

/// A driver error as a store error: unreachable servers are
/// `Unavailable` (retry later), the rest `Backend`; the URI is redacted
/// from every message.
pub(crate) fn store_error(config: &MongoConfig, error: mongodb::error::Error) -> StoreError {
    use mongodb::error::ErrorKind;
    let message = error.to_string().replace(&config.uri, &redact(&config.uri));
    let unreachable = matches!(
        error.kind.as_ref(),
        ErrorKind::Io(_) | ErrorKind::ServerSelection { .. } | ErrorKind::ConnectionPoolCleared { .. }
    ) || error.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR) && code(&error).is_none();
    if unreachable {
        StoreError::Unavailable {
            backend: BACKEND,
            source: message.into(),
        }
    } else {
        StoreError::Backend {
            backend: BACKEND,
            source: message.into(),
        }
    }
}
