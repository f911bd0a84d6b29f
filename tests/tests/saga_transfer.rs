//! The money-transfer saga end to end: completion, compensation, restart
//! between steps, re-delivery, deadlines, and the correlation chain.

use interlock::DispatchOptions;
use interlock::ProjectionConfig;
use std::sync::Arc;
use std::time::Duration;

use interlock::prelude::*;
use interlock::store::EventFilter;
use interlock::store::MemoryCheckpointStore;
use interlock::store::MemoryIdempotencyStore;
use interlock::store::{MemoryEventStore, RecordedEvent};
use interlock::store::{MemorySagaStateStore, SagaStateStore};
use interlock::{CausationId, CorrelationId, Position};
use transfer_example::accounts::*;
use transfer_example::balances::{Balances, GetBalance, TransferCounts};
use transfer_example::transfer::*;

/// Stores shared between "processes" (applications) of one test.
#[derive(Clone)]
struct Stores {
    events: Arc<MemoryEventStore>,
    sagas: Arc<MemorySagaStateStore>,
    checkpoints: Arc<MemoryCheckpointStore>,
    idempotency: Arc<MemoryIdempotencyStore>,
}

impl Stores {
    fn new() -> Self {
        Self {
            events: Arc::new(MemoryEventStore::new()),
            sagas: Arc::new(MemorySagaStateStore::new()),
            checkpoints: Arc::new(MemoryCheckpointStore::new()),
            idempotency: Arc::new(MemoryIdempotencyStore::new()),
        }
    }
}

async fn app(stores: &Stores, timeout: Duration) -> Application {
    Application::builder()
        .aggregate::<Account>()
        .aggregate::<Transfer>()
        .saga::<MoneyTransfer>()
        .projection_with(Balances::default(), ProjectionConfig::inline())
        .service(TransferTimeout(timeout))
        .shared_event_store(stores.events.clone())
        .saga_state_store(stores.sagas.clone())
        .checkpoint_store(stores.checkpoints.clone())
        .idempotency_store(stores.idempotency.clone())
        .background(false)
        .build()
        .await
        .expect("build")
}

async fn open_with(app: &Application, amount: u64) -> Ulid {
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "o".into(),
    })
    .await
    .expect("open");
    if amount > 0 {
        app.dispatch(Deposit { account, amount }).await.expect("deposit");
    }
    account
}

async fn events_named(app: &Application, name: &'static str) -> Vec<RecordedEvent> {
    app.event_store()
        .read_all(Position::START, 10_000, &EventFilter::all().event_names([name]))
        .await
        .expect("read")
}

async fn run_saga(app: &Application) {
    app.saga_handle::<MoneyTransfer>()
        .expect("saga")
        .catch_up()
        .await
        .expect("catch up");
}

async fn status(app: &Application, transfer_id: Ulid) -> TransferStatus {
    app.load::<Transfer>(&transfer_id).await.expect("load").state.status
}

#[tokio::test]
async fn a_transfer_completes_and_the_projection_shows_it() {
    let stores = Stores::new();
    let app = app(&stores, Duration::from_secs(60)).await;
    let (from, to) = (open_with(&app, 100).await, open_with(&app, 5).await);
    let transfer_id = Ulid::new();
    app.dispatch(RequestTransfer {
        transfer_id,
        from,
        to,
        amount: 30,
    })
    .await
    .expect("request");
    run_saga(&app).await;

    assert_eq!(status(&app, transfer_id).await, TransferStatus::Completed);
    assert_eq!(app.query(GetBalance { account: from }).await.expect("query"), Some(70));
    assert_eq!(app.query(GetBalance { account: to }).await.expect("query"), Some(35));
    assert_eq!(app.query(TransferCounts).await.expect("query"), (1, 0));
    // The end step deleted the instance and its deadline.
    assert!(
        stores
            .sagas
            .load("transfers.money_transfer", &transfer_id.to_string())
            .await
            .expect("load")
            .is_none()
    );
    assert_eq!(app.fire_due_deadlines::<MoneyTransfer>().await.expect("deadlines"), 0);
}

