//! The SQLite backend: the embedded default.

use std::str::FromStr;
use std::sync::Arc;

use interlock::Position;
use interlock::store::StoreError;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

use crate::config::{SqliteConfig, SqliteLocation};
use crate::sql::{Dialect, Queries, Tables};

/// Every Interlock store on one SQLite database: events, snapshots,
/// idempotency records, checkpoints, dead letters, saga state. Cheap to
/// clone (clones share the pool).
///
/// Writes take the database's write lock up front (`BEGIN IMMEDIATE`), so
/// appends commit one at a time in position order. Subscribers poll for new
/// events (SQLite has no notifications), at their `poll_interval`.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use interlock_sql::{SqliteConfig, SqliteStore};
/// let store = SqliteStore::open(SqliteConfig::file("bank.db")).await?;
/// let app = interlock::Application::builder().backend(store).build().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    committer: crate::group::Committer,
    pool: SqlitePool,
    queries: Queries,
    config: SqliteConfig,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (and creates, or migrates) the database.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] for an invalid configuration,
    /// [`StoreError::Unavailable`] when the file cannot be opened.
    pub async fn open(config: SqliteConfig) -> Result<Self, StoreError> {
        config.validate().map_err(|e| StoreError::Backend {
            backend: "sqlite",
            source: Box::new(e),
        })?;
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
                    .map_err(|e| StoreError::Backend {
                        backend: "sqlite",
                        source: Box::new(e),
                    })?
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
            .idle_timeout(if memory {
                None
            } else {
                Some(std::time::Duration::from_secs(600))
            })
            .max_lifetime(if memory {
                None
            } else {
                Some(std::time::Duration::from_secs(1800))
            })
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable {
                backend: "sqlite",
                source: format!("cannot open {:?}: {e}", config.location).into(),
            })?;
        let queries = Queries::new(Tables::new(None, &config.table_prefix));
        let group_commit = config.group_commit;
        let store = Self {
            inner: Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
                let weak = weak.clone();
                let committer = crate::group::Committer::start("sqlite", group_commit, move || {
                    weak.upgrade().map(|inner| SqliteStore { inner })
                });
                Inner {
                    committer,
                    pool,
                    queries,
                    config,
                }
            }),
        };
        store.migrate().await?;

        Ok(store)
    }

    pub(crate) fn committer(&self) -> &crate::group::Committer {
        &self.inner.committer
    }

    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    pub(crate) fn queries(&self) -> &Queries {
        &self.inner.queries
    }

    pub(crate) fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.inner.pool.begin_with("BEGIN IMMEDIATE").await
    }

    pub(crate) async fn after_append(
        &self,
        _tx: &mut Transaction<'static, Sqlite>,
        _last: i64,
    ) -> Result<(), sqlx::Error> {
        Ok(())
    }

    pub(crate) fn appended(&self, _head: Position) {}

    pub(crate) fn outbox_enabled(&self) -> bool {
        self.inner.config.outbox
    }

    pub(crate) fn head_watch(&self) -> Option<tokio::sync::watch::Receiver<Position>> {
        None
    }

    pub(crate) async fn lock_migrations(&self, _tx: &mut Transaction<'static, Sqlite>) -> Result<(), sqlx::Error> {
        Ok(()) // BEGIN IMMEDIATE already serializes migrating processes
    }

    /// The settings the store was opened with.
    pub fn config(&self) -> &SqliteConfig {
        &self.inner.config
    }
}

crate::store::impl_sql_store!(SqliteStore, Sqlite);
crate::admin::impl_admin!(SqliteStore, Sqlite);
