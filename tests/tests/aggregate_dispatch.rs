//! Dispatch through the application on the in-memory store.

use interlock::AggregateConfig;
use interlock::DispatchOptions;
use interlock::prelude::*;
use interlock::store::EventStore;
use interlock::store::MemoryEventStore;
use interlock::store::{EventFilter, NewEvent};
use interlock::{CommandError, EventId, LoadError, StreamId, Timestamp};
use interlock_tests::bank::*;

async fn open(app: &Application) -> Ulid {
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "ada".into(),
    })
    .await
    .expect("open");
    account
}

#[tokio::test]
async fn dispatch_appends_events_and_returns_the_reply() {
    let app = app_on(MemoryEventStore::new()).await;
    let account = open(&app).await;
    app.dispatch(Deposit {
        account,
        amount: 100,
        id: None,
    })
    .await
    .expect("deposit");
    let balance: u64 = app.dispatch(Withdraw { account, amount: 30 }).await.expect("withdraw");
    assert_eq!(balance, 70);

    let loaded = app.load::<BankAccount>(&account).await.expect("load");
    assert_eq!(loaded.state.balance, 70);
    assert_eq!(loaded.version, Version(3));

    let stream = StreamId::new("bank.account", account.to_string());
    let events = app
        .event_store()
        .read_stream(&stream, Version(1), None)
        .await
        .expect("read");
    let names: Vec<_> = events.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(
        names,
        ["bank.account_opened", "bank.money_deposited", "bank.money_withdrawn"]
    );
    assert_eq!(events[1].schema_version, SchemaVersion(2));
    // Metadata: one correlation per command, caused by the command.
    let meta = &events[2].metadata;
    assert!(meta.timestamp.is_some());
    assert_eq!(meta.correlation_id.map(|c| c.0), meta.command_id.map(|c| c.0));
    assert_eq!(meta.causation_id, meta.command_id.map(interlock::CausationId::Command));
}

#[tokio::test]
async fn domain_rejection_is_typed_and_appends_nothing() {
    let app = app_on(MemoryEventStore::new()).await;
    let account = open(&app).await;
    let err = app
        .dispatch(Withdraw { account, amount: 5 })
        .await
        .expect_err("rejected");
    assert!(matches!(
        err,
        CommandError::Domain(BankError::InsufficientFunds {
            balance: 0,
            requested: 5
        })
    ));
    assert_eq!(app.event_store().head().await.expect("head").get(), 1);
    // The cached state is still usable after a rejection.
    app.dispatch(Deposit {
        account,
        amount: 5,
        id: None,
    })
    .await
    .expect("deposit");
    assert_eq!(
        app.dispatch(Withdraw { account, amount: 5 }).await.expect("withdraw"),
        0
    );
}

#[tokio::test]
async fn several_events_from_one_command_are_appended_together() {
    let app = app_on(MemoryEventStore::new()).await;
    let account = open(&app).await;
    let done = app
        .dispatch_with(Churn { account, amount: 9 }, DispatchOptions::new())
        .await
        .expect("churn");
    assert_eq!(done.version, Version(4));
    assert_eq!(done.positions.len(), 3);
    assert!(done.positions.windows(2).all(|w| w[0] < w[1]));
    let state = app.load::<BankAccount>(&account).await.expect("load").state;
    assert_eq!((state.balance, state.deposits), (0, 2));
}

#[tokio::test]
async fn async_handler_receives_registered_service() {
    let app = app_on(MemoryEventStore::new()).await;
    let account = open(&app).await;
    app.dispatch(Deposit {
        account,
        amount: 10,
        id: None,
    })
    .await
    .expect("deposit");
    app.dispatch(WithdrawWithFee { account, amount: 4 })
        .await
        .expect("withdraw");
    assert_eq!(app.load::<BankAccount>(&account).await.expect("load").state.balance, 5);
}

