//! Compensation run by the runtime, in process: a step that keeps failing
//! (not a refusal) is compensated after its retries; a compensation that
//! fails is parked with its failure recorded, and replaying it compensates.

use std::time::Duration;

use interlock::prelude::*;
use interlock::store::{EventStore, MemorySagaStateStore, SagaStateStore};
use interlock::{StreamId, SubscriberConfig};
use interlock_tests::payments::{Card, Order, Payment, PlaceOrder};

fn quick() -> SubscriberConfig {
    SubscriberConfig::new().retry(2, Duration::from_millis(1), Duration::from_millis(2))
}

async fn order_events(app: &Application, order: Ulid) -> Vec<String> {
    app.event_store()
        .read_stream(&StreamId::new("payments.order", order.to_string()), Version(1), None)
        .await
        .expect("read")
        .into_iter()
        .map(|e| e.name.to_string())
        .collect()
}

#[tokio::test]
async fn a_step_that_keeps_failing_is_compensated_after_its_retries() {
    // No card aggregate: every charge fails (not a refusal: an
    // unregistered aggregate), so the step fails after each retry.
    let sagas = std::sync::Arc::new(MemorySagaStateStore::new());
    let app = Application::builder()
        .aggregate::<Order>()
        .saga_with::<Payment>(quick())
        .saga_state_store(sagas.clone())
        .background(false)
        .build()
        .await
        .expect("build");
    let order = Ulid::new();
    app.dispatch(PlaceOrder {
        order,
        card: Ulid::new(),
        amount: 10,
    })
    .await
    .expect("place");
    let handle = app.saga_handle::<Payment>().expect("saga");
    handle.catch_up().await.expect("catch up");
    assert_eq!(
        order_events(&app, order).await,
        ["payments.order_placed", "payments.order_cancelled"]
    );
    assert!(handle.dead_letters().await.expect("letters").is_empty());
    assert_eq!(
        sagas.load("payments.payment", &order.to_string()).await.expect("load"),
        None
    );
}

#[tokio::test]
async fn a_compensation_that_fails_is_parked_with_its_failure_and_replayed() {
    // Neither aggregate at first: the charge fails, then the cancellation
    // fails too. The failure stays recorded with the instance.
    let sagas = std::sync::Arc::new(MemorySagaStateStore::new());
    let events = std::sync::Arc::new(interlock::store::MemoryEventStore::new());
    let letters = std::sync::Arc::new(interlock::store::MemoryDeadLetterStore::new());
    let order = Ulid::new();
    {
        let placing = Application::builder()
            .aggregate::<Order>()
            .shared_event_store(events.clone())
            .build()
            .await
            .expect("build");
        placing
            .dispatch(PlaceOrder {
                order,
                card: Ulid::new(),
                amount: 10,
            })
            .await
            .expect("place");
    }
    let broken = Application::builder()
        .saga_with::<Payment>(quick())
        .shared_event_store(events.clone())
        .saga_state_store(sagas.clone())
        .dead_letter_store(letters.clone())
        .background(false)
        .build()
        .await
        .expect("build");
    let handle = broken.saga_handle::<Payment>().expect("saga");
    handle.catch_up().await.expect("catch up");
    let parked = handle.dead_letters().await.expect("letters");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(
        parked[0].error.contains("then"),
        "both failures are told: {}",
        parked[0].error
    );
    let instance = sagas
        .load("payments.payment", &order.to_string())
        .await
        .expect("load")
        .expect("the failed instance is kept");
    let failure = instance.failure.expect("the failure is recorded");
    assert_eq!(failure.during, "payments.order_placed");
    assert!(!failure.refused);

    // Fixed (the order aggregate is back): replaying compensates.
    let fixed = Application::builder()
        .aggregate::<Order>()
        .aggregate::<Card>()
        .saga_with::<Payment>(quick())
        .shared_event_store(events.clone())
        .saga_state_store(sagas.clone())
        .dead_letter_store(letters.clone())
        .background(false)
        .build()
        .await
        .expect("build");
    let handle = fixed.saga_handle::<Payment>().expect("saga");
    assert_eq!(handle.replay_dead_letters().await.expect("replay"), 1);
    assert_eq!(
        order_events(&fixed, order).await,
        ["payments.order_placed", "payments.order_cancelled"]
    );
    assert_eq!(
        sagas.load("payments.payment", &order.to_string()).await.expect("load"),
        None
    );
}
