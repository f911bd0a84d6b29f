//! Commands to one aggregate that share an append (a store that commits
//! later): an answer given without an append never rests on events that
//! did not commit, and a failed shared append fails every command built on
//! it. Run on a hooked in-memory store that commits later, like a SQL
//! store behind its group committer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use interlock::prelude::*;
use interlock::store::{BoxFuture, Committed, EventStore, ExpectedVersion, MemoryEventStore, NewEvent, StoreError};
use interlock::{DispatchOptions, StreamId};
use interlock_tests::hooked::{AppendHook, Hooked};

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "tests.credited")]
struct Credited {
    amount: u64,
}

#[derive(Command, Clone, Debug)]
struct Credit {
    #[aggregate_id]
    id: Ulid,
    amount: u64,
}

/// Answers the balance, appending nothing.
#[derive(Command, Clone, Debug)]
struct ReadBalance {
    #[aggregate_id]
    id: Ulid,
}

#[derive(Default)]
struct Wallet {
    balance: u64,
}

#[aggregate(name = "tests.wallet")]
impl Wallet {
    #[handles_command]
    fn credit(&self, c: Credit) -> Credited {
        Credited { amount: c.amount }
    }

    #[handles_command]
    fn read(&self, _: ReadBalance) -> Reply<u64, ()> {
        Reply::new(self.balance, ())
    }

    #[applies_event]
    fn credited(&mut self, e: &Credited) {
        self.balance += e.amount;
    }
}

/// Commits later; while `failing`, every append waits a little, then the
/// store is unavailable.
struct Outage {
    failing: AtomicBool,
}

/// The hook, shared with the test that switches the outage.
struct Shared(Arc<Outage>);

impl AppendHook for Shared {
    fn append<'a>(
        &'a self,
        inner: &'a MemoryEventStore,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            if self.0.failing.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable {
                    backend: "outage",
                    source: "connection lost".into(),
                });
            }
            inner.append(stream, expected, events).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_an_append_never_rests_on_events_that_did_not_commit() {
    let outage = Arc::new(Outage {
        failing: AtomicBool::new(false),
    });
    let app = Application::builder()
        .aggregate::<Wallet>()
        .event_store(Hooked::new(Shared(Arc::clone(&outage))))
        .build()
        .await
        .expect("build");
    let id = Ulid::new();
    app.dispatch(Credit { id, amount: 5 }).await.expect("credit");
    outage.failing.store(true, Ordering::SeqCst);

    // The credit of 100 is decided, cached and handed to the flusher; the
    // balance is read on that state while the append is in flight.
    let crediting = {
        let app = app.clone();
        tokio::spawn(async move { app.dispatch(Credit { id, amount: 100 }).await })
    };
    tokio::time::sleep(Duration::from_millis(5)).await;
    let balance = app.dispatch(ReadBalance { id }).await.expect("read");
    let credited = crediting.await.expect("join");
    assert!(credited.is_err(), "the credit's append failed: {credited:?}");
    assert_eq!(balance, 5, "the balance answered from a credit that never committed");

    outage.failing.store(false, Ordering::SeqCst);
    let done = app
        .dispatch_with(Credit { id, amount: 1 }, DispatchOptions::new())
        .await
        .expect("credit after the outage");
    assert_eq!(done.version, interlock::Version(2));
    assert_eq!(app.dispatch(ReadBalance { id }).await.expect("read"), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_queued_behind_a_failed_append_re_run_and_none_is_lost() {
    let outage = Arc::new(Outage {
        failing: AtomicBool::new(false),
    });
    let app = Application::builder()
        .aggregate::<Wallet>()
        .event_store(Hooked::new(Shared(Arc::clone(&outage))))
        .max_attempts(1000)
        .build()
        .await
        .expect("build");
    let id = Ulid::new();
    app.dispatch(Credit { id, amount: 1 }).await.expect("credit");
    outage.failing.store(true, Ordering::SeqCst);
    // The first append fails; the credits decided on it re-run once the
    // store is back, and all of them land exactly once.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move { app.dispatch(Credit { id, amount: 10 + i }).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    outage.failing.store(false, Ordering::SeqCst);
    let mut expected = 1;
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("join") {
            Ok(()) => expected += 10 + i as u64,
            Err(e) => assert!(e.is_unavailable(), "only the outage fails a command: {e}"),
        }
    }
    assert_eq!(app.dispatch(ReadBalance { id }).await.expect("read"), expected);
}
