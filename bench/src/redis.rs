//! The Redis workloads (`--backend redis`, `INTERLOCK_REDIS_URL`, default
//! `redis://127.0.0.1:6379`, under a fresh key prefix deleted afterwards):
//! W1 with the aggregate cache in Redis (events in memory) and W5 loading
//! from a snapshot in Redis, each against the raw client doing the same
//! round trips in the same run.

use std::time::{Duration, Instant};

use interlock::AggregateConfig;
use interlock::prelude::*;
use interlock::redis::{RedisConfig, RedisStore};
use interlock::store::{EventStore, MemoryEventStore, Snapshot, SnapshotStore};
use interlock::{StreamId, Timestamp};

use crate::Options;
use crate::domain::Account;
use crate::report::Line;
use crate::workloads::{Error, open_accounts};

async fn fresh() -> Result<(RedisStore, String), Error> {
    let url = std::env::var(RedisConfig::URL_VAR).unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("bench-{}:", ulid::Ulid::new());
    Ok((
        RedisStore::open(RedisConfig::new(url.as_str()).prefix(prefix)).await?,
        url,
    ))
}

async fn raw(url: &str) -> Result<redis::aio::MultiplexedConnection, Error> {
    Ok(redis::Client::open(url)?.get_multiplexed_async_connection().await?)
}

/// W1 on Redis: 1 task, 100 accounts, deposits through an application
/// whose aggregate cache is in Redis (each command reads its state there
/// and writes it back in the background). Baseline: the raw client's `GET`
/// and `SET` of the same encoded state, one after the other, per command.
pub(crate) async fn w1(options: &Options) -> Result<(), Error> {
    let ops = options.ops(5_000);
    let (redis, url) = fresh().await?;
    let app = Application::builder()
        .aggregate_with(AggregateConfig::<Account>::new().snapshot_every(u64::MAX))
        .event_store(MemoryEventStore::new())
        .aggregate_cache(redis.clone())
        .build()
        .await?;
    open_accounts(&app, 100).await?;
    let (secs, latencies) = crate::w1::one_task_deposits(&app, ops).await?;
    let mut connection = raw(&url).await?;
    let key = format!("{}raw", redis.config().key_prefix());
    let began = Instant::now();
    for i in 0..ops {
        let _: Option<Vec<u8>> = redis::cmd("GET").arg(&key).query_async(&mut connection).await?;
        let state = serde_json::to_vec(&Account { balance: i })?;
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(state)
            .query_async(&mut connection)
            .await?;
    }
    let baseline = ops as f64 / began.elapsed().as_secs_f64();
    let total: u64 = {
        let mut sum = 0;
        for account in 0..100u64 {
            sum += app.load::<Account>(&account).await?.state.balance;
        }
        sum
    };
    redis.clear().await?;
    if total != ops {
        return Err(format!("wrong balances: {total} deposited of {ops}").into());
    }
    Line {
        workload: "W1",
        backend: "redis",
        ops,
        secs,
        latencies,
        baseline: "raw-get-set",
        baseline_ops_per_sec: baseline,
        extra: Vec::new(),
    }
    .print();
    Ok(())
}

/// W5 on Redis: an account of 10 000 events (in memory) loaded from its
/// snapshot in Redis. Baseline: the raw client's `GET` of the same payload
/// and its decoding.
pub(crate) async fn w5(options: &Options) -> Result<(), Error> {
    let events = options.ops(10_000) as usize;
    let loads = if options.quick { 50 } else { 500 };
    let (redis, url) = fresh().await?;
    let store = MemoryEventStore::new();
    crate::workloads::w5_account(&store, events).await?;
    let stream = StreamId::new("bench.account", "7");
    let version = store.stream_version(&stream).await?;
    let state = serde_json::to_vec(&Account { balance: events as u64 })?;
    SnapshotStore::save(
        &redis,
        &stream,
        Snapshot {
            version,
            state_version: 1,
            payload: state.clone().into(),
            taken_at: Timestamp::now(),
        },
    )
    .await?;
    let app = Application::builder()
        .aggregate_with(AggregateConfig::<Account>::new().snapshot_every(u64::MAX))
        .event_store(store)
        .snapshot_store(redis.clone())
        .cache_capacity(0)
        .build()
        .await?;
    let (secs, latencies) = crate::workloads::timed_loads(&app, events, loads).await?;
    let mut connection = raw(&url).await?;
    let key = format!("{}raw-snapshot", redis.config().key_prefix());
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(&state)
        .query_async(&mut connection)
        .await?;
    let began = Instant::now();
    for _ in 0..loads {
        let payload: Vec<u8> = redis::cmd("GET").arg(&key).query_async(&mut connection).await?;
        if serde_json::from_slice::<Account>(&payload)?.balance != events as u64 {
            return Err("wrong baseline balance".into());
        }
    }
    let baseline = loads as f64 / began.elapsed().as_secs_f64();
    redis.clear().await?;
    let mut sorted: Vec<Duration> = latencies.clone();
    let p50 = crate::report::percentile_us(&mut sorted, 0.5);
    Line {
        workload: "W5",
        backend: "redis",
        ops: loads as u64,
        secs,
        latencies,
        baseline: "raw-get-decode",
        baseline_ops_per_sec: baseline,
        extra: vec![("events", events.to_string()), ("load_us_snapshot", p50.to_string())],
    }
    .print();
    Ok(())
}
