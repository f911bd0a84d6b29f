//! Projections as subscribers: catch-up and inline, checkpoint restart,
//! poison events and dead letters, stop policy, rebuild, lag, queries.

use interlock::ProjectionConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use interlock::prelude::*;
use interlock::store::EventStore;
use interlock::store::MemoryEventStore;
use interlock::store::{CheckpointStore, MemoryCheckpointStore, MemoryDeadLetterStore};
use interlock::{FailurePolicy, Position, QueryError, SubscriberConfig};
use interlock_tests::bank::*;

/// An external read model (think: a table), keyed by event id so applying
/// an event twice changes nothing.
#[derive(Default)]
struct Table {
    rows: parking_lot::Mutex<BTreeMap<String, (String, u64)>>,
}

impl Table {
    fn balances(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (account, amount) in self.rows.lock().values() {
            *out.entry(account.clone()).or_default() += amount;
        }
        out
    }
}

/// Writes deposits into the table; hangs at a chosen position (a process
/// that dies mid-stream); fails on amount 13 until fixed (a poison event).
struct DepositLedger {
    table: Arc<Table>,
    hang_at: Option<Position>,
    fixed: Arc<AtomicBool>,
    seen: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot book amount 13")]
struct Unlucky;

struct Deposits(String);

#[projection(name = "tests.deposit_ledger", model = durable)]
impl DepositLedger {
    #[handles_event]
    async fn deposited(&mut self, e: &MoneyDeposited, meta: &EventMeta) -> Result<(), Unlucky> {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if self.hang_at == Some(meta.position) {
            std::future::pending::<()>().await;
        }
        if e.amount == 13 && !self.fixed.load(Ordering::SeqCst) {
            return Err(Unlucky);
        }
        self.table.rows.lock().insert(
            meta.event_id.to_string(),
            (meta.stream.aggregate_id().to_owned(), e.amount),
        );
        Ok(())
    }

