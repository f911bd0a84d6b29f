//! RELIABILITY: three OS processes of one application on one PostgreSQL
//! database, a writer dispatching throughout. The owner of the ledger
//! projection is SIGKILLed: another process takes over within the lease
//! plus a renewal; the next owner is SIGSTOPped past its lease, another
//! takes over, and when it is SIGCONTed its late saves are refused by the
//! fence. Every deposit reaches the read model exactly once.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use interlock::Ulid;
use interlock::store::CheckpointStore;
use interlock_sql::{PostgresConfig, PostgresStore};
use interlock_tests::bank::{Deposit, OpenAccount, bank_builder};

const SUBSCRIBER: &str = "projection:tests.ledger";

fn spawn(url: &str, schema: &str, id: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_instance"))
        .args([url, schema, id])
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
    // The writer: commands only, no subscribers.
    let writer = bank_builder().backend(store.clone()).build().await.expect("build");
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
        .map(|id| (id.to_owned(), spawn(&url, &schema, id)))
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
    let mut seen = (0, 0, 0);
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        seen = interlock_tests::ledger::postgres_counts(&store, &schema).await;
        if seen.0 >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = interlock_tests::ledger::postgres_counts(&store, &schema)
        .await
        .max(seen);
    for (_, mut child) in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert_eq!(
        seen,
        (expected, expected, total),
        "every deposit once in the read model"
    );
    assert!(
        takeover < lease * 4 + Duration::from_secs(2),
        "takeover after SIGKILL took {takeover:?}"
    );
}
