//! Middleware around dispatch: user layers, built-in layers, interceptors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use interlock::middleware::{CommandContext, Layer, LayerError, Next, Outcome, Rejection};
use interlock::prelude::*;
use interlock::store::{BoxFuture, Committed, EventFilter, ExpectedVersion, NewEvent, RecordedEvent, RewrittenEvent};
use interlock::store::{MemoryEventStore, StoreError};
use interlock::{CommandError, Position, RetryLayer, StreamId, TimeoutLayer, TracingLayer};
use interlock_tests::bank::*;

/// Adds a tenant header and refuses commands for a blocked owner.
struct TenantLayer {
    seen: Arc<AtomicU32>,
}

impl Layer for TenantLayer {
    fn call<'a>(&'a self, ctx: &'a mut CommandContext, next: Next<'a>) -> BoxFuture<'a, Result<Outcome, LayerError>> {
        Box::pin(async move {
            self.seen.fetch_add(1, Ordering::SeqCst);
            if ctx.options.headers.get("user").is_some_and(|u| u == "mallory") {
                return Err(LayerError::Rejected {
                    layer: "tenant".into(),
                    reason: "user is blocked".into(),
                });
            }
            ctx.options.headers.insert("tenant".into(), "acme".into());
            let outcome = next.run(ctx).await?;
            assert!(matches!(outcome, Outcome::Committed { .. } | Outcome::Rejected(_)));
            Ok(outcome)
        })
    }
}

async fn app_with(layers: impl FnOnce(interlock::ApplicationBuilder) -> interlock::ApplicationBuilder) -> Application {
    let builder = Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 0 });
    layers(builder).build().await.expect("build")
}

#[tokio::test]
async fn a_user_layer_changes_metadata_and_rejects_commands() {
    let seen = Arc::new(AtomicU32::new(0));
    let app = app_with(|b| b.layer(TracingLayer).layer(TenantLayer { seen: seen.clone() })).await;
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "t".into(),
    })
    .await
    .expect("open");
    let stream = StreamId::new("bank.account", account.to_string());
    let events = app
        .event_store()
        .read_stream(&stream, Version(1), None)
        .await
        .expect("read");
    assert_eq!(
        events[0].metadata.headers.get("tenant").map(String::as_str),
        Some("acme")
    );

    let err = app
        .dispatch_with(
            Deposit {
                account,
                amount: 1,
                id: None,
            },
            DispatchOptions::new().header("user", "mallory"),
        )
        .await
        .expect_err("rejected");
    assert!(
        matches!(&err, CommandError::Rejected { layer, .. } if layer == "tenant"),
        "{err}"
    );
    assert_eq!(app.event_store().head().await.expect("head"), Position(1));
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    // Domain rejections pass through layers unchanged.
    let err = app.dispatch(Withdraw { account, amount: 5 }).await.expect_err("domain");
    assert!(matches!(err, CommandError::Domain(BankError::InsufficientFunds { .. })));
}

#[tokio::test]
async fn a_timeout_layer_bounds_slow_commands() {
    /// Delays every append.
    struct Slow(MemoryEventStore);
    impl interlock::store::EventStore for Slow {
        fn append<'a>(
            &'a self,
            s: &'a StreamId,
            e: ExpectedVersion,
            ev: Vec<NewEvent>,
        ) -> BoxFuture<'a, Result<Committed, StoreError>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                self.0.append(s, e, ev).await
            })
        }
        fn read_stream<'a>(
            &'a self,
            s: &'a StreamId,
            f: Version,
            t: Option<Version>,
        ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
            self.0.read_stream(s, f, t)
        }
        fn read_all<'a>(
            &'a self,
            a: Position,
            l: usize,
            f: &'a EventFilter,
        ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
            self.0.read_all(a, l, f)
        }
        fn stream_version<'a>(&'a self, s: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
            self.0.stream_version(s)
        }
        fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
            self.0.head()
        }
        fn rewrite(&self, p: Position, e: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
            self.0.rewrite(p, e)
        }
    }
    let app = Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 0 })
        .event_store(Slow(MemoryEventStore::new()))
        .layer(TimeoutLayer(Duration::from_millis(20)))
        .build()
        .await
        .expect("build");
    let err = app
        .dispatch(OpenAccount {
            account: Ulid::new(),
            owner: "s".into(),
        })
        .await
        .expect_err("timeout");
    assert!(
        matches!(err, CommandError::Timeout(d) if d == Duration::from_millis(20)),
        "{err}"
    );
}

