//! RELIABILITY: three OS processes of one application on one PostgreSQL
//! database, a writer dispatching throughout. The owner of the ledger
//! projection is SIGKILLed: another process takes over within the lease
//! plus a renewal; the next owner is SIGSTOPped past its lease, another
//! takes over, and when it is SIGCONTed its late saves are refused by the
//! fence. Every deposit reaches the read model exactly once, and the
//! payment saga pays every order placed meanwhile exactly once.
//!
//! Then with the ledger split into four segments: they spread over the
//! three processes (2 + 1 + 1); one is SIGKILLed and its segments move to
//! the other two; every deposit is applied once, each account's in order.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interlock::Ulid;
use interlock::store::{CheckpointStore, EventFilter, EventStore};
use interlock_sql::{PostgresConfig, PostgresStore};
use interlock_tests::bank::{Deposit, OpenAccount, bank_builder};
use interlock_tests::payments;

const SUBSCRIBER: &str = "projection:tests.ledger";

fn spawn(url: &str, schema: &str, id: &str, segments: Option<u32>) -> Child {
    let segments = segments.map(|n| n.to_string());
    let mut child = Command::new(env!("CARGO_BIN_EXE_instance"))
        .args([url, schema, id])
        .args(segments.as_slice())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn an instance");
    let stdout = child.stdout.take().expect("stdout");
    let first = BufReader::new(stdout).lines().next().and_then(Result::ok);
    assert_eq!(first.as_deref(), Some("started"), "instance {id} started");
    child
}

fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal}");
}

