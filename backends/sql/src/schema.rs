//! The schema: the qualified table names, the versioned migrations, and
//! migrating a store's tables on open.

use interlock::Timestamp;
use interlock::store::StoreError;
use sqlx::{AssertSqlSafe, SqlSafeStr};

use crate::driver::{Driver, Param, SqlRow};
use crate::store::SqlStore;

/// The qualified names of the tables.
#[derive(Clone, Debug)]
pub(crate) struct Tables {
    /// The prefix alone, for index names.
    pub(crate) prefix: String,
    pub(crate) migrations: String,
    pub(crate) events: String,
    pub(crate) positions: String,
    pub(crate) snapshots: String,
    pub(crate) idempotency: String,
    pub(crate) checkpoints: String,
    pub(crate) dead_letters: String,
    pub(crate) sagas: String,
    pub(crate) deadlines: String,
    pub(crate) outbox: String,
}

/// Every name the schema derives from the table prefix: tables and indexes.
pub(crate) const DERIVED_NAMES: &[&str] = &[
    "schema_migrations",
    "events",
    "positions",
    "snapshots",
    "idempotency",
    "checkpoints",
    "dead_letters",
    "saga_instances",
    "saga_deadlines",
    "outbox",
    "events_by_name",
    "events_by_type",
    "deadlines_by_due",
    "deadlines_by_key",
    "idempotency_by_until",
];

impl Tables {
    /// Names from a validated schema (PostgreSQL) and prefix.
    pub(crate) fn new(schema: Option<&str>, prefix: &str) -> Self {
        let name = |table: &str| match schema {
            Some(s) => format!("\"{s}\".\"{prefix}{table}\""),
            None => format!("\"{prefix}{table}\""),
        };
        Self {
            prefix: prefix.to_owned(),
            migrations: name("schema_migrations"),
            events: name("events"),
            positions: name("positions"),
            snapshots: name("snapshots"),
            idempotency: name("idempotency"),
            checkpoints: name("checkpoints"),
            dead_letters: name("dead_letters"),
            sagas: name("saga_instances"),
            deadlines: name("saga_deadlines"),
            outbox: name("outbox"),
        }
    }
}

