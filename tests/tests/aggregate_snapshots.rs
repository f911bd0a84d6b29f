//! Snapshots by policy, state schema versions, and the cache.

use interlock::AggregateConfig;
use interlock::DispatchOptions;
use std::sync::Arc;

use interlock::prelude::*;
use interlock::store::MemoryEventStore;
use interlock::store::{MemorySnapshotStore, Snapshot, SnapshotStore};
use interlock::{StreamId, Timestamp};
use interlock_tests::bank::*;

async fn app(store: Arc<MemoryEventStore>, snapshots: Arc<MemorySnapshotStore>, cache: usize) -> Application {
    Application::builder()
        .aggregate_with(AggregateConfig::<BankAccount>::new().snapshot_every(5))
        .service(FeePolicy { fee: 0 })
        .shared_event_store(store)
        .snapshot_store(snapshots)
        .cache_capacity(cache)
        .build()
        .await
        .expect("build")
}

#[tokio::test]
async fn snapshots_are_taken_every_n_events_and_used_on_load() {
    let store = Arc::new(MemoryEventStore::new());
    let snapshots = Arc::new(MemorySnapshotStore::new());
    let app = app(Arc::clone(&store), Arc::clone(&snapshots), 0).await;
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "s".into(),
    })
    .await
    .expect("open");
    for _ in 0..11 {
        app.dispatch(Deposit {
            account,
            amount: 1,
            id: None,
        })
        .await
        .expect("deposit");
    }
    let stream = StreamId::new("bank.account", account.to_string());
    let snap = snapshots.load(&stream).await.expect("load").expect("a snapshot");
    assert_eq!(snap.version, Version(10));
    assert_eq!(snap.state_version, 1);

    // Tamper with the snapshot: the load must start from it, proving it is used.
    let mut state: BankAccount = serde_json::from_slice(&snap.payload).expect("state");
    state.owner = "from-snapshot".into();
    snapshots
        .save(
            &stream,
            Snapshot {
                payload: serde_json::to_vec(&state).expect("encode").into(),
                ..snap.clone()
            },
        )
        .await
        .expect("save");
    let loaded = app.load::<BankAccount>(&account).await.expect("load");
    assert_eq!(loaded.state.owner, "from-snapshot");
    assert_eq!((loaded.state.balance, loaded.version), (11, Version(12)));
    // A temporal read before the snapshot ignores it.
    let early = app
        .load_as_of::<BankAccount>(&account, Version(3))
        .await
        .expect("as of");
    assert_eq!((early.state.owner.as_str(), early.state.balance), ("s", 2));
}

#[tokio::test]
async fn snapshots_of_another_state_version_are_ignored() {
    let store = Arc::new(MemoryEventStore::new());
    let snapshots = Arc::new(MemorySnapshotStore::new());
    let app = app(Arc::clone(&store), Arc::clone(&snapshots), 0).await;
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "s".into(),
    })
    .await
    .expect("open");
    app.dispatch(Deposit {
        account,
        amount: 4,
        id: None,
    })
    .await
    .expect("deposit");
    let stream = StreamId::new("bank.account", account.to_string());
    for (state_version, payload) in [
        (99, r#"{"open":true,"owner":"bad","balance":1000,"deposits":0}"#),
        (1, "{corrupt"),
    ] {
        snapshots
            .save(
                &stream,
                Snapshot {
                    version: Version(2),
                    state_version,
                    payload: payload.as_bytes().to_vec().into(),
                    taken_at: Timestamp::now(),
                },
            )
            .await
            .expect("save");
        let loaded = app.load::<BankAccount>(&account).await.expect("load from events");
        assert_eq!((loaded.state.owner.as_str(), loaded.state.balance), ("s", 4));
    }
}

#[tokio::test]
async fn a_stale_cache_entry_costs_a_retry_not_an_update() {
    // Two applications over one store: each caches what it wrote, so each
    // one's cache goes stale when the other writes.
    let store = Arc::new(MemoryEventStore::new());
    let a = app(Arc::clone(&store), Arc::new(MemorySnapshotStore::new()), 100).await;
    let b = app(Arc::clone(&store), Arc::new(MemorySnapshotStore::new()), 100).await;
    let account = Ulid::new();
    a.dispatch(OpenAccount {
        account,
        owner: "x".into(),
    })
    .await
    .expect("open");
    for i in 0..20u64 {
        let app = if i % 2 == 0 { &a } else { &b };
        let done = app
            .dispatch_with(
                Deposit {
                    account,
                    amount: 1,
                    id: None,
                },
                DispatchOptions::new(),
            )
            .await
            .expect("deposit");
        assert_eq!(done.version, Version(i + 2));
        // From the third deposit on, each application's cached state is one
        // version behind (the other one wrote last): the first attempt
        // conflicts, the second wins. Without the cache there is no retry.
        let expected_attempts = if i >= 2 { 2 } else { 1 };
        assert_eq!(done.attempts, expected_attempts, "deposit {i}");
    }
    assert_eq!(a.load::<BankAccount>(&account).await.expect("load").state.balance, 20);
    assert_eq!(b.load::<BankAccount>(&account).await.expect("load").state.balance, 20);
}

/// A rewrite through `app.event_store()` drops the stream's cached state
/// and snapshot: the next command and the next load fold the new payload.
#[tokio::test]
async fn a_rewrite_through_the_application_leaves_no_stale_state() {
    use interlock::store::{EventStore, RewrittenEvent};
    let store = Arc::new(MemoryEventStore::new());
    let snapshots = Arc::new(MemorySnapshotStore::new());
    let app = app(Arc::clone(&store), Arc::clone(&snapshots), 100).await;
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "r".into(),
    })
    .await
    .expect("open");
    for _ in 0..5 {
        app.dispatch(Deposit {
            account,
            amount: 1,
            id: None,
        })
        .await
        .expect("deposit");
    }
    let stream = StreamId::new("bank.account", account.to_string());
    assert!(snapshots.load(&stream).await.expect("snapshot").is_some());
    // Migrate the first deposit: 1 becomes 100.
    let first_deposit = app
        .event_store()
        .read_stream(&stream, interlock::Version(2), Some(interlock::Version(2)))
        .await
        .expect("read")
        .remove(0);
    app.event_store()
        .rewrite(
            first_deposit.position,
            RewrittenEvent {
                name: "bank.money_deposited".into(),
                schema_version: interlock::SchemaVersion(2),
                payload: br#"{"amount":100,"currency":"EUR"}"#.as_slice().into(),
            },
        )
        .await
        .expect("rewrite");
    assert_eq!(snapshots.load(&stream).await.expect("snapshot"), None);
    // The cached balance (5) would refuse this withdrawal.
    app.dispatch(Withdraw { account, amount: 100 })
        .await
        .expect("the command decides on the rewritten event");
    assert_eq!(app.load::<BankAccount>(&account).await.expect("load").state.balance, 4);
}