/// The owner of the ledger's lease, waiting until one holds it unexpired
/// and differs from `not`; with the time it took.
async fn owner(store: &PostgresStore, not: Option<&str>, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    while started.elapsed() < within {
        let now = interlock::Timestamp::now();
        if let Some(lease) = store
            .leases()
            .await
            .expect("leases")
            .into_iter()
            .find(|l| l.subscriber == SUBSCRIBER && l.expires_at > now)
            && Some(lease.owner.as_str()) != not
        {
            return (lease.owner, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no instance other than {not:?} took the ledger over within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_fail_over_on_sigkill_and_sigstop_applying_each_event_once() {
    let Some(url) = interlock_tests::services::postgres_url() else {
        return;
    };
    let schema = format!("procs_{}", Ulid::new().to_string().to_lowercase());
    let store = PostgresStore::open(PostgresConfig::new(url.as_str()).schema(schema.as_str()))
        .await
        .expect("open");
    interlock_tests::ledger::create_postgres(&store, &schema).await;
    // The writer: commands only, no subscribers. Each deposit places an
    // order too, which the payment saga (run by one of the processes)
    // pays by charging a card.
    let writer = bank_builder()
        .aggregate::<payments::Order>()
        .aggregate::<payments::Card>()
        .backend(store.clone())
        .build()
        .await
        .expect("build");
    let card = Ulid::new();
    let mut orders = Vec::new();
    let account = Ulid::new();
    writer
        .dispatch(OpenAccount {
            account,
            owner: "ledger".into(),
        })
        .await
        .expect("open");

    let mut children: Vec<(String, Child)> = ["a", "b", "c"]
        .into_iter()
        .map(|id| (id.to_owned(), spawn(&url, &schema, id, None)))
        .collect();
    let mut total = 0i64;
    let mut next = 1u64;
    let mut deposit = async |n: u64| {
        for amount in next..next + n {
            writer
                .dispatch(Deposit {
                    account,
                    amount,
                    id: None,
                })
                .await
                .expect("deposit");
            total += i64::try_from(amount).expect("small");
            if amount % 5 == 0 {
                let order = Ulid::new();
                writer
                    .dispatch(payments::PlaceOrder { order, card, amount: 1 })
                    .await
                    .expect("order");
                orders.push(order);
            }
        }
        next += n;
    };
    deposit(100).await;
    let lease = Duration::from_millis(800);
    let (first, _) = owner(&store, None, Duration::from_secs(10)).await;

    // SIGKILL the owner while deposits go on.
    let killed = children
        .iter()
        .position(|(id, _)| *id == first)
        .expect("owner's process");
    let (_, mut child) = children.remove(killed);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let killed_at = Instant::now();
    deposit(50).await;
    let (second, _) = owner(&store, Some(&first), Duration::from_secs(10)).await;
    let takeover = killed_at.elapsed();
    eprintln!("takeover after SIGKILL: {takeover:?} (lease {lease:?})");

    // SIGSTOP the new owner past its lease; another takes over; SIGCONT it.
    let stopped = children.iter().find(|(id, _)| *id == second).expect("owner's process");
    signal(&stopped.1, "-STOP");
    let stopped_at = Instant::now();
    deposit(50).await;
    let (third, _) = owner(&store, Some(&second), Duration::from_secs(10)).await;
    eprintln!("takeover after SIGSTOP: {:?}", stopped_at.elapsed());
    assert_ne!(third, first);
    signal(&stopped.1, "-CONT");
    deposit(50).await;

    // Every deposit once.
    let expected = i64::try_from(next - 1).expect("small");
    let seen = ledger_when_caught_up(&store, &schema, expected).await;
    // Every order paid, once.
    let mut charges = std::collections::BTreeMap::<Ulid, usize>::new();
    let paying = Instant::now();
    let until = paying + Duration::from_secs(60);
    while Instant::now() < until {
        charges = charges_by_order(&store).await;
        if charges.len() >= orders.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let charges = charges_by_order(&store).await.max(charges);
    eprintln!(
        "{} orders paid {:?} after the last deposit",
        charges.len(),
        paying.elapsed()
    );
    for (_, mut child) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        seen,
        (expected, expected, total),
        "every deposit once in the read model"
    );
    assert_eq!(charges.len(), orders.len(), "every order's saga completed");
    assert!(
        charges.values().all(|n| *n == 1),
        "each order charged once: {:?}",
        charges.values().filter(|n| **n != 1).collect::<Vec<_>>()
    );
    assert!(
        takeover < lease * 4 + Duration::from_secs(2),
        "takeover after SIGKILL took {takeover:?}"
    );
}

/// The ledger's counts once it holds `expected` rows (or after 20 s),
/// and half a second later: anything applied twice shows by then.
async fn ledger_when_caught_up(store: &PostgresStore, schema: &str, expected: i64) -> (i64, i64, i64) {
    let mut seen = (0, 0, 0);
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        seen = interlock_tests::ledger::postgres_counts(store, schema).await;
        if seen.0 >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    interlock_tests::ledger::postgres_counts(store, schema).await.max(seen)
}

/// The card charges in the store, by order.
async fn charges_by_order(store: &PostgresStore) -> std::collections::BTreeMap<Ulid, usize> {
    let filter = EventFilter::all().event_names(["payments.card_charged"]);
    let mut charges = std::collections::BTreeMap::new();
    let mut after = interlock::Position::START;
    loop {
        let page = store.read_all(after, 500, &filter).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.position;
        for event in &page {
            let charged: payments::CardCharged = serde_json::from_slice(&event.payload).expect("a charge");
            *charges.entry(charged.order).or_default() += 1;
        }
    }
    charges
}

/// Who holds each of the ledger's `count` segments now (unexpired).
async fn segment_owners(store: &PostgresStore, count: u32) -> Vec<Option<String>> {
    let now = interlock::Timestamp::now();
    let leases = store.leases().await.expect("leases");
    (0..count)
        .map(|i| {
            let name = format!("{SUBSCRIBER}[{i}/{count}]");
            leases
                .iter()
                .find(|l| l.subscriber == name && l.expires_at > now)
                .map(|l| l.owner.clone())
        })
        .collect()
}

/// Waits until every segment is held and the holders' counts, sorted,
/// are `shares`; the owners then, and the time it took.
async fn until_shares(store: &PostgresStore, shares: &[usize], within: Duration) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < within {
        seen = segment_owners(store, 4).await;
        let mut counts = std::collections::BTreeMap::<&str, usize>::new();
        for owner in seen.iter().flatten() {
            *counts.entry(owner.as_str()).or_default() += 1;
        }
        let mut counts: Vec<usize> = counts.into_values().collect();
        counts.sort_unstable_by(|a, b| b.cmp(a));
        if seen.iter().all(Option::is_some) && counts == shares {
            return (seen.into_iter().flatten().collect(), started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("segments held as {seen:?}, not in shares {shares:?}, after {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_segments_spread_over_three_processes_and_rebalance_when_one_is_killed() {
    let Some(url) = interlock_tests::services::postgres_url() else {
        return;
    };
    let schema = format!("segs_{}", Ulid::new().to_string().to_lowercase());
    let store = PostgresStore::open(PostgresConfig::new(url.as_str()).schema(schema.as_str()))
        .await
        .expect("open");
    interlock_tests::ledger::create_postgres(&store, &schema).await;
    let writer = bank_builder().backend(store.clone()).build().await.expect("build");
    let mut accounts = Vec::new();
    for _ in 0..12 {
        let account = Ulid::new();
        writer
            .dispatch(OpenAccount {
                account,
                owner: "segments".into(),
            })
            .await
            .expect("open");
        accounts.push(account);
    }
    let mut total = 0i64;
    let mut next = 1u64;
    let mut deposit = async |n: u64| {
        for amount in next..next + n {
            writer
                .dispatch(Deposit {
                    account: accounts[(amount as usize) % accounts.len()],
                    amount,
                    id: None,
                })
                .await
                .expect("deposit");
            total += i64::try_from(amount).expect("small");
        }
        next += n;
    };
    deposit(60).await;
    let mut children: Vec<(String, Child)> = ["a", "b", "c"]
        .into_iter()
        .map(|id| (id.to_owned(), spawn(&url, &schema, id, Some(4))))
        .collect();
    let (owners, spread) = until_shares(&store, &[2, 1, 1], Duration::from_secs(15)).await;
    eprintln!("four segments spread over three processes in {spread:?}: {owners:?}");
    deposit(60).await;

    // SIGKILL the process holding two segments, while deposits go on.
    let busiest = ["a", "b", "c"]
        .into_iter()
        .find(|id| owners.iter().filter(|o| o == id).count() == 2)
        .expect("one holds two");
    let killed = children.iter().position(|(id, _)| id == busiest).expect("its process");
    let (_, mut child) = children.remove(killed);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let killed_at = Instant::now();
    deposit(60).await;
    let (after, _) = until_shares(&store, &[2, 2], Duration::from_secs(15)).await;
    let rebalanced = killed_at.elapsed();
    eprintln!("rebalanced after SIGKILL in {rebalanced:?}: {after:?}");
    assert!(!after.iter().any(|o| o == busiest));
    deposit(60).await;

    let expected = i64::try_from(next - 1).expect("small");
    let seen = ledger_when_caught_up(&store, &schema, expected).await;
    let out_of_order = interlock_tests::ledger::postgres_out_of_order(&store, &schema).await;
    for (_, mut child) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        seen,
        (expected, expected, total),
        "every deposit once in the read model"
    );
    assert_eq!(out_of_order, 0, "each account's deposits applied in order");
}