/// The schema's current version (the last migration).
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The migrations, in order: (version, statements).
fn migrations(blob: &str, t: &Tables) -> Vec<(i64, Vec<String>)> {
    let Tables {
        events,
        positions,
        snapshots,
        idempotency,
        checkpoints,
        dead_letters,
        sagas,
        deadlines,
        ..
    } = t;
    let p = &t.prefix;
    vec![
        (
            1,
            vec![
                format!(
                    "CREATE TABLE IF NOT EXISTS {events} (
                    position BIGINT PRIMARY KEY,
                    event_id TEXT NOT NULL UNIQUE,
                    aggregate_type TEXT NOT NULL,
                    aggregate_id TEXT NOT NULL,
                    version BIGINT NOT NULL,
                    event_name TEXT NOT NULL,
                    schema_version BIGINT NOT NULL,
                    payload {blob} NOT NULL,
                    metadata TEXT NOT NULL,
                    recorded_at BIGINT NOT NULL,
                    UNIQUE (aggregate_type, aggregate_id, version)
                )"
                ),
                format!("CREATE INDEX IF NOT EXISTS {p}events_by_name ON {events} (event_name, position)"),
                format!("CREATE INDEX IF NOT EXISTS {p}events_by_type ON {events} (aggregate_type, position)"),
                format!("CREATE TABLE IF NOT EXISTS {positions} (id BIGINT PRIMARY KEY, last BIGINT NOT NULL)"),
                format!("INSERT INTO {positions} (id, last) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"),
                format!(
                    "CREATE TABLE IF NOT EXISTS {snapshots} (
                    aggregate_type TEXT NOT NULL,
                    aggregate_id TEXT NOT NULL,
                    version BIGINT NOT NULL,
                    state_version BIGINT NOT NULL,
                    payload {blob} NOT NULL,
                    taken_at BIGINT NOT NULL,
                    PRIMARY KEY (aggregate_type, aggregate_id)
                )"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {idempotency} (
                    command_id TEXT PRIMARY KEY,
                    status TEXT NOT NULL,
                    until BIGINT NOT NULL,
                    aggregate_type TEXT,
                    aggregate_id TEXT,
                    version BIGINT,
                    output {blob},
                    recorded_at BIGINT
                )"
                ),
                format!("CREATE INDEX IF NOT EXISTS {p}idempotency_by_until ON {idempotency} (until)"),
                format!(
                    "CREATE TABLE IF NOT EXISTS {checkpoints} (subscriber TEXT PRIMARY KEY, position BIGINT NOT NULL)"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {dead_letters} (
                    subscriber TEXT NOT NULL,
                    event_id TEXT NOT NULL,
                    position BIGINT NOT NULL,
                    aggregate_type TEXT NOT NULL,
                    aggregate_id TEXT NOT NULL,
                    version BIGINT NOT NULL,
                    event_name TEXT NOT NULL,
                    schema_version BIGINT NOT NULL,
                    payload {blob} NOT NULL,
                    metadata TEXT NOT NULL,
                    error TEXT NOT NULL,
                    attempts BIGINT NOT NULL,
                    parked_at BIGINT NOT NULL,
                    PRIMARY KEY (subscriber, event_id)
                )"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {sagas} (
                    saga TEXT NOT NULL,
                    saga_key TEXT NOT NULL,
                    state {blob} NOT NULL,
                    version BIGINT NOT NULL,
                    last_position BIGINT NOT NULL,
                    PRIMARY KEY (saga, saga_key)
                )"
                ),
                format!(
                    "CREATE TABLE IF NOT EXISTS {deadlines} (
                    id TEXT PRIMARY KEY,
                    saga TEXT NOT NULL,
                    saga_key TEXT NOT NULL,
                    due BIGINT NOT NULL,
                    event_name TEXT NOT NULL,
                    schema_version BIGINT NOT NULL,
                    payload {blob} NOT NULL,
                    correlation_id TEXT
                )"
                ),
                format!("CREATE INDEX IF NOT EXISTS {p}deadlines_by_due ON {deadlines} (saga, due)"),
                format!("CREATE INDEX IF NOT EXISTS {p}deadlines_by_key ON {deadlines} (saga, saga_key)"),
            ],
        ),
        (
            2,
            // The transactional outbox: positions appended but not yet published.
            vec![format!(
                "CREATE TABLE IF NOT EXISTS {} (position BIGINT PRIMARY KEY)",
                t.outbox
            )],
        ),
    ]
}

impl<D: Driver> SqlStore<D> {
    /// Creates the tables, or brings them to the current schema, in one
    /// transaction that other migrating processes wait for.
    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        let err = |e| crate::error::store_error(D::NAME, e);
        let t = &self.queries().tables;
        let mut tx = self.begin_write().await.map_err(err)?;
        D::lock_migrations(self.state(), &mut tx).await.map_err(err)?;
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            t.migrations
        );
        D::execute(&mut tx, sql(create), &[]).await.map_err(err)?;
        let rows = D::fetch_all(&mut tx, sql(schema_version_query(t)), &[])
            .await
            .map_err(err)?;
        let current = match rows.first() {
            Some(row) => row.int(0).map_err(err)?,
            None => 0,
        };
        if current > SCHEMA_VERSION {
            return Err(StoreError::Backend {
                backend: D::NAME,
                source: format!("the database schema is at version {current}, newer than this code ({SCHEMA_VERSION})")
                    .into(),
            });
        }
        for (version, statements) in migrations(D::BYTES, t) {
            if version <= current {
                continue;
            }
            for statement in statements {
                D::execute(&mut tx, sql(statement), &[]).await.map_err(err)?;
            }
            let record = format!("INSERT INTO {} (version, applied_at) VALUES ($1, $2)", t.migrations);
            let params = [Param::Int(version), Param::Int(Timestamp::now().0)];
            D::execute(&mut tx, sql(record), &params).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }
}

/// The schema version the database is at (0 before the first migration).
pub(crate) fn schema_version_query(t: &Tables) -> String {
    format!("SELECT COALESCE(MAX(version), 0) FROM {}", t.migrations)
}

fn sql(statement: String) -> sqlx::SqlStr {
    AssertSqlSafe(statement).into_sql_str()
}
