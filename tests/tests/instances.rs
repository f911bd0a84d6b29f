//! Several instances of one application on one PostgreSQL store: a durable
//! catch-up projection (an exactly-once SQL read model) runs in one
//! instance at a time; when its owner shuts down, or is cut off from the
//! store past its lease, another instance takes over, and every event is
//! applied exactly once. The cut-off owner's late saves are refused by
//! the fence and it steps down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use interlock::ProjectionConfig;
use interlock::prelude::*;
use interlock::store::{
    BoxFuture, CheckpointStore, Lease, LeaseClaim, ReadModelTransaction, ReadModelTransactions, StoreError,
};
use interlock_sql::{PostgresConfig, PostgresStore};
use interlock_tests::bank::{Deposit, OpenAccount, bank_builder};
use interlock_tests::ledger::PostgresLedger;

/// The checkpoint store (and read model transactions) of one instance,
/// which can be cut off from the database (a network partition, a long
/// pause): every call fails while it is, and no transaction commits.
#[derive(Clone)]
struct Partitionable {
    inner: PostgresStore,
    cut: Arc<AtomicBool>,
}

impl Partitionable {
    fn check(&self) -> Result<(), StoreError> {
        if self.cut.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable {
                backend: "test",
                source: "cut off from the database".into(),
            });
        }
        Ok(())
    }
}

impl ReadModelTransactions for Partitionable {
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn ReadModelTransaction>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            let inner = ReadModelTransactions::begin(&self.inner).await?;
            Ok(Box::new(CutTransaction {
                inner,
                cut: self.clone(),
            }) as Box<dyn ReadModelTransaction>)
        })
    }
}

/// A transaction of a [`Partitionable`] store: its commit fails (and it
/// rolls back) when the store was cut off meanwhile.
struct CutTransaction {
    inner: Box<dyn ReadModelTransaction>,
    cut: Partitionable,
}

impl ReadModelTransaction for CutTransaction {
    fn inner(&mut self) -> &mut (dyn std::any::Any + Send) {
        self.inner.inner()
    }
    fn save_checkpoint<'a>(
        &'a mut self,
        subscriber: &'a str,
        position: interlock::Position,
        token: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.save_checkpoint(subscriber, position, token)
    }
    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            self.cut.check()?;
            self.inner.commit().await
        })
    }
}

