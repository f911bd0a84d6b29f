//! The SQLite driver: the embedded backend.
//!
//! Writes take the database's write lock up front (`BEGIN IMMEDIATE`), so
//! appends commit one at a time in position order; a group-commit batch is
//! three statements in one transaction ([`batch`]). Subscribers poll for
//! new events (SQLite has no notifications), at their `poll_interval`.

mod batch;
mod config;
mod open;

use sqlx::sqlite::{SqliteConnection, SqliteRow};
use sqlx::{SqlStr, Sqlite};

pub use self::config::{SqliteConfig, SqliteLocation};
use crate::driver::{Driver, Param, bind, sealed};
use crate::store::{DriverBatch, SqlStore};

/// Every Interlock store on one SQLite database: events, snapshots,
/// idempotency records, checkpoints, dead letters, saga state, outbox.
/// Cheap to clone (clones share the pool).
///
/// Writes take the database's write lock up front (`BEGIN IMMEDIATE`), so
/// appends commit one at a time in position order. Subscribers poll for
/// new events (SQLite has no notifications), at their `poll_interval`.
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
pub type SqliteStore = SqlStore<SqliteDriver>;

/// A write transaction on a [`SqliteStore`]'s database, from
/// [`SqliteStore::begin`], for a SQL read model updated together with its
/// checkpoint ([`SqliteStore::save_checkpoint_in`]).
///
/// Its statements are sqlx's: a read model adds `sqlx` (the version this
/// crate uses, 0.9, with feature `sqlite`) to its own dependencies.
pub type SqliteTransaction = sqlx::Transaction<'static, Sqlite>;

/// The SQLite [`Driver`], on sqlx's [`Sqlite`].
#[derive(Clone, Copy, Debug)]
pub enum SqliteDriver {}

impl sealed::Sealed for SqliteDriver {}

impl Driver for SqliteDriver {
    type Database = Sqlite;
    type Config = SqliteConfig;
    type State = ();

    const NAME: &'static str = "sqlite";
    const STORE: &'static str = "SqliteStore";
    const BYTES: &'static str = "BLOB";
    const BEGIN_WRITE: Option<&'static str> = Some("BEGIN IMMEDIATE");

    async fn execute<'c>(
        conn: &'c mut SqliteConnection,
        sql: SqlStr,
        params: &'c [Param<'c>],
    ) -> Result<u64, sqlx::Error> {
        let done = bind(sqlx::query(sql), params).execute(conn).await?;
        Ok(done.rows_affected())
    }

    async fn fetch_all<'c>(
        conn: &'c mut SqliteConnection,
        sql: SqlStr,
        params: &'c [Param<'c>],
    ) -> Result<Vec<SqliteRow>, sqlx::Error> {
        bind(sqlx::query(sql), params).fetch_all(conn).await
    }

    async fn lock_migrations<'c>(_: &'c (), _: &'c mut SqliteConnection) -> Result<(), sqlx::Error> {
        Ok(()) // BEGIN IMMEDIATE already serializes migrating processes
    }
}

impl DriverBatch for SqliteDriver {
    async fn append_batch(
        store: &SqliteStore,
        batch: Vec<interlock::store::AppendRequest>,
    ) -> Vec<Result<interlock::store::Committed, interlock::store::StoreError>> {
        batch::append(store, batch).await
    }

    fn records_outbox(store: &SqliteStore) -> bool {
        store.config().outbox
    }

    async fn after_write<'c>(_: &'c SqliteStore, _: &'c mut SqliteConnection, _: i64) -> Result<(), sqlx::Error> {
        Ok(()) // in-process subscribers follow the head watch
    }
}