#[tokio::test]
async fn a_refused_credit_is_compensated_by_a_refund() {
    let stores = Stores::new();
    let app = app(&stores, Duration::from_secs(60)).await;
    let (from, to) = (open_with(&app, 100).await, open_with(&app, 0).await);
    app.dispatch(CloseAccount { account: to }).await.expect("close");
    let transfer_id = Ulid::new();
    app.dispatch(RequestTransfer {
        transfer_id,
        from,
        to,
        amount: 40,
    })
    .await
    .expect("request");
    run_saga(&app).await;

    assert_eq!(status(&app, transfer_id).await, TransferStatus::Failed);
    let reason = app.load::<Transfer>(&transfer_id).await.expect("load").state.reason;
    assert!(reason.is_some_and(|r| r.contains("closed")));
    assert_eq!(events_named(&app, "accounts.transfer_refunded").await.len(), 1);
    assert_eq!(app.query(GetBalance { account: from }).await.expect("query"), Some(100));
    assert_eq!(app.query(TransferCounts).await.expect("query"), (0, 1));
}

#[tokio::test]
async fn an_insufficient_balance_fails_the_transfer_without_a_debit() {
    let stores = Stores::new();
    let app = app(&stores, Duration::from_secs(60)).await;
    let (from, to) = (open_with(&app, 10).await, open_with(&app, 0).await);
    let transfer_id = Ulid::new();
    app.dispatch(RequestTransfer {
        transfer_id,
        from,
        to,
        amount: 40,
    })
    .await
    .expect("request");
    run_saga(&app).await;
    assert_eq!(status(&app, transfer_id).await, TransferStatus::Failed);
    assert!(events_named(&app, "accounts.transfer_debited").await.is_empty());
}

#[tokio::test]
async fn the_saga_survives_a_restart_between_steps_and_dispatches_nothing_twice() {
    let stores = Stores::new();
    let first = app(&stores, Duration::from_secs(60)).await;
    let (from, to) = (open_with(&first, 100).await, open_with(&first, 0).await);
    let transfer_id = Ulid::new();
    let requested = first
        .dispatch_with(
            RequestTransfer {
                transfer_id,
                from,
                to,
                amount: 25,
            },
            DispatchOptions::new(),
        )
        .await
        .expect("request");
    // The first process runs the start step only, then dies.
    let handle = first.saga_handle::<MoneyTransfer>().expect("saga");
    handle.catch_up_to(requested.positions[0]).await.expect("first step");
    assert_eq!(events_named(&first, "accounts.transfer_debited").await.len(), 1);
    assert!(events_named(&first, "accounts.transfer_credited").await.is_empty());
    first.shutdown();
    drop(first);

    // A new process with the same stores continues from the persisted state.
    let second = app(&stores, Duration::from_secs(60)).await;
    run_saga(&second).await;
    assert_eq!(status(&second, transfer_id).await, TransferStatus::Completed);
    assert_eq!(events_named(&second, "accounts.transfer_debited").await.len(), 1);
    assert_eq!(events_named(&second, "accounts.transfer_credited").await.len(), 1);
    assert_eq!(events_named(&second, "transfers.completed").await.len(), 1);
    assert_eq!(second.load::<Account>(&from).await.expect("load").version, Version(3));
}

#[tokio::test]
async fn a_redelivered_event_dispatches_no_duplicate_command() {
    let stores = Stores::new();
    let first = app(&stores, Duration::from_secs(60)).await;
    let (from, to) = (open_with(&first, 100).await, open_with(&first, 0).await);
    let transfer_id = Ulid::new();
    let requested = first
        .dispatch_with(
            RequestTransfer {
                transfer_id,
                from,
                to,
                amount: 25,
            },
            DispatchOptions::new(),
        )
        .await
        .expect("request");
    first
        .saga_handle::<MoneyTransfer>()
        .expect("saga")
        .catch_up_to(requested.positions[0])
        .await
        .expect("step");
    drop(first);

    // Crash after the step's command but before its state and checkpoint
    // were saved: the state and checkpoint are lost, the event comes again.
    let lost = Stores {
        sagas: Arc::new(MemorySagaStateStore::new()),
        checkpoints: Arc::new(MemoryCheckpointStore::new()),
        ..stores.clone()
    };
    let second = app(&lost, Duration::from_secs(60)).await;
    run_saga(&second).await;
    assert_eq!(
        events_named(&second, "accounts.transfer_debited").await.len(),
        1,
        "the debit is not repeated"
    );
    assert_eq!(status(&second, transfer_id).await, TransferStatus::Completed);
    assert_eq!(
        second.query(GetBalance { account: from }).await.expect("query"),
        Some(75)
    );
}

