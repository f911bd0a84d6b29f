//! Middleware around dispatch: user layers, built-in layers, interceptors.

use interlock::DispatchOptions;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use std::task::{Context, Poll};

use interlock::middleware::{CommandRequest, Rejection, RetryLayer, TimeoutLayer, TracingLayer};
use interlock::prelude::*;
use interlock::store::{BoxFuture, Committed, EventStore, ExpectedVersion, NewEvent};
use interlock::store::{MemoryEventStore, StoreError};
use interlock::{CommandError, Dispatched, Position, StreamId};
use interlock_tests::bank::*;
use interlock_tests::hooked::{AppendHook, Hooked};

/// Adds a tenant header and refuses commands for a blocked owner: a user
/// layer written as an ordinary tower layer.
#[derive(Clone)]
struct TenantLayer {
    seen: Arc<AtomicU32>,
}

impl<S> tower::Layer<S> for TenantLayer {
    type Service = Tenant<S>;
    fn layer(&self, inner: S) -> Tenant<S> {
        Tenant {
            inner,
            seen: self.seen.clone(),
        }
    }
}

#[derive(Clone)]
struct Tenant<S> {
    inner: S,
    seen: Arc<AtomicU32>,
}

impl<C, O, E, S> tower::Service<CommandRequest<C>> for Tenant<S>
where
    S: tower::Service<CommandRequest<C>, Response = Dispatched<O>, Error = CommandError<E>>,
    S::Future: Send + 'static,
    O: Send + 'static,
    E: Send + 'static,
{
    type Response = Dispatched<O>;
    type Error = CommandError<E>;
    type Future = BoxFuture<'static, Result<Dispatched<O>, CommandError<E>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: CommandRequest<C>) -> Self::Future {
        self.seen.fetch_add(1, Ordering::SeqCst);
        let headers = &mut request.context.options.headers;
        if headers.get("user").is_some_and(|u| u == "mallory") {
            return Box::pin(std::future::ready(Err(CommandError::Rejected {
                layer: "tenant".into(),
                reason: "user is blocked".into(),
            })));
        }
        headers.insert("tenant".into(), "acme".into());
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            assert!(matches!(result, Ok(_) | Err(CommandError::Domain(_))));
            result
        })
    }
}

fn bank() -> interlock::ApplicationBuilder {
    bank_builder()
}

#[tokio::test]
async fn a_user_layer_changes_metadata_and_rejects_commands() {
    let seen = Arc::new(AtomicU32::new(0));
    let app = bank()
        .layer(TracingLayer)
        .layer(TenantLayer { seen: seen.clone() })
        .build()
        .await
        .expect("build");
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
    struct Slow;
    impl AppendHook for Slow {
        fn append<'a>(
            &'a self,
            inner: &'a MemoryEventStore,
            s: &'a StreamId,
            e: ExpectedVersion,
            ev: Vec<NewEvent>,
        ) -> BoxFuture<'a, Result<Committed, StoreError>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                inner.append(s, e, ev).await
            })
        }
    }
    let app = bank_builder()
        .event_store(Hooked::new(Slow))
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
    failures: AtomicU32,
}

impl AppendHook for Flaky {
    fn append<'a>(
        &'a self,
        inner: &'a MemoryEventStore,
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
        inner.append(s, e, ev)
    }
}

#[tokio::test]
async fn a_retry_layer_rides_out_an_unavailable_store() {
    let store = Arc::new(Hooked::new(Flaky {
        failures: AtomicU32::new(2),
    }));
    let app = bank_builder()
        .shared_event_store(store.clone())
        .layer(RetryLayer::new(3, Duration::from_millis(1)))
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
    store.hook.failures.store(1, Ordering::SeqCst);
    let plain = bank_builder()
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
    let app = bank()
        .intercept::<Deposit>(|cmd, ctx| {
            if cmd.amount == 0 {
                return Err(Rejection::new("zero deposit"));
            }
            cmd.amount = cmd.amount.min(1000); // a cap
            ctx.options.headers.insert("capped".into(), "yes".into());
            Ok(())
        })
        .build()
        .await
        .expect("build");
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

/// Counts appends in flight and the most ever in flight at once.
#[derive(Default)]
struct Gauge {
    in_flight: AtomicU32,
    peak: AtomicU32,
}

impl AppendHook for Gauge {
    fn append<'a>(
        &'a self,
        inner: &'a MemoryEventStore,
        s: &'a StreamId,
        e: ExpectedVersion,
        ev: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        Box::pin(async move {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let result = inner.append(s, e, ev).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            result
        })
    }
}

async fn open_concurrently<L>(app: &Application<L>, n: usize) -> Vec<Result<(), CommandError<BankError>>>
where
    L: interlock::CommandLayer<OpenAccount> + Clone,
{
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let app = app.clone();
        tasks.spawn(async move {
            app.dispatch(OpenAccount {
                account: Ulid::new(),
                owner: format!("c{i}"),
            })
            .await
            .map(|_| ())
        });
    }
    let mut results = Vec::new();
    while let Some(result) = tasks.join_next().await {
        results.push(result.expect("task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_off_the_shelf_tower_layer_limits_dispatch_concurrency() {
    let gauge = || Arc::new(Hooked::new(Gauge::default()));
    // Without a limit, the eight commands overlap in the store.
    let free_store = gauge();
    let free = bank()
        .shared_event_store(free_store.clone())
        .build()
        .await
        .expect("build");
    assert!(open_concurrently(&free, 8).await.iter().all(Result::is_ok));
    assert!(
        free_store.hook.peak.load(Ordering::SeqCst) > 1,
        "the unlimited run did not overlap"
    );

    // tower's ConcurrencyLimitLayer lets one through at a time.
    let limited_store = gauge();
    let limited = bank()
        .shared_event_store(limited_store.clone())
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .build()
        .await
        .expect("build");
    assert!(open_concurrently(&limited, 8).await.iter().all(Result::is_ok));
    assert_eq!(limited_store.hook.peak.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tower_layer_s_own_error_comes_back_as_a_layer_error() {
    let store = Arc::new(Hooked::new(Gauge::default()));
    // Load shedding in front of a limit of one: commands that find the
    // limit taken are refused with tower's `Overloaded`, boxed.
    let app = bank()
        .shared_event_store(store.clone())
        .layer(tower::load_shed::LoadShedLayer::new())
        .layer(tower::limit::ConcurrencyLimitLayer::new(1))
        .build()
        .await
        .expect("build");
    let results = open_concurrently(&app, 8).await;
    let shed = results
        .iter()
        .filter(|r| matches!(r, Err(CommandError::Layer(e)) if e.is::<tower::load_shed::error::Overloaded>()))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(ok >= 1, "{results:?}");
    assert!(shed >= 1, "nothing was shed: {results:?}");
    assert_eq!(ok + shed, 8, "{results:?}");
    assert_eq!(
        app.event_store().head().await.expect("head"),
        Position(u64::try_from(ok).expect("count"))
    );
}
