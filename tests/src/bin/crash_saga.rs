//! A child process for the saga crash tests: places an order (once) and
//! runs the payment saga, killing itself with SIGKILL at the crash point
//! it is given; `none` runs to the end and prints `done`.
//!
//! `crash_saga <point> <order> <card> <amount> sqlite <path>` or
//! `crash_saga <point> <order> <card> <amount> postgres <url> <schema>`.
//! Points: `before-charge`, `after-charge`, `after-outcome`,
//! `after-saga-state`, `after-checkpoint`, `after-failure-recorded` (an
//! amount above the card's limit is declined and the order cancelled by
//! the saga's compensation), `none`.

use std::time::Duration;

use interlock::store::{
    BoxFuture, CheckpointStore, Claim, Committed, DeadLetterStore, EventFilter, EventStore, ExpectedVersion,
    IdempotencyRecord, IdempotencyStore, NewEvent, RecordedEvent, RewrittenEvent, SagaChange, SagaInstance,
    SagaStateStore, ScheduledDeadline, StoreError,
};
use interlock::{CommandId, Position, StreamId, Timestamp, Ulid, Version};
use interlock_sql::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};
use interlock_tests::payments::{self, PlaceOrder};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Point {
    BeforeCharge,
    AfterCharge,
    AfterOutcome,
    AfterSagaState,
    AfterCheckpoint,
    AfterFailureRecorded,
    None,
}

/// Ends the process as a crash does: SIGKILL, no destructor, no flush.
fn die() -> ! {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort()
}

/// The SQL store, with the crash point on the calls of the saga's step.
#[derive(Clone)]
struct Crashing<S> {
    inner: S,
    point: Point,
}

impl<S> Crashing<S> {
    fn at(&self, point: Point) {
        if self.point == point {
            die();
        }
    }
}

impl<S: EventStore> EventStore for Crashing<S> {
    fn append<'a>(
        &'a self,
        stream: &'a StreamId,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'a, Result<Committed, StoreError>> {
        Box::pin(async move {
            let card = stream.aggregate_type() == "payments.card";
            if card {
                self.at(Point::BeforeCharge);
            }
            let committed = self.inner.append(stream, expected, events).await?;
            if card {
                self.at(Point::AfterCharge);
            }
            Ok(committed)
        })
    }
    fn append_atomic(
        &self,
        append: interlock::store::AtomicAppend,
    ) -> BoxFuture<'_, Result<Vec<Committed>, StoreError>> {
        self.inner.append_atomic(append)
    }
    fn read_stream<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
        to: Option<Version>,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.inner.read_stream(stream, from, to)
    }
    fn read_stream_for_load<'a>(
        &'a self,
        stream: &'a StreamId,
        from: Version,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.inner.read_stream_for_load(stream, from)
    }
    fn read_all<'a>(
        &'a self,
        after: Position,
        limit: usize,
        filter: &'a EventFilter,
    ) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.inner.read_all(after, limit, filter)
    }
    fn stream_version<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Version, StoreError>> {
        self.inner.stream_version(stream)
    }
    fn head(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        self.inner.head()
    }
    fn scan<'a>(&'a self, scan: &'a interlock::store::Scan) -> BoxFuture<'a, Result<Vec<RecordedEvent>, StoreError>> {
        self.inner.scan(scan)
    }
    fn rewrite(&self, position: Position, event: RewrittenEvent) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.rewrite(position, event)
    }
}

impl<S: IdempotencyStore> IdempotencyStore for Crashing<S> {
    fn claim(&self, id: CommandId, now: Timestamp, lease: Duration) -> BoxFuture<'_, Result<Claim, StoreError>> {
        self.inner.claim(id, now, lease)
    }
    fn complete(&self, record: IdempotencyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.complete(record).await?;
            self.at(Point::AfterOutcome);
            Ok(())
        })
    }
    fn release(&self, id: CommandId) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.release(id)
    }
    fn purge_expired(&self, now: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.purge_expired(now)
    }
}

