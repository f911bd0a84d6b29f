//! The schema: the qualified table names, the versioned migrations, and
//! migrating a store's tables on open.

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
    pub(crate) leases: String,
}

/// Every name the schema derives from the table prefix: tables and indexes.
#[cfg(feature = "postgres")]
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
    "events_by_stream",
    "events_by_tenant",
    "events_in_tenant",
    "deadlines_by_due",
    "deadlines_by_key",
    "idempotency_by_until",
    "leases",
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
            leases: name("leases"),
        }
    }
}

/// The schema's current version (the last migration).
pub(crate) const SCHEMA_VERSION: i64 = 6;

/// The migrations, in order: (version, statements). `postgres` chooses
/// the dialect where the two differ (v5).
pub(crate) fn migrations(blob: &str, t: &Tables, postgres: bool) -> Vec<(i64, Vec<String>)> {
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
        (
            3,
            // The fingerprint of the command an idempotency record belongs
            // to (16 hex digits; NULL in records written before it).
            vec![format!("ALTER TABLE {idempotency} ADD COLUMN fingerprint TEXT")],
        ),
        (
            4,
            // A failed saga instance's failure (JSON) until its
            // compensation has run.
            vec![format!("ALTER TABLE {sagas} ADD COLUMN failure TEXT")],
        ),
        (
            5,
            // Tenants: a `tenant` column in the identity of every stream
            // ('' for a stream of no tenant), in the events' and the
            // snapshots' keys, and kept with idempotency records and dead
            // letters.
            if postgres {
                tenants_postgres(t)
            } else {
                tenants_sqlite(blob, t)
            },
        ),
        (
            6,
            // Subscribers' ownership leases: one owner instance at a time,
            // a fencing token raised at every change of owner.
            vec![format!(
                "CREATE TABLE IF NOT EXISTS {} (
                    subscriber TEXT PRIMARY KEY,
                    owner TEXT NOT NULL,
                    token BIGINT NOT NULL,
                    expires_at BIGINT NOT NULL
                )",
                t.leases
            )],
        ),
    ]
}

/// v5 on PostgreSQL: add the columns, swap the stream's unique key and the
/// snapshots' primary key for ones that hold the tenant.
fn tenants_postgres(t: &Tables) -> Vec<String> {
    let Tables {
        events,
        snapshots,
        idempotency,
        dead_letters,
        ..
    } = t;
    let p = &t.prefix;
    // The constraints' names were chosen by PostgreSQL (and may be
    // truncated): found by what they are.
    let drop = |table: &str, kind: &str, definition: &str| {
        let filter = if definition.is_empty() {
            String::new()
        } else {
            format!(" AND pg_get_constraintdef(oid) = '{definition}'")
        };
        format!(
            "DO $$ DECLARE c text; BEGIN
               FOR c IN SELECT conname FROM pg_constraint
                        WHERE conrelid = '{table}'::regclass AND contype = '{kind}'{filter} LOOP
                 EXECUTE format('ALTER TABLE {table} DROP CONSTRAINT %I', c);
               END LOOP;
             END $$"
        )
    };
    vec![
        format!("ALTER TABLE {events} ADD COLUMN IF NOT EXISTS tenant TEXT NOT NULL DEFAULT ''"),
        drop(events, "u", "UNIQUE (aggregate_type, aggregate_id, version)"),
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS {p}events_by_stream ON {events} (tenant, aggregate_type, aggregate_id, version)"
        ),
        format!("CREATE INDEX IF NOT EXISTS {p}events_by_tenant ON {events} (tenant, aggregate_type, position)"),
        format!("CREATE INDEX IF NOT EXISTS {p}events_in_tenant ON {events} (tenant, position)"),
        format!("ALTER TABLE {snapshots} ADD COLUMN IF NOT EXISTS tenant TEXT NOT NULL DEFAULT ''"),
        drop(snapshots, "p", ""),
        format!("ALTER TABLE {snapshots} ADD PRIMARY KEY (tenant, aggregate_type, aggregate_id)"),
        format!("ALTER TABLE {idempotency} ADD COLUMN IF NOT EXISTS tenant TEXT"),
        format!("ALTER TABLE {dead_letters} ADD COLUMN IF NOT EXISTS tenant TEXT NOT NULL DEFAULT ''"),
    ]
}

