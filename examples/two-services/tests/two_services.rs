//! The two services as separate processes on each broker (NATS, Kafka): the
//! shipping service starts first, the orders service places 20 orders and
//! exits once they are published, shipping exits once its board holds
//! them all with their shipments; the report lists each order once.

#![allow(clippy::panic, clippy::expect_used)] // assertions are the point

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ORDERS: usize = 20;

/// The broker's address from `var`, or `None` (a loud skip, or a failure
/// under `INTERLOCK_REQUIRE_SERVICES=1`).
fn broker(var: &str) -> Option<String> {
    let found = std::env::var(var).ok().filter(|u| !u.is_empty());
    if found.is_none() {
        if std::env::var("INTERLOCK_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
            panic!("{var} is not set and INTERLOCK_REQUIRE_SERVICES=1");
        }
        eprintln!("!!!!!!!! SKIPPED two services: set {var} to run it !!!!!!!!");
    }
    found
}

#[test]
fn orders_reach_the_shipping_read_model_and_saga_through_nats() {
    let Some(url) = broker("INTERLOCK_NATS_URL") else {
        return;
    };
    let id = ulid::Ulid::new();
    run(&[
        ("INTERLOCK_TRANSPORT", "nats".into()),
        ("INTERLOCK_NATS_URL", url),
        ("INTERLOCK_NATS_STREAM", format!("ITEST_{id}")),
        ("INTERLOCK_NATS_SUBJECT_ROOT", format!("itest.{id}")),
    ]);
}

#[test]
fn orders_reach_the_shipping_read_model_and_saga_through_kafka() {
    let Some(brokers) = broker("INTERLOCK_KAFKA_BROKERS") else {
        return;
    };
    let id = ulid::Ulid::new().to_string().to_lowercase();
    run(&[
        ("INTERLOCK_TRANSPORT", "kafka".into()),
        ("INTERLOCK_KAFKA_BROKERS", brokers),
        ("INTERLOCK_KAFKA_TOPIC", format!("itest-{id}")),
        ("INTERLOCK_KAFKA_GROUP_PREFIX", format!("itest-{id}-")),
    ]);
}

fn run(broker: &[(&str, String)]) {
    let id = ulid::Ulid::new();
    let dir = std::env::temp_dir().join(format!("interlock-two-services-{id}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let service = |binary: &str, db: &str| {
        let mut command = Command::new(binary);
        command.envs(broker.iter().map(|(k, v)| (*k, v.as_str())));
        command.env("INTERLOCK_SQLITE_PATH", dir.join(db));
        command
    };
    let mut shipping = service(env!("CARGO_BIN_EXE_shipping"), "shipping.db")
        .args(["run", "--until", &ORDERS.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("shipping starts");
    let mut lines = BufReader::new(shipping.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().and_then(Result::ok).as_deref(), Some("consuming"));

    let placed = service(env!("CARGO_BIN_EXE_orders"), "orders.db")
        .args(["place", &ORDERS.to_string()])
        .output()
        .expect("orders runs");
    assert!(placed.status.success(), "{}", String::from_utf8_lossy(&placed.stderr));
    let orders: Vec<String> = String::from_utf8_lossy(&placed.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("placed ").map(str::to_owned))
        .collect();
    assert_eq!(orders.len(), ORDERS);

    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = loop {
        if let Some(status) = shipping.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = shipping.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let finished = finished.expect("shipping saw every order within a minute");
    assert!(finished.success());
    assert!(lines.any(|l| l.is_ok_and(|l| l == format!("shipped {ORDERS} orders"))));

    let report = service(env!("CARGO_BIN_EXE_shipping"), "shipping.db")
        .arg("report")
        .output()
        .expect("report");
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
    let rows: Vec<Vec<String>> = String::from_utf8_lossy(&report.stdout)
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect();
    assert_eq!(rows.len(), ORDERS, "each order once on the board");
    for (i, (row, order)) in rows.iter().zip(&orders).enumerate() {
        let n = i + 1;
        assert_eq!(
            row,
            &[order.clone(), format!("item-{n}"), n.to_string(), "created".into()]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