impl<S: SagaStateStore> SagaStateStore for Crashing<S> {
    fn load<'a>(&'a self, saga: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<SagaInstance>, StoreError>> {
        self.inner.load(saga, key)
    }
    fn apply<'a>(
        &'a self,
        saga: &'a str,
        key: &'a str,
        expected: Version,
        change: SagaChange,
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        Box::pin(async move {
            let records_failure = matches!(&change, SagaChange::Save { failure: Some(_), .. });
            let version = self.inner.apply(saga, key, expected, change).await?;
            if records_failure {
                self.at(Point::AfterFailureRecorded);
            } else {
                self.at(Point::AfterSagaState);
            }
            Ok(version)
        })
    }
    fn due<'a>(
        &'a self,
        saga: &'a str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ScheduledDeadline>, StoreError>> {
        self.inner.due(saga, now, limit)
    }
    fn is_scheduled<'a>(&'a self, saga: &'a str, id: Ulid) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.is_scheduled(saga, id)
    }
}

impl<S: CheckpointStore> CheckpointStore for Crashing<S> {
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>> {
        self.inner.load(subscriber)
    }
    fn save<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.save(subscriber, position).await?;
            if subscriber.starts_with("saga:") {
                self.at(Point::AfterCheckpoint);
            }
            Ok(())
        })
    }
    fn advance<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.advance(subscriber, position).await?;
            if subscriber.starts_with("saga:") {
                self.at(Point::AfterCheckpoint);
            }
            Ok(())
        })
    }
    fn claim_lease<'a>(
        &'a self,
        subscriber: &'a str,
        owner: &'a str,
        now: interlock::Timestamp,
        duration: std::time::Duration,
    ) -> BoxFuture<'a, Result<interlock::store::LeaseClaim, StoreError>> {
        self.inner.claim_lease(subscriber, owner, now, duration)
    }
    fn release_lease<'a>(&'a self, subscriber: &'a str, token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.release_lease(subscriber, token)
    }
    fn save_fenced<'a>(
        &'a self,
        subscriber: &'a str,
        position: Position,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.save_fenced(subscriber, position, token).await?;
            if subscriber.starts_with("saga:") {
                self.at(Point::AfterCheckpoint);
            }
            Ok(())
        })
    }
    fn leases(&self) -> BoxFuture<'_, Result<Vec<interlock::store::Lease>, StoreError>> {
        self.inner.leases()
    }
}

async fn run<S>(store: S, point: Point, order: Ulid, card: Ulid, amount: u64) -> Result<(), Box<dyn std::error::Error>>
where
    S: EventStore + IdempotencyStore + SagaStateStore + CheckpointStore + DeadLetterStore + Clone,
{
    let crashing = Crashing {
        inner: store.clone(),
        point,
    };
    let app = payments::builder()
        .event_store(crashing.clone())
        .idempotency_store(crashing.clone())
        .saga_state_store(crashing.clone())
        .checkpoint_store(crashing)
        .dead_letter_store(store)
        .build()
        .await?;
    // Placing the order again changes nothing (the handler emits nothing).
    app.dispatch(PlaceOrder { order, card, amount }).await?;
    app.saga_handle::<payments::Payment>()?.catch_up().await?;
    println!("done");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let point = match args.first().map(String::as_str) {
        Some("before-charge") => Point::BeforeCharge,
        Some("after-charge") => Point::AfterCharge,
        Some("after-outcome") => Point::AfterOutcome,
        Some("after-saga-state") => Point::AfterSagaState,
        Some("after-checkpoint") => Point::AfterCheckpoint,
        Some("after-failure-recorded") => Point::AfterFailureRecorded,
        Some("none") => Point::None,
        other => return Err(format!("unknown crash point {other:?}").into()),
    };
    let id = |i: usize| -> Result<Ulid, Box<dyn std::error::Error>> {
        Ok(args.get(i).ok_or("missing id")?.parse::<Ulid>()?)
    };
    let (order, card) = (id(1)?, id(2)?);
    let amount: u64 = args.get(3).ok_or("missing amount")?.parse()?;
    match args.get(4).map(String::as_str) {
        Some("sqlite") => {
            let path = args.get(5).ok_or("missing path")?;
            run(
                SqliteStore::open(SqliteConfig::file(path)).await?,
                point,
                order,
                card,
                amount,
            )
            .await
        }
        Some("postgres") => {
            let (url, schema) = (args.get(5).ok_or("missing url")?, args.get(6).ok_or("missing schema")?);
            let config = PostgresConfig::new(url.as_str()).schema(schema.as_str());
            run(PostgresStore::open(config).await?, point, order, card, amount).await
        }
        other => Err(format!("unknown backend {other:?}").into()),
    }
}
