//! W2, W3, W5 and W7 on MongoDB (`--backend mongodb`, the server from
//! `INTERLOCK_MONGODB_URI`, each run in a fresh database dropped
//! afterwards), each against a raw-driver baseline in the same run: one
//! `insert_one` of the event document per command in a transaction (W2,
//! W3), `find` + decode (W5, W7).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use futures_util::TryStreamExt;
use interlock::ProjectionConfig;
use interlock::mongodb::{MongoConfig, MongoStore};
use interlock::prelude::*;
use interlock::store::{EventStore, ExpectedVersion};
use interlock::{EventId, StreamId, Timestamp};
use mongodb::bson::{Document, doc};

use crate::Options;
use crate::domain::{MoneyDeposited, Total, Totals};
use crate::report::Line;
use crate::workloads::{Error, app_with, deposit_events, deposits, open_accounts, w5_account, w5_loads};

/// Round trips of one dispatch in the common case (cached aggregate at a
/// version above 0, one event, no other append in flight), read off the
/// code path: the stream's version moved by a guarded update, the counter,
/// the insert, the commit.
const ROUND_TRIPS_PER_COMMAND: u32 = 4;

struct Fresh {
    store: MongoStore,
    client: mongodb::Client,
    database: String,
}

impl Fresh {
    async fn open() -> Result<Self, Error> {
        let uri = std::env::var(MongoConfig::URI_VAR)
            .map_err(|_| "W2-W7 on mongodb need INTERLOCK_MONGODB_URI (scripts/mongodb.sh start prints one)")?;
        let database = format!("bench_{}", ulid::Ulid::new().to_string().to_lowercase());
        let store = MongoStore::open(MongoConfig::new(uri.as_str()).database(database.as_str())).await?;
        let client = mongodb::Client::with_uri_str(&uri).await?;
        Ok(Self {
            store,
            client,
            database,
        })
    }

    fn collection(&self, name: &str) -> mongodb::Collection<Document> {
        self.client.database(&self.database).collection(name)
    }

    async fn drop(self) {
        let _ = self.client.database(&self.database).drop().await;
    }
}

