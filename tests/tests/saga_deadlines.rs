//! Deadlines off the happy path: a deadline whose handler keeps failing is
//! parked and does not hold back the others; two applications polling one
//! SQL store fire a deadline once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use interlock::prelude::*;
use interlock::store::{EventStore, MemorySagaStateStore};
use interlock::{HandlerFailure, StreamId, SubscriberConfig, Version};
use interlock_tests::payments::{Card, ChargeCard, Order, OrderPlaced, PlaceOrder};

/// Payment of an order charged when its deadline comes.
#[derive(Default, Debug, Serialize, Deserialize, PartialEq)]
pub struct DeferredPayment {
    card: Option<Ulid>,
    amount: u64,
}

/// The payment is due.
#[derive(Event, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[event(name = "tests.payment_due")]
pub struct PaymentDue {
    order: Ulid,
}

/// Orders of this amount fail their deadline until `FIXED`.
const UNLUCKY: u64 = 13;
static FIXED: AtomicBool = AtomicBool::new(false);

#[saga(name = "tests.deferred_payment")]
impl DeferredPayment {
    #[saga_step(start, key = order)]
    async fn placed(&mut self, e: &OrderPlaced, ctx: &mut SagaContext) -> SagaResult {
        self.card = Some(e.card);
        self.amount = e.amount;
        ctx.schedule(Timestamp::now(), PaymentDue { order: e.order });
        Ok(())
    }

    // Not an end: the instance stays, so an instance that loses the race
    // to fire it must notice the deadline is gone, not fire it again.
    #[saga_deadline]
    async fn due(&mut self, d: &PaymentDue, ctx: &mut SagaContext) -> SagaResult {
        if self.amount == UNLUCKY && !FIXED.load(Ordering::SeqCst) {
            return Err(HandlerFailure::msg("the payment provider refuses 13"));
        }
        let Some(card) = self.card else {
            return Err(HandlerFailure::msg("no card"));
        };
        ctx.dispatch(ChargeCard {
            card,
            order: d.order,
            amount: self.amount,
        })
        .await?;
        Ok(())
    }
}

fn builder() -> interlock::ApplicationBuilder {
    Application::builder()
        .aggregate::<Order>()
        .aggregate::<Card>()
        .saga_with::<DeferredPayment>(SubscriberConfig::new().retry(
            2,
            Duration::from_millis(1),
            Duration::from_millis(2),
        ))
        .background(false)
}

async fn place(app: &Application, amount: u64) -> (Ulid, Ulid) {
    let (order, card) = (Ulid::new(), Ulid::new());
    app.dispatch(PlaceOrder { order, card, amount }).await.expect("place");
    (order, card)
}

async fn charges(app: &Application, card: Ulid) -> usize {
    app.event_store()
        .read_stream(&StreamId::new("payments.card", card.to_string()), Version(1), None)
        .await
        .expect("read")
        .len()
}

