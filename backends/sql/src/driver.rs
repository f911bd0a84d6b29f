//! The contract between the shared store code and a SQL driver.
//!
//! Every storage trait is implemented once, generically over a [`Driver`],
//! for [`SqlStore`](crate::SqlStore): the statements, the row decoding, the version checks
//! and the error mapping are shared. A driver adds only what differs per
//! database, in the spirit of sqlx's own `Database` trait:
//!
//! - the sqlx [`Database`] it runs on, its configuration and any per-store
//!   state of its own (associated types);
//! - a few constants of its dialect (names, the byte-string column type,
//!   how a write transaction starts);
//! - the two primitive calls, [`Driver::execute`] and [`Driver::fetch_all`]:
//!   a statement with [`Param`]s bound to `$1, $2 ...`, on a connection;
//! - locking out concurrent migrations, whose SQL has no common form.
//!
//! The batch append behind group commit, written against the store itself,
//! is the one step more a driver provides: [`DriverBatch`](crate::DriverBatch),
//! beside the store (so this contract sits below the store, which uses it).
//!
//! Rows are read through [`SqlRow`], implemented for the row type of every
//! sqlx database that decodes `i64`, text and bytes. The trait is sealed:
//! the drivers are [`SqliteDriver`](crate::SqliteDriver) (feature `sqlite`)
//! and [`PostgresDriver`](crate::PostgresDriver) (feature `postgres`).

use std::fmt::Debug;
use std::future::Future;

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, SqlStr, Type};

/// The connection type of driver `D`.
pub type Connection<D> = <<D as Driver>::Database as Database>::Connection;

/// The row type of driver `D`.
pub type Row<D> = <<D as Driver>::Database as Database>::Row;

/// What a SQL driver provides to the shared store code.
pub trait Driver: sealed::Sealed + Sized + Send + Sync + 'static {
    /// The sqlx database the driver runs on.
    type Database: Database<Row: SqlRow>;
    /// The settings a store of this driver is opened with.
    type Config: Clone + Debug + Send + Sync + 'static;
    /// What the driver keeps per store besides the shared parts (statements
    /// of its own, a notification channel).
    type State: Send + Sync + 'static;

    /// The backend's name in errors and health reports (`sqlite`).
    const NAME: &'static str;
    /// The name of the store type, for `Debug` (`SqliteStore`).
    const STORE: &'static str;
    /// The column type of byte strings (`BLOB`, `BYTEA`).
    const BYTES: &'static str;
    /// The statement that opens a write transaction; `None` for the
    /// driver's plain `BEGIN`.
    const BEGIN_WRITE: Option<&'static str>;

    /// Runs a statement with `params` bound to `$1, $2 ...`; returns the
    /// number of rows affected.
    fn execute<'c>(
        conn: &'c mut Connection<Self>,
        sql: SqlStr,
        params: &'c [Param<'c>],
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;

    /// Runs a query with `params` bound to `$1, $2 ...`; returns its rows.
    fn fetch_all<'c>(
        conn: &'c mut Connection<Self>,
        sql: SqlStr,
        params: &'c [Param<'c>],
    ) -> impl Future<Output = Result<Vec<Row<Self>>, sqlx::Error>> + Send + 'c;

    /// Keeps other processes from migrating the same tables until `tx`
    /// ends; called first in the migration transaction.
    fn lock_migrations<'c>(
        state: &'c Self::State,
        tx: &'c mut Connection<Self>,
    ) -> impl Future<Output = Result<(), sqlx::Error>> + Send + 'c;
}

/// A value bound to a statement parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param<'a> {
    /// A `BIGINT`.
    Int(i64),
    /// A `TEXT`.
    Text(&'a str),
    /// A `TEXT` that may be `NULL`.
    OptText(Option<&'a str>),
    /// A byte string.
    Bytes(&'a [u8]),
}

/// Binds `params` to `query`, in order: the one place that needs the
/// encoding bounds, for the drivers' [`Driver::execute`] and
/// [`Driver::fetch_all`].
pub(crate) fn bind<'q, DB>(query: Query<'q, DB, DB::Arguments>, params: &[Param<'_>]) -> Query<'q, DB, DB::Arguments>
where
    DB: Database,
    i64: Type<DB> + for<'t> Encode<'t, DB>,
    for<'t> &'t str: Type<DB> + Encode<'t, DB>,
    for<'t> Option<&'t str>: Type<DB> + Encode<'t, DB>,
    for<'t> &'t [u8]: Type<DB> + Encode<'t, DB>,
{
    params.iter().fold(query, |query, param| match *param {
        Param::Int(v) => query.bind(v),
        Param::Text(v) => query.bind(v),
        Param::OptText(v) => query.bind(v),
        Param::Bytes(v) => query.bind(v),
    })
}

/// Reading the columns of a row by index, with the few types the schema
/// uses.
pub trait SqlRow {
    /// A `BIGINT` column.
    ///
    /// # Errors
    ///
    /// When the column is missing or of another type.
    fn int(&self, column: usize) -> Result<i64, sqlx::Error>;

    /// A `BIGINT` column that may be `NULL`.
    ///
    /// # Errors
    ///
    /// When the column is missing or of another type.
    fn opt_int(&self, column: usize) -> Result<Option<i64>, sqlx::Error>;

    /// A `TEXT` column.
    ///
    /// # Errors
    ///
    /// When the column is missing or of another type.
    fn text(&self, column: usize) -> Result<String, sqlx::Error>;

    /// A `TEXT` column that may be `NULL`.
    ///
    /// # Errors
    ///
    /// When the column is missing or of another type.
    fn opt_text(&self, column: usize) -> Result<Option<String>, sqlx::Error>;

    /// A byte-string column.
    ///
    /// # Errors
    ///
    /// When the column is missing or of another type.
    fn bytes(&self, column: usize) -> Result<Vec<u8>, sqlx::Error>;
}

impl<R> SqlRow for R
where
    R: sqlx::Row,
    usize: ColumnIndex<R>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    String: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    Vec<u8>: Type<R::Database> + for<'r> Decode<'r, R::Database>,
{
    fn int(&self, column: usize) -> Result<i64, sqlx::Error> {
        self.try_get(column)
    }

    fn opt_int(&self, column: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(column)
    }

    fn text(&self, column: usize) -> Result<String, sqlx::Error> {
        self.try_get(column)
    }

    fn opt_text(&self, column: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(column)
    }

    fn bytes(&self, column: usize) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(column)
    }
}

pub(crate) mod sealed {
    /// Only this crate's drivers implement [`Driver`](super::Driver).
    pub trait Sealed {}
}