/// v5 on SQLite, which cannot change a table's keys: the events and
/// snapshots tables are rebuilt with the tenant in their keys.
fn tenants_sqlite(blob: &str, t: &Tables) -> Vec<String> {
    let Tables {
        events,
        snapshots,
        idempotency,
        dead_letters,
        ..
    } = t;
    let p = &t.prefix;
    let (new_events, new_snapshots) = (format!("\"{p}events_v5\""), format!("\"{p}snapshots_v5\""));
    let columns = "position, event_id, aggregate_type, aggregate_id, version, event_name, schema_version, payload, metadata, recorded_at";
    vec![
        format!(
            "CREATE TABLE {new_events} (
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
                tenant TEXT NOT NULL DEFAULT '',
                UNIQUE (tenant, aggregate_type, aggregate_id, version)
            )"
        ),
        format!("INSERT INTO {new_events} ({columns}, tenant) SELECT {columns}, '' FROM {events}"),
        format!("DROP TABLE {events}"),
        format!("ALTER TABLE {new_events} RENAME TO \"{p}events\""),
        format!("CREATE INDEX IF NOT EXISTS {p}events_by_name ON {events} (event_name, position)"),
        format!("CREATE INDEX IF NOT EXISTS {p}events_by_type ON {events} (aggregate_type, position)"),
        format!("CREATE INDEX IF NOT EXISTS {p}events_by_tenant ON {events} (tenant, aggregate_type, position)"),
        format!("CREATE INDEX IF NOT EXISTS {p}events_in_tenant ON {events} (tenant, position)"),
        format!(
            "CREATE TABLE {new_snapshots} (
                aggregate_type TEXT NOT NULL,
                aggregate_id TEXT NOT NULL,
                version BIGINT NOT NULL,
                state_version BIGINT NOT NULL,
                payload {blob} NOT NULL,
                taken_at BIGINT NOT NULL,
                tenant TEXT NOT NULL DEFAULT '',
                PRIMARY KEY (tenant, aggregate_type, aggregate_id)
            )"
        ),
        format!(
            "INSERT INTO {new_snapshots} (aggregate_type, aggregate_id, version, state_version, payload, taken_at, tenant)
             SELECT aggregate_type, aggregate_id, version, state_version, payload, taken_at, '' FROM {snapshots}"
        ),
        format!("DROP TABLE {snapshots}"),
        format!("ALTER TABLE {new_snapshots} RENAME TO \"{p}snapshots\""),
        format!("ALTER TABLE {idempotency} ADD COLUMN tenant TEXT"),
        format!("ALTER TABLE {dead_letters} ADD COLUMN tenant TEXT NOT NULL DEFAULT ''"),
    ]
}

/// The schema version the database is at (0 before the first migration).
pub(crate) fn schema_version_query(t: &Tables) -> String {
    format!("SELECT COALESCE(MAX(version), 0) FROM {}", t.migrations)
}

#[cfg(all(test, feature = "sqlite"))]
#[allow(clippy::expect_used)] // a failed expectation is a failed test
mod tests {
    use interlock::store::{EventStore, ExpectedVersion, SnapshotStore};
    use interlock::{StreamId, TenantId, Version};
    use sqlx::{AssertSqlSafe, Connection};

    use super::*;