/// Fails the first `failures` appends as unreachable.
struct Flaky {
    inner: MemoryEventStore,
    failures: AtomicU32,
}

impl interlock::store::EventStore for Flaky {
    fn append<'a>(
        &'a self,
        s: &'a StreamId,
        e: ExpectedVersion,
        ev: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            self.failures.fetch_sub(1, Ordering::SeqCst);
            return Box::pin(std::future::ready(Err(StoreError::Unavailable {
                backend: "flaky",
                source: "connection refused".into(),
            })));
        }
        self.inner.append(s, e, ev)
    }
    fn read_stream<'a>(
        &'a self,
        s: &'a StreamId,
        f: Version,
        t: Option<Version>,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.inner.read_stream(s, f, t)
    }
    fn read_all<'a>(
        &'a self,
        a: Position,
        l: usize,
        f: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.inner.read_all(a, l, f)
    }
    fn stream_version<'a>(&'a self, s: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
        self.inner.stream_version(s)
    }
    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        self.inner.head()
    }
    fn rewrite(&self, p: Position, e: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.rewrite(p, e)
    }
}

#[tokio::test]
async fn a_retry_layer_rides_out_an_unavailable_store() {
    let store = Arc::new(Flaky {
        inner: MemoryEventStore::new(),
        failures: AtomicU32::new(2),
    });
    let app = Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 0 })
        .shared_event_store(store.clone())
        .layer(RetryLayer {
            max_attempts: 3,
            backoff: Duration::from_millis(1),
        })
        .build()
        .await
        .expect("build");
    app.dispatch(OpenAccount {
        account: Ulid::new(),
        owner: "r".into(),
    })
    .await
    .expect("third attempt");

    // Without the layer the failure surfaces as `Unavailable`, and the next
    // command succeeds once the store is back.
    store.failures.store(1, Ordering::SeqCst);
    let plain = Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 0 })
        .shared_event_store(store.clone())
        .build()
        .await
        .expect("build");
    let err = plain
        .dispatch(OpenAccount {
            account: Ulid::new(),
            owner: "r".into(),
        })
        .await
        .expect_err("down");
    assert!(err.is_unavailable(), "{err}");
    plain
        .dispatch(OpenAccount {
            account: Ulid::new(),
            owner: "r".into(),
        })
        .await
        .expect("back");
}

#[tokio::test]
async fn typed_interceptors_change_or_refuse_one_command_type() {
    let app = app_with(|b| {
        b.intercept::<Deposit>(|cmd, ctx| {
            if cmd.amount == 0 {
                return Err(Rejection::new("zero deposit"));
            }
            cmd.amount = cmd.amount.min(1000); // a cap
            ctx.options.headers.insert("capped".into(), "yes".into());
            Ok(())
        })
    })
    .await;
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "i".into(),
    })
    .await
    .expect("open (not intercepted)");
    app.dispatch(Deposit {
        account,
        amount: 5000,
        id: None,
    })
    .await
    .expect("capped");
    assert_eq!(
        app.load::<BankAccount>(&account).await.expect("load").state.balance,
        1000
    );
    let err = app
        .dispatch(Deposit {
            account,
            amount: 0,
            id: None,
        })
        .await
        .expect_err("refused");
    assert!(matches!(err, CommandError::Rejected { .. }), "{err}");
    let stream = StreamId::new("bank.account", account.to_string());
    let events = app
        .event_store()
        .read_stream(&stream, Version(1), None)
        .await
        .expect("read");
    assert!(!events[0].metadata.headers.contains_key("capped"));
    assert_eq!(
        events[1].metadata.headers.get("capped").map(String::as_str),
        Some("yes")
    );
}