#[tokio::test]
async fn the_deadline_fails_a_pending_transfer_once() {
    let stores = Stores::new();
    let app = app(&stores, Duration::from_millis(20)).await;
    let (from, to) = (open_with(&app, 100).await, open_with(&app, 0).await);
    let transfer_id = Ulid::new();
    let requested = app
        .dispatch_with(
            RequestTransfer {
                transfer_id,
                from,
                to,
                amount: 10,
            },
            DispatchOptions::new(),
        )
        .await
        .expect("request");
    // Only the start step runs: the debit happens, the credit never comes.
    app.saga_handle::<MoneyTransfer>()
        .expect("saga")
        .catch_up_to(requested.positions[0])
        .await
        .expect("step");
    assert_eq!(app.fire_due_deadlines::<MoneyTransfer>().await.expect("not yet"), 0);
    tokio::time::sleep(Duration::from_millis(40)).await;
    assert_eq!(app.fire_due_deadlines::<MoneyTransfer>().await.expect("fire"), 1);
    assert_eq!(
        app.fire_due_deadlines::<MoneyTransfer>().await.expect("fired already"),
        0
    );
    assert_eq!(status(&app, transfer_id).await, TransferStatus::Failed);
    assert_eq!(events_named(&app, "transfers.failed").await.len(), 1);
    // The debit was refunded: no money is lost to a stuck transfer.
    assert_eq!(events_named(&app, "accounts.transfer_refunded").await.len(), 1);
    assert_eq!(app.load::<Account>(&from).await.expect("load").version, Version(4));
    app.projection_handle::<Balances>()
        .expect("projection")
        .catch_up()
        .await
        .expect("catch up");
    assert_eq!(app.query(GetBalance { account: from }).await.expect("query"), Some(100));
    // The saga ended with the deadline: its state and deadlines are gone.
    assert!(
        stores
            .sagas
            .load("transfers.money_transfer", &transfer_id.to_string())
            .await
            .expect("load")
            .is_none()
    );
}

#[tokio::test]
async fn the_deadline_survives_a_restart() {
    let stores = Stores::new();
    let first = app(&stores, Duration::from_millis(20)).await;
    let (from, to) = (open_with(&first, 100).await, open_with(&first, 0).await);
    let transfer_id = Ulid::new();
    let requested = first
        .dispatch_with(
            RequestTransfer {
                transfer_id,
                from,
                to,
                amount: 10,
            },
            DispatchOptions::new(),
        )
        .await
        .expect("request");
    let handle = first.saga_handle::<MoneyTransfer>().expect("saga");
    handle.catch_up_to(requested.positions[0]).await.expect("start step");
    // Second step: the saga sees the debit, then the process dies before the credit.
    let debit = events_named(&first, "accounts.transfer_debited").await;
    let credit_cmds_before = events_named(&first, "accounts.transfer_credited").await.len();
    assert_eq!(credit_cmds_before, 0);
    drop(handle);
    drop(first);

    tokio::time::sleep(Duration::from_millis(40)).await;
    let second = app(&stores, Duration::from_millis(20)).await;
    assert_eq!(second.fire_due_deadlines::<MoneyTransfer>().await.expect("fire"), 1);
    assert_eq!(status(&second, transfer_id).await, TransferStatus::Failed);
    assert_eq!(debit.len(), 1);
}