impl CheckpointStore for Partitionable {
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<interlock::Position>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.load(subscriber).await
        })
    }
    fn save<'a>(&'a self, subscriber: &'a str, position: interlock::Position) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.check()?;
            CheckpointStore::save(&self.inner, subscriber, position).await
        })
    }
    fn advance<'a>(
        &'a self,
        subscriber: &'a str,
        position: interlock::Position,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.advance(subscriber, position).await
        })
    }
    fn claim_lease<'a>(
        &'a self,
        subscriber: &'a str,
        owner: &'a str,
        now: interlock::Timestamp,
        duration: Duration,
    ) -> BoxFuture<'a, Result<LeaseClaim, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.claim_lease(subscriber, owner, now, duration).await
        })
    }
    fn release_lease<'a>(&'a self, subscriber: &'a str, token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.release_lease(subscriber, token).await
        })
    }
    fn save_fenced<'a>(
        &'a self,
        subscriber: &'a str,
        position: interlock::Position,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.save_fenced(subscriber, position, token).await
        })
    }
    fn leases(&self) -> BoxFuture<'_, Result<Vec<Lease>, StoreError>> {
        Box::pin(async move {
            self.check()?;
            self.inner.leases().await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_runs_once_across_three_instances_and_fails_over() {
    let Some(url) = interlock_tests::services::postgres_url() else {
        return;
    };
    let schema = format!("inst_{}", Ulid::new().to_string().to_lowercase());
    let open = || {
        PostgresStore::open(
            PostgresConfig::new(url.as_str())
                .schema(schema.as_str())
                .max_connections(4),
        )
    };
    let admin = open().await.expect("open");
    interlock_tests::ledger::create_postgres(&admin, &schema).await;

    let mut instances = Vec::new();
    for name in ["a", "b", "c"] {
        let store = open().await.expect("open");
        let cut = Arc::new(AtomicBool::new(false));
        let partitionable = Partitionable {
            inner: store.clone(),
            cut: Arc::clone(&cut),
        };
        let app = bank_builder()
            .event_store(store.clone())
            .checkpoint_store(partitionable.clone())
            .projection_with(
                PostgresLedger { schema: schema.clone() },
                ProjectionConfig::catch_up().transactions(partitionable),
            )
            .instance_id(name)
            .subscriber_leases(Duration::from_millis(600), Duration::from_millis(150))
            .build()
            .await
            .expect("build");
        instances.push((name, app, cut));
    }
    let owner_of = |statuses: Vec<interlock::SubscriberStatus>| {
        statuses
            .into_iter()
            .find(|s| s.name == "projection:tests.ledger")
            .and_then(|s| s.owner)
    };
    let writer = instances[0].1.clone();
    let account = Ulid::new();
    writer
        .dispatch(OpenAccount {
            account,
            owner: "ledger".into(),
        })
        .await
        .expect("open");
    let mut deposited = 0i64;
    let mut deposit = |n: u64| {
        deposited += i64::try_from(n).expect("small");
        Deposit {
            account,
            amount: n,
            id: None,
        }
    };
    for n in 1..=50 {
        writer.dispatch(deposit(n)).await.expect("deposit");
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let first = owner_of(writer.subscriber_statuses().await.expect("statuses")).expect("an owner");
    // Only the owner rebuilds.
    let (_, bystander, _) = instances.iter().find(|(n, _, _)| *n != first).expect("another");
    assert!(matches!(
        bystander
            .rebuild_projection(PostgresLedger { schema: schema.clone() })
            .await,
        Err(interlock::SubscriptionError::OwnedElsewhere { .. })
    ));

    // 1. The owner is cut off from the store: another takes over after the
    //    lease; when it comes back, its saves are refused and it steps down.
    let cut_off = instances.iter().find(|(n, _, _)| *n == first).expect("owner");
    cut_off.2.store(true, Ordering::SeqCst);
    for n in 51..=100 {
        writer.dispatch(deposit(n)).await.expect("deposit");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = owner_of(admin_statuses(&instances, &first).await).expect("an owner");
    assert_ne!(second, first, "another instance took over");
    cut_off.2.store(false, Ordering::SeqCst);

    // 2. The new owner shuts down: it releases, a third takes over at once.
    let (_, owner_app, _) = instances.iter().find(|(n, _, _)| *n == second).expect("owner");
    owner_app.shutdown();
    for n in 101..=150 {
        writer.dispatch(deposit(n)).await.expect("deposit");
    }
    // Everything applied, exactly once.
    let mut rows = (0, 0, 0);
    for _ in 0..100 {
        rows = interlock_tests::ledger::postgres_counts(&admin, &schema).await;
        if rows.0 >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = interlock_tests::ledger::postgres_counts(&admin, &schema)
        .await
        .max(rows);
    assert_eq!(rows, (150, 150, deposited), "every deposit once in the read model");
    for (_, app, _) in &instances {
        app.shutdown();
    }
}

/// The statuses from an instance other than `not`.
async fn admin_statuses(
    instances: &[(&str, Application, Arc<AtomicBool>)],
    not: &str,
) -> Vec<interlock::SubscriberStatus> {
    let (_, app, _) = instances.iter().find(|(n, _, _)| *n != not).expect("another instance");
    app.subscriber_statuses().await.expect("statuses")
}

/// Two instances with the ledger as an *inline* projection: each brings it
/// up to its own commands' events as it dispatches, so both apply events
/// of the shared log; the checkpoint saved in the read model's transaction
/// tells an instance that the other applied an event first, and it rolls
/// its rows back and moves on. Every deposit is in the ledger once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_sql_read_model_is_applied_once_by_two_dispatching_instances() {
    let Some(url) = interlock_tests::services::postgres_url() else {
        return;
    };
    let schema = format!("inline_{}", Ulid::new().to_string().to_lowercase());
    let open = || {
        PostgresStore::open(
            PostgresConfig::new(url.as_str())
                .schema(schema.as_str())
                .max_connections(4),
        )
    };
    let admin = open().await.expect("open");
    interlock_tests::ledger::create_postgres(&admin, &schema).await;
    let mut apps = Vec::new();
    for name in ["a", "b"] {
        let store = open().await.expect("open");
        let app = bank_builder()
            .backend(store.clone())
            .projection_with(
                PostgresLedger { schema: schema.clone() },
                ProjectionConfig::inline().transactions(store.clone()),
            )
            .instance_id(name)
            .build()
            .await
            .expect("build");
        apps.push(app);
    }
    let account = Ulid::new();
    apps[0]
        .dispatch(OpenAccount {
            account,
            owner: "inline".into(),
        })
        .await
        .expect("open");
    let mut writers = Vec::new();
    for (i, app) in apps.iter().enumerate() {
        let app = app.clone();
        writers.push(tokio::spawn(async move {
            let mut total = 0i64;
            for n in 0..60u64 {
                let amount = n * 2 + i as u64 + 1;
                app.dispatch(Deposit {
                    account,
                    amount,
                    id: None,
                })
                .await
                .expect("deposit");
                total += i64::try_from(amount).expect("small");
            }
            total
        }));
    }
    let mut total = 0;
    for writer in writers {
        total += writer.await.expect("writer");
    }
    // Each instance's last dispatch brought the ledger up to its own
    // last event; the other's may be later: catch both up.
    for app in &apps {
        app.projection_handle::<PostgresLedger>()
            .expect("handle")
            .catch_up()
            .await
            .expect("catch up");
    }
    let rows = interlock_tests::ledger::postgres_counts(&admin, &schema).await;
    assert_eq!(rows, (120, 120, total), "every deposit once in the read model");
    assert_eq!(interlock_tests::ledger::postgres_out_of_order(&admin, &schema).await, 0);
}

/// An instance whose cached state is behind another instance's appends
/// does not refuse a command on it: before an answer without an append,
/// the stream is checked for newer events, and the command decides again
/// on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_never_rests_on_a_state_another_instance_appended_past() {
    use interlock_tests::bank::Withdraw;
    let events = Arc::new(interlock::store::MemoryEventStore::new());
    let a = bank_builder()
        .shared_event_store(events.clone())
        .build()
        .await
        .expect("build");
    let b = bank_builder()
        .shared_event_store(events.clone())
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    a.dispatch(OpenAccount {
        account,
        owner: "behind".into(),
    })
    .await
    .expect("open");
    // A caches the account empty; B deposits behind its back.
    b.dispatch(Deposit {
        account,
        amount: 10,
        id: None,
    })
    .await
    .expect("deposit through B");
    a.dispatch(Withdraw { account, amount: 5 })
        .await
        .expect("A decides on the deposit it did not see, not on its empty cached state");
    // And a refusal on the latest state is still a refusal.
    match a.dispatch(Withdraw { account, amount: 50 }).await {
        Err(interlock::CommandError::Domain(interlock_tests::bank::BankError::InsufficientFunds {
            balance: 5,
            ..
        })) => {}
        other => panic!("expected a refusal on the balance of 5, got {other:?}"),
    }
}
