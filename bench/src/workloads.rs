//! The workloads W1-W7 and their baselines (W8 is in `w8.rs`).

use interlock::AggregateConfig;
use interlock::DispatchOptions;
use interlock::ProjectionConfig;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use interlock::prelude::*;
use interlock::store::EventStore;
use interlock::store::MemoryEventStore;
use interlock::store::{EventFilter, EventMetadata, ExpectedVersion, NewEvent};
use interlock::store::{Snapshot, SnapshotStore};
use interlock::{EventId, Position, StreamId, Timestamp};
use interlock_sql::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};
use sqlx::AssertSqlSafe;

use crate::domain::{Account, Deposit, MoneyDeposited, OpenAccount, Total, Totals};
use crate::report::{Line, reset_peak_rss};
use crate::{Backend, Options};

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

pub(crate) async fn run(workload: &str, options: &Options) -> Result<(), Error> {
    reset_peak_rss();
    if options.backend == Some(Backend::Mongodb) {
        return match workload {
            w @ ("W2" | "W3") => crate::mongo::w2_w3(options, if w == "W2" { "W2" } else { "W3" }).await,
            "W5" => crate::mongo::w5(options).await,
            "W7" => crate::mongo::w7(options).await,
            other => Err(format!("{other} does not run on mongodb (W2, W3, W5, W7 do)").into()),
        };
    }
    if options.backend == Some(Backend::Redis) {
        return match workload {
            "W1" => crate::redis::w1(options).await,
            "W5" => crate::redis::w5(options).await,
            other => Err(format!("{other} does not run on redis (W1, W5 do)").into()),
        };
    }
    if workload == "W10" {
        return match options.backend {
            None | Some(Backend::Nats) => crate::w10::w10(options, false).await,
            Some(Backend::Kafka) => crate::w10::w10(options, true).await,
            Some(_) => Err("W10 runs on a transport: --backend nats or kafka".into()),
        };
    }
    if matches!(options.backend, Some(Backend::Nats | Backend::Kafka)) {
        return Err(format!("{workload} does not run on a transport (W10 does)").into());
    }
    match workload {
        "W1" => crate::w1::w1(options).await,
        "W1-DISPATCH" => crate::w1::w1_dispatch_only(options).await,
        "W1-MEMORY" => crate::w1::w1_memory(options).await,
        "W2" => w2(options).await,
        "W3" => w3(options).await,
        "W3-CATEGORY" => crate::constraints::w3_category(options).await,
        "W4" => w4(options).await,
        "W5" => w5(options).await,
        "W6" => w6(options).await,
        "W7" => w7(options).await,
        "W8" => crate::w8::run(options),
        "W12" => crate::w12::w12(options).await,
        other => Err(format!("unknown workload {other}").into()),
    }
}