    #[handles_query]
    fn total(&self, q: Deposits) -> u64 {
        self.table.balances().get(&q.0).copied().unwrap_or(0)
    }
}

fn ledger(table: &Arc<Table>) -> DepositLedger {
    DepositLedger {
        table: Arc::clone(table),
        hang_at: None,
        fixed: Arc::new(AtomicBool::new(true)),
        seen: Arc::new(AtomicU64::new(0)),
    }
}

fn quick() -> SubscriberConfig {
    SubscriberConfig::new()
        .retry(3, Duration::from_millis(1), Duration::from_millis(2))
        .batch_size(10)
}

async fn seed(store: &Arc<MemoryEventStore>, accounts: usize, deposits: u64) -> Vec<Ulid> {
    let writer = app_on(store.clone()).await;
    let mut ids = Vec::new();
    for _ in 0..accounts {
        let account = Ulid::new();
        writer
            .dispatch(OpenAccount {
                account,
                owner: "p".into(),
            })
            .await
            .expect("open");
        ids.push(account);
    }
    for i in 0..deposits {
        let account = ids[(i as usize) % ids.len()];
        writer
            .dispatch(Deposit {
                account,
                amount: i + 1,
                id: None,
            })
            .await
            .expect("deposit");
    }
    ids
}

async fn reader(
    store: &Arc<MemoryEventStore>,
    projection: DepositLedger,
    checkpoints: &Arc<MemoryCheckpointStore>,
    config: SubscriberConfig,
) -> Application {
    Application::builder()
        .projection_with(projection, ProjectionConfig::catch_up().subscriber(config))
        .shared_event_store(store.clone())
        .checkpoint_store(checkpoints.clone())
        .background(false)
        .build()
        .await
        .expect("build")
}

#[tokio::test]
async fn catch_up_resumes_from_the_checkpoint_after_a_kill_and_ends_identical() {
    let store = Arc::new(MemoryEventStore::new());
    seed(&store, 3, 60).await;

    // A clean run, for reference.
    let clean = Arc::new(Table::default());
    let app = reader(&store, ledger(&clean), &Arc::new(MemoryCheckpointStore::new()), quick()).await;
    app.projection_handle::<DepositLedger>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");

    // A run killed mid-stream: it hangs at position 40 and is dropped.
    let table = Arc::new(Table::default());
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    let mut dying = ledger(&table);
    dying.hang_at = Some(Position(40));
    let first = reader(&store, dying, &checkpoints, quick()).await;
    let handle = first.projection_handle::<DepositLedger>().expect("handle");
    let killed = tokio::time::timeout(Duration::from_millis(200), handle.catch_up()).await;
    assert!(killed.is_err(), "the first run hangs");
    let saved = checkpoints
        .load("projection:tests.deposit_ledger")
        .await
        .expect("load")
        .expect("a checkpoint");
    assert!(
        saved < Position(40) && saved > Position(0),
        "checkpoint {saved} is before the kill"
    );
    drop(handle);
    drop(first);

    // The restart resumes from the checkpoint: events after it are applied
    // again (at least once), and the idempotent model ends identical.
    let restarted = ledger(&table);
    let seen = Arc::clone(&restarted.seen);
    let second = reader(&store, restarted, &checkpoints, quick()).await;
    second
        .projection_handle::<DepositLedger>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");
    assert_eq!(table.balances(), clean.balances());
    assert!(seen.load(Ordering::SeqCst) < 60, "the restart did not start over");
}

#[tokio::test]
async fn a_poison_event_is_dead_lettered_and_replayed_after_the_fix() {
    let store = Arc::new(MemoryEventStore::new());
    let accounts = seed(&store, 1, 20).await; // amounts 1..=20, one is 13
    let table = Arc::new(Table::default());
    let mut projection = ledger(&table);
    let fixed = Arc::new(AtomicBool::new(false));
    projection.fixed = Arc::clone(&fixed);
    let app = reader(&store, projection, &Arc::new(MemoryCheckpointStore::new()), quick()).await;
    let handle = app.projection_handle::<DepositLedger>().expect("handle");
    handle.catch_up().await.expect("continues past the poison event");

    let letters = handle.dead_letters().await.expect("letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert!(letters[0].error.contains("13"));
    assert_eq!(letters[0].event.name, "bank.money_deposited");
    let total: u64 = (1..=20).sum();
    let account = accounts[0].to_string();
    assert_eq!(app.query(Deposits(account.clone())).await.expect("query"), total - 13);

    // Still broken: the replay keeps it parked, with one more attempt.
    assert_eq!(handle.replay_dead_letters().await.expect("replay"), 0);
    assert_eq!(handle.dead_letters().await.expect("letters")[0].attempts, 4);

    fixed.store(true, Ordering::SeqCst);
    assert_eq!(handle.replay_dead_letters().await.expect("replay"), 1);
    assert!(handle.dead_letters().await.expect("letters").is_empty());
    assert_eq!(app.query(Deposits(account)).await.expect("query"), total);
    assert_eq!(handle.status().await.expect("status").dead_letters, 0);
}

#[tokio::test]
async fn the_stop_policy_halts_before_the_poison_event_until_resumed() {
    let store = Arc::new(MemoryEventStore::new());
    let accounts = seed(&store, 1, 20).await;
    let table = Arc::new(Table::default());
    let mut projection = ledger(&table);
    let fixed = Arc::new(AtomicBool::new(false));
    projection.fixed = Arc::clone(&fixed);
    let config = quick().on_failure(FailurePolicy::ParkAndStop);
    let app = reader(&store, projection, &Arc::new(MemoryCheckpointStore::new()), config).await;
    let handle = app.projection_handle::<DepositLedger>().expect("handle");
    let err = handle.catch_up().await.expect_err("stops");
    assert!(err.to_string().contains("stopped"), "{err}");
    let status = handle.status().await.expect("status");
    assert!(status.stopped.is_some());
    assert!(status.events_behind > 0);
    let account = accounts[0].to_string();
    assert_eq!(
        app.query(Deposits(account.clone())).await.expect("query"),
        (1..13).sum::<u64>()
    );

    fixed.store(true, Ordering::SeqCst);
    handle.resume().await;
    handle.catch_up().await.expect("resumed");
    assert_eq!(
        app.query(Deposits(account)).await.expect("query"),
        (1..=20).sum::<u64>()
    );
    let status = handle.status().await.expect("status");
    assert_eq!((status.stopped, status.events_behind), (None, 0));
}

#[tokio::test]
async fn a_projection_rebuilds_from_position_zero() {
    let store = Arc::new(MemoryEventStore::new());
    let accounts = seed(&store, 2, 10).await;
    let table = Arc::new(Table::default());
    let app = reader(&store, ledger(&table), &Arc::new(MemoryCheckpointStore::new()), quick()).await;
    app.projection_handle::<DepositLedger>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");
    let before = table.balances();

    let fresh_table = Arc::new(Table::default());
    let head = app.rebuild_projection(ledger(&fresh_table)).await.expect("rebuild");
    assert_eq!(head, store.head().await.expect("head"));
    assert_eq!(fresh_table.balances(), before);
    let account = accounts[0].to_string();
    assert_eq!(
        app.query(Deposits(account)).await.expect("query"),
        before[&accounts[0].to_string()]
    );
}

#[tokio::test]
async fn lag_is_reported_for_health_checks() {
    let store = Arc::new(MemoryEventStore::new());
    seed(&store, 1, 5).await;
    let app = reader(
        &store,
        ledger(&Arc::new(Table::default())),
        &Arc::new(MemoryCheckpointStore::new()),
        quick(),
    )
    .await;
    let handle = app.projection_handle::<DepositLedger>().expect("handle");
    let behind = handle.status().await.expect("status");
    assert_eq!((behind.checkpoint, behind.events_behind), (Position(0), 6));
    assert!(behind.oldest_unprocessed_age.is_some());
    handle.catch_up().await.expect("catch up");
    let caught_up = handle.status().await.expect("status");
    assert_eq!((caught_up.events_behind, caught_up.oldest_unprocessed_age), (0, None));
    assert_eq!(
        app.subscriber_statuses().await.expect("all")[0].name,
        "projection:tests.deposit_ledger"
    );
}

#[tokio::test]
async fn inline_projections_are_read_your_writes() {
    let table = Arc::new(Table::default());
    let app = Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 0 })
        .projection_with(ledger(&table), ProjectionConfig::inline())
        .background(false)
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "i".into(),
    })
    .await
    .expect("open");
    for amount in [5, 7] {
        app.dispatch(Deposit {
            account,
            amount,
            id: None,
        })
        .await
        .expect("deposit");
        // No catch-up call: dispatch returned after the projection saw it.
    }
    assert_eq!(app.query(Deposits(account.to_string())).await.expect("query"), 12);
}