#[tokio::test]
async fn missing_service_fails_the_build() {
    let err = Application::builder()
        .aggregate::<BankAccount>()
        .build()
        .await
        .expect_err("FeePolicy is missing");
    let text = err.to_string();
    assert!(text.contains("FeePolicy") && text.contains("bank.account"), "{text}");
}

#[tokio::test]
async fn invalid_settings_fail_the_build() {
    let err = Application::builder()
        .max_attempts(0)
        .build()
        .await
        .expect_err("invalid");
    assert!(matches!(
        err,
        interlock::BuildError::InvalidConfig {
            setting: "max_attempts",
            ..
        }
    ));
    let err = Application::builder()
        .service(FeePolicy { fee: 0 })
        .aggregate_with(AggregateConfig::<BankAccount>::new().snapshot_every(0))
        .build()
        .await
        .expect_err("invalid");
    assert!(matches!(
        err,
        interlock::BuildError::InvalidConfig {
            setting: "snapshot_every",
            ..
        }
    ));
}

#[tokio::test]
async fn unregistered_aggregate_is_a_typed_error() {
    let app = Application::builder().build().await.expect("build");
    let err = app
        .dispatch(OpenAccount {
            account: Ulid::new(),
            owner: "x".into(),
        })
        .await
        .expect_err("not registered");
    assert!(
        matches!(
            err,
            CommandError::Load(LoadError::NotRegistered {
                aggregate: "bank.account",
                ..
            })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn repeated_command_id_returns_recorded_outcome_and_appends_nothing() {
    let app = app_on(MemoryEventStore::new()).await;
    let account = open(&app).await;
    let id = CommandId::new();
    let first = app
        .dispatch_with(
            Deposit {
                account,
                amount: 7,
                id: Some(id),
            },
            DispatchOptions::new(),
        )
        .await
        .expect("first");
    let second = app
        .dispatch_with(
            Deposit {
                account,
                amount: 7,
                id: Some(id),
            },
            DispatchOptions::new(),
        )
        .await
        .expect("second");
    assert!(!first.replayed && second.replayed);
    assert_eq!(first.version, second.version);
    assert_eq!(app.load::<BankAccount>(&account).await.expect("load").state.balance, 7);
    assert_eq!(app.event_store().head().await.expect("head").get(), 2);

    // A rejected command is not recorded: it may be retried with the same id.
    let other = Ulid::new();
    let id = CommandId::new();
    let rejected = app
        .dispatch(Deposit {
            account: other,
            amount: 1,
            id: Some(id),
        })
        .await;
    assert!(matches!(rejected, Err(CommandError::Domain(BankError::NotOpen))));
    app.dispatch(OpenAccount {
        account: other,
        owner: "b".into(),
    })
    .await
    .expect("open");
    app.dispatch(Deposit {
        account: other,
        amount: 1,
        id: Some(id),
    })
    .await
    .expect("retry with same id");
}

#[tokio::test]
async fn concurrent_duplicates_apply_once() {
    let app = app_on(MemoryEventStore::new()).await;
    let account = open(&app).await;
    let id = CommandId::new();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.dispatch(Deposit {
                account,
                amount: 3,
                id: Some(id),
            })
            .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("dispatch");
    }
    assert_eq!(app.load::<BankAccount>(&account).await.expect("load").state.balance, 3);
}

#[tokio::test]
async fn events_stored_as_version_1_upcast_on_load() {
    let store = MemoryEventStore::new();
    let account = Ulid::new();
    let stream = StreamId::new("bank.account", account.to_string());
    let raw = |name: &'static str, version: u32, payload: &'static str| NewEvent {
        event_id: EventId::new(),
        name: name.into(),
        schema_version: SchemaVersion(version),
        payload: payload.as_bytes().to_vec().into(),
        metadata: Default::default(),
    };
    store
        .append(
            &stream,
            interlock::store::ExpectedVersion::Exact(Version(0)),
            vec![
                raw("bank.account_opened", 1, r#"{"owner":"old"}"#),
                raw("bank.money_deposited", 1, r#"{"amount":40}"#),
            ],
        )
        .await
        .expect("append");
    let app = app_on(store).await;
    let state = app.load::<BankAccount>(&account).await.expect("load").state;
    assert_eq!((state.balance, state.deposits), (40, 1));
}

async fn app_with_raw(name: &'static str, version: u32, payload: &'static str) -> (Application, Ulid) {
    let store = MemoryEventStore::new();
    let account = Ulid::new();
    let stream = StreamId::new("bank.account", account.to_string());
    let events = vec![
        NewEvent {
            event_id: EventId::new(),
            name: "bank.account_opened".into(),
            schema_version: SchemaVersion(1),
            payload: br#"{"owner":"o"}"#.to_vec().into(),
            metadata: Default::default(),
        },
        NewEvent {
            event_id: EventId::new(),
            name: name.into(),
            schema_version: SchemaVersion(version),
            payload: payload.as_bytes().to_vec().into(),
            metadata: Default::default(),
        },
    ];
    store
        .append(&stream, interlock::store::ExpectedVersion::Any, events)
        .await
        .expect("append");
    (app_on(store).await, account)
}

#[tokio::test]
async fn corrupt_stored_events_give_typed_errors_naming_the_event() {
    for (name, version, payload, expect) in [
        ("bank.money_deposited", 2, "{not json", "does not decode"),
        ("bank.money_deposited", 2, r#"{"amount":1}"#, "currency"),
        ("bank.money_deposited", 3, r#"{"amount":1}"#, "no schema version v3"),
        ("bank.money_deposited", 0, r#"{"amount":1}"#, "no schema version v0"),
        ("bank.unknown", 1, "{}", "unknown event name"),
    ] {
        let (app, account) = app_with_raw(name, version, payload).await;
        let err = app.load::<BankAccount>(&account).await.expect_err("corrupt");
        match &err {
            LoadError::Decode {
                aggregate,
                id,
                version: v,
                event,
                ..
            } => {
                assert_eq!(*aggregate, "bank.account");
                assert_eq!(id, &account.to_string());
                assert_eq!(*v, Version(2));
                assert_eq!(event, name);
            }
            other => panic!("expected a decode error, got {other}"),
        }
        let text = format!("{err} / {:?}", std::error::Error::source(&err).map(ToString::to_string));
        assert!(text.contains(expect), "{text}");
        // Dispatch surfaces the same failure as a typed command error.
        let err = app
            .dispatch(Withdraw { account, amount: 1 })
            .await
            .expect_err("corrupt");
        assert!(
            matches!(
                err,
                CommandError::Load(LoadError::Decode {
                    version: Version(2),
                    ..
                })
            ),
            "{err}"
        );
    }
}

#[tokio::test]
async fn unknown_events_can_be_skipped_by_configuration() {
    let store = MemoryEventStore::new();
    let account = Ulid::new();
    let stream = StreamId::new("bank.account", account.to_string());
    store
        .append(
            &stream,
            interlock::store::ExpectedVersion::Any,
            vec![NewEvent {
                event_id: EventId::new(),
                name: "bank.retired_event".into(),
                schema_version: SchemaVersion(1),
                payload: b"{}".to_vec().into(),
                metadata: Default::default(),
            }],
        )
        .await
        .expect("append");
    let app = Application::builder()
        .aggregate_with(AggregateConfig::<BankAccount>::new().skip_unknown_events())
        .service(FeePolicy { fee: 0 })
        .event_store(store)
        .build()
        .await
        .expect("build");
    let loaded = app.load::<BankAccount>(&account).await.expect("skipped");
    assert_eq!(loaded.version, Version(1));
    app.dispatch(OpenAccount {
        account,
        owner: "x".into(),
    })
    .await
    .expect("open after skip");
}

#[tokio::test]
async fn oversized_events_are_rejected_before_writing() {
    let app = Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 0 })
        .max_event_bytes(32)
        .build()
        .await
        .expect("build");
    let err = app
        .dispatch(OpenAccount {
            account: Ulid::new(),
            owner: "a very long owner name that does not fit".into(),
        })
        .await
        .expect_err("too large");
    assert!(matches!(err, CommandError::EventTooLarge { limit: 32, .. }), "{err}");
    assert_eq!(app.event_store().head().await.expect("head").get(), 0);
}

#[tokio::test]
async fn temporal_reads_by_version_and_time() {
    let app = app_on(MemoryEventStore::new()).await;
    let account = open(&app).await;
    app.dispatch(Deposit {
        account,
        amount: 10,
        id: None,
    })
    .await
    .expect("deposit");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let between = Timestamp::now();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    app.dispatch(Deposit {
        account,
        amount: 20,
        id: None,
    })
    .await
    .expect("deposit");

    let v2 = app
        .load_as_of::<BankAccount>(&account, Version(2))
        .await
        .expect("as of v2");
    assert_eq!((v2.state.balance, v2.version), (10, Version(2)));
    let at = app
        .load_as_of::<BankAccount>(&account, between)
        .await
        .expect("as of time");
    assert_eq!((at.state.balance, at.version), (10, Version(2)));
    let v0 = app
        .load_as_of::<BankAccount>(&account, Version(0))
        .await
        .expect("as of v0");
    assert_eq!((v0.state.open, v0.version), (false, Version(0)));
    let all = app
        .load_as_of::<BankAccount>(&account, Version(99))
        .await
        .expect("past the end");
    assert_eq!((all.state.balance, all.version), (30, Version(3)));
}

#[tokio::test]
async fn read_all_filters_by_name_and_aggregate_type() {
    let app = app_on(MemoryEventStore::new()).await;
    let account = open(&app).await;
    app.dispatch(Deposit {
        account,
        amount: 1,
        id: None,
    })
    .await
    .expect("deposit");
    let store = app.event_store();
    let deposits = store
        .read_all(
            interlock::Position::START,
            100,
            &EventFilter::all().event_names(["bank.money_deposited"]),
        )
        .await
        .expect("read");
    assert_eq!(deposits.len(), 1);
    let none = store
        .read_all(
            interlock::Position::START,
            100,
            &EventFilter::all().aggregate_types(["other"]),
        )
        .await
        .expect("read");
    assert!(none.is_empty());
}

#[tokio::test]
async fn expired_idempotency_records_are_cleaned_up_in_the_background() {
    use interlock::store::{Claim, IdempotencyStore, MemoryIdempotencyStore};
    let records = std::sync::Arc::new(MemoryIdempotencyStore::new());
    let app = Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 0 })
        .idempotency_store(records.clone())
        .idempotency_ttl(std::time::Duration::from_millis(20))
        .idempotency_purge_every(std::time::Duration::from_millis(10))
        .build()
        .await
        .expect("build");
    let account = open(&app).await;
    let id = CommandId::new();
    app.dispatch(Deposit {
        account,
        amount: 1,
        id: Some(id),
    })
    .await
    .expect("deposit");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // The record expired and was purged: nothing is left under this id, so a
    // far-future claim of a fresh store view finds it free.
    let purged_already = records.purge_expired(Timestamp::now()).await.expect("purge");
    assert_eq!(purged_already, 0, "the background cleanup deleted it first");
    assert_eq!(
        records
            .claim(id, Timestamp::now(), std::time::Duration::from_secs(1))
            .await
            .expect("claim"),
        Claim::Claimed
    );
}

/// The error of a command whose id was used before for another command.
fn assert_reused<T: std::fmt::Debug, E: std::fmt::Debug>(result: Result<T, CommandError<E>>, command: &str) {
    match result {
        Err(CommandError::CommandIdReused { command: refused, .. }) => assert_eq!(refused, command),
        other => panic!("expected CommandIdReused for `{command}`, got {other:?}"),
    }
}

#[tokio::test]
async fn a_command_id_reused_for_a_different_command_is_refused() {
    let app = app_on(MemoryEventStore::new()).await;
    let account = open(&app).await;
    let other = open(&app).await;
    let id = CommandId::new();
    let deposit = |account, amount| Deposit {
        account,
        amount,
        id: Some(id),
    };
    app.dispatch(deposit(account, 7)).await.expect("first");

    // Other field values, another aggregate, another command type: none of
    // them runs, none gets the first command's outcome.
    assert_reused(app.dispatch(deposit(account, 8)).await, "Deposit");
    assert_reused(app.dispatch(deposit(other, 7)).await, "Deposit");
    assert_reused(
        app.dispatch_with(Withdraw { account, amount: 7 }, DispatchOptions::new().command_id(id))
            .await,
        "Withdraw",
    );
    assert_eq!(app.load::<BankAccount>(&account).await.expect("load").state.balance, 7);
    assert_eq!(app.load::<BankAccount>(&other).await.expect("load").state.balance, 0);

    // The same command again is still a replay.
    let again = app
        .dispatch_with(deposit(account, 7), DispatchOptions::new())
        .await
        .expect("replay");
    assert!(again.replayed);
}

use interlock_tests::idempotency::LosesOutcomes;

#[tokio::test]
async fn a_command_whose_outcome_was_lost_after_its_commit_is_replayed_from_its_events() {
    use interlock::store::{IdempotencyStore, MemoryIdempotencyStore};
    let events = std::sync::Arc::new(MemoryEventStore::new());
    let records = std::sync::Arc::new(MemoryIdempotencyStore::new());
    let app = |idempotency: Box<dyn Fn() -> LosesOutcomesOrNot>| {
        let events = events.clone();
        async move {
            let builder = bank_builder()
                .shared_event_store(events)
                .idempotency_lease(std::time::Duration::from_millis(200));
            match idempotency() {
                LosesOutcomesOrNot::Loses(s) => builder.idempotency_store(s),
                LosesOutcomesOrNot::Keeps(s) => builder.idempotency_store(s),
            }
            .build()
            .await
            .expect("build")
        }
    };
    let dying = {
        let records = records.clone();
        app(Box::new(move || {
            LosesOutcomesOrNot::Loses(LosesOutcomes(records.clone()))
        }))
        .await
    };
    let account = open(&dying).await;
    let id = CommandId::new();
    let deposit = || Deposit {
        account,
        amount: 7,
        id: Some(id),
    };
    dying.dispatch(deposit()).await.expect("committed, outcome lost");
    dying.shutdown();

    let next = {
        let records = records.clone();
        app(Box::new(move || LosesOutcomesOrNot::Keeps(records.clone()))).await
    };
    // The dead claim still holds: the committed events are found at once.
    let replay = next
        .dispatch_with(deposit(), DispatchOptions::new())
        .await
        .expect("replayed while the dead claim holds");
    assert!(replay.replayed);
    assert_eq!(replay.version, Version(2));
    // After the lease the id is reclaimed, and still replayed.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let after_lease = next
        .dispatch_with(deposit(), DispatchOptions::new())
        .await
        .expect("replayed after the lease");
    assert!(after_lease.replayed);
    assert_eq!(next.load::<BankAccount>(&account).await.expect("load").state.balance, 7);
    assert_eq!(next.event_store().head().await.expect("head").get(), 2);
    // A different command under the id is still refused.
    assert_reused(
        next.dispatch(Deposit {
            account,
            amount: 8,
            id: Some(id),
        })
        .await,
        "Deposit",
    );
    // And the recovered outcome is recorded now.
    assert!(matches!(
        records
            .claim(id, Timestamp::now(), std::time::Duration::from_secs(1))
            .await,
        Ok(interlock::store::Claim::Completed(_))
    ));
}

enum LosesOutcomesOrNot {
    Loses(LosesOutcomes),
    Keeps(std::sync::Arc<interlock::store::MemoryIdempotencyStore>),
}
