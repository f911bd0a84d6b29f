//! The SQL of both dialects: the schema as versioned migrations, and the
//! statements, built once per store from validated identifiers. Every value
//! is a bound parameter (`$1`, `$2` ... in both dialects).

use std::sync::Arc;

use interlock::store::StoreError;

/// The differences between the two dialects that the statements need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    #[cfg(feature = "sqlite")]
    Sqlite,
    #[cfg(feature = "postgres")]
    Postgres,
}

impl Dialect {
    fn blob(self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => "BLOB",
            #[cfg(feature = "postgres")]
            Dialect::Postgres => "BYTEA",
        }
    }

    pub(crate) fn backend(self) -> &'static str {
        match self {
            #[cfg(feature = "sqlite")]
            Dialect::Sqlite => "sqlite",
            #[cfg(feature = "postgres")]
            Dialect::Postgres => "postgres",
        }
    }
}

/// The schema's current version (the last migration).
pub(crate) const SCHEMA_VERSION: i64 = 2;

/// The migrations, in order: (version, statements).
pub(crate) fn migrations(dialect: Dialect, t: &Tables) -> Vec<(i64, Vec<String>)> {
    let blob = dialect.blob();
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

/// The columns of an event row, in the order the row decoder reads them.
pub(crate) const EVENT_COLUMNS: &str = "position, event_id, aggregate_type, aggregate_id, version, event_name, schema_version, payload, metadata, recorded_at";

/// Every statement, built once.
#[derive(Clone, Debug)]
pub(crate) struct Queries {
    pub(crate) tables: Tables,
    pub(crate) stream_version: Arc<str>,
    pub(crate) bump_positions: Arc<str>,
    pub(crate) insert_event: Arc<str>,
    pub(crate) read_stream: Arc<str>,
    pub(crate) read_stream_for_load: Arc<str>,
    pub(crate) head: Arc<str>,
    pub(crate) rewrite: Arc<str>,
    pub(crate) snapshot_load: Arc<str>,
    pub(crate) snapshot_save: Arc<str>,
    pub(crate) idem_insert: Arc<str>,
    pub(crate) idem_select: Arc<str>,
    pub(crate) idem_reclaim: Arc<str>,
    pub(crate) idem_complete: Arc<str>,
    pub(crate) idem_release: Arc<str>,
    pub(crate) idem_purge: Arc<str>,
    pub(crate) checkpoint_load: Arc<str>,
    pub(crate) checkpoint_save: Arc<str>,
    pub(crate) dlq_park: Arc<str>,
    pub(crate) dlq_list: Arc<str>,
    pub(crate) dlq_remove: Arc<str>,
    pub(crate) saga_load: Arc<str>,
    pub(crate) saga_create: Arc<str>,
    pub(crate) saga_update: Arc<str>,
    pub(crate) saga_delete: Arc<str>,
    pub(crate) deadline_insert: Arc<str>,
    pub(crate) deadline_cancel: Arc<str>,
    pub(crate) deadline_delete_key: Arc<str>,
    pub(crate) deadline_due: Arc<str>,
    pub(crate) outbox_insert_range: Arc<str>,
    pub(crate) outbox_pending: Arc<str>,
}

impl Queries {
    pub(crate) fn new(tables: Tables) -> Self {
        let t = &tables;
        let q = |s: String| -> Arc<str> { s.into() };
        Self {
            stream_version: q(format!(
                "SELECT COALESCE(MAX(version), 0) FROM {} WHERE aggregate_type = $1 AND aggregate_id = $2",
                t.events
            )),
            bump_positions: q(format!("UPDATE {} SET last = last + $1 WHERE id = 1 RETURNING last", t.positions)),
            insert_event: q(format!(
                "INSERT INTO {} ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                t.events
            )),
            read_stream: q(format!(
                "SELECT {EVENT_COLUMNS} FROM {} WHERE aggregate_type = $1 AND aggregate_id = $2 AND version >= $3 AND version <= $4 ORDER BY version",
                t.events
            )),
            read_stream_for_load: q(format!(
                "SELECT position, event_id, version, event_name, schema_version, payload FROM {}
                 WHERE aggregate_type = $1 AND aggregate_id = $2 AND version >= $3 ORDER BY version",
                t.events
            )),
            head: q(format!("SELECT last FROM {} WHERE id = 1", t.positions)),
            rewrite: q(format!(
                "UPDATE {} SET event_name = $1, schema_version = $2, payload = $3 WHERE position = $4",
                t.events
            )),
            snapshot_load: q(format!(
                "SELECT version, state_version, payload, taken_at FROM {} WHERE aggregate_type = $1 AND aggregate_id = $2",
                t.snapshots
            )),
            snapshot_save: q(format!(
                "INSERT INTO {} AS s (aggregate_type, aggregate_id, version, state_version, payload, taken_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (aggregate_type, aggregate_id) DO UPDATE
                 SET version = excluded.version, state_version = excluded.state_version,
                     payload = excluded.payload, taken_at = excluded.taken_at
                 WHERE s.version <= excluded.version",
                t.snapshots
            )),
            idem_insert: q(format!(
                "INSERT INTO {} (command_id, status, until) VALUES ($1, 'claimed', $2) ON CONFLICT (command_id) DO NOTHING",
                t.idempotency
            )),
            idem_select: q(format!(
                "SELECT status, until, aggregate_type, aggregate_id, version, output, recorded_at FROM {} WHERE command_id = $1",
                t.idempotency
            )),
            idem_reclaim: q(format!(
                "UPDATE {} SET status = 'claimed', until = $2, aggregate_type = NULL, aggregate_id = NULL,
                     version = NULL, output = NULL, recorded_at = NULL
                 WHERE command_id = $1 AND until <= $3",
                t.idempotency
            )),
            idem_complete: q(format!(
                "INSERT INTO {} AS i (command_id, status, until, aggregate_type, aggregate_id, version, output, recorded_at)
                 VALUES ($1, 'done', $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (command_id) DO UPDATE
                 SET status = 'done', until = excluded.until, aggregate_type = excluded.aggregate_type,
                     aggregate_id = excluded.aggregate_id, version = excluded.version,
                     output = excluded.output, recorded_at = excluded.recorded_at",
                t.idempotency
            )),
            idem_release: q(format!("DELETE FROM {} WHERE command_id = $1 AND status = 'claimed'", t.idempotency)),
            idem_purge: q(format!("DELETE FROM {} WHERE until <= $1", t.idempotency)),
            checkpoint_load: q(format!("SELECT position FROM {} WHERE subscriber = $1", t.checkpoints)),
            checkpoint_save: q(format!(
                "INSERT INTO {} (subscriber, position) VALUES ($1, $2)
                 ON CONFLICT (subscriber) DO UPDATE SET position = excluded.position",
                t.checkpoints
            )),
            dlq_park: q(format!(
                "INSERT INTO {} (subscriber, event_id, position, aggregate_type, aggregate_id, version, event_name,
                     schema_version, payload, metadata, error, attempts, parked_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (subscriber, event_id) DO UPDATE
                 SET error = excluded.error, attempts = excluded.attempts, parked_at = excluded.parked_at",
                t.dead_letters
            )),
            dlq_list: q(format!(
                "SELECT {EVENT_COLUMNS}, error, attempts, parked_at FROM {} WHERE subscriber = $1 ORDER BY position",
                t.dead_letters
            )
            .replace("recorded_at, error", "parked_at AS recorded_at, error")),
            dlq_remove: q(format!("DELETE FROM {} WHERE subscriber = $1 AND event_id = $2", t.dead_letters)),
            saga_load: q(format!(
                "SELECT state, version, last_position FROM {} WHERE saga = $1 AND saga_key = $2",
                t.sagas
            )),
            saga_create: q(format!(
                "INSERT INTO {} (saga, saga_key, state, version, last_position) VALUES ($1, $2, $3, 1, $4)
                 ON CONFLICT (saga, saga_key) DO NOTHING",
                t.sagas
            )),
            saga_update: q(format!(
                "UPDATE {} SET state = $3, version = version + 1, last_position = $4
                 WHERE saga = $1 AND saga_key = $2 AND version = $5",
                t.sagas
            )),
            saga_delete: q(format!("DELETE FROM {} WHERE saga = $1 AND saga_key = $2 AND version = $3", t.sagas)),
            deadline_insert: q(format!(
                "INSERT INTO {} (id, saga, saga_key, due, event_name, schema_version, payload, correlation_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                t.deadlines
            )),
            deadline_cancel: q(format!("DELETE FROM {} WHERE id = $1", t.deadlines)),
            deadline_delete_key: q(format!("DELETE FROM {} WHERE saga = $1 AND saga_key = $2", t.deadlines)),
            deadline_due: q(format!(
                "SELECT id, saga, saga_key, due, event_name, schema_version, payload, correlation_id FROM {}
                 WHERE saga = $1 AND due <= $2 ORDER BY due, id LIMIT $3",
                t.deadlines
            )),
            outbox_insert_range: q(format!(
                "INSERT INTO {} (position) SELECT position FROM {} WHERE position >= $1 AND position <= $2",
                t.outbox, t.events
            )),
            outbox_pending: q(format!(
                "SELECT {} FROM {} o JOIN {} e ON e.position = o.position ORDER BY o.position LIMIT $1",
                EVENT_COLUMNS.split(", ").map(|c| format!("e.{c}")).collect::<Vec<_>>().join(", "),
                t.outbox,
                t.events
            )),
            tables,
        }
    }

    /// Deletes published outbox rows: `$1 .. $n` the positions.
    pub(crate) fn outbox_mark(&self, n: usize) -> String {
        let list: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
        format!(
            "DELETE FROM {} WHERE position IN ({})",
            self.tables.outbox,
            list.join(", ")
        )
    }

    /// `read_all` with its filter: `$1` the position, `$2` the limit, then
    /// the names and types.
    pub(crate) fn read_all(&self, names: usize, types: usize) -> String {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM {} WHERE position > $1", self.tables.events);
        let mut next = 3;
        for (column, count) in [("event_name", names), ("aggregate_type", types)] {
            if count > 0 {
                let list: Vec<String> = (next..next + count).map(|i| format!("${i}")).collect();
                sql.push_str(&format!(" AND {column} IN ({})", list.join(", ")));
                next += count;
            }
        }
        sql.push_str(" ORDER BY position LIMIT $2");
        sql
    }
}

/// Maps a driver error: connection and pool failures (and lock timeouts)
/// are `Unavailable` (retryable), the rest `Backend`.
pub(crate) fn store_error(backend: &'static str, error: sqlx::Error) -> StoreError {
    let unavailable = match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: connection exceptions (08), shutdown (57P0x);
            // SQLite: busy (5) and locked (6).
            code.starts_with("08") || code.starts_with("57P0") || code == "5" || code == "6"
        }
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable {
            backend,
            source: Box::new(error),
        }
    } else {
        StoreError::Backend {
            backend,
            source: Box::new(error),
        }
    }
}

/// Whether a driver error is a unique-constraint violation.
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_bind_every_value() {
        let q = Queries::new(Tables::new(Some("s"), "p_"));
        let sql = q.read_all(2, 1);
        assert!(
            sql.contains("event_name IN ($3, $4)") && sql.contains("aggregate_type IN ($5)"),
            "{sql}"
        );
        assert!(sql.ends_with("LIMIT $2"));
        assert!(q.tables.events == "\"s\".\"p_events\"");
    }
}