/// The baseline of W2/W3: from `tasks` tasks, one transaction per command
/// inserting the event's document (the framework's shape) with the raw
/// driver.
async fn raw_inserts(fresh: &Fresh, tasks: u64, ops: u64) -> Result<f64, Error> {
    let raw = fresh.collection("raw_events");
    let next = Arc::new(AtomicI64::new(1));
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (raw, client, next) = (raw.clone(), fresh.client.clone(), Arc::clone(&next));
        let each = ops / tasks + u64::from(t < ops % tasks);
        handles.push(tokio::spawn(async move {
            let mut session = client.start_session().await.map_err(|e| e.to_string())?;
            for _ in 0..each {
                let position = next.fetch_add(1, Ordering::Relaxed);
                let payload = serde_json::to_value(MoneyDeposited { amount: 1 }).map_err(|e| e.to_string())?;
                let payload = mongodb::bson::to_bson(&payload).map_err(|e| e.to_string())?;
                let document = doc! {
                    "_id": position, "event_id": EventId::new().to_string(), "tenant": "",
                    "aggregate_type": "bench.account", "aggregate_id": (position % 1000).to_string(),
                    "version": position, "name": "bench.money_deposited", "schema_version": 1_i64,
                    "payload": payload, "metadata": { "timestamp": Timestamp::now().0 },
                    "recorded_at": mongodb::bson::DateTime::now(),
                };
                // Retried on a transient error, as the driver's
                // `with_transaction` would (the test server reports write
                // conflicts between inserts of distinct documents).
                loop {
                    session.start_transaction().await.map_err(|e| e.to_string())?;
                    let inserted = raw.insert_one(document.clone()).session(&mut session).await;
                    let committed = match inserted {
                        Ok(_) => session.commit_transaction().await,
                        Err(e) => {
                            let _ = session.abort_transaction().await;
                            Err(e)
                        }
                    };
                    match committed {
                        Ok(()) => break,
                        Err(e) if e.contains_label(mongodb::error::TRANSIENT_TRANSACTION_ERROR) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
            }
            Ok::<_, String>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    Ok(ops as f64 / started.elapsed().as_secs_f64())
}

/// W2 (1 task, 1 000 accounts) and W3 (16 tasks on disjoint accounts).
pub(crate) async fn w2_w3(options: &Options, workload: &'static str) -> Result<(), Error> {
    let (tasks, ops) = match workload {
        "W2" => (1, options.ops(20_000)),
        _ => (16, options.ops(50_000)),
    };
    let fresh = Fresh::open().await?;
    let app = app_with(fresh.store.clone()).await?;
    let (secs, latencies, retries) = if tasks == 1 {
        open_accounts(&app, 1000).await?;
        deposits(&app, 1, ops, |_, i| i % 1000).await?
    } else {
        open_accounts(&app, 16 * 64).await?;
        deposits(&app, 16, ops, |t, i| t * 64 + i % 64).await?
    };
    let baseline = raw_inserts(&fresh, tasks, ops).await?;
    Line {
        workload,
        backend: "mongodb",
        ops,
        secs,
        latencies,
        baseline: if tasks == 1 {
            "raw-insert-one-tx"
        } else {
            "raw-insert-one-tx-16-tasks"
        },
        baseline_ops_per_sec: baseline,
        extra: vec![
            ("retries", retries.to_string()),
            ("round_trips_per_command", ROUND_TRIPS_PER_COMMAND.to_string()),
        ],
    }
    .print();
    fresh.drop().await;
    Ok(())
}

/// The payloads of `filter` in `events`, sorted by `sort`, with the raw
/// driver, decoded: their sum.
async fn raw_sum(fresh: &Fresh, filter: Document, sort: Document) -> Result<u64, Error> {
    let documents: Vec<Document> = fresh
        .collection("events")
        .find(filter)
        .sort(sort)
        .projection(doc! { "payload": 1 })
        .await?
        .try_collect()
        .await?;
    let mut sum = 0;
    for d in documents {
        let payload: serde_json::Value = mongodb::bson::from_bson(d.get("payload").cloned().unwrap_or_default())?;
        sum += serde_json::from_value::<MoneyDeposited>(payload)?.amount;
    }
    Ok(sum)
}

/// The test server's first query of a freshly loaded collection costs
/// about 6 ms per document, once (later queries of any shape are fast):
/// paid here, before either side is timed.
async fn warm_up(fresh: &Fresh) -> Result<(), Error> {
    let filter = doc! { "_id": { "$gt": 0 }, "name": { "$in": ["bench.money_deposited"] } };
    raw_sum(fresh, filter, doc! { "_id": 1 }).await?;
    Ok(())
}

/// W5: one account with 10 000 events loaded without cache or snapshot.
pub(crate) async fn w5(options: &Options) -> Result<(), Error> {
    let events = options.ops(10_000) as usize;
    let loads = if options.quick { 5 } else { 20 };
    let fresh = Fresh::open().await?;
    w5_account(&fresh.store, events).await?;
    warm_up(&fresh).await?;
    let (secs, latencies) = w5_loads(fresh.store.clone(), events, loads).await?;
    let began = Instant::now();
    for _ in 0..loads {
        let filter = doc! { "tenant": "", "aggregate_type": "bench.account", "aggregate_id": "7" };
        if raw_sum(&fresh, filter, doc! { "version": 1 }).await? != events as u64 {
            return Err("wrong baseline sum".into());
        }
    }
    let baseline = loads as f64 / began.elapsed().as_secs_f64();
    Line {
        workload: "W5",
        backend: "mongodb",
        ops: loads as u64,
        secs,
        latencies,
        baseline: "raw-find-decode",
        baseline_ops_per_sec: baseline,
        extra: vec![("events", events.to_string())],
    }
    .print();
    fresh.drop().await;
    Ok(())
}

/// W7: a catch-up projection from position 0 over 100 000 events (a
/// tenth of the in-memory and PostgreSQL runs: the test server is not
/// built for bulk loads).
pub(crate) async fn w7(options: &Options) -> Result<(), Error> {
    let events = options.ops(100_000);
    let fresh = Fresh::open().await?;
    for chunk in 0..events.div_ceil(1000) {
        let stream = StreamId::new("bench.account", (chunk % 1000).to_string());
        let n = 1000.min(events - chunk * 1000) as usize;
        fresh
            .store
            .append(&stream, ExpectedVersion::Any, deposit_events(n))
            .await?;
    }
    warm_up(&fresh).await?;
    let app = Application::builder()
        .projection_with(
            Totals::default(),
            ProjectionConfig::catch_up().subscriber(interlock::SubscriberConfig::new().batch_size(2048)),
        )
        .event_store(fresh.store.clone())
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
    let began = Instant::now();
    if raw_sum(&fresh, doc! {}, doc! { "_id": 1 }).await? != events {
        return Err("baseline decoded the wrong count".into());
    }
    let baseline = events as f64 / began.elapsed().as_secs_f64();
    Line {
        workload: "W7",
        backend: "mongodb",
        ops: events,
        secs,
        latencies: Vec::new(),
        baseline: "raw-find-decode",
        baseline_ops_per_sec: baseline,
        extra: Vec::new(),
    }
    .print();
    fresh.drop().await;
    Ok(())
}
