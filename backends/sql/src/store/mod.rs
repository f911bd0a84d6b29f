//! [`SqlStore`]: every storage trait of the runtime on one SQL database,
//! written once over a [`Driver`]. One file per trait; this one holds the
//! store itself, its group committer and the query helpers the traits use.

mod atomic;
mod checkpoints;
mod dead_letters;
mod events;
mod idempotency;
mod isolated;
mod migrate;
mod outbox;
mod sagas;
mod snapshots;

use std::fmt;
use std::sync::{Arc, OnceLock, Weak};

use interlock::Position;
use interlock::store::{AppendRequest, BatchAppend, BoxFuture, Committed, GroupCommit, GroupCommitter, StoreError};
use sqlx::{Pool, SqlStr, Transaction};
use tokio::sync::watch;

use crate::driver::{Driver, Param, Row, SqlRow};
use crate::error::store_error;
use crate::queries::Queries;

/// Every Interlock store on one SQL database through driver `D`: events,
/// snapshots, idempotency records, checkpoints, dead letters, saga state
/// and the outbox. Cheap to clone (clones share the pool).
///
/// Use it through its aliases, [`SqliteStore`](crate::SqliteStore) and
/// [`PostgresStore`](crate::PostgresStore), which add `open`.
pub struct SqlStore<D: Driver> {
    inner: Arc<Inner<D>>,
}

struct Inner<D: Driver> {
    pool: Pool<D::Database>,
    queries: Queries,
    config: D::Config,
    state: D::State,
    /// Queues appends for [`DriverBatch::append_batch`].
    committer: GroupCommitter,
    /// The last position known committed, for `watch_head`; `None` when
    /// subscribers poll.
    head: Option<watch::Sender<Position>>,
}

impl<D: Driver> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<D: Driver> fmt::Debug for SqlStore<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(D::STORE)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// What a driver opens a store from.
pub(crate) struct Parts<D: Driver> {
    pub(crate) pool: Pool<D::Database>,
    pub(crate) queries: Queries,
    pub(crate) config: D::Config,
    pub(crate) state: D::State,
    /// Whether the store keeps a head watch for live subscriptions.
    pub(crate) head_watch: bool,
}

/// A store's group committer, started before the store exists: starting
/// it is what fails outside a tokio runtime, so a driver starts it before
/// it connects, and [`SqlStore::assemble`] then hands it the store.
pub(crate) struct Committer<D: Driver> {
    queue: GroupCommitter,
    store: Arc<OnceLock<WeakStore<D>>>,
}

impl<D: DriverBatch> Committer<D> {
    /// Starts the committer task on the current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] outside a tokio runtime.
    pub(crate) fn start(config: GroupCommit) -> Result<Self, StoreError> {
        let store: Arc<OnceLock<WeakStore<D>>> = Arc::default();
        let target = {
            let store = Arc::clone(&store);
            // The task ends once the store is dropped.
            move || store.get().and_then(WeakStore::upgrade)
        };
        let queue = GroupCommitter::start(D::NAME, config, target)?;
        Ok(Self { queue, store })
    }
}

/// A store that does not keep the database open (for background tasks).
pub(crate) struct WeakStore<D: Driver>(Weak<Inner<D>>);

impl<D: Driver> WeakStore<D> {
    /// The store, while a clone of it lives.
    pub(crate) fn upgrade(&self) -> Option<SqlStore<D>> {
        self.0.upgrade().map(|inner| SqlStore { inner })
    }
}

