//! W3-CATEGORY: the cost of write constraints on PostgreSQL, W3-style (16
//! tasks, one store). Each operation reads the head it decides on and
//! appends one event under its constraint, re-deciding on a conflict:
//!
//! - stream (the baseline, the same run): each task on its own stream,
//!   expected version from the stream's head; group-committed appends;
//! - category, many: each task in a category of its own, "category
//!   unchanged since its last event";
//! - category, hot: all sixteen tasks in one category, the same condition
//!   (the writers serialize; losers read again and retry): the worst case,
//!   sixteen writers as if in sixteen processes;
//! - category, hot, through one application: sixteen tasks registering
//!   distinct usernames (`examples/signup`, `consistency = category`), so
//!   the commands of the instance take turns on the view instead of
//!   conflicting.

use std::sync::Arc;
use std::time::Duration;

use interlock::store::{AtomicAppend, EventStore, ExpectedVersion, NewEvent, Scope, StoreError};
use interlock::{EventId, Position, SchemaVersion, StreamId};

use crate::Options;
use crate::report::Line;
use crate::workloads::{Error, drop_schema, postgres, spread};

const TASKS: u64 = 16;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Constraint {
    Stream,
    CategoryMany,
    CategoryHot,
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        name: "bench.claimed".into(),
        schema_version: SchemaVersion(1),
        payload: format!(r#"{{"n":{n}}}"#).into_bytes().into(),
        metadata: interlock::store::EventMetadata::default(),
    }
}

/// One decision and append under `constraint`; the retries it took.
async fn one(store: &dyn EventStore, constraint: Constraint, task: u64, n: u64, run: &str) -> Result<u64, Error> {
    let mut retries = 0;
    loop {
        let outcome = match constraint {
            Constraint::Stream => {
                let stream = StreamId::new(format!("bench.{run}"), task.to_string());
                let version = store.stream_version(&stream).await?;
                store
                    .append(&stream, ExpectedVersion::Exact(version), vec![event(n)])
                    .await
                    .map(|_| ())
            }
            Constraint::CategoryMany | Constraint::CategoryHot => {
                let category = if constraint == Constraint::CategoryHot {
                    format!("bench.{run}")
                } else {
                    format!("bench.{run}_{task}")
                };
                let scope = Scope::Category(category.clone().into());
                let since = store.last_event(&scope).await?.map_or(Position::START, |e| e.position);
                let stream = StreamId::new(category, format!("{task}-{n}"));
                let append = AtomicAppend::new()
                    .stream(stream, ExpectedVersion::Exact(interlock::Version(0)), vec![event(n)])
                    .unchanged(scope, since);
                store.append_atomic(append).await.map(|_| ())
            }
        };
        match outcome {
            Ok(()) => return Ok(retries),
            Err(StoreError::Conflict { .. } | StoreError::ScopeChanged { .. }) => retries += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `ops` operations under `constraint` from 16 tasks: seconds, latencies,
/// retries.
async fn run(
    store: &Arc<dyn EventStore>,
    constraint: Constraint,
    ops: u64,
) -> Result<(f64, Vec<Duration>, u64), Error> {
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let store = Arc::clone(store);
    spread(TASKS, ops, move |task, n| {
        let (store, run) = (Arc::clone(&store), run.clone());
        async move { one(&*store, constraint, task, n, &run).await.map_err(|e| e.to_string()) }
    })
    .await
}

/// W3-CATEGORY-MANY and W3-CATEGORY-HOT, each against the stream
/// constraint measured in the same run.
pub(crate) async fn w3_category(options: &Options) -> Result<(), Error> {
    let ops = options.ops(16_000);
    let (pg, schema) = postgres().await?;
    let store: Arc<dyn EventStore> = Arc::new(pg.clone());
    let (stream_secs, _, _) = run(&store, Constraint::Stream, ops).await?;
    let baseline = ops as f64 / stream_secs;
    for (workload, constraint) in [
        ("W3-CATEGORY-MANY", Constraint::CategoryMany),
        ("W3-CATEGORY-HOT", Constraint::CategoryHot),
    ] {
        let (secs, latencies, retries) = run(&store, constraint, ops).await?;
        Line {
            workload,
            backend: "postgres",
            ops,
            secs,
            latencies,
            baseline: "stream-constraint",
            baseline_ops_per_sec: baseline,
            extra: vec![
                ("retries", retries.to_string()),
                ("retries_per_op", format!("{:.2}", retries as f64 / ops as f64)),
            ],
        }
        .print();
    }
    let (secs, latencies, retries) = app_registrations(pg.clone(), ops).await?;
    Line {
        workload: "W3-CATEGORY-APP",
        backend: "postgres",
        ops,
        secs,
        latencies,
        baseline: "stream-constraint",
        baseline_ops_per_sec: baseline,
        extra: vec![
            ("retries", retries.to_string()),
            ("retries_per_op", format!("{:.2}", retries as f64 / ops as f64)),
        ],
    }
    .print();
    drop_schema(&pg, &schema).await;
    Ok(())
}

/// `ops` registrations of distinct usernames from 16 tasks through one
/// application: seconds, latencies, re-runs.
async fn app_registrations(store: interlock_sql::PostgresStore, ops: u64) -> Result<(f64, Vec<Duration>, u64), Error> {
    use signup_example::{Register, User};
    let app = interlock::Application::builder()
        .aggregate::<User>()
        .event_store(store)
        .max_attempts(100_000)
        .build()
        .await?;
    spread(TASKS, ops, move |task, n| {
        let app = app.clone();
        async move {
            let register = Register {
                user: ulid::Ulid::new(),
                username: format!("user-{task}-{n}"),
            };
            let done = app
                .dispatch_with(register, interlock::DispatchOptions::new())
                .await
                .map_err(|e| e.to_string())?;
            Ok(u64::from(done.attempts - 1))
        }
    })
    .await
}