#[tokio::test]
async fn queries_of_unregistered_projections_and_intercepted_queries_are_typed_errors() {
    let app = Application::builder().build().await.expect("build");
    let err = app.query(Deposits("x".into())).await.expect_err("not registered");
    assert!(matches!(
        err,
        QueryError::NotRegistered {
            projection: "tests.deposit_ledger"
        }
    ));

    let app = Application::builder()
        .projection(ledger(&Arc::new(Table::default())))
        .intercept_query::<Deposits>(|q, _| {
            if q.0.is_empty() {
                Err(interlock::middleware::Rejection::new("empty account"))
            } else {
                Ok(())
            }
        })
        .build()
        .await
        .expect("build");
    let err = app.query(Deposits(String::new())).await.expect_err("rejected");
    assert!(matches!(err, QueryError::Rejected { .. }), "{err}");
    assert_eq!(app.query(Deposits("a".into())).await.expect("allowed"), 0);
}

#[tokio::test]
async fn an_interceptor_of_every_query_sees_each_one_and_can_refuse_it() {
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let closed = Arc::new(AtomicBool::new(false));
    let app = Application::builder()
        .projection(ledger(&Arc::new(Table::default())))
        .intercept_queries({
            let seen = Arc::clone(&seen);
            let closed = Arc::clone(&closed);
            move |cx| {
                seen.lock().push((cx.query, cx.projection));
                if closed.load(Ordering::SeqCst) {
                    Err(interlock::middleware::Rejection::new(
                        "reads are closed for maintenance",
                    ))
                } else {
                    Ok(())
                }
            }
        })
        .build()
        .await
        .expect("build");
    assert_eq!(app.query(Deposits("a".into())).await.expect("open"), 0);
    closed.store(true, Ordering::SeqCst);
    match app.query(Deposits("a".into())).await {
        Err(QueryError::Rejected { query, reason }) => {
            assert!(query.ends_with("Deposits"), "{query}");
            assert!(reason.contains("maintenance"), "{reason}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    let seen = seen.lock().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen.iter()
            .all(|(q, p)| q.ends_with("Deposits") && *p == "tests.deposit_ledger"),
        "{seen:?}"
    );
}

#[tokio::test]
async fn dead_letters_use_the_configured_store() {
    let store = Arc::new(MemoryEventStore::new());
    seed(&store, 1, 14).await;
    let mut projection = ledger(&Arc::new(Table::default()));
    projection.fixed = Arc::new(AtomicBool::new(false));
    let app = Application::builder()
        .projection_with(projection, ProjectionConfig::catch_up().subscriber(quick()))
        .shared_event_store(store.clone())
        .dead_letter_store(MemoryDeadLetterStore::new())
        .background(false)
        .build()
        .await
        .expect("build");
    let handle = app.projection_handle::<DepositLedger>().expect("handle");
    handle.catch_up().await.expect("catch up");
    assert_eq!(handle.dead_letters().await.expect("letters").len(), 1);
}

#[tokio::test]
async fn subscriber_settings_that_cannot_work_are_refused_at_build() {
    let cases: [(SubscriberConfig, &str); 4] = [
        (SubscriberConfig::new().batch_size(0), "batch_size"),
        (
            SubscriberConfig::new().retry(0, Duration::from_millis(1), Duration::from_millis(1)),
            "retry.max_attempts",
        ),
        (
            SubscriberConfig::new().retry(3, Duration::from_secs(2), Duration::from_millis(1)),
            "retry",
        ),
        (SubscriberConfig::new().poll_interval(Duration::ZERO), "poll_interval"),
    ];
    for (config, expected) in cases {
        let table = Arc::new(Table::default());
        let result = Application::builder()
            .projection_with(ledger(&table), ProjectionConfig::catch_up().subscriber(config))
            .background(false)
            .build()
            .await;
        match result {
            Err(interlock::BuildError::InvalidSubscriberConfig {
                subscriber, setting, ..
            }) => {
                assert_eq!(setting, expected);
                assert_eq!(subscriber, "projection:tests.deposit_ledger");
            }
            Err(e) => panic!("{expected}: another error: {e}"),
            Ok(_) => panic!("{expected}: the application was built"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_on_a_live_application_neither_deadlocks_nor_differs_from_a_fresh_build() {
    let store = Arc::new(MemoryEventStore::new());
    let accounts = seed(&store, 4, 40).await;
    let table = Arc::new(Table::default());
    // The projection follows the log in the background, in small batches,
    // while a writer keeps dispatching.
    let app = Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 1 })
        .projection_with(
            ledger(&table),
            ProjectionConfig::catch_up().subscriber(quick().batch_size(2).poll_interval(Duration::from_millis(1))),
        )
        .shared_event_store(store.clone())
        .build()
        .await
        .expect("build");
    let writer = {
        let app = app.clone();
        let accounts = accounts.clone();
        tokio::spawn(async move {
            for i in 0..400_u64 {
                app.dispatch(Deposit {
                    account: accounts[(i as usize) % accounts.len()],
                    amount: 1,
                    id: None,
                })
                .await
                .expect("deposit");
            }
        })
    };
    let rebuilt_table = Arc::new(Table::default());
    // Rebuild over and over while the writer and the follower run: with
    // the locks taken in opposite orders this deadlocks within a few rounds.
    for _ in 0..40 {
        let rebuilt = tokio::time::timeout(Duration::from_secs(10), app.rebuild_projection(ledger(&rebuilt_table)));
        rebuilt.await.expect("the rebuild deadlocked").expect("rebuild");
    }
    writer.await.expect("writer");
    app.projection_handle::<DepositLedger>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");

    let fresh_table = Arc::new(Table::default());
    let fresh = reader(
        &store,
        ledger(&fresh_table),
        &Arc::new(MemoryCheckpointStore::new()),
        quick(),
    )
    .await;
    fresh
        .projection_handle::<DepositLedger>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");
    assert_eq!(rebuilt_table.balances(), fresh_table.balances());
    assert_eq!(
        fresh_table.balances().values().sum::<u64>(),
        (1..=40).sum::<u64>() + 400
    );
}

/// A read model held in the projection value itself.
#[derive(Default)]
struct DepositTotal(u64);

#[projection(name = "tests.deposit_total", model = memory)]
impl DepositTotal {
    #[handles_event]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.0 += e.amount;
    }

    #[handles_query]
    fn total(&self, _: GrandTotal) -> u64 {
        self.0
    }
}

struct GrandTotal;

/// An application over `store` with the app-wide checkpoint store
/// `checkpoints` (shared between instances: persistent, as far as the
/// applications can tell).
async fn restarted(store: &Arc<MemoryEventStore>, checkpoints: &Arc<MemoryCheckpointStore>) -> Application {
    Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 0 })
        .shared_event_store(store.clone())
        .checkpoint_store(Arc::clone(checkpoints))
        .projection(DepositTotal::default())
        .background(false)
        .build()
        .await
        .expect("build")
}

#[tokio::test]
async fn a_model_in_memory_is_rebuilt_after_a_restart_whatever_the_checkpoint_store() {
    let store = Arc::new(MemoryEventStore::new());
    seed(&store, 2, 10).await; // deposits 1 + 2 + ... + 10
    let checkpoints = Arc::new(MemoryCheckpointStore::new());
    let first = restarted(&store, &checkpoints).await;
    first
        .projection_handle::<DepositTotal>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");
    assert_eq!(first.query(GrandTotal).await.expect("query"), 55);
    first.shutdown();

    // A new process: the model starts empty, so it must start from the
    // beginning of the log, not from a checkpoint at the head.
    let second = restarted(&store, &checkpoints).await;
    second
        .projection_handle::<DepositTotal>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");
    assert_eq!(second.query(GrandTotal).await.expect("query"), 55);
    assert_eq!(
        checkpoints.load("projection:tests.deposit_total").await.expect("load"),
        None,
        "a memory model's checkpoint is never saved in the application's store"
    );
}

#[tokio::test]
async fn a_durable_model_resumes_from_its_own_checkpoint_store() {
    let store = Arc::new(MemoryEventStore::new());
    seed(&store, 1, 5).await;
    let app_checkpoints = Arc::new(MemoryCheckpointStore::new());
    let own = Arc::new(MemoryCheckpointStore::new());
    let table = Arc::new(Table::default());
    let app = |projection: DepositLedger| {
        Application::builder()
            .shared_event_store(store.clone())
            .checkpoint_store(Arc::clone(&app_checkpoints))
            .projection_with(
                projection,
                ProjectionConfig::catch_up().subscriber(quick().checkpoint_store(Arc::clone(&own))),
            )
            .background(false)
            .build()
    };
    let first = app(ledger(&table)).await.expect("build");
    first
        .projection_handle::<DepositLedger>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");
    let head = store.head().await.expect("head");
    assert_eq!(
        own.load("projection:tests.deposit_ledger").await.expect("load"),
        Some(head)
    );
    assert_eq!(
        app_checkpoints
            .load("projection:tests.deposit_ledger")
            .await
            .expect("load"),
        None
    );
    first.shutdown();

    // Restarted on the same stores: it resumes at the head, handling nothing again.
    let resumed = ledger(&table);
    let seen = Arc::clone(&resumed.seen);
    let second = app(resumed).await.expect("build");
    second
        .projection_handle::<DepositLedger>()
        .expect("handle")
        .catch_up()
        .await
        .expect("catch up");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
    assert_eq!(table.balances().values().sum::<u64>(), 15);
}

#[tokio::test]
async fn a_memory_model_with_a_checkpoint_store_of_its_own_is_refused() {
    let built = Application::builder()
        .projection_with(
            DepositTotal::default(),
            ProjectionConfig::catch_up()
                .subscriber(SubscriberConfig::new().checkpoint_store(MemoryCheckpointStore::new())),
        )
        .build()
        .await;
    match built {
        Err(interlock::BuildError::InvalidSubscriberConfig {
            subscriber, setting, ..
        }) => {
            assert_eq!(
                (subscriber.as_str(), setting),
                ("projection:tests.deposit_total", "checkpoint_store")
            );
        }
        Err(other) => panic!("expected InvalidSubscriberConfig, got {other}"),
        Ok(_) => panic!("a memory model with a checkpoint store of its own was accepted"),
    }
}