impl<D: Driver> SqlStore<D> {
    /// The store from its parts, bound to its committer.
    pub(crate) fn assemble(committer: Committer<D>, parts: Parts<D>) -> Self {
        let Parts {
            pool,
            queries,
            config,
            state,
            head_watch,
        } = parts;
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                queries,
                config,
                state,
                committer: committer.queue,
                head: head_watch.then(|| watch::channel(Position::START).0),
            }),
        };
        // Set once, here: the committer has had no batch before.
        let _ = committer.store.set(store.downgrade());
        store
    }

    /// The settings the store was opened with (a URL's password redacted
    /// when shown).
    pub fn config(&self) -> &D::Config {
        &self.inner.config
    }

    pub(crate) fn pool(&self) -> &Pool<D::Database> {
        &self.inner.pool
    }

    pub(crate) fn queries(&self) -> &Queries {
        &self.inner.queries
    }

    pub(crate) fn state(&self) -> &D::State {
        &self.inner.state
    }

    pub(crate) fn downgrade(&self) -> WeakStore<D> {
        WeakStore(Arc::downgrade(&self.inner))
    }

    /// Maps a driver error of this backend.
    pub(crate) fn error(e: sqlx::Error) -> StoreError {
        store_error(D::NAME, e)
    }

    /// Opens a write transaction (on SQLite, taking the write lock now).
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, D::Database>, sqlx::Error> {
        match D::BEGIN_WRITE {
            Some(statement) => self.inner.pool.begin_with(statement).await,
            None => self.inner.pool.begin().await,
        }
    }

    /// Moves the head watch forward to `head` (if the store keeps one).
    pub(crate) fn advance_head(&self, head: Position) {
        if let Some(watch) = &self.inner.head {
            watch.send_if_modified(|h| {
                let moved = *h < head;
                if moved {
                    *h = head;
                }
                moved
            });
        }
    }

    /// Runs a statement on a pooled connection; the rows affected.
    pub(crate) async fn execute(&self, sql: SqlStr, params: &[Param<'_>]) -> Result<u64, StoreError> {
        let mut conn = self.inner.pool.acquire().await.map_err(Self::error)?;
        D::execute(&mut conn, sql, params).await.map_err(Self::error)
    }

    /// Runs a query on a pooled connection; its rows.
    pub(crate) async fn fetch_all(&self, sql: SqlStr, params: &[Param<'_>]) -> Result<Vec<Row<D>>, StoreError> {
        let mut conn = self.inner.pool.acquire().await.map_err(Self::error)?;
        D::fetch_all(&mut conn, sql, params).await.map_err(Self::error)
    }

    /// Runs a query on a pooled connection; its first row, if any.
    pub(crate) async fn fetch_optional(&self, sql: SqlStr, params: &[Param<'_>]) -> Result<Option<Row<D>>, StoreError> {
        Ok(self.fetch_all(sql, params).await?.into_iter().next())
    }

    /// Runs a query that answers one integer (a count, a version).
    pub(crate) async fn fetch_int(&self, sql: SqlStr, params: &[Param<'_>]) -> Result<i64, StoreError> {
        let row = self.fetch_optional(sql, params).await?;
        let row = row.ok_or(sqlx::Error::RowNotFound).map_err(Self::error)?;
        row.int(0).map_err(Self::error)
    }
}

/// The step of a driver written against the store itself: the batch
/// append behind group commit, whose SQL has no common form.
pub trait DriverBatch: Driver {
    /// Commits a batch of appends, the unit of group commit, as the
    /// runtime's [`BatchAppend`] describes: one outcome per request, in
    /// order; each append atomic and isolated; positions committed in order
    /// (the counter row locked until commit). With the store's `outbox`
    /// setting, the appended positions are recorded in the outbox table in
    /// the same transaction.
    fn append_batch(
        store: &SqlStore<Self>,
        batch: Vec<AppendRequest>,
    ) -> impl std::future::Future<Output = Vec<Result<Committed, StoreError>>> + Send + '_;

    /// Whether the store records appends in the outbox table (its
    /// `outbox` setting).
    fn records_outbox(store: &SqlStore<Self>) -> bool;

    /// Runs in a write transaction that appended events up to position
    /// `last`, just before it commits (PostgreSQL: `NOTIFY` listeners).
    fn after_write<'c>(
        store: &'c SqlStore<Self>,
        tx: &'c mut crate::driver::Connection<Self>,
        last: i64,
    ) -> impl std::future::Future<Output = Result<(), sqlx::Error>> + Send + 'c;
}

impl<D: DriverBatch> BatchAppend for SqlStore<D> {
    fn append_batch(&self, batch: Vec<AppendRequest>) -> BoxFuture<'_, Vec<Result<Committed, StoreError>>> {
        Box::pin(D::append_batch(self, batch))
    }
}
