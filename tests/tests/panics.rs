//! A panic in user code is caught at the framework's boundary and becomes
//! a typed failure under the policy that applies there: projections and
//! sagas retry and dead-letter it (their followers keep running), queries
//! and commands return an error, nothing panics in the caller.

#![allow(clippy::panic)] // the handlers under test panic on purpose

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use interlock::prelude::*;
use interlock::{ProjectionConfig, QueryError};
use interlock_tests::bank::*;

/// Sums deposits; panics on an amount of 13.
#[derive(Default)]
struct Fragile {
    total: u64,
    seen: Arc<AtomicU64>,
}

struct Total;
struct Explode;

#[projection(name = "tests.fragile", model = memory)]
impl Fragile {
    #[handles_event]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.seen.fetch_add(1, Ordering::SeqCst);
        if e.amount == 13 {
            panic!("thirteen is unlucky");
        }
        self.total += e.amount;
    }

    #[handles_query]
    fn total(&self, _q: Total) -> u64 {
        self.total
    }

    #[handles_query]
    fn explode(&self, _q: Explode) -> u64 {
        panic!("no answer for you")
    }
}

fn quick() -> SubscriberConfig {
    SubscriberConfig::new().retry(2, Duration::from_millis(1), Duration::from_millis(2))
}

async fn deposit(app: &Application, account: Ulid, amount: u64) {
    app.dispatch(Deposit {
        account,
        amount,
        id: None,
    })
    .await
    .expect("deposit");
}

#[tokio::test]
async fn a_panicking_projection_is_dead_lettered_and_catch_up_goes_on() {
    let seen = Arc::new(AtomicU64::new(0));
    let app = bank_builder()
        .projection_with(
            Fragile {
                total: 0,
                seen: seen.clone(),
            },
            ProjectionConfig::catch_up().subscriber(quick()),
        )
        .background(false)
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "p".into(),
    })
    .await
    .expect("open");
    for amount in [5, 13, 7] {
        deposit(&app, account, amount).await;
    }
    let handle = app.projection_handle::<Fragile>().expect("registered");
    // An explicit catch-up does not panic in the caller.
    handle.catch_up().await.expect("catch up");
    assert_eq!(app.query(Total).await.expect("query"), 12);
    let letters = handle.dead_letters().await.expect("letters");
    assert_eq!(letters.len(), 1);
    assert!(letters[0].error.contains("thirteen is unlucky"), "{}", letters[0].error);
    assert_eq!(letters[0].attempts, 2);
    let status = handle.status().await.expect("status");
    assert_eq!(
        (status.dead_letters, status.events_behind, status.stopped),
        (1, 0, None)
    );
    // 5, then 13 twice (two attempts), then 7.
    assert_eq!(seen.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn the_background_follower_survives_a_panicking_handler() {
    let app = bank_builder()
        .projection_with(
            Fragile::default(),
            ProjectionConfig::catch_up().subscriber(quick().poll_interval(Duration::from_millis(5))),
        )
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "f".into(),
    })
    .await
    .expect("open");
    deposit(&app, account, 13).await;
    deposit(&app, account, 30).await;
    // The follower goes past the poison event to the later deposit.
    let mut total = 0;
    for _ in 0..400 {
        total = app.query(Total).await.expect("query");
        if total == 30 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(total, 30, "the follower stopped at the panicking handler");
    let status = app
        .projection_handle::<Fragile>()
        .expect("registered")
        .status()
        .await
        .expect("status");
    assert_eq!(status.dead_letters, 1);
}

#[tokio::test]
async fn a_panicking_query_handler_is_an_error() {
    let app = Application::builder()
        .projection(Fragile::default())
        .background(false)
        .build()
        .await
        .expect("build");
    let err = app.query(Explode).await.expect_err("panicked");
    assert!(
        matches!(&err, QueryError::HandlerPanicked { message, .. } if message.contains("no answer")),
        "{err}"
    );
    // The projection still answers.
    assert_eq!(app.query(Total).await.expect("query"), 0);
}

/// A counter whose handler panics when asked to.
#[derive(Default)]
struct Touchy {
    n: u64,
}

#[derive(Event, Serialize, Deserialize)]
#[event(name = "tests.touched")]
struct Touched;

#[derive(Command, Clone)]
struct Touch {
    #[aggregate_id]
    id: u64,
    explode: bool,
}

#[aggregate(name = "tests.touchy")]
impl Touchy {
    #[handles_command]
    fn touch(&self, cmd: Touch) -> Touched {
        if cmd.explode {
            panic!("touched too hard");
        }
        Touched
    }

    #[applies_event]
    fn touched(&mut self, _: &Touched) {
        self.n += 1;
    }
}

#[tokio::test]
async fn a_panicking_command_handler_is_an_error_and_appends_nothing() {
    let app = Application::builder()
        .aggregate::<Touchy>()
        .build()
        .await
        .expect("build");
    app.dispatch(Touch { id: 1, explode: false }).await.expect("touch");
    let err = app
        .dispatch(Touch { id: 1, explode: true })
        .await
        .expect_err("panicked");
    assert!(
        matches!(&err, CommandError::HandlerPanicked { message, .. } if message.contains("too hard")),
        "{err}"
    );
    app.dispatch(Touch { id: 1, explode: false })
        .await
        .expect("touch again");
    assert_eq!(app.load::<Touchy>(&1).await.expect("load").state.n, 2);
}

/// A counter whose applier panics on the third increment.
#[derive(Default)]
struct Brittle {
    count: u64,
}

#[derive(Event, Serialize, Deserialize, Clone, Debug)]
#[event(name = "tests.incremented")]
struct Incremented;

#[derive(Command, Clone, Debug)]
struct Increment {
    #[aggregate_id]
    id: Ulid,
}

#[aggregate(name = "tests.brittle")]
impl Brittle {
    #[handles_command]
    fn increment(&self, _: Increment) -> Incremented {
        Incremented
    }

    #[applies_event]
    fn incremented(&mut self, _: &Incremented) {
        self.count += 1;
        if self.count == 3 {
            panic!("three is too many");
        }
    }
}

#[tokio::test]
async fn a_panicking_applier_is_a_typed_error_not_a_panic_in_the_caller() {
    let app = Application::builder()
        .aggregate::<Brittle>()
        .build()
        .await
        .expect("build");
    let id = Ulid::new();
    for _ in 0..2 {
        app.dispatch(Increment { id }).await.expect("increment");
    }
    // The third event is committed; applying it to the cached state panics
    // after the commit: the command has happened, so it succeeds, and the
    // half-applied state is not kept.
    app.dispatch(Increment { id }).await.expect("committed");
    assert_eq!(app.event_store().head().await.expect("head").get(), 3);
    // Every later load folds the third event again: a typed error naming it.
    for attempt in 0..2 {
        match app.load::<Brittle>(&id).await {
            Err(interlock::LoadError::ApplierPanicked { version, message, .. }) => {
                assert_eq!(version, interlock::Version(3));
                assert!(message.contains("too many"), "{message}");
            }
            other => panic!(
                "attempt {attempt}: expected ApplierPanicked, got {:?}",
                other.map(|l| l.version)
            ),
        }
    }
    match app.dispatch(Increment { id }).await {
        Err(CommandError::Load(interlock::LoadError::ApplierPanicked { .. })) => {}
        other => panic!("expected a load error, got {other:?}"),
    }
    assert_eq!(
        app.event_store().head().await.expect("head").get(),
        3,
        "nothing more appended"
    );
}
