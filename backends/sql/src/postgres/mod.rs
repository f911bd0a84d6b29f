//! The PostgreSQL driver.
//!
//! A group-commit batch is one autocommit statement ([`batch`]), with a
//! transaction of one savepoint per append as the fallback ([`savepoint`]);
//! each commit sends `NOTIFY`, which a listener ([`listen`]) turns into the
//! head watch live subscribers wait on.

mod batch;
mod config;
mod listen;
mod open;
mod savepoint;

use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Postgres, SqlStr};

pub use self::config::PostgresConfig;
use crate::driver::{Driver, Param, bind, sealed};
use crate::store::{DriverBatch, SqlStore};

/// Every Interlock store on one PostgreSQL schema: events, snapshots,
/// idempotency records, checkpoints, dead letters, saga state, outbox.
/// Cheap to clone (clones share the pool).
///
/// **Gap safety.** Positions come from a one-row counter that each append
/// increments inside its transaction; the row stays locked until commit, so
/// appends commit in position order and a reader that resumes after the
/// last position it saw never skips an event that commits late.
///
/// **Live subscriptions.** Each append sends `NOTIFY` on commit; a listener
/// moves the head watch subscribers wait on (they also poll, as a fallback).
pub type PostgresStore = SqlStore<PostgresDriver>;

/// A transaction on a [`PostgresStore`]'s database, from
/// [`PostgresStore::begin`], for a SQL read model updated together with
/// its checkpoint ([`PostgresStore::save_checkpoint_in`]).
///
/// Its statements are sqlx's: a read model adds `sqlx` (the version this
/// crate uses, 0.9, with feature `postgres`) to its own dependencies.
pub type PostgresTransaction = sqlx::Transaction<'static, Postgres>;

/// The PostgreSQL [`Driver`], on sqlx's [`Postgres`].
#[derive(Clone, Copy, Debug)]
pub enum PostgresDriver {}

impl sealed::Sealed for PostgresDriver {}

/// What a PostgreSQL store keeps besides the shared parts.
#[derive(Debug)]
pub struct PostgresState {
    /// The `LISTEN/NOTIFY` channel of the store's tables.
    channel: String,
    /// The one-statement batch append.
    fast_append: SqlStr,
}

impl Driver for PostgresDriver {
    type Database = Postgres;
    type Config = PostgresConfig;
    type State = PostgresState;

    const NAME: &'static str = "postgres";
    const STORE: &'static str = "PostgresStore";
    const BYTES: &'static str = "BYTEA";
    const BEGIN_WRITE: Option<&'static str> = None;

    async fn execute<'c>(conn: &'c mut PgConnection, sql: SqlStr, params: &'c [Param<'c>]) -> Result<u64, sqlx::Error> {
        let done = bind(sqlx::query(sql), params).execute(conn).await?;
        Ok(done.rows_affected())
    }

    async fn fetch_all<'c>(
        conn: &'c mut PgConnection,
        sql: SqlStr,
        params: &'c [Param<'c>],
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        bind(sqlx::query(sql), params).fetch_all(conn).await
    }

    async fn lock_migrations<'c>(state: &'c PostgresState, tx: &'c mut PgConnection) -> Result<(), sqlx::Error> {
        // Processes starting together migrate one at a time.
        let key = format!("interlock-migrate:{}", state.channel);
        let lock = SqlStr::from_static("SELECT pg_advisory_xact_lock(hashtext($1))");
        Self::execute(tx, lock, &[Param::Text(&key)]).await?;
        Ok(())
    }
}

impl DriverBatch for PostgresDriver {
    async fn append_batch(
        store: &PostgresStore,
        batch: Vec<interlock::store::AppendRequest>,
    ) -> Vec<Result<interlock::store::Committed, interlock::store::StoreError>> {
        match batch::append(store, &batch).await {
            Some(outcomes) => outcomes,
            None => savepoint::append(store, batch).await,
        }
    }

    fn records_outbox(store: &PostgresStore) -> bool {
        store.config().outbox
    }

    async fn after_write<'c>(store: &'c PostgresStore, tx: &'c mut PgConnection, last: i64) -> Result<(), sqlx::Error> {
        if store.config().notify {
            let params = [Param::Text(&store.state().channel), Param::Text(&last.to_string())];
            let notify = SqlStr::from_static("SELECT pg_notify($1, $2)");
            Self::execute(tx, notify, &params).await?;
        }
        Ok(())
    }
}
