//! Opening a SQLite store: the connection options, the pool, the schema.

use std::str::FromStr;
use std::time::Duration;

use interlock::store::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{SqliteConfig, SqliteLocation, SqliteStore};
use crate::queries::Queries;
use crate::schema::Tables;
use crate::store::{Committer, Parts};

impl SqliteStore {
    /// Opens (and creates, or migrates) the database.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] for an invalid configuration,
    /// [`StoreError::Unavailable`] when the file cannot be opened or when
    /// called outside a tokio runtime.
    pub async fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        let invalid = |e: Box<dyn std::error::Error + Send + Sync>| StoreError::Backend {
            backend: "sqlite",
            source: e,
        };
        config.validate().map_err(|e| invalid(Box::new(e)))?;
        let committer = Committer::start(config.group_commit)?;
        let options = match &config.location {
            SqliteLocation::File(path) => SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(if config.wal {
                    SqliteJournalMode::Wal
                } else {
                    SqliteJournalMode::Delete
                }),
            SqliteLocation::Memory => {
                // Shared cache, so every connection of the pool sees one database.
                let name = format!("sqlite:file:interlock_{}?mode=memory&cache=shared", ulid::Ulid::new());
                SqliteConnectOptions::from_str(&name)
                    .map_err(|e| invalid(Box::new(e)))?
                    .journal_mode(SqliteJournalMode::Memory)
            }
        }
        .busy_timeout(config.busy_timeout)
        .synchronous(if config.durable_commits {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .foreign_keys(true);
        let memory = config.location == SqliteLocation::Memory;
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections)
            // An in-memory database lives as long as one connection to it.
            .min_connections(u32::from(memory))
            .idle_timeout((!memory).then_some(Duration::from_secs(600)))
            .max_lifetime((!memory).then_some(Duration::from_secs(1800)))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable {
                backend: "sqlite",
                source: format!("cannot open {:?}: {e}", config.location).into(),
            })?;
        let queries = Queries::new(Tables::new(None, &config.table_prefix), "");
        let parts = Parts {
            pool,
            queries,
            config,
            state: (),
            head_watch: false,
        };
        let store = Self::assemble(committer, parts);
        store.migrate().await?;
        Ok(store)
    }
}