fn postgres_url() -> String {
    std::env::var("INTERLOCK_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A PostgreSQL store in a fresh schema, and a guard that drops it.
pub(crate) async fn postgres() -> Result<(PostgresStore, String), Error> {
    postgres_with(true).await
}

async fn postgres_with(notify: bool) -> Result<(PostgresStore, String), Error> {
    let schema = format!("bench_{}", ulid::Ulid::new().to_string().to_lowercase());
    let config = PostgresConfig::new(postgres_url())
        .schema(schema.as_str())
        .max_connections(20)
        .notify(notify);
    let store = PostgresStore::open(config).await?;
    Ok((store, schema))
}

pub(crate) async fn drop_schema(store: &PostgresStore, schema: &str) {
    let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
    if let Ok(mut tx) = store.begin().await {
        let _ = sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await;
        let _ = tx.commit().await;
    }
}

async fn sqlite(durable: bool) -> Result<(SqliteStore, std::path::PathBuf), Error> {
    let path = std::env::temp_dir().join(format!("interlock-bench-{}.db", ulid::Ulid::new()));
    let store = SqliteStore::open(SqliteConfig::file(&path).max_connections(8).durable_commits(durable)).await?;
    Ok((store, path))
}

fn remove_sqlite(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

pub(crate) async fn app_with(backend: impl interlock::store::Backend) -> Result<Application, Error> {
    Ok(Application::builder()
        .aggregate::<Account>()
        .backend(backend)
        .max_attempts(100_000)
        .build()
        .await?)
}

pub(crate) async fn open_accounts(app: &Application, accounts: u64) -> Result<(), Error> {
    for account in 0..accounts {
        app.dispatch(OpenAccount { account }).await?;
    }
    Ok(())
}

/// Runs `ops` deposits from `tasks` tasks; task `t` uses the accounts
/// `accounts(t, i)` returns. Returns (seconds, latencies, conflict retries).
pub(crate) async fn deposits(
    app: &Application,
    tasks: u64,
    ops: u64,
    accounts: fn(u64, u64) -> u64,
) -> Result<(f64, Vec<Duration>, u64), Error> {
    let app = app.clone();
    spread(tasks, ops, move |t, i| {
        let app = app.clone();
        async move {
            let deposit = Deposit {
                account: accounts(t, i),
                amount: 1,
            };
            let done = app
                .dispatch_with(deposit, DispatchOptions::new())
                .await
                .map_err(|e| e.to_string())?;
            Ok(u64::from(done.attempts - 1))
        }
    })
    .await
}

/// Runs `ops` operations spread over `tasks` tasks (`op(task, n)`, which
/// answers its retries): seconds, every operation's latency, retries.
pub(crate) async fn spread<F, Fut>(tasks: u64, ops: u64, op: F) -> Result<(f64, Vec<Duration>, u64), Error>
where
    F: Fn(u64, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<u64, String>> + Send,
{
    let retries = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (op, retries) = (op.clone(), Arc::clone(&retries));
        let each = ops / tasks + u64::from(t < ops % tasks);
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(each as usize);
            for i in 0..each {
                let began = Instant::now();
                retries.fetch_add(op(t, i).await?, Ordering::Relaxed);
                latencies.push(began.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(ops as usize);
    for h in handles {
        latencies.extend(h.await??);
    }
    Ok((
        started.elapsed().as_secs_f64(),
        latencies,
        retries.load(Ordering::Relaxed),
    ))
}

/// The raw-insert baseline: one INSERT of the event row shape per
/// transaction, with plain sqlx over the store's pool, from `tasks` tasks.
macro_rules! raw_insert_baseline {
    ($store:expr, $table:expr, $tasks:expr, $ops:expr) => {
        raw_insert_baseline!($store, $table, $tasks, $ops, false)
    };
    ($store:expr, $table:expr, $tasks:expr, $ops:expr, $same_indexes:expr) => {{
        let store = $store.clone();
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (position BIGINT PRIMARY KEY, event_id TEXT NOT NULL, aggregate_type TEXT NOT NULL,
             aggregate_id TEXT NOT NULL, version BIGINT NOT NULL, event_name TEXT NOT NULL, schema_version BIGINT NOT NULL,
             payload BYTEA NOT NULL, metadata TEXT NOT NULL, recorded_at BIGINT NOT NULL)",
            $table
        );
        let mut tx = store.begin().await?;
        sqlx::query(AssertSqlSafe(create)).execute(&mut *tx).await?;
        if $same_indexes {
            // The indexes of the framework's events table, for comparison.
            let table: String = format!("{}", $table);
            let bare = table.replace('"', "").replace('.', "_");
            for (name, columns, unique) in [
                ("id", "event_id", true),
                ("stream", "aggregate_type, aggregate_id, version", true),
                ("name", "event_name, position", false),
                ("type", "aggregate_type, position", false),
            ] {
                let sql = format!(
                    "CREATE {}INDEX IF NOT EXISTS {bare}_{name} ON {table} ({columns})",
                    if unique { "UNIQUE " } else { "" }
                );
                sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        let insert: Arc<str> = format!(
            "INSERT INTO {} (position, event_id, aggregate_type, aggregate_id, version, event_name, schema_version, payload, metadata, recorded_at)
             VALUES ($1, $2, 'bench.account', $3, $1, 'bench.money_deposited', 1, $4, '{{}}', $5)",
            $table
        )
        .into();
        let next = Arc::new(AtomicI64::new(1));
        let tasks: u64 = std::hint::black_box($tasks);
        let started = Instant::now();
        let mut handles = Vec::new();
        for t in 0..tasks {
            let (store, insert, next) = (store.clone(), Arc::clone(&insert), Arc::clone(&next));
            let each = $ops / tasks + u64::from(t < $ops % tasks);
            handles.push(tokio::spawn(async move {
                for _ in 0..each {
                    let position = next.fetch_add(1, Ordering::Relaxed);
                    let payload = serde_json::to_vec(&MoneyDeposited { amount: 1 }).map_err(|e| e.to_string())?;
                    let mut tx = store.begin().await.map_err(|e| e.to_string())?;
                    sqlx::query(AssertSqlSafe(Arc::clone(&insert)))
                        .bind(position)
                        .bind(EventId::new().to_string())
                        .bind((position % 1000).to_string())
                        .bind(payload)
                        .bind(Timestamp::now().0)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| e.to_string())?;
                    tx.commit().await.map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            }));
        }
        for h in handles {
            h.await??;
        }
        $ops as f64 / started.elapsed().as_secs_f64()
    }};
}

fn raw_table_pg(schema: &str) -> String {
    format!("\"{schema}\".raw_events")
}

/// W4's baseline: a peer that serialises the writers of each aggregate with
/// a PostgreSQL advisory lock. Each command is one transaction: take the
/// account's lock, read its version, insert the event at the next version;
/// 16 tasks on the same 4 accounts, so nothing ever conflicts.
async fn advisory_lock_baseline(store: &PostgresStore, schema: &str, tasks: u64, ops: u64) -> Result<f64, Error> {
    let table: Arc<str> = format!("\"{schema}\".locked_events").into();
    let mut tx = store.begin().await?;
    let create = format!(
        "CREATE TABLE IF NOT EXISTS {table} (aggregate_id BIGINT NOT NULL, version BIGINT NOT NULL,
         event_id TEXT NOT NULL, payload BYTEA NOT NULL, recorded_at BIGINT NOT NULL, PRIMARY KEY (aggregate_id, version))"
    );
    sqlx::query(AssertSqlSafe(create)).execute(&mut *tx).await?;
    tx.commit().await?;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (store, table) = (store.clone(), Arc::clone(&table));
        let each = ops / tasks + u64::from(t < ops % tasks);
        handles.push(tokio::spawn(async move {
            for i in 0..each {
                let account = i64::try_from((t + i) % 4).map_err(|e| e.to_string())?;
                let payload = serde_json::to_vec(&MoneyDeposited { amount: 1 }).map_err(|e| e.to_string())?;
                let mut tx = store.begin().await.map_err(|e| e.to_string())?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(account)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?;
                let version: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT COALESCE(MAX(version), 0) FROM {table} WHERE aggregate_id = $1"
                )))
                .bind(account)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
                sqlx::query(AssertSqlSafe(format!(
                    "INSERT INTO {table} (aggregate_id, version, event_id, payload, recorded_at) VALUES ($1, $2, $3, $4, $5)"
                )))
                .bind(account)
                .bind(version + 1)
                .bind(EventId::new().to_string())
                .bind(payload)
                .bind(Timestamp::now().0)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
                tx.commit().await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(ops as f64 / started.elapsed().as_secs_f64())
}

/// W2: PostgreSQL, 1 task, 1 000 accounts, 20 000 deposits; with
/// `LISTEN/NOTIFY` (the default), then without.
async fn w2(options: &Options) -> Result<(), Error> {
    for notify in [true, false] {
        let ops = options.ops(20_000);
        let (store, schema) = postgres_with(notify).await?;
        let app = app_with(store.clone()).await?;
        open_accounts(&app, 1000).await?;
        let (secs, latencies, _) = deposits(&app, 1, ops, |_, i| i % 1000).await?;
        let baseline = raw_insert_baseline!(store, raw_table_pg(&schema), 1u64, ops);
        let indexed_table = format!("\"{schema}\".raw_indexed");
        let indexed = raw_insert_baseline!(store, indexed_table.clone(), 1u64, ops, true);
        Line {
            workload: "W2",
            backend: "postgres",
            ops,
            secs,
            latencies,
            baseline: "raw-insert",
            baseline_ops_per_sec: baseline,
            extra: vec![
                ("statements_per_command", STATEMENTS_PER_COMMAND.to_string()),
                ("notify", notify.to_string()),
                ("baseline_same_indexes_ops_per_sec", format!("{indexed:.0}")),
            ],
        }
        .print();
        drop_schema(&store, &schema).await;
    }
    Ok(())
}

/// Round trips of one dispatch on PostgreSQL in the common case (cached
/// aggregate, one event): the group committer's one-statement batch append
/// (`PostgresStore::fast_append`, autocommit). Read off the code path; the
/// savepoint path (8) runs only after a unique violation or for two appends
/// to one stream in a batch.
const STATEMENTS_PER_COMMAND: u32 = 1;

/// W3: PostgreSQL, 16 tasks on disjoint accounts, 50 000 commands.
async fn w3(options: &Options) -> Result<(), Error> {
    let ops = options.ops(50_000);
    let (store, schema) = postgres().await?;
    let app = app_with(store.clone()).await?;
    open_accounts(&app, 16 * 64).await?;
    let (secs, latencies, retries) = deposits(&app, 16, ops, |t, i| t * 64 + i % 64).await?;
    let baseline = raw_insert_baseline!(store, raw_table_pg(&schema), 16u64, ops);
    Line {
        workload: "W3",
        backend: "postgres",
        ops,
        secs,
        latencies,
        baseline: "raw-insert-16-tasks",
        baseline_ops_per_sec: baseline,
        extra: vec![("retries", retries.to_string())],
    }
    .print();
    drop_schema(&store, &schema).await;
    Ok(())
}

/// W4: PostgreSQL, 16 tasks all on the same 4 accounts: every command
/// completes through conflict retry; balances equal the deposits.
async fn w4(options: &Options) -> Result<(), Error> {
    let ops = options.ops(16_000);
    let (store, schema) = postgres().await?;
    let app = app_with(store.clone()).await?;
    open_accounts(&app, 4).await?;
    let (secs, latencies, retries) = deposits(&app, 16, ops, |t, i| (t + i) % 4).await?;
    let mut total = 0;
    for account in 0..4 {
        total += app.load::<Account>(&account).await?.state.balance;
    }
    if total != ops {
        return Err(format!("lost updates: balances sum to {total}, {ops} deposits acknowledged").into());
    }
    let baseline = advisory_lock_baseline(&store, &schema, 16, ops).await?;
    Line {
        workload: "W4",
        backend: "postgres",
        ops,
        secs,
        latencies,
        baseline: "advisory-lock-per-aggregate",
        baseline_ops_per_sec: baseline,
        extra: vec![
            ("retries", retries.to_string()),
            ("retries_per_command", format!("{:.2}", retries as f64 / ops as f64)),
            ("balances_ok", "true".into()),
        ],
    }
    .print();
    drop_schema(&store, &schema).await;
    Ok(())
}

pub(crate) fn deposit_events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|_| NewEvent {
            event_id: EventId::new(),
            name: "bench.money_deposited".into(),
            schema_version: SchemaVersion(1),
            payload: br#"{"amount":1}"#.to_vec().into(),
            metadata: EventMetadata::default(),
        })
        .collect()
}

/// W5's account 7: `events` deposits, appended 500 at a time.
pub(crate) async fn w5_account(store: &impl EventStore, events: usize) -> Result<(), Error> {
    let stream = StreamId::new("bench.account", "7");
    for chunk in 0..events.div_ceil(500) {
        let n = 500.min(events - chunk * 500);
        store.append(&stream, ExpectedVersion::Any, deposit_events(n)).await?;
    }
    Ok(())
}

/// Loads W5's account `loads` times without cache or snapshot: the
/// seconds it took and each load's latency.
pub(crate) async fn w5_loads(
    backend: impl interlock::store::Backend,
    events: usize,
    loads: usize,
) -> Result<(f64, Vec<Duration>), Error> {
    let plain = Application::builder()
        .aggregate::<Account>()
        .backend(backend)
        .cache_capacity(0)
        .build()
        .await?;
    timed_loads(&plain, events, loads).await
}

/// Loads W5's account `loads` times through `app`, checking its balance:
/// the seconds it took and each load's latency.
pub(crate) async fn timed_loads(app: &Application, events: usize, loads: usize) -> Result<(f64, Vec<Duration>), Error> {
    let mut latencies = Vec::with_capacity(loads);
    let started = Instant::now();
    for _ in 0..loads {
        let began = Instant::now();
        let loaded = app.load::<Account>(&7u64).await?;
        latencies.push(began.elapsed());
        if loaded.state.balance != events as u64 {
            return Err("wrong balance".into());
        }
    }
    Ok((started.elapsed().as_secs_f64(), latencies))
}

/// W5: rehydrate one account with 10 000 events, without cache or
/// snapshot, then from a snapshot (PostgreSQL).
async fn w5(options: &Options) -> Result<(), Error> {
    let events = options.ops(10_000) as usize;
    let loads = if options.quick { 5 } else { 20 };
    let (store, schema) = postgres().await?;
    let stream = StreamId::new("bench.account", "7");
    w5_account(&store, events).await?;
    let (secs, latencies) = w5_loads(store.clone(), events, loads).await?;
    // Baseline: the same rows fetched with plain sqlx, payloads decoded.
    let sql = format!(
        "SELECT payload FROM \"{schema}\".interlock_events WHERE aggregate_type = 'bench.account' AND aggregate_id = '7' ORDER BY version"
    );
    let began = Instant::now();
    for _ in 0..loads {
        let mut tx = store.begin().await?;
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut sum = 0;
        for r in rows {
            sum += serde_json::from_slice::<MoneyDeposited>(&r)?.amount;
        }
        if sum != events as u64 {
            return Err("wrong baseline sum".into());
        }
    }
    let baseline = loads as f64 / began.elapsed().as_secs_f64();
    let mut no_snapshot = latencies.clone();
    let ms = crate::report::percentile_us(&mut no_snapshot, 0.5) as f64 / 1000.0;

    // With a snapshot at the head.
    let snapshotting = Application::builder()
        .aggregate_with(AggregateConfig::<Account>::new().snapshot_every(1_000_000))
        .backend(store.clone())
        .cache_capacity(0)
        .build()
        .await?;
    let state = serde_json::to_vec(&Account { balance: events as u64 })?;
    SnapshotStore::save(
        &store,
        &stream,
        Snapshot {
            version: Version(events as u64),
            state_version: 1,
            payload: state.into(),
            taken_at: Timestamp::now(),
        },
    )
    .await?;
    let mut snap_latencies = Vec::with_capacity(loads);
    for _ in 0..loads {
        let began = Instant::now();
        let loaded = snapshotting.load::<Account>(&7u64).await?;
        snap_latencies.push(began.elapsed());
        if loaded.state.balance != events as u64 {
            return Err("wrong balance from snapshot".into());
        }
    }
    let snap_ms = crate::report::percentile_us(&mut snap_latencies, 0.5) as f64 / 1000.0;
    Line {
        workload: "W5",
        backend: "postgres",
        ops: loads as u64,
        secs,
        latencies,
        baseline: "raw-select-decode",
        baseline_ops_per_sec: baseline,
        extra: vec![
            ("events", events.to_string()),
            ("load_ms_no_snapshot", format!("{ms:.2}")),
            ("load_ms_snapshot", format!("{snap_ms:.3}")),
        ],
    }
    .print();
    drop_schema(&store, &schema).await;
    Ok(())
}

/// W6: SQLite file (WAL), 16 tasks on disjoint accounts, 50 000 commands;
/// with commits synced to disk (the default), then with `synchronous=NORMAL`.
async fn w6(options: &Options) -> Result<(), Error> {
    for durable in [true, false] {
        let ops = options.ops(50_000);
        let (store, path) = sqlite(durable).await?;
        let app = app_with(store.clone()).await?;
        open_accounts(&app, 16 * 64).await?;
        let (secs, latencies, retries) = deposits(&app, 16, ops, |t, i| t * 64 + i % 64).await?;
        let baseline = raw_insert_baseline!(store, "raw_events", 16u64, ops);
        let synchronous = if durable { "full" } else { "normal" };
        Line {
            workload: "W6",
            backend: "sqlite",
            ops,
            secs,
            latencies,
            baseline: "raw-insert-16-tasks",
            baseline_ops_per_sec: baseline,
            extra: vec![("retries", retries.to_string()), ("synchronous", synchronous.into())],
        }
        .print();
        drop(app);
        drop(store);
        remove_sqlite(&path);
    }
    Ok(())
}

/// W7: a catch-up projection from position 0 over 1 000 000 events
/// (in-memory, or PostgreSQL with `--backend postgres`).
async fn w7(options: &Options) -> Result<(), Error> {
    let events = options.ops(1_000_000);
    match options.backend {
        Some(Backend::Postgres) => w7_postgres(events).await,
        Some(Backend::Sqlite) => Err("W7 runs on memory or postgres".into()),
        _ => {
            w7_memory(events).await?;
            if options.backend.is_none() {
                w7_postgres(events).await?;
            }
            Ok(())
        }
    }
}

async fn w7_memory(events: u64) -> Result<(), Error> {
    let store = Arc::new(MemoryEventStore::with_capacity(events as usize));
    for chunk in 0..events.div_ceil(1000) {
        let stream = StreamId::new("bench.account", (chunk % 1000).to_string());
        let n = 1000.min(events - chunk * 1000) as usize;
        store.append(&stream, ExpectedVersion::Any, deposit_events(n)).await?;
    }
    let holding_mb = crate::report::peak_rss_mb().unwrap_or(0);
    catch_up_line(
        store,
        interlock::store::MemoryCheckpointStore::new(),
        "memory",
        events,
        holding_mb,
    )
    .await
}

async fn w7_postgres(events: u64) -> Result<(), Error> {
    let (store, schema) = postgres().await?;
    // Bulk-load the log with one statement (valid ULID text from the position).
    let sql = format!(
        "INSERT INTO \"{schema}\".interlock_events
         (position, event_id, aggregate_type, aggregate_id, version, event_name, schema_version, payload, metadata, recorded_at)
         SELECT g, upper(lpad(to_hex(g), 26, '0')), 'bench.account', (g % 1000)::text, (g - 1) / 1000 + 1,
                'bench.money_deposited', 1, convert_to('{{\"amount\":1}}', 'UTF8'), '{{}}', 0
         FROM generate_series(1, {events}) g"
    );
    let bump = format!("UPDATE \"{schema}\".interlock_positions SET last = {events} WHERE id = 1");
    let mut tx = store.begin().await?;
    sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    sqlx::query(AssertSqlSafe(bump)).execute(&mut *tx).await?;
    tx.commit().await?;
    let result = catch_up_line(store.clone(), store.clone(), "postgres", events, 0).await;
    drop_schema(&store, &schema).await;
    result
}

async fn catch_up_line<S, C>(
    store: S,
    checkpoints: C,
    backend: &'static str,
    events: u64,
    holding_mb: u64,
) -> Result<(), Error>
where
    S: interlock::store::EventStore + Clone,
    C: interlock::store::CheckpointStore,
{
    let app = Application::builder()
        .projection_with(
            Totals::default(),
            ProjectionConfig::catch_up().subscriber(interlock::SubscriberConfig::new().batch_size(2048)),
        )
        .event_store(store.clone())
        .checkpoint_store(checkpoints)
        .background(false)
        .build()
        .await?;
    let started = Instant::now();
    app.projection_handle::<Totals>()?.catch_up().await?;
    let secs = started.elapsed().as_secs_f64();
    let (count, sum) = app.query(Total).await?;
    if count != events || sum != events {
        return Err(format!("the projection saw {count} events, expected {events}").into());
    }
    // Baseline: page through the log and decode each payload, no framework.
    let began = Instant::now();
    let mut after = Position::START;
    let mut decoded = 0u64;
    loop {
        let page = store.read_all(after, 2048, &EventFilter::all()).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in &page {
            decoded += serde_json::from_slice::<MoneyDeposited>(&e.payload)?.amount;
        }
    }
    if decoded != events {
        return Err("baseline decoded the wrong count".into());
    }
    let baseline = events as f64 / began.elapsed().as_secs_f64();
    let mut extra = Vec::new();
    if holding_mb > 0 {
        extra.push(("rss_mb_holding_events", holding_mb.to_string()));
    }
    Line {
        workload: "W7",
        backend,
        ops: events,
        secs,
        latencies: Vec::new(),
        baseline: "raw-read-decode",
        baseline_ops_per_sec: baseline,
        extra,
    }
    .print();
    Ok(())
}