    /// The statements that make a database of schema v4 holding one event
    /// of stream `bank.account/7` and its snapshot (`bytes`: the dialect's
    /// literal of the payload `{}`).
    fn v4_with_data(t: &Tables, blob: &str, postgres: bool, bytes: &str) -> Vec<String> {
        let mut statements = vec![format!(
            "CREATE TABLE {} (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            t.migrations
        )];
        for (version, steps) in migrations(blob, t, postgres) {
            if version > 4 {
                break;
            }
            statements.extend(steps);
            statements.push(format!("INSERT INTO {} VALUES ({version}, 0)", t.migrations));
        }
        statements.push(format!(
            "INSERT INTO {} (position, event_id, aggregate_type, aggregate_id, version, event_name, schema_version, payload, metadata, recorded_at)
             VALUES (1, '{}', 'bank.account', '7', 1, 'bank.opened', 1, {bytes}, '{{}}', 0)",
            t.events,
            interlock::EventId::new()
        ));
        statements.push(format!("UPDATE {} SET last = 1 WHERE id = 1", t.positions));
        statements.push(format!(
            "INSERT INTO {} (aggregate_type, aggregate_id, version, state_version, payload, taken_at)
             VALUES ('bank.account', '7', 1, 1, {bytes}, 0)",
            t.snapshots
        ));
        statements
    }

    /// After the migration: the old stream and snapshot are there, of no
    /// tenant, and a tenant may hold the same ids (the old unique key is
    /// gone).
    async fn check_migrated(store: &(impl EventStore + SnapshotStore)) {
        let old = StreamId::new("bank.account", "7");
        let events = store.read_stream(&old, Version(1), None).await.expect("read");
        assert_eq!(events.len(), 1);
        assert_eq!(
            (events[0].stream.tenant(), events[0].name.as_ref()),
            (None, "bank.opened")
        );
        let snapshot = store.load(&old).await.expect("snapshot").expect("kept");
        assert_eq!(snapshot.version, Version(1));
        let theirs = old.clone().in_tenant(Some(TenantId::new("acme").expect("tenant")));
        let event = interlock::store::NewEvent {
            event_id: interlock::EventId::new(),
            name: "bank.opened".into(),
            schema_version: interlock::SchemaVersion(1),
            payload: bytes::Bytes::from_static(b"{}"),
            metadata: interlock::store::EventMetadata::default(),
        };
        let committed = store
            .append(&theirs, ExpectedVersion::Exact(Version(0)), vec![event])
            .await
            .expect("a tenant's stream of the same id is new");
        assert_eq!(committed.version, Version(1));
        assert_eq!(store.stream_version(&old).await.expect("version"), Version(1));
    }

    /// A SQLite database at schema v4 holding data migrates to v5 (the
    /// tables rebuilt with the tenant in their keys) losing nothing.
    #[tokio::test]
    async fn a_v4_database_with_data_migrates_to_tenants() {
        let path = std::env::temp_dir().join(format!("interlock-v4-{}.db", ulid::Ulid::new()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let t = Tables::new(None, "interlock_");
        {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("connect");
            for statement in v4_with_data(&t, "BLOB", false, "X'7B7D'") {
                sqlx::query(AssertSqlSafe(statement))
                    .execute(&mut conn)
                    .await
                    .expect("v4 with data");
            }
        }
        let store = crate::SqliteStore::open(crate::SqliteConfig::file(&path))
            .await
            .expect("open migrates");
        check_migrated(&store).await;
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// The same on PostgreSQL: the stream's unique key and the snapshots'
    /// primary key are swapped for ones with the tenant, rows kept.
    #[cfg(feature = "postgres")]
    #[tokio::test]
    async fn a_v4_postgres_schema_with_data_migrates_to_tenants() {
        let Some(url) = std::env::var("INTERLOCK_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
            interlock::testing::skip_or_fail("PostgreSQL (set INTERLOCK_POSTGRES_URL)");
            return;
        };
        let schema = format!("v4_{}", ulid::Ulid::new().to_string().to_lowercase());
        let t = Tables::new(Some(&schema), "interlock_");
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        let mut statements = vec![format!("CREATE SCHEMA \"{schema}\"")];
        statements.extend(v4_with_data(&t, "BYTEA", true, "'\\x7b7d'"));
        for statement in statements {
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut conn)
                .await
                .expect("v4 with data");
        }
        let config = crate::PostgresConfig::new(url.as_str()).schema(schema.as_str());
        let store = crate::PostgresStore::open(config).await.expect("open migrates");
        check_migrated(&store).await;
        let _ = sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
            .execute(&mut conn)
            .await;
    }
}