#[tokio::test]
async fn correlation_flows_from_the_request_through_the_saga() {
    let stores = Stores::new();
    let app = app(&stores, Duration::from_secs(60)).await;
    let (from, to) = (open_with(&app, 100).await, open_with(&app, 0).await);
    let correlation = CorrelationId::new();
    let request_id = CommandId::new();
    let transfer_id = Ulid::new();
    app.dispatch_with(
        RequestTransfer {
            transfer_id,
            from,
            to,
            amount: 1,
        },
        DispatchOptions::new()
            .correlation_id(correlation)
            .command_id(request_id),
    )
    .await
    .expect("request");
    run_saga(&app).await;

    let requested = &events_named(&app, "transfers.requested").await[0];
    let debited = &events_named(&app, "accounts.transfer_debited").await[0];
    let credited = &events_named(&app, "accounts.transfer_credited").await[0];
    let completed = &events_named(&app, "transfers.completed").await[0];
    for e in [requested, debited, credited, completed] {
        assert_eq!(
            e.metadata.correlation_id,
            Some(correlation),
            "{} keeps the correlation id",
            e.name
        );
    }
    assert_eq!(requested.metadata.causation_id, Some(CausationId::Command(request_id)));
    // A saga's command is caused by the event that triggered its step; its
    // events carry that causation and their own command id, so the chain
    // can be walked back event by event to the first command.
    assert_eq!(
        debited.metadata.causation_id,
        Some(CausationId::Event(requested.event_id))
    );
    assert_eq!(
        credited.metadata.causation_id,
        Some(CausationId::Event(debited.event_id))
    );
    assert_eq!(
        completed.metadata.causation_id,
        Some(CausationId::Event(credited.event_id))
    );
    let debit_command = debited.metadata.command_id.expect("command id");
    assert_ne!(debit_command, request_id);
    let chain = app
        .event_store()
        .read_all(Position::START, 1000, &EventFilter::all())
        .await
        .expect("read")
        .into_iter()
        .filter(|e| e.metadata.correlation_id == Some(correlation))
        .count();
    assert_eq!(chain, 4);
}

#[tokio::test]
async fn background_followers_run_the_saga_without_being_driven() {
    let app = Application::builder()
        .aggregate::<Account>()
        .aggregate::<Transfer>()
        .saga::<MoneyTransfer>()
        .projection(Balances::default())
        .build()
        .await
        .expect("build");
    let (from, to) = (open_with(&app, 50).await, open_with(&app, 0).await);
    let transfer_id = Ulid::new();
    app.dispatch(RequestTransfer {
        transfer_id,
        from,
        to,
        amount: 20,
    })
    .await
    .expect("request");
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if status(&app, transfer_id).await == TransferStatus::Completed
                && app.query(GetBalance { account: to }).await.expect("query") == Some(20)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "the background saga and projection finished the transfer");
    let statuses = app.subscriber_statuses().await.expect("statuses");
    assert_eq!(statuses.len(), 2);
}

#[tokio::test]
async fn a_saga_keeps_its_checkpoint_in_the_store_it_is_given() {
    use interlock::SubscriberConfig;
    use interlock::store::CheckpointStore;
    let stores = Stores::new();
    let own = Arc::new(MemoryCheckpointStore::new());
    let app = Application::builder()
        .aggregate::<Account>()
        .aggregate::<Transfer>()
        .saga_with::<MoneyTransfer>(SubscriberConfig::new().checkpoint_store(own.clone()))
        .service(TransferTimeout(Duration::from_secs(60)))
        .shared_event_store(stores.events.clone())
        .saga_state_store(stores.sagas.clone())
        .checkpoint_store(stores.checkpoints.clone())
        .background(false)
        .build()
        .await
        .expect("build");
    let (from, to) = (open_with(&app, 100).await, open_with(&app, 0).await);
    let transfer_id = Ulid::new();
    app.dispatch(RequestTransfer {
        transfer_id,
        from,
        to,
        amount: 30,
    })
    .await
    .expect("request");
    run_saga(&app).await;
    assert_eq!(status(&app, transfer_id).await, TransferStatus::Completed);
    let name = "saga:transfers.money_transfer";
    let saved = own.load(name).await.expect("load");
    assert_eq!(saved, Some(app.event_store().head().await.expect("head")));
    assert_eq!(stores.checkpoints.load(name).await.expect("load"), None);
}
