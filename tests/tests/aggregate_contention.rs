//! RELIABILITY.md contention: 16 tasks dispatch `Deposit` to the same 4
//! accounts, 1 000 commands each, with automatic conflict retry.

use interlock::DispatchOptions;
use std::sync::Arc;

use interlock::prelude::*;
use interlock::store::EventStore;
use interlock::store::MemoryEventStore;
use interlock::{CommandError, StreamId};
use interlock_tests::bank::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_tasks_on_four_accounts_lose_no_update() {
    let store = Arc::new(MemoryEventStore::new());
    let app = bank_builder()
        .shared_event_store(store.clone())
        .max_attempts(100_000)
        .build()
        .await
        .expect("build");
    let accounts: Vec<Ulid> = (0..4).map(|_| Ulid::new()).collect();
    for &account in &accounts {
        app.dispatch(OpenAccount {
            account,
            owner: "c".into(),
        })
        .await
        .expect("open");
    }
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let app = app.clone();
        let accounts = accounts.clone();
        tasks.push(tokio::spawn(async move {
            let mut sums = [0u64; 4];
            let mut retries = 0u64;
            for i in 0..1000u64 {
                let k = ((t + i) % 4) as usize;
                let amount = (t + 1) * 1000 + i;
                let done = app
                    .dispatch_with(
                        Deposit {
                            account: accounts[k],
                            amount,
                            id: None,
                        },
                        DispatchOptions::new(),
                    )
                    .await
                    .expect("every command completes");
                retries += u64::from(done.attempts - 1);
                sums[k] += amount;
            }
            (sums, retries)
        }));
    }
    let mut expected = [0u64; 4];
    let mut retries = 0;
    for t in tasks {
        let (sums, r) = t.await.expect("join");
        retries += r;
        for k in 0..4 {
            expected[k] += sums[k];
        }
    }
    for (k, account) in accounts.iter().enumerate() {
        let loaded = app.load::<BankAccount>(account).await.expect("load");
        assert_eq!(loaded.state.balance, expected[k]);
        let stream = StreamId::new("bank.account", account.to_string());
        let events = store.read_stream(&stream, Version(1), None).await.expect("read");
        assert_eq!(events.len() as u64, loaded.version.get());
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.version, Version(i as u64 + 1), "versions 1..n, no gap or duplicate");
        }
    }
    eprintln!("contention: 16 000 commands, {retries} conflict retries");
}

#[tokio::test]
async fn without_retries_a_conflict_is_typed_and_appends_nothing() {
    // One attempt only, and a writer that races every command.
    let store = Arc::new(MemoryEventStore::new());
    let app = bank_builder()
        .shared_event_store(store.clone())
        .cache_capacity(100)
        .max_attempts(1)
        .build()
        .await
        .expect("build");
    let other = bank_builder()
        .shared_event_store(store.clone())
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "c".into(),
    })
    .await
    .expect("open");
    // `app` now caches version 1; `other` moves the stream to version 2.
    other
        .dispatch(Deposit {
            account,
            amount: 1,
            id: None,
        })
        .await
        .expect("deposit");
    let err = app
        .dispatch(Deposit {
            account,
            amount: 5,
            id: None,
        })
        .await
        .expect_err("conflict");
    match err {
        CommandError::Conflict {
            stream,
            expected,
            actual,
            attempts,
        } => {
            assert_eq!(stream.aggregate_id(), account.to_string());
            assert_eq!((expected, actual, attempts), (Version(1), Version(2), 1));
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(store.head().await.expect("head").get(), 2);
    // The next dispatch reloads and succeeds.
    app.dispatch(Deposit {
        account,
        amount: 5,
        id: None,
    })
    .await
    .expect("after reload");
    assert_eq!(app.load::<BankAccount>(&account).await.expect("load").state.balance, 6);
}

/// 16 tasks × `per_task` deposits on 4 accounts through `app`; returns the
/// conflict retries and checks every balance.
async fn contend(app: &Application, per_task: u64) -> u64 {
    let accounts: Vec<Ulid> = (0..4).map(|_| Ulid::new()).collect();
    for &account in &accounts {
        app.dispatch(OpenAccount {
            account,
            owner: "t".into(),
        })
        .await
        .expect("open");
    }
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let app = app.clone();
        let accounts = accounts.clone();
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            for i in 0..per_task {
                let done = app
                    .dispatch_with(
                        Deposit {
                            account: accounts[((t + i) % 4) as usize],
                            amount: 1,
                            id: None,
                        },
                        DispatchOptions::new(),
                    )
                    .await
                    .expect("every command completes");
                retries += u64::from(done.attempts - 1);
            }
            retries
        }));
    }
    let mut retries = 0;
    for t in tasks {
        retries += t.await.expect("join");
    }
    let mut total = 0;
    for account in &accounts {
        total += app.load::<BankAccount>(account).await.expect("load").state.balance;
    }
    assert_eq!(total, 16 * per_task);
    retries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commands_to_one_aggregate_in_one_instance_never_conflict() {
    let memory = bank_builder().build().await.expect("build");
    assert_eq!(contend(&memory, 500).await, 0, "in memory");

    let Some(sqlite) = interlock_tests::services::sqlite_file().await else {
        return;
    };
    let on_sqlite = bank_builder().backend(sqlite).build().await.expect("build");
    assert_eq!(contend(&on_sqlite, 40).await, 0, "on SQLite");
}
