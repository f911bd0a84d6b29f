//! RELIABILITY on Kafka (the Tansu test broker): a consumer killed
//! mid-batch applies each event once to a transactional read model; a
//! rebalance between two members of one group loses nothing and applies
//! nothing twice; the outbox relay and the consumer ride out a broker
//! that is down at start and goes down mid-run (a Tansu the test owns, on
//! its own port); poison messages are parked and do not block the topic.

#![allow(clippy::panic, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use interlock::ProjectionConfig;
use interlock::kafka::{KafkaConfig, KafkaTransport};
use interlock::prelude::*;
use interlock::store::EventTransport;
use interlock_sql::{SqliteConfig, SqliteStore};
use interlock_tests::bank::{Deposit, OpenAccount, bank_builder};
use interlock_tests::ledger::SqliteLedger;
use interlock_tests::transported::{Seen, consume_until, poison_is_parked_and_replays, poisoned_log, produce};

/// The test broker's address, or `None` (a loud skip, or a failure under
/// `INTERLOCK_REQUIRE_SERVICES=1`).
fn brokers() -> Option<String> {
    let found = std::env::var(KafkaConfig::BROKERS_VAR).ok().filter(|u| !u.is_empty());
    if found.is_none() {
        interlock::testing::skip_or_fail("Kafka (set INTERLOCK_KAFKA_BROKERS; scripts/kafka.sh start prints it)");
    }
    found
}

/// A configuration on a fresh topic and fresh groups.
fn fresh(brokers: &str) -> KafkaConfig {
    let id = Ulid::new().to_string().to_lowercase();
    KafkaConfig::new(brokers)
        .topic(format!("itest-{id}"))
        .group_prefix(format!("itest-{id}-"))
        .session_timeout(Duration::from_secs(6))
        .request_timeout(Duration::from_secs(10))
}

/// A SQLite file with the ledger table.
async fn ledger_file() -> (std::path::PathBuf, SqliteStore) {
    let path = std::env::temp_dir().join(format!("interlock-kafka-ledger-{}.db", Ulid::new()));
    let store = SqliteStore::open(SqliteConfig::file(&path)).await.expect("open");
    let mut tx = store.begin().await.expect("begin");
    sqlx::query(interlock_tests::ledger::CREATE)
        .execute(&mut *tx)
        .await
        .expect("table");
    tx.commit().await.expect("commit");
    (path, store)
}

async fn ledger_counts(store: &SqliteStore) -> (i64, i64, i64) {
    let mut tx = store.begin().await.expect("begin");
    let counts = sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT event_id), COALESCE(SUM(amount), 0) FROM ledger")
        .fetch_one(&mut *tx)
        .await
        .expect("count");
    tx.rollback().await.expect("rollback");
    counts
}

