//! Opening a store: the client with the configured concerns and
//! timeouts, the indexes, the position counter, the group committer and
//! the follower of the head.

use std::sync::{Arc, OnceLock};

use interlock::Position;
use interlock::store::{GroupCommit, GroupCommitter, StoreError};
use mongodb::Client;
use mongodb::bson::doc;
use mongodb::options::{Acknowledgment, ClientOptions, ReadConcern, ReadPreference, SelectionCriteria, WriteConcern};
use tokio::sync::watch;

use crate::config::{MongoConfig, MongoConfigError};
use crate::documents::BACKEND;
use crate::driver::store_error;
use crate::store::{Collections, Inner, MongoStore, POSITION_COUNTER, WeakStore};

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
    pub async fn open(config: MongoConfig) -> Result<MongoStore, MongoOpenError> {
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
        let store = MongoStore {
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
}
