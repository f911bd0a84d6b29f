//! RELIABILITY: a saga step's effect happens exactly once, whatever point
//! of the step the process is killed at. A child process (`crash_saga`)
//! places an order and runs the payment saga, which charges a card with a
//! command that has no `#[command_id]`; it kills itself with SIGKILL at
//! one point of the step. A second run goes to the end. The card must be
//! charged exactly once, the saga must have recorded the charge, nothing
//! may be dead-lettered, and the saga's checkpoint must reach the head.

use std::process::Command;

use interlock::prelude::*;
use interlock::store::{CheckpointStore, DeadLetterStore, EventStore, SagaStateStore};
use interlock::{StreamId, Version};
use interlock_sql::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};
use interlock_tests::payments::Payment;

const POINTS: &[&str] = &[
    "before-charge",
    "after-charge",
    "after-outcome",
    "after-saga-state",
    "after-checkpoint",
];

/// An amount the card pays, and one it declines (the saga compensates).
const PAID: u64 = 25;
const DECLINED: u64 = interlock_tests::payments::CARD_LIMIT + 1;

/// Runs the child; returns whether it exited normally.
fn child(point: &str, order: Ulid, card: Ulid, amount: u64, backend: &[&str]) -> bool {
    let status = Command::new(env!("CARGO_BIN_EXE_crash_saga"))
        .arg(point)
        .arg(order.to_string())
        .arg(card.to_string())
        .arg(amount.to_string())
        .args(backend)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("spawn crash_saga");
    status.success()
}

async fn verify<S>(store: &S, order: Ulid, card: Ulid, point: &str)
where
    S: EventStore + SagaStateStore + CheckpointStore + DeadLetterStore,
{
    let charges = store
        .read_stream(&StreamId::new("payments.card", card.to_string()), Version(1), None)
        .await
        .expect("read card");
    assert_eq!(charges.len(), 1, "{point}: the card is charged exactly once");
    let instance = SagaStateStore::load(store, "payments.payment", &order.to_string())
        .await
        .expect("saga")
        .expect("the saga instance exists");
    let state: Payment = serde_json::from_slice(&instance.state).expect("state");
    assert!(state.charged, "{point}: the saga recorded the charge");
    let letters = DeadLetterStore::list(store, "saga:payments.payment")
        .await
        .expect("letters");
    assert!(letters.is_empty(), "{point}: nothing dead-lettered: {letters:?}");
    let checkpoint = CheckpointStore::load(store, "saga:payments.payment")
        .await
        .expect("checkpoint");
    assert_eq!(checkpoint, Some(store.head().await.expect("head")), "{point}");
}

#[tokio::test]
async fn sqlite_a_saga_step_killed_at_any_point_charges_once() {
    for point in POINTS {
        let path = std::env::temp_dir().join(format!("interlock-saga-crash-{}.db", Ulid::new()));
        let path_text = path.to_string_lossy().into_owned();
        let (order, card) = (Ulid::new(), Ulid::new());
        let backend = ["sqlite", path_text.as_str()];
        assert!(
            !child(point, order, card, PAID, &backend),
            "{point}: the child was to be killed"
        );
        assert!(
            child("none", order, card, PAID, &backend),
            "{point}: the second run completes"
        );
        let store = SqliteStore::open(SqliteConfig::file(&path)).await.expect("open");
        verify(&store, order, card, point).await;
    }
}

#[tokio::test]
async fn postgres_a_saga_step_killed_at_any_point_charges_once() {
    let Some(url) = interlock_tests::services::postgres_url() else {
        return;
    };
    for point in POINTS {
        let schema = format!("saga_crash_{}", Ulid::new().to_string().to_lowercase());
        let (order, card) = (Ulid::new(), Ulid::new());
        let backend = ["postgres", url.as_str(), schema.as_str()];
        assert!(
            !child(point, order, card, PAID, &backend),
            "{point}: the child was to be killed"
        );
        assert!(
            child("none", order, card, PAID, &backend),
            "{point}: the second run completes"
        );
        let store = PostgresStore::open(PostgresConfig::new(url.as_str()).schema(schema.as_str()))
            .await
            .expect("open");
        verify(&store, order, card, point).await;
    }
}

