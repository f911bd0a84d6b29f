//! Commands that change two instances of an aggregate atomically: a
//! `#[peer_id]` field names the other instance, the handler reads its state
//! through a `#[peer]` parameter and emits to it with `Peer(...)`; both
//! streams commit together, each at the version the handler saw.

use std::sync::Arc;

use interlock::prelude::*;
use interlock::store::{EventStore, MemoryEventStore};
use interlock_tests::services;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum LedgerError {
    #[error("account is not open")]
    NotOpen,
    #[error("the destination account is not open")]
    PeerNotOpen,
    #[error("insufficient funds: {0}")]
    Insufficient(u64),
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "ledger.opened")]
struct Opened {
    initial: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "ledger.sent")]
struct Sent {
    amount: u64,
    to: String,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "ledger.received")]
struct Received {
    amount: u64,
    from: String,
}

#[derive(Command, Clone, Debug)]
struct Open {
    #[aggregate_id]
    account: u32,
    initial: u64,
}

#[derive(Command, Clone, Debug)]
struct Transfer {
    #[aggregate_id]
    from: u32,
    #[peer_id]
    to: u32,
    amount: u64,
}

/// Gives to a peer without touching the giver's own stream.
#[derive(Command, Clone, Debug)]
struct Give {
    #[aggregate_id]
    from: u32,
    #[peer_id]
    to: u32,
    #[command_id]
    id: interlock::CommandId,
}

/// Emits to a peer without naming one: refused by the runtime.
#[derive(Command, Clone, Debug)]
struct Gift {
    #[aggregate_id]
    account: u32,
}

#[derive(Default, Debug)]
struct Ledger {
    open: bool,
    balance: u64,
}

#[aggregate(name = "ledger.account")]
impl Ledger {
    #[handles_command]
    fn open(&self, cmd: Open) -> Opened {
        Opened { initial: cmd.initial }
    }

    #[handles_command]
    fn transfer(&self, cmd: Transfer, #[peer] to: &Self) -> Result<(Sent, Peer<Received>), LedgerError> {
        if !self.open {
            return Err(LedgerError::NotOpen);
        }
        if !to.open {
            return Err(LedgerError::PeerNotOpen);
        }
        if self.balance < cmd.amount {
            return Err(LedgerError::Insufficient(self.balance));
        }
        Ok((
            Sent {
                amount: cmd.amount,
                to: cmd.to.to_string(),
            },
            Peer(Received {
                amount: cmd.amount,
                from: cmd.from.to_string(),
            }),
        ))
    }

    #[handles_command]
    fn give(&self, cmd: Give, #[peer] to: &Self) -> Result<Peer<Received>, LedgerError> {
        if !to.open {
            return Err(LedgerError::PeerNotOpen);
        }
        Ok(Peer(Received {
            amount: 1,
            from: cmd.from.to_string(),
        }))
    }

    #[handles_command]
    fn gift(&self, _: Gift) -> Peer<Received> {
        Peer(Received {
            amount: 1,
            from: "nobody".into(),
        })
    }

    #[applies_event]
    fn opened(&mut self, e: &Opened) {
        self.open = true;
        self.balance = e.initial;
    }

    #[applies_event]
    fn sent(&mut self, e: &Sent) {
        self.balance -= e.amount;
    }

    #[applies_event]
    fn received(&mut self, e: &Received) {
        self.balance += e.amount;
    }
}

#[test]
fn a_scenario_checks_both_streams() {
    AggregateScenario::<Ledger>::new()
        .given(Opened { initial: 10 })
        .peer_given(Opened { initial: 0 })
        .when(Transfer {
            from: 1,
            to: 2,
            amount: 4,
        })
        .then_emits(Sent {
            amount: 4,
            to: "2".into(),
        })
        .then_emits_to_peer(Received {
            amount: 4,
            from: "1".into(),
        })
        .then_state(|l| assert_eq!(l.balance, 6));
    AggregateScenario::<Ledger>::new()
        .given(Opened { initial: 10 })
        .peer_given(())
        .when(Transfer {
            from: 1,
            to: 2,
            amount: 4,
        })
        .then_error(LedgerError::PeerNotOpen);
}

async fn ledger(store: Arc<dyn EventStore>) -> Application {
    Application::builder()
        .aggregate::<Ledger>()
        .shared_event_store(store)
        .max_attempts(10_000)
        .build()
        .await
        .expect("build")
}

