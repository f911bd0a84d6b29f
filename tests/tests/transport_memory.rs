//! Events relayed through a transport feed another application instance.

use std::sync::Arc;
use std::time::Duration;

use interlock::prelude::*;
use interlock::store::{EventTransport, MemoryTransport};
use transfer_example::accounts::*;
use transfer_example::balances::{Balances, GetBalance};

async fn producer(transport: &Arc<MemoryTransport>) -> Application {
    Application::builder()
        .aggregate::<Account>()
        .publish_to("bus", transport.clone())
        .background(false)
        .build()
        .await
        .expect("build")
}

async fn consumer(transport: &Arc<MemoryTransport>, name: &str) -> Application {
    Application::builder()
        .projection(Balances::default())
        .consume_from(name, transport.clone())
        .background(false)
        .build()
        .await
        .expect("build")
}

#[tokio::test]
async fn a_projection_in_another_instance_is_fed_through_the_transport() {
    let transport = Arc::new(MemoryTransport::new());
    let orders = producer(&transport).await;
    let reports = consumer(&transport, "reports").await;
    let account = Ulid::new();
    orders
        .dispatch(OpenAccount {
            account,
            owner: "t".into(),
        })
        .await
        .expect("open");
    orders.dispatch(Deposit { account, amount: 70 }).await.expect("deposit");
    orders.publish_pending().await.expect("relay");

    assert_eq!(
        reports.consume_transport(100, Duration::ZERO).await.expect("consume"),
        2
    );
    assert_eq!(reports.query(GetBalance { account }).await.expect("query"), Some(70));
    // Everything was acknowledged: nothing comes again.
    assert_eq!(
        reports.consume_transport(100, Duration::ZERO).await.expect("consume"),
        0
    );

    // A restarted relay publishes again from its checkpoint; the transport
    // and the consumer's checkpoint keep the event from counting twice.
    orders.dispatch(Deposit { account, amount: 5 }).await.expect("deposit");
    let events = orders
        .event_store()
        .read_all(interlock::Position::START, 100, &interlock::store::EventFilter::all())
        .await
        .expect("read");
    transport.publish(&events).await.expect("publish again");
    orders.publish_pending().await.expect("relay");
    reports.consume_transport(100, Duration::ZERO).await.expect("consume");
    assert_eq!(reports.query(GetBalance { account }).await.expect("query"), Some(75));
}

#[tokio::test]
async fn unacknowledged_deliveries_come_again_and_each_consumer_has_its_own_cursor() {
    let transport = Arc::new(MemoryTransport::new());
    let orders = producer(&transport).await;
    let account = Ulid::new();
    orders
        .dispatch(OpenAccount {
            account,
            owner: "t".into(),
        })
        .await
        .expect("open");
    orders.dispatch(Deposit { account, amount: 9 }).await.expect("deposit");
    orders.publish_pending().await.expect("relay");

    let first = transport.receive("audit", 10, Duration::ZERO).await.expect("receive");
    let again = transport.receive("audit", 10, Duration::ZERO).await.expect("receive");
    let events = |d: &[interlock::store::Delivery]| d.iter().map(|d| d.event.clone()).collect::<Vec<_>>();
    assert_eq!(events(&first), events(&again), "not acknowledged: delivered again");
    assert_eq!((first[0].attempt, again[0].attempt), (1, 2), "the redelivery counts");
    transport.ack("audit", first[0].receipt).await.expect("ack");
    assert_eq!(
        transport
            .receive("audit", 10, Duration::ZERO)
            .await
            .expect("receive")
            .len(),
        1
    );

    let reports = consumer(&transport, "reports").await;
    assert_eq!(
        reports.consume_transport(100, Duration::ZERO).await.expect("consume"),
        2
    );
    assert_eq!(reports.query(GetBalance { account }).await.expect("query"), Some(9));
}

#[tokio::test]
async fn background_relay_and_consumer_follow_without_being_driven() {
    let transport = Arc::new(MemoryTransport::new());
    let orders = Application::builder()
        .aggregate::<Account>()
        .publish_to("bus", transport.clone())
        .build()
        .await
        .expect("build");
    let reports = Application::builder()
        .projection(Balances::default())
        .consume_from("reports", transport.clone())
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    orders
        .dispatch(OpenAccount {
            account,
            owner: "t".into(),
        })
        .await
        .expect("open");
    orders.dispatch(Deposit { account, amount: 3 }).await.expect("deposit");
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while reports.query(GetBalance { account }).await.expect("query") != Some(3) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(seen.is_ok(), "the consumer saw the deposit");
}

interlock::transport_conformance!(memory_transport, || async {
    let transport = Arc::new(MemoryTransport::new());
    Some((Arc::clone(&transport), transport))
});

/// A memory transport that allows two deliveries of an event.
struct TwoTries(Arc<MemoryTransport>);

impl EventTransport for TwoTries {
    fn publish<'a>(
        &'a self,
        events: &'a [interlock::store::RecordedEvent],
    ) -> interlock::store::BoxFuture<'a, Result<(), interlock::store::StoreError>> {
        self.0.publish(events)
    }
    fn receive<'a>(
        &'a self,
        consumer: &'a str,
        max: usize,
        wait: Duration,
    ) -> interlock::store::BoxFuture<'a, Result<Vec<interlock::store::Delivery>, interlock::store::StoreError>> {
        self.0.receive(consumer, max, wait)
    }
    fn ack<'a>(
        &'a self,
        consumer: &'a str,
        receipt: interlock::store::Receipt,
    ) -> interlock::store::BoxFuture<'a, Result<(), interlock::store::StoreError>> {
        self.0.ack(consumer, receipt)
    }
    fn max_deliveries(&self) -> Option<u32> {
        Some(2)
    }
}

#[tokio::test]
async fn an_event_delivered_past_the_limit_is_parked_not_handled_and_replays_later() {
    let transport = Arc::new(MemoryTransport::new());
    let orders = producer(&transport).await;
    let account = Ulid::new();
    orders
        .dispatch(OpenAccount {
            account,
            owner: "t".into(),
        })
        .await
        .expect("open");
    orders.dispatch(Deposit { account, amount: 40 }).await.expect("deposit");
    orders.publish_pending().await.expect("relay");
    // Two consumers of the same name crashed on the events before
    // acknowledging them.
    for _ in 0..2 {
        assert_eq!(
            transport
                .receive("reports", 10, Duration::ZERO)
                .await
                .expect("receive")
                .len(),
            2
        );
    }
    let reports = Application::builder()
        .projection(Balances::default())
        .consume_from("reports", TwoTries(transport.clone()))
        .background(false)
        .build()
        .await
        .expect("build");
    assert_eq!(reports.consume_transport(10, Duration::ZERO).await.expect("consume"), 2);
    assert_eq!(
        reports.query(GetBalance { account }).await.expect("query"),
        None,
        "not handled"
    );
    let handle = reports.projection_handle::<Balances>().expect("registered");
    let parked = handle.dead_letters().await.expect("letters");
    // The opening is not an event the projection handles: only the deposit.
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert!(parked[0].error.contains("delivered 2 times"), "{}", parked[0].error);
    // Acknowledged: the partition moves on.
    assert!(
        transport
            .receive("reports", 10, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
    assert_eq!(handle.replay_dead_letters().await.expect("replay"), 1);
    assert_eq!(reports.query(GetBalance { account }).await.expect("query"), Some(40));
}