/// A declined charge: the saga records the failure, then its compensation
/// cancels the order. Killed right after the failure is recorded, the next
/// run still compensates, once.
async fn verify_compensated<S>(store: &S, order: Ulid, card: Ulid)
where
    S: EventStore + SagaStateStore + CheckpointStore + DeadLetterStore,
{
    let charges = store
        .read_stream(&StreamId::new("payments.card", card.to_string()), Version(1), None)
        .await
        .expect("read card");
    assert!(charges.is_empty(), "the declined card is not charged");
    let order_events = store
        .read_stream(&StreamId::new("payments.order", order.to_string()), Version(1), None)
        .await
        .expect("read order");
    let names: Vec<&str> = order_events.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(
        names,
        ["payments.order_placed", "payments.order_cancelled"],
        "cancelled exactly once"
    );
    assert!(
        String::from_utf8_lossy(&order_events[1].payload).contains("declined"),
        "the cancellation says why"
    );
    let instance = SagaStateStore::load(store, "payments.payment", &order.to_string())
        .await
        .expect("saga");
    assert_eq!(instance, None, "the compensated saga ended");
    let letters = DeadLetterStore::list(store, "saga:payments.payment")
        .await
        .expect("letters");
    assert!(letters.is_empty(), "nothing dead-lettered: {letters:?}");
    let checkpoint = CheckpointStore::load(store, "saga:payments.payment")
        .await
        .expect("checkpoint");
    assert_eq!(checkpoint, Some(store.head().await.expect("head")));
}

#[tokio::test]
async fn sqlite_a_crash_between_the_failure_and_its_compensation_still_compensates_once() {
    let path = std::env::temp_dir().join(format!("interlock-saga-crash-{}.db", Ulid::new()));
    let path_text = path.to_string_lossy().into_owned();
    let (order, card) = (Ulid::new(), Ulid::new());
    let backend = ["sqlite", path_text.as_str()];
    assert!(
        !child("after-failure-recorded", order, card, DECLINED, &backend),
        "killed"
    );
    assert!(
        child("none", order, card, DECLINED, &backend),
        "the second run completes"
    );
    let store = SqliteStore::open(SqliteConfig::file(&path)).await.expect("open");
    verify_compensated(&store, order, card).await;
}

#[tokio::test]
async fn postgres_a_crash_between_the_failure_and_its_compensation_still_compensates_once() {
    let Some(url) = interlock_tests::services::postgres_url() else {
        return;
    };
    let schema = format!("saga_comp_{}", Ulid::new().to_string().to_lowercase());
    let (order, card) = (Ulid::new(), Ulid::new());
    let backend = ["postgres", url.as_str(), schema.as_str()];
    assert!(
        !child("after-failure-recorded", order, card, DECLINED, &backend),
        "killed"
    );
    assert!(
        child("none", order, card, DECLINED, &backend),
        "the second run completes"
    );
    let store = PostgresStore::open(PostgresConfig::new(url.as_str()).schema(schema.as_str()))
        .await
        .expect("open");
    verify_compensated(&store, order, card).await;
}

#[tokio::test]
async fn sqlite_a_declined_charge_without_a_crash_is_compensated_once() {
    let path = std::env::temp_dir().join(format!("interlock-saga-crash-{}.db", Ulid::new()));
    let path_text = path.to_string_lossy().into_owned();
    let (order, card) = (Ulid::new(), Ulid::new());
    let backend = ["sqlite", path_text.as_str()];
    assert!(child("none", order, card, DECLINED, &backend), "completes");
    assert!(
        child("none", order, card, DECLINED, &backend),
        "a second run changes nothing"
    );
    let store = SqliteStore::open(SqliteConfig::file(&path)).await.expect("open");
    verify_compensated(&store, order, card).await;
}