#[tokio::test]
async fn a_consumer_killed_mid_batch_applies_each_event_once_to_a_transactional_read_model() {
    const EVENTS: i64 = 600;
    let Some(brokers) = brokers() else { return };
    let config = fresh(&brokers);
    produce(KafkaTransport::open(config.clone()).await.expect("open"), EVENTS as u64).await;
    let (path, store) = ledger_file().await;
    let child = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crash_read_model"));
        command
            .args(["consume-kafka", &path.to_string_lossy(), &EVENTS.to_string()])
            .env(KafkaConfig::BROKERS_VAR, &brokers)
            .env(KafkaConfig::TOPIC_VAR, config.topic_name())
            .env(KafkaConfig::GROUP_PREFIX_VAR, format!("{}-g-", config.topic_name()));
        command
    };
    let mut killed_midway = 0;
    for round in 0..3u64 {
        let mut consuming = child().stdout(Stdio::piped()).spawn().expect("spawn");
        let mut lines = BufReader::new(consuming.stdout.take().expect("stdout")).lines();
        assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("started"));
        // Until it applied some (a new member first waits for the partition).
        let deadline = Instant::now() + Duration::from_secs(30);
        let before = ledger_counts(&store).await.0;
        while ledger_counts(&store).await.0 <= before + 20 * i64::try_from(round).unwrap_or(0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        consuming.kill().expect("SIGKILL");
        let _ = consuming.wait();
        if !lines.any(|l| l.is_ok_and(|l| l == "done")) {
            killed_midway += 1;
        }
    }
    assert!(killed_midway >= 2, "only {killed_midway} of 3 kills landed mid-batch");
    let finished = child().stdout(Stdio::null()).status().expect("finish");
    assert!(finished.success());
    assert_eq!(
        ledger_counts(&store).await,
        (EVENTS, EVENTS, EVENTS * (EVENTS + 1) / 2),
        "each event applied exactly once"
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn a_rebalance_between_two_members_loses_nothing_and_applies_nothing_twice() {
    const EVENTS: i64 = 300;
    let Some(brokers) = brokers() else { return };
    let config = fresh(&brokers);
    produce(KafkaTransport::open(config.clone()).await.expect("open"), EVENTS as u64).await;
    let (path, store) = ledger_file().await;
    // Two instances of one service: one database, one consumer name.
    let member = |config: KafkaConfig, store: SqliteStore| async move {
        bank_builder()
            .event_store(store.clone())
            .projection_with(SqliteLedger, ProjectionConfig::catch_up().transactions(store))
            .consume_from("ledger", KafkaTransport::open(config).await.expect("open"))
            .background(false)
            .build()
            .await
            .expect("build")
    };
    let first = member(config.clone(), store.clone()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let _ = first.consume_transport(20, Duration::from_millis(200)).await;
            }
            drop(first); // leaves the group: its partition goes to the other
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ledger_counts(&store).await.0 < 60 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The second joins (a rebalance), then the first leaves (another).
    let second = member(config, store.clone()).await;
    let _ = second.consume_transport(20, Duration::from_millis(200)).await;
    stop.store(true, Ordering::SeqCst);
    running.await.expect("join");
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger_counts(&store).await.0 < EVENTS && Instant::now() < deadline {
        let _ = second.consume_transport(50, Duration::from_millis(300)).await;
    }
    assert_eq!(
        ledger_counts(&store).await,
        (EVENTS, EVENTS, EVENTS * (EVENTS + 1) / 2),
        "each event applied exactly once across the rebalance"
    );
    let _ = std::fs::remove_file(&path);
}

/// A Tansu of the test's own on a free port, in a directory of its own
/// (kept across its restarts), stopped and removed on drop.
struct Broker {
    port: u16,
    dir: std::path::PathBuf,
}

impl Broker {
    fn new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let dir = std::env::temp_dir().join(format!("interlock-tansu-{port}-{}", Ulid::new()));
        Self { port, dir }
    }

    fn script(&self, command: &str) -> bool {
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka.sh"))
            .args([command, &self.port.to_string()])
            .env("INTERLOCK_KAFKA_DIR", &self.dir)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.script("stop");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn the_outbox_relay_and_the_consumer_ride_out_a_broker_outage() {
    if brokers().is_none() {
        return; // no Kafka in this run at all
    }
    let broker = Broker::new();
    let config = KafkaConfig::new(broker.address())
        .connect_in_background(true)
        .session_timeout(Duration::from_secs(6))
        .request_timeout(Duration::from_secs(3));
    let producer_kafka = KafkaTransport::open(config.clone())
        .await
        .expect("opens without a broker");
    let store = SqliteStore::open(SqliteConfig::memory().outbox(true))
        .await
        .expect("store");
    let orders = bank_builder()
        .backend(store.clone())
        .publish_outbox_to(store.clone(), producer_kafka)
        .background(false)
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    orders
        .dispatch(OpenAccount {
            account,
            owner: "o".into(),
        })
        .await
        .expect("open");
    let deposit = |amount| Deposit {
        account,
        amount,
        id: None,
    };
    for amount in 1..=5 {
        orders
            .dispatch(deposit(amount))
            .await
            .expect("the command does not wait for the broker");
    }
    let started = Instant::now();
    match orders.publish_pending().await {
        Err(interlock::SubscriptionError::Store { source, .. }) => {
            assert!(
                matches!(
                    source,
                    interlock::store::StoreError::Unavailable { backend: "kafka", .. }
                ),
                "{source}"
            );
        }
        other => panic!("expected the broker to be unavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(30), "and does not hang");
    assert_eq!(
        interlock::store::Outbox::pending(&store, 100)
            .await
            .expect("pending")
            .len(),
        6
    );

    assert!(broker.script("start"), "tansu starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while orders.publish_pending().await.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        interlock::store::Outbox::pending(&store, 100)
            .await
            .expect("pending")
            .is_empty()
    );
    let seen = Seen::default();
    let ids = Arc::clone(&seen.ids);
    let shipping = Application::builder()
        .projection(seen)
        .consume_from("shipping", KafkaTransport::open(config.clone()).await.expect("open"))
        .background(false)
        .build()
        .await
        .expect("build");
    consume_until(&shipping, &ids, 5).await;
    assert_eq!(ids.lock().len(), 5);

    // Down mid-run: commands go on, publishing fails typed, the rows stay.
    assert!(broker.script("stop"));
    for amount in 6..=8 {
        orders.dispatch(deposit(amount)).await.expect("deposit");
    }
    assert!(orders.publish_pending().await.is_err());
    assert_eq!(
        interlock::store::Outbox::pending(&store, 100)
            .await
            .expect("pending")
            .len(),
        3
    );
    let _ = shipping.consume_transport(10, Duration::from_millis(300)).await;

    // Back, with what it stored: everything arrives, once.
    assert!(broker.script("start"), "tansu restarts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while orders.publish_pending().await.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        interlock::store::Outbox::pending(&store, 100)
            .await
            .expect("pending")
            .is_empty(),
        "the relay published what waited"
    );
    consume_until(&shipping, &ids, 8).await;
    let ids = ids.lock().clone();
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!((ids.len(), distinct.len()), (8, 8), "nothing lost, nothing twice");
    assert!(
        interlock::store::Outbox::pending(&store, 100)
            .await
            .expect("pending")
            .is_empty()
    );
}

#[tokio::test]
async fn poison_messages_are_parked_and_do_not_block_the_topic() {
    let Some(brokers) = brokers() else { return };
    let config = fresh(&brokers);
    let kafka = KafkaTransport::open(config.clone()).await.expect("open");
    let events = poisoned_log().await;
    kafka.publish(&events[..3]).await.expect("publish");
    // A message on the topic that is not an Interlock event at all.
    let raw: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("a raw producer");
    raw.send(
        rdkafka::producer::FutureRecord::<str, str>::to(config.topic_name()).payload("hello"),
        Duration::from_secs(10),
    )
    .await
    .expect("produced");
    kafka.publish(&events[3..]).await.expect("publish");
    poison_is_parked_and_replays(kafka, &events).await;
}