#[tokio::test]
async fn a_deadline_that_keeps_failing_is_parked_and_the_others_still_fire() {
    let app = builder()
        .saga_state_store(MemorySagaStateStore::new())
        .build()
        .await
        .expect("build");
    // The unlucky order's deadline comes first (it was scheduled first).
    let (_, unlucky_card) = place(&app, UNLUCKY).await;
    let (_, card) = place(&app, 40).await;
    let handle = app.saga_handle::<DeferredPayment>().expect("saga");
    handle.catch_up().await.expect("steps");

    assert_eq!(app.fire_due_deadlines::<DeferredPayment>().await.expect("fire"), 1);
    assert_eq!(charges(&app, card).await, 1, "the later deadline fired");
    assert_eq!(charges(&app, unlucky_card).await, 0);
    let letters = handle.dead_letters().await.expect("letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].event.name, "tests.payment_due");
    assert_eq!(letters[0].attempts, 2);
    assert!(letters[0].error.contains("refuses 13"), "{}", letters[0].error);
    // Off the schedule: the next poll does not run it again.
    assert_eq!(app.fire_due_deadlines::<DeferredPayment>().await.expect("fire"), 0);

    // Fixed: replaying the dead letters fires it.
    FIXED.store(true, Ordering::SeqCst);
    assert_eq!(handle.replay_dead_letters().await.expect("replay"), 1);
    assert_eq!(charges(&app, unlucky_card).await, 1);
    assert!(handle.dead_letters().await.expect("letters").is_empty());
}

/// Two instances of the application on `store` poll the same 20 due
/// deadlines at once: each fires exactly once, each card is charged once.
async fn two_instances_fire_once<S>(store: S)
where
    S: interlock::store::EventStore
        + interlock::store::SagaStateStore
        + interlock::store::CheckpointStore
        + interlock::store::IdempotencyStore
        + Clone,
{
    two_instances_fire_once_on(std::sync::Arc::new(store.clone()), store).await;
}

/// The same, with the events in `events` and the rest in `store`.
async fn two_instances_fire_once_on<S>(events: std::sync::Arc<dyn interlock::store::EventStore>, store: S)
where
    S: interlock::store::SagaStateStore
        + interlock::store::CheckpointStore
        + interlock::store::IdempotencyStore
        + Clone,
{
    let app = || async {
        builder()
            .shared_event_store(events.clone())
            .saga_state_store(store.clone())
            .checkpoint_store(store.clone())
            .idempotency_store(store.clone())
            .build()
            .await
            .expect("build")
    };
    let (a, b) = (app().await, app().await);
    let mut cards = Vec::new();
    for _ in 0..20 {
        cards.push(place(&a, 5).await.1);
    }
    a.saga_handle::<DeferredPayment>()
        .expect("saga")
        .catch_up()
        .await
        .expect("steps");
    // Both instances poll at once, as their pollers would.
    let (fired_a, fired_b) = tokio::join!(
        a.fire_due_deadlines::<DeferredPayment>(),
        b.fire_due_deadlines::<DeferredPayment>()
    );
    let fired = fired_a.expect("a") + fired_b.expect("b");
    assert_eq!(fired, 20, "each deadline fired by exactly one instance");
    for card in cards {
        assert_eq!(charges(&a, card).await, 1, "charged once");
    }
    assert_eq!(a.fire_due_deadlines::<DeferredPayment>().await.expect("fire"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applications_on_one_sqlite_store_fire_a_deadline_once() {
    let Some(store) = interlock_tests::services::sqlite_file().await else {
        return;
    };
    two_instances_fire_once(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applications_on_one_postgres_store_fire_a_deadline_once() {
    let Some(store) = interlock_tests::services::postgres().await else {
        return;
    };
    two_instances_fire_once(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_applications_sharing_redis_fire_a_deadline_once() {
    use interlock::redis::{RedisConfig, RedisStore};
    let Some(url) = interlock_tests::redis_server::redis_url() else {
        return;
    };
    let prefix = format!("itest:{}:", Ulid::new());
    let redis = RedisStore::open(RedisConfig::new(url).prefix(prefix))
        .await
        .expect("the machine's Redis");
    let events = std::sync::Arc::new(interlock::store::MemoryEventStore::new());
    two_instances_fire_once_on(events, redis.clone()).await;
    redis.clear().await.expect("clean up");
}

/// A saga state store counting the deadline polls made through it.
struct Counting<S> {
    inner: S,
    polls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl<S: interlock::store::SagaStateStore> interlock::store::SagaStateStore for Counting<S> {
    fn load<'a>(
        &'a self,
        saga: &'a str,
        key: &'a str,
    ) -> interlock::store::BoxFuture<'a, Result<Option<interlock::store::SagaInstance>, interlock::store::StoreError>>
    {
        self.inner.load(saga, key)
    }
    fn apply<'a>(
        &'a self,
        saga: &'a str,
        key: &'a str,
        expected: Version,
        change: interlock::store::SagaChange,
    ) -> interlock::store::BoxFuture<'a, Result<Version, interlock::store::StoreError>> {
        self.inner.apply(saga, key, expected, change)
    }
    fn due<'a>(
        &'a self,
        saga: &'a str,
        now: Timestamp,
        limit: usize,
    ) -> interlock::store::BoxFuture<'a, Result<Vec<interlock::store::ScheduledDeadline>, interlock::store::StoreError>>
    {
        self.polls.fetch_add(1, Ordering::SeqCst);
        self.inner.due(saga, now, limit)
    }
    fn is_scheduled<'a>(
        &'a self,
        saga: &'a str,
        id: Ulid,
    ) -> interlock::store::BoxFuture<'a, Result<bool, interlock::store::StoreError>> {
        self.inner.is_scheduled(saga, id)
    }
}

/// Two instances with leases: only the saga's owner polls its deadlines;
/// once it shuts down, the other takes the saga over and fires them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_of_a_saga_fires_its_deadlines_and_another_takes_over() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    let Some(store) = interlock_tests::services::sqlite_file().await else {
        return;
    };
    let instance = |id: &'static str, polls: Arc<AtomicUsize>| {
        let store = store.clone();
        async move {
            Application::builder()
                .aggregate::<Order>()
                .aggregate::<Card>()
                .saga_with::<DeferredPayment>(SubscriberConfig::new().poll_interval(Duration::from_millis(20)))
                .event_store(store.clone())
                .checkpoint_store(store.clone())
                .idempotency_store(store.clone())
                .saga_state_store(Counting { inner: store, polls })
                .instance_id(id)
                .subscriber_leases(Duration::from_millis(500), Duration::from_millis(100))
                .build()
                .await
                .expect("build")
        }
    };
    let (polls_a, polls_b) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let a = instance("a", Arc::clone(&polls_a)).await;
    // `a` claims the saga first.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = instance("b", Arc::clone(&polls_b)).await;
    let (_, card) = place(&b, 5).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(polls_a.load(Ordering::SeqCst) > 0, "the owner polls");
    assert_eq!(polls_b.load(Ordering::SeqCst), 0, "the other instance does not");
    assert_eq!(charges(&b, card).await, 1, "the owner fired the deadline");

    a.shutdown();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(polls_b.load(Ordering::SeqCst) > 0, "the new owner polls");
    let (_, later) = place(&b, 6).await;
    let mut charged = 0;
    for _ in 0..100 {
        charged = charges(&b, later).await;
        if charged > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(charged, 1, "the new owner fired the later deadline");
}
