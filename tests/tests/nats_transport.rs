//! RELIABILITY on NATS JetStream: a consumer killed mid-batch applies
//! each event once to a transactional read model; the outbox relay and
//! the consumer ride out a broker that is down at start and goes down
//! mid-run (a server the test owns, on its own port); poison messages are
//! parked and do not block the subject.

#![allow(clippy::panic, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interlock::nats::{NatsConfig, NatsTransport};
use interlock::prelude::*;
use interlock::store::EventTransport;
use interlock_sql::{SqliteConfig, SqliteStore};
use interlock_tests::bank::{Deposit, OpenAccount, bank_builder};
use interlock_tests::nats_server::{Server, nats_url};
use interlock_tests::transported::{Seen, consume_until, poison_is_parked_and_replays, poisoned_log, produce};

/// A configuration on a fresh stream of the machine's server.
fn fresh(url: &str) -> NatsConfig {
    let id = Ulid::new();
    NatsConfig::new(url)
        .stream(format!("ITEST_{id}"))
        .subject_root(format!("itest.{id}"))
        .ack_wait(Duration::from_secs(1))
}

#[tokio::test]
async fn a_consumer_killed_mid_batch_applies_each_event_once_to_a_transactional_read_model() {
    const EVENTS: u64 = 600;
    let Some(url) = nats_url() else { return };
    let config = fresh(&url);
    produce(NatsTransport::open(config.clone()).await.expect("open"), EVENTS).await;

    let path = std::env::temp_dir().join(format!("interlock-nats-ledger-{}.db", Ulid::new()));
    let store = SqliteStore::open(SqliteConfig::file(&path)).await.expect("open");
    let mut tx = store.begin().await.expect("begin");
    sqlx::query(interlock_tests::ledger::CREATE)
        .execute(&mut *tx)
        .await
        .expect("table");
    tx.commit().await.expect("commit");
    let child = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_crash_read_model"));
        command
            .args(["consume-nats", &path.to_string_lossy()])
            .env(NatsConfig::URL_VAR, &url)
            .env(NatsConfig::STREAM_VAR, config.stream_name())
            .env(NatsConfig::SUBJECT_ROOT_VAR, config.root())
            .env(NatsConfig::ACK_WAIT_VAR, "1000");
        command
    };
    let mut killed_midway = 0;
    for round in 0..4u64 {
        let mut consuming = child().stdout(Stdio::piped()).spawn().expect("spawn");
        let mut lines = BufReader::new(consuming.stdout.take().expect("stdout")).lines();
        assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("started"));
        std::thread::sleep(Duration::from_millis(40 + 60 * round));
        consuming.kill().expect("SIGKILL");
        let _ = consuming.wait();
        if !lines.any(|l| l.is_ok_and(|l| l == "done")) {
            killed_midway += 1;
        }
    }
    assert!(killed_midway >= 2, "only {killed_midway} of 4 kills landed mid-batch");
    // The last run waits out the ack wait of what the killed ones held.
    let finished = child().stdout(Stdio::null()).status().expect("finish");
    assert!(finished.success());
    let mut tx = store.begin().await.expect("begin");
    let (rows, distinct, sum): (i64, i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT event_id), COALESCE(SUM(amount), 0) FROM ledger")
            .fetch_one(&mut *tx)
            .await
            .expect("count");
    tx.rollback().await.expect("rollback");
    let n = EVENTS as i64;
    assert_eq!(
        (rows, distinct, sum),
        (n, n, n * (n + 1) / 2),
        "each event applied exactly once"
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn the_outbox_relay_and_the_consumer_ride_out_a_broker_outage() {
    let mut server = Server::new();
    let config = NatsConfig::new(server.url())
        .connect_in_background(true)
        .connect_timeout(Duration::from_millis(500))
        .request_timeout(Duration::from_secs(1))
        .ack_wait(Duration::from_secs(1));
    // Down at start: opening in the background succeeds.
    let producer_nats = NatsTransport::open(config.clone())
        .await
        .expect("opens without a server");
    let store = SqliteStore::open(SqliteConfig::memory().outbox(true))
        .await
        .expect("store");
    let orders = bank_builder()
        .backend(store.clone())
        .publish_outbox_to(store.clone(), producer_nats.clone())
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
    for amount in 1..=5 {
        orders
            .dispatch(Deposit {
                account,
                amount,
                id: None,
            })
            .await
            .expect("the command does not wait for the broker");
    }
    let started = Instant::now();
    let refused = orders.publish_pending().await;
    assert!(refused.is_err(), "no broker: the relay's publish fails");
    assert!(started.elapsed() < Duration::from_secs(20), "and does not hang");
    assert_eq!(
        interlock::store::Outbox::pending(&store, 100)
            .await
            .expect("pending")
            .len(),
        6,
        "the outbox keeps every row"
    );

    assert!(server.start().await, "nats-server runs");
    let consumer_nats = NatsTransport::open(config.clone()).await.expect("open");
    let seen = Seen::default();
    let ids = Arc::clone(&seen.ids);
    let shipping = Application::builder()
        .projection(seen)
        .consume_from("shipping", consumer_nats)
        .background(false)
        .build()
        .await
        .expect("build");
    // The relay's next attempt (the client reconnected by itself).
    let deadline = Instant::now() + Duration::from_secs(30);
    while orders.publish_pending().await.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    consume_until(&shipping, &ids, 5).await;
    assert_eq!(ids.lock().len(), 5);

    // Down mid-run: commands go on, publishing and consuming fail typed.
    server.stop();
    for amount in 6..=8 {
        orders
            .dispatch(Deposit {
                account,
                amount,
                id: None,
            })
            .await
            .expect("deposit");
    }
    match orders.publish_pending().await {
        Err(interlock::SubscriptionError::Store { source, .. }) => {
            assert!(
                matches!(
                    source,
                    interlock::store::StoreError::Unavailable { backend: "nats", .. }
                ),
                "{source}"
            );
        }
        other => panic!("expected the broker to be unavailable, got {other:?}"),
    }
    assert!(
        shipping
            .consume_transport(10, Duration::from_millis(200))
            .await
            .is_err()
    );
    assert_eq!(
        interlock::store::Outbox::pending(&store, 100)
            .await
            .expect("pending")
            .len(),
        3
    );

    // Back (with its stored stream): everything arrives, once.
    assert!(server.start().await, "nats-server restarts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while orders.publish_pending().await.is_err() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    consume_until(&shipping, &ids, 8).await;
    let ids = ids.lock().clone();
    assert_eq!(ids.len(), 8, "nothing lost");
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 8, "nothing twice");
    assert!(
        interlock::store::Outbox::pending(&store, 100)
            .await
            .expect("pending")
            .is_empty()
    );
}

#[tokio::test]
async fn poison_messages_are_parked_and_do_not_block_the_subject() {
    let Some(url) = nats_url() else { return };
    let config = fresh(&url);
    let nats = NatsTransport::open(config.clone()).await.expect("open");
    let events = poisoned_log().await;
    nats.publish(&events[..3]).await.expect("publish");
    // A message on the subjects that is not an Interlock event at all,
    // before the last deposits (so it is consumed once they are parked).
    let client = async_nats::connect(url.as_str()).await.expect("connect");
    let jetstream = async_nats::jetstream::new(client);
    jetstream
        .publish(format!("{}.foreign.x", config.root()), "hello".into())
        .await
        .expect("publish")
        .await
        .expect("ack");
    nats.publish(&events[3..]).await.expect("publish");
    poison_is_parked_and_replays(nats.clone(), &events).await;
    // Acknowledgements are sent without waiting for the server: let the
    // last ones land.
    let deadline = Instant::now() + Duration::from_secs(10);
    while nats.pending("shipping").await.expect("pending") != Some(0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        nats.pending("shipping").await.expect("pending"),
        Some(0),
        "the subject moved on"
    );
}
