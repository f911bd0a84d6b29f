//! An instance paused past its command's idempotency lease (a GC pause, a
//! stalled network) while another instance takes the claim over and runs
//! the command: when the paused one resumes, its append conflicts, it finds
//! the command's events already committed, and it stops with `InProgress`
//! instead of applying the command a second time. The id's outcome is
//! then replayed to every caller.

use std::sync::Arc;
use std::time::Duration;

use interlock::prelude::*;
use interlock::store::{
    BoxFuture, Committed, EventStore, ExpectedVersion, MemoryEventStore, MemoryIdempotencyStore, NewEvent, StoreError,
};
use interlock::{CommandError, StreamId};
use interlock_tests::bank::*;
use interlock_tests::hooked::{AppendHook, Hooked};

/// Holds the first append of command `id` until released.
struct Gate {
    id: CommandId,
    held: parking_lot::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>,
    reached: tokio::sync::Notify,
}

impl AppendHook for Gate {
    fn append<'a>(
        &'a self,
        inner: &'a MemoryEventStore,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        Box::pin(async move {
            let ours = events.first().and_then(|e| e.metadata.command_id) == Some(self.id);
            let wait = if ours { self.held.lock().take() } else { None };
            if let Some(wait) = wait {
                self.reached.notify_one();
                let _ = wait.await;
            }
            inner.append(stream, expected, events).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_instance_does_not_apply_a_command_another_took_over() {
    let id = CommandId::new();
    let (release, held) = tokio::sync::oneshot::channel();
    let store = Arc::new(Hooked::new(Gate {
        id,
        held: parking_lot::Mutex::new(Some(held)),
        reached: tokio::sync::Notify::new(),
    }));
    let claims = Arc::new(MemoryIdempotencyStore::new());
    let instance = || {
        bank_builder()
            .shared_event_store(store.clone())
            .idempotency_store(Arc::clone(&claims))
            .idempotency_lease(Duration::from_millis(100))
            .build()
    };
    let (a, b) = (instance().await.expect("build"), instance().await.expect("build"));
    let account = Ulid::new();
    a.dispatch(OpenAccount {
        account,
        owner: "paused".into(),
    })
    .await
    .expect("open");
    let deposit = Deposit {
        account,
        amount: 7,
        id: Some(id),
    };

    // A claims the id and is paused inside its append.
    let paused = tokio::spawn({
        let (a, deposit) = (a.clone(), deposit.clone());
        async move { a.dispatch(deposit).await }
    });
    store.hook.reached.notified().await;
    // Past A's lease, B takes the claim over and runs the command.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let by_b = b
        .dispatch_with(deposit.clone(), interlock::DispatchOptions::new())
        .await
        .expect("B runs it");
    assert!(!by_b.replayed);
    // A resumes: its append conflicts with B's, and it finds B's events.
    let _ = release.send(());
    match paused.await.expect("join") {
        Err(CommandError::InProgress(got)) => assert_eq!(got, id),
        other => panic!("the paused instance must not apply it again: {other:?}"),
    }
    let events = store
        .read_stream(&StreamId::new("bank.account", account.to_string()), Version(1), None)
        .await
        .expect("read");
    let deposits = events.iter().filter(|e| e.metadata.command_id == Some(id)).count();
    assert_eq!(deposits, 1, "the deposit is applied once");
    assert_eq!(b.load::<BankAccount>(&account).await.expect("load").state.balance, 7);
    // And the id's outcome is replayed to anyone asking again, A included.
    let again = a.dispatch_with(deposit, interlock::DispatchOptions::new()).await;
    assert!(again.expect("replayed").replayed);
}