/// 16 tasks move money among 4 accounts through two instances: every
/// transfer is whole on both streams, the total never changes, and each
/// balance equals what its stream says.
async fn transfers_are_atomic(stores: [Arc<dyn EventStore>; 2]) {
    let [a, b] = stores;
    let apps = [Arc::new(ledger(Arc::clone(&a)).await), Arc::new(ledger(b).await)];
    for account in 0..4 {
        apps[0]
            .dispatch(Open {
                account,
                initial: 1_000,
            })
            .await
            .expect("open");
    }
    let mut tasks = Vec::new();
    for t in 0..16u32 {
        let app = Arc::clone(&apps[(t % 2) as usize]);
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            for i in 0..20u32 {
                let from = (t + i) % 4;
                let to = (t + 2 * i + 1) % 4;
                if from == to {
                    continue;
                }
                match app.dispatch(Transfer { from, to, amount: 3 }).await {
                    Ok(_) => done += 1,
                    Err(CommandError::Domain(LedgerError::Insufficient(_))) => {}
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            done
        }));
    }
    let mut transfers = 0;
    for t in tasks {
        transfers += t.await.expect("join");
    }
    let mut total = 0;
    let mut sent = 0;
    for account in 0..4u32 {
        let loaded = apps[1].load::<Ledger>(&account).await.expect("load");
        total += loaded.state.balance;
        let stream = interlock::StreamId::new("ledger.account", account.to_string());
        let events = a.read_stream(&stream, interlock::Version(1), None).await.expect("read");
        sent += events.iter().filter(|e| e.name == "ledger.sent").count() as u64;
    }
    assert_eq!(total, 4_000, "money is neither made nor lost");
    assert_eq!(sent, transfers, "one `sent` per acknowledged transfer");
    // Every `sent` has its `received`, at the next position of the log.
    let log = a
        .read_all(
            interlock::Position::START,
            100_000,
            &interlock::store::EventFilter::all(),
        )
        .await
        .expect("log");
    for pair in log.windows(2) {
        if pair[0].name == "ledger.sent" {
            assert_eq!(pair[1].name, "ledger.received", "a transfer committed whole");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_on_memory_are_atomic() {
    let store: Arc<dyn EventStore> = Arc::new(MemoryEventStore::new());
    transfers_are_atomic([Arc::clone(&store), store]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_on_postgres_are_atomic() {
    let Some(a) = services::postgres().await else { return };
    let b = interlock_sql::PostgresStore::open(a.config().clone())
        .await
        .expect("open");
    transfers_are_atomic([Arc::new(a), Arc::new(b)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_on_sqlite_are_atomic() {
    let Some(store) = services::sqlite_file().await else {
        return;
    };
    let store: Arc<dyn EventStore> = Arc::new(store);
    transfers_are_atomic([Arc::clone(&store), store]).await;
}

/// A refused transfer writes nothing on either stream; an account can be
/// its own peer (one stream, both parts in order).
#[tokio::test]
async fn refusals_write_nothing_and_self_peers_work() {
    let store = Arc::new(MemoryEventStore::new());
    let app = ledger(Arc::clone(&store) as Arc<dyn EventStore>).await;
    app.dispatch(Open { account: 1, initial: 5 }).await.expect("open");
    assert!(matches!(
        app.dispatch(Transfer {
            from: 1,
            to: 2,
            amount: 1
        })
        .await,
        Err(CommandError::Domain(LedgerError::PeerNotOpen))
    ));
    app.dispatch(Open { account: 2, initial: 0 }).await.expect("open");
    assert!(matches!(
        app.dispatch(Transfer {
            from: 1,
            to: 2,
            amount: 6
        })
        .await,
        Err(CommandError::Domain(LedgerError::Insufficient(5)))
    ));
    assert_eq!(store.head().await.expect("head"), interlock::Position(2));
    let done = app
        .dispatch_with(
            Transfer {
                from: 1,
                to: 1,
                amount: 2,
            },
            interlock::DispatchOptions::new(),
        )
        .await
        .expect("self transfer");
    assert_eq!(done.version, interlock::Version(3));
    assert_eq!(app.load::<Ledger>(&1).await.expect("load").state.balance, 5);
    // Read-your-writes on both streams through the cache.
    app.dispatch(Transfer {
        from: 1,
        to: 2,
        amount: 5,
    })
    .await
    .expect("transfer");
    assert_eq!(app.load::<Ledger>(&2).await.expect("load").state.balance, 5);
    assert!(matches!(
        app.dispatch(Transfer {
            from: 1,
            to: 2,
            amount: 1
        })
        .await,
        Err(CommandError::Domain(LedgerError::Insufficient(0)))
    ));
}

/// A handler that emits to a peer for a command naming none is refused,
/// typed, and nothing is appended.
#[tokio::test]
async fn emitting_to_a_missing_peer_is_refused() {
    let store = Arc::new(MemoryEventStore::new());
    let app = ledger(Arc::clone(&store) as Arc<dyn EventStore>).await;
    match app.dispatch(Gift { account: 1 }).await {
        Err(CommandError::NoPeer { command }) => assert_eq!(command, "Gift"),
        other => panic!("expected NoPeer, got {other:?}"),
    }
    assert_eq!(store.head().await.expect("head"), interlock::Position::START);
}

/// A command that wrote only to its peer, whose outcome was lost after
/// the commit (a crash before it was recorded): the next attempt with the
/// same id finds its events on the peer's stream and replays it instead of
/// giving twice.
#[tokio::test]
async fn a_peer_only_outcome_lost_in_a_crash_is_replayed() {
    use interlock::store::MemoryIdempotencyStore;
    use interlock_tests::idempotency::LosesOutcomes;
    let events = Arc::new(MemoryEventStore::new());
    let records = Arc::new(MemoryIdempotencyStore::new());
    let build = |loses: bool| {
        let (events, records) = (Arc::clone(&events), Arc::clone(&records));
        async move {
            let builder = Application::builder()
                .aggregate::<Ledger>()
                .shared_event_store(events as Arc<dyn EventStore>)
                .idempotency_lease(std::time::Duration::from_millis(100));
            let builder = if loses {
                builder.idempotency_store(LosesOutcomes(records))
            } else {
                builder.idempotency_store(records)
            };
            builder.build().await.expect("build")
        }
    };
    let dying = build(true).await;
    dying.dispatch(Open { account: 2, initial: 0 }).await.expect("open");
    let give = Give {
        from: 1,
        to: 2,
        id: interlock::CommandId::new(),
    };
    dying.dispatch(give.clone()).await.expect("committed, outcome lost");
    dying.shutdown();
    let next = build(false).await;
    tokio::time::sleep(std::time::Duration::from_millis(150)).await; // the dead claim's lease ends
    let replay = next
        .dispatch_with(give, interlock::DispatchOptions::new())
        .await
        .expect("replayed");
    assert!(replay.replayed, "{replay:?}");
    assert_eq!(
        next.load::<Ledger>(&2).await.expect("load").state.balance,
        1,
        "given once"
    );
}
