//! W12: one catch-up projection on PostgreSQL shared by 1, 2 and 3
//! application instances (OS processes) through segments, and the
//! takeover time after a SIGKILL of an owner.
//!
//! The projection is an exactly-once SQL read model: each event is one
//! transaction holding its row and the segment's fenced checkpoint. For
//! each instance count, the instances start on an empty log and balance
//! the segments; then the log is bulk-loaded and timed until every
//! segment's checkpoint reaches the head. The baseline, in the same run,
//! is the same work without the framework: one connection paging through
//! the log and committing each event's row and a checkpoint in its own
//! transaction.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interlock::ProjectionConfig;
use interlock::prelude::*;
use interlock::store::CheckpointStore;
use interlock_sql::{PostgresConfig, PostgresStore, PostgresTransaction};
use sqlx::AssertSqlSafe;

use crate::Options;
use crate::domain::MoneyDeposited;
use crate::report::Line;
use crate::workloads::{Error, drop_schema, postgres};

/// Divisible by 1, 2 and 3: every instance count gets equal shares.
const SEGMENTS: u32 = 6;
const SUBSCRIBER: &str = "projection:bench.tally";
const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(250);

/// The read model: one row per event, in the store's schema.
pub(crate) struct Tally {
    schema: String,
}

#[projection(name = "bench.tally", model = durable)]
impl Tally {
    #[handles_event]
    async fn deposited(
        &mut self,
        _: &MoneyDeposited,
        meta: &EventMeta,
        tx: &mut PostgresTransaction,
    ) -> Result<(), interlock::HandlerFailure> {
        let sql = format!(
            "INSERT INTO \"{}\".w12_rows (event_id, stream) VALUES ($1, $2)",
            self.schema
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(meta.event_id.to_string())
            .bind(meta.stream.aggregate_id())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

fn url() -> String {
    std::env::var("INTERLOCK_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The child process: `interlock-bench W12-INSTANCE <schema> <id>`, one
/// instance running the tally's segments until it is killed.
pub(crate) async fn instance(args: &[String]) -> Result<(), Error> {
    let (Some(schema), Some(id)) = (args.first(), args.get(1)) else {
        return Err("usage: interlock-bench W12-INSTANCE <schema> <instance id>".into());
    };
    let store = PostgresStore::open(PostgresConfig::new(url()).schema(schema.as_str()).max_connections(4)).await?;
    let app = Application::builder()
        .event_store(store.clone())
        .checkpoint_store(store.clone())
        .projection_with(
            Tally { schema: schema.clone() },
            ProjectionConfig::catch_up()
                .subscriber(interlock::SubscriberConfig::new().batch_size(1024))
                .transactions(store)
                .segments(SEGMENTS),
        )
        .instance_id(id.as_str())
        .subscriber_leases(LEASE, RENEW)
        .build()
        .await?;
    println!("started");
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        let _ = &app;
    }
}

fn spawn(schema: &str, id: &str) -> Result<Child, Error> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["W12-INSTANCE", schema, id])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    match BufReader::new(stdout).lines().next() {
        Some(Ok(line)) if line == "started" => Ok(child),
        other => {
            let _ = child.kill();
            Err(format!("instance {id} did not start: {other:?}").into())
        }
    }
}

/// The owner of each segment now (unexpired leases).
async fn owners(store: &PostgresStore) -> Result<Vec<Option<String>>, Error> {
    let now = interlock::Timestamp::now();
    let leases = store.leases().await?;
    Ok((0..SEGMENTS)
        .map(|i| {
            let name = format!("{SUBSCRIBER}[{i}/{SEGMENTS}]");
            leases
                .iter()
                .find(|l| l.subscriber == name && l.expires_at > now)
                .map(|l| l.owner.clone())
        })
        .collect())
}

/// Waits until every segment is held, by `instances` owners with equal
/// shares and none of `not`; the owners and the time it took.
async fn until_balanced(
    store: &PostgresStore,
    instances: usize,
    not: Option<&str>,
) -> Result<(Vec<String>, Duration), Error> {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let held = owners(store).await?;
        if held.iter().all(Option::is_some) {
            let held: Vec<String> = held.into_iter().flatten().collect();
            let mut counts = std::collections::BTreeMap::<&str, usize>::new();
            for owner in &held {
                *counts.entry(owner).or_default() += 1;
            }
            let share = SEGMENTS as usize / instances;
            if counts.len() == instances
                && counts.values().all(|n| *n == share)
                && not.is_none_or(|n| !counts.contains_key(n))
            {
                return Ok((held, started.elapsed()));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(format!("the segments were not shared by {instances} instances within a minute").into())
}

/// Bulk-loads `events` deposits over 1 000 streams in one statement.
async fn load(store: &PostgresStore, schema: &str, events: u64) -> Result<(), Error> {
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
    Ok(())
}

async fn create_rows(store: &PostgresStore, schema: &str) -> Result<(), Error> {
    let sql = format!("CREATE TABLE \"{schema}\".w12_rows (event_id TEXT NOT NULL, stream TEXT NOT NULL)");
    let mut tx = store.begin().await?;
    sqlx::query(AssertSqlSafe(sql)).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

async fn rows(store: &PostgresStore, schema: &str) -> Result<(i64, i64), Error> {
    let sql = format!("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM \"{schema}\".w12_rows");
    let mut tx = store.begin().await?;
    let counts = sqlx::query_as(AssertSqlSafe(sql)).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(counts)
}

/// One run with `instances` processes; with `kill`, then SIGKILLs the
/// busiest and times the takeover. Returns the seconds to process the
/// log, and the takeover time.
async fn run_instances(events: u64, instances: usize, kill: bool) -> Result<(f64, Option<Duration>), Error> {
    let (store, schema) = postgres().await?;
    create_rows(&store, &schema).await?;
    let mut children = Vec::new();
    let result = async {
        for i in 0..instances {
            let id = format!("i{i}");
            children.push((id.clone(), spawn(&schema, &id)?));
        }
        until_balanced(&store, instances, None).await?;
        load(&store, &schema, events).await?;
        let started = Instant::now();
        'wait: loop {
            for i in 0..SEGMENTS {
                let name = format!("{SUBSCRIBER}[{i}/{SEGMENTS}]");
                if CheckpointStore::load(&store, &name).await?.is_none_or(|p| p.0 < events) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if started.elapsed() > Duration::from_secs(600) {
                        return Err::<_, Error>("the projection did not finish in 10 minutes".into());
                    }
                    continue 'wait;
                }
            }
            break;
        }
        let secs = started.elapsed().as_secs_f64();
        let (count, distinct) = rows(&store, &schema).await?;
        if count != distinct || u64::try_from(count)? != events {
            return Err(format!("{count} rows ({distinct} distinct) for {events} events").into());
        }
        let mut takeover = None;
        if kill {
            let held = owners(&store).await?;
            let victim = held.first().cloned().flatten().ok_or("no owner")?;
            let index = children
                .iter()
                .position(|(id, _)| *id == victim)
                .ok_or("no such child")?;
            let (_, mut child) = children.remove(index);
            child.kill()?;
            let killed = Instant::now();
            let _ = child.wait();
            until_balanced(&store, instances - 1, Some(&victim)).await?;
            takeover = Some(killed.elapsed());
        }
        Ok((secs, takeover))
    }
    .await;
    for (_, mut child) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop_schema(&store, &schema).await;
    result
}

/// The baseline: the same rows and checkpoints without the framework,
/// one connection, one transaction per event.
async fn baseline(events: u64) -> Result<f64, Error> {
    let (store, schema) = postgres().await?;
    create_rows(&store, &schema).await?;
    load(&store, &schema, events).await?;
    let started = Instant::now();
    let pool = sqlx::PgPool::connect(&url()).await?;
    let mut after = 0i64;
    let read = format!(
        "SELECT position, event_id, aggregate_id, payload FROM \"{schema}\".interlock_events WHERE position > $1 ORDER BY position LIMIT 1024"
    );
    let insert = format!("INSERT INTO \"{schema}\".w12_rows (event_id, stream) VALUES ($1, $2)");
    let save = format!(
        "INSERT INTO \"{schema}\".interlock_checkpoints (subscriber, position) VALUES ('baseline', $1)
         ON CONFLICT (subscriber) DO UPDATE SET position = excluded.position"
    );
    loop {
        let page: Vec<(i64, String, String, Vec<u8>)> = sqlx::query_as(AssertSqlSafe(read.clone()))
            .bind(after)
            .fetch_all(&pool)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.0;
        for (position, event_id, stream, payload) in page {
            let _: MoneyDeposited = serde_json::from_slice(&payload)?;
            let mut tx = pool.begin().await?;
            sqlx::query(AssertSqlSafe(insert.clone()))
                .bind(event_id)
                .bind(stream)
                .execute(&mut *tx)
                .await?;
            sqlx::query(AssertSqlSafe(save.clone()))
                .bind(position)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    drop_schema(&store, &schema).await;
    Ok(rate)
}

pub(crate) async fn w12(options: &Options) -> Result<(), Error> {
    let events = options.ops(30_000);
    let baseline = baseline(events).await?;
    let mut one = None;
    for instances in 1..=3 {
        let (secs, takeover) = run_instances(events, instances, instances == 3).await?;
        let rate = events as f64 / secs;
        let one_rate = *one.get_or_insert(rate);
        let mut extra = vec![
            ("instances", instances.to_string()),
            ("segments", SEGMENTS.to_string()),
            ("vs_one_instance", format!("{:.2}", rate / one_rate)),
        ];
        if let Some(takeover) = takeover {
            extra.push(("takeover_ms_after_sigkill", takeover.as_millis().to_string()));
            extra.push(("lease_ms", LEASE.as_millis().to_string()));
        }
        Line {
            workload: "W12",
            backend: "postgres",
            ops: events,
            secs,
            latencies: Vec::new(),
            baseline: "raw-tx-per-event",
            baseline_ops_per_sec: baseline,
            extra,
        }
        .print();
    }
    Ok(())
}
