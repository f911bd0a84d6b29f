//! Subscribers of the global log: checkpoints, retry with backoff, dead
//! letters, lag. Projections and sagas both run as subscribers.
//!
//! One mechanism serves both ways of running: [`Subscriber::catch_up`]
//! reads the log after the persisted checkpoint, hands each event to the
//! handler (retrying with backoff), parks an event that keeps failing in the
//! dead-letter store, and saves the checkpoint. A background follower calls
//! it whenever the head moves (or on a poll interval); an *inline*
//! projection is also caught up by `dispatch` before it returns.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::ids::{Position, Timestamp};
use crate::store::{
    BoxFuture, CheckpointStore, DeadLetter, DeadLetterStore, EventFilter, EventStore, RecordedEvent, StoreError,
};

/// Why an event handler failed (any error type, boxed).
#[derive(Debug)]
pub struct HandlerFailure(pub Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for HandlerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl HandlerFailure {
    /// A failure with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerFailure {
    fn from(e: E) -> Self {
        Self(Box::new(e))
    }
}

/// What an event handler may return: `()`, or a `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by an event handler",
    note = "an event handler returns nothing, or `Result<(), E>` with an error type `E` (its failures are retried, then dead-lettered)"
)]
pub trait EventHandlerResult {
    /// The result as a failure, if any.
    ///
    /// # Errors
    ///
    /// The handler's error, boxed.
    fn into_result(self) -> Result<(), HandlerFailure>;
}

impl EventHandlerResult for () {
    fn into_result(self) -> Result<(), HandlerFailure> {
        Ok(())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> EventHandlerResult for Result<(), E> {
    fn into_result(self) -> Result<(), HandlerFailure> {
        self.map_err(HandlerFailure::from)
    }
}

/// What a subscriber does with an event that still fails after its retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Park it in the dead-letter store and go on with the next event.
    #[default]
    ParkAndContinue,
    /// Park it and stop the subscriber before it; `resume` retries it.
    ParkAndStop,
}

/// Retries of a failing event handler, with exponential backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Runs of the handler before the event is parked (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failure.
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after `failures` failures.
    #[must_use]
    pub fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// How a subscriber runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct SubscriberConfig {
    /// Retries of a failing handler.
    pub retry: RetryPolicy,
    /// What to do after the retries.
    pub on_failure: FailurePolicy,
    /// Events read per batch.
    pub batch_size: usize,
    /// How often to poll a store that cannot announce new events.
    pub poll_interval: Duration,
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            on_failure: FailurePolicy::default(),
            batch_size: 512,
            poll_interval: Duration::from_millis(100),
        }
    }
}

impl SubscriberConfig {
    /// The defaults: 5 attempts from 50 ms backoff, then park and continue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the retry policy.
    pub fn retry(mut self, max_attempts: u32, initial_backoff: Duration, max_backoff: Duration) -> Self {
        self.retry = RetryPolicy {
            max_attempts,
            initial_backoff,
            max_backoff,
        };
        self
    }

    /// Sets the failure policy.
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.on_failure = policy;
        self
    }

    /// Sets the batch size.
    pub fn batch_size(mut self, events: usize) -> Self {
        self.batch_size = events;
        self
    }

    /// Sets the poll interval.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }
}

/// The health of one subscriber, for health checks.
#[derive(Clone, Debug, PartialEq)]
pub struct SubscriberStatus {
    /// The subscriber (`projection:<name>` or `saga:<name>`).
    pub name: String,
    /// The last position processed.
    pub checkpoint: Position,
    /// The head of the log.
    pub head: Position,
    /// Events of the log after the checkpoint (`head - checkpoint`).
    pub events_behind: u64,
    /// How long the oldest event it has not processed has waited.
    pub oldest_unprocessed_age: Option<Duration>,
    /// Events parked in the dead-letter store.
    pub dead_letters: usize,
    /// Why it stopped, if it did.
    pub stopped: Option<String>,
}

/// The handler side of a subscriber, type-erased.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    /// Handles one event.
    fn handle<'a>(&'a self, event: &'a RecordedEvent) -> BoxFuture<'a, Result<(), HandlerFailure>>;
}

struct Progress {
    checkpoint: Position,
    loaded: bool,
    stopped: Option<String>,
}

/// Why catching up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubscriptionError {
    /// The event, checkpoint or dead-letter store failed.
    #[error("subscriber `{subscriber}`: {source}")]
    Store {
        /// The subscriber.
        subscriber: String,
        /// The store error.
        #[source]
        source: StoreError,
    },
    /// The subscriber stopped on a failing event (policy `ParkAndStop`).
    #[error("subscriber `{subscriber}` is stopped: {reason}")]
    Stopped {
        /// The subscriber.
        subscriber: String,
        /// Why.
        reason: String,
    },
    /// A saga deadline handler failed; the deadline stays scheduled.
    #[error("deadline of saga `{saga}` failed: {source}")]
    Deadline {
        /// The saga.
        saga: &'static str,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// No subscriber of that type is registered.
    #[error("`{0}` is not registered on the application")]
    NotRegistered(&'static str),
}

pub(crate) struct Subscriber {
    pub(crate) name: String,
    filter: EventFilter,
    config: SubscriberConfig,
    store: Arc<dyn EventStore>,
    checkpoints: Arc<dyn CheckpointStore>,
    dead_letters: Arc<dyn DeadLetterStore>,
    handler: Box<dyn ErasedHandler>,
    progress: tokio::sync::Mutex<Progress>,
}

impl Subscriber {
    pub(crate) fn new(
        name: String,
        filter: EventFilter,
        config: SubscriberConfig,
        store: Arc<dyn EventStore>,
        checkpoints: Arc<dyn CheckpointStore>,
        dead_letters: Arc<dyn DeadLetterStore>,
        handler: Box<dyn ErasedHandler>,
    ) -> Self {
        Self {
            name,
            filter,
            config,
            store,
            checkpoints,
            dead_letters,
            handler,
            progress: tokio::sync::Mutex::new(Progress {
                checkpoint: Position::START,
                loaded: false,
                stopped: None,
            }),
        }
    }

    /// Locks the progress, loading the checkpoint on first use; fails when
    /// the subscriber is stopped.
    async fn ready(&self) -> Result<tokio::sync::MutexGuard<'_, Progress>, SubscriptionError> {
        let mut progress = self.progress.lock().await;
        if !progress.loaded {
            progress.checkpoint = self
                .checkpoints
                .load(&self.name)
                .await
                .map_err(|e| self.store_error(e))?
                .unwrap_or(Position::START);
            progress.loaded = true;
        }
        if let Some(reason) = &progress.stopped {
            return Err(SubscriptionError::Stopped {
                subscriber: self.name.clone(),
                reason: reason.clone(),
            });
        }
        Ok(progress)
    }

    fn store_error(&self, source: StoreError) -> SubscriptionError {
        SubscriptionError::Store {
            subscriber: self.name.clone(),
            source,
        }
    }

    /// Processes the log after the checkpoint: up to the head, or until the
    /// checkpoint reaches `until`.
    pub(crate) async fn catch_up(&self, until: Option<Position>) -> Result<Position, SubscriptionError> {
        let mut progress = self.ready().await?;
        loop {
            if until.is_some_and(|u| progress.checkpoint >= u) {
                return Ok(progress.checkpoint);
            }
            let head = self.store.head().await.map_err(|e| self.store_error(e))?;
            let batch = self
                .store
                .read_all(progress.checkpoint, self.config.batch_size, &self.filter)
                .await
                .map_err(|e| self.store_error(e))?;
            let full = batch.len() >= self.config.batch_size;
            let start = progress.checkpoint;
            for event in &batch {
                if let Err(failure) = self.handle_with_retry(event).await {
                    self.park(event, &failure).await?;
                    if self.config.on_failure == FailurePolicy::ParkAndStop {
                        let reason = format!(
                            "event `{}` at position {} failed after {} attempts: {}",
                            event.name, event.position, self.config.retry.max_attempts, failure.0
                        );
                        tracing::error!(subscriber = %self.name, %reason, "subscriber stopped");
                        self.save(&mut progress, event.position.0.saturating_sub(1)).await?;
                        progress.stopped = Some(reason.clone());
                        return Err(SubscriptionError::Stopped {
                            subscriber: self.name.clone(),
                            reason,
                        });
                    }
                }
                progress.checkpoint = event.position;
            }
            // Nothing left below the head: skip the events the filter hid.
            let reached = if full {
                progress.checkpoint
            } else {
                progress.checkpoint.max(head)
            };
            if reached > start {
                self.save(&mut progress, reached.0).await?;
            }
            if !full {
                // Handlers (sagas) may have appended events meanwhile: go on
                // until the log stops moving.
                let now = self.store.head().await.map_err(|e| self.store_error(e))?;
                if now <= progress.checkpoint || until.is_some_and(|u| progress.checkpoint >= u) {
                    return Ok(progress.checkpoint);
                }
            }
        }
    }

    async fn save(&self, progress: &mut Progress, position: u64) -> Result<(), SubscriptionError> {
        progress.checkpoint = Position(position);
        self.checkpoints
            .save(&self.name, Position(position))
            .await
            .map_err(|e| self.store_error(e))
    }

    async fn handle_with_retry(&self, event: &RecordedEvent) -> Result<(), HandlerFailure> {
        let retry = self.config.retry;
        let mut failures = 0;
        loop {
            match self.handler.handle(event).await {
                Ok(()) => return Ok(()),
                Err(failure) => {
                    failures += 1;
                    tracing::warn!(
                        subscriber = %self.name,
                        position = %event.position,
                        event = %event.name,
                        attempt = failures,
                        error = %failure,
                        "event handler failed"
                    );
                    if failures >= retry.max_attempts.max(1) {
                        return Err(failure);
                    }
                    tokio::time::sleep(retry.backoff(failures)).await;
                }
            }
        }
    }

    async fn park(&self, event: &RecordedEvent, failure: &HandlerFailure) -> Result<(), SubscriptionError> {
        let letter = DeadLetter {
            subscriber: self.name.clone(),
            event: event.clone(),
            error: failure.to_string(),
            attempts: self.config.retry.max_attempts.max(1),
            parked_at: Timestamp::now(),
        };
        self.dead_letters.park(letter).await.map_err(|e| self.store_error(e))
    }

    /// Handles one event delivered from a transport, unless the checkpoint
    /// is already past it; then moves the checkpoint to it. Events the
    /// filter does not select only move the checkpoint.
    pub(crate) async fn deliver(&self, event: &RecordedEvent) -> Result<(), SubscriptionError> {
        let mut progress = self.ready().await?;
        if event.position <= progress.checkpoint {
            return Ok(()); // a re-delivery
        }
        if self.filter.matches(event)
            && let Err(failure) = self.handle_with_retry(event).await
        {
            self.park(event, &failure).await?;
            if self.config.on_failure == FailurePolicy::ParkAndStop {
                let reason = format!(
                    "event `{}` at position {} failed: {}",
                    event.name, event.position, failure.0
                );
                progress.stopped = Some(reason.clone());
                return Err(SubscriptionError::Stopped {
                    subscriber: self.name.clone(),
                    reason,
                });
            }
        }
        self.save(&mut progress, event.position.0).await
    }

    /// Runs the handler again on every parked event; removes those that now
    /// succeed. Returns how many succeeded.
    pub(crate) async fn replay_dead_letters(&self) -> Result<usize, SubscriptionError> {
        let _progress = self.progress.lock().await;
        let letters = self
            .dead_letters
            .list(&self.name)
            .await
            .map_err(|e| self.store_error(e))?;
        let mut replayed = 0;
        for mut letter in letters {
            match self.handler.handle(&letter.event).await {
                Ok(()) => {
                    self.dead_letters
                        .remove(&self.name, letter.event.event_id)
                        .await
                        .map_err(|e| self.store_error(e))?;
                    replayed += 1;
                }
                Err(failure) => {
                    letter.attempts += 1;
                    letter.error = failure.to_string();
                    letter.parked_at = Timestamp::now();
                    self.dead_letters.park(letter).await.map_err(|e| self.store_error(e))?;
                }
            }
        }
        Ok(replayed)
    }

    /// Clears a stop, so the next catch-up retries the failing event.
    pub(crate) async fn resume(&self) {
        self.progress.lock().await.stopped = None;
    }

    /// Resets the checkpoint to the start (for a rebuild); `reset` runs while
    /// the subscriber is held, to swap the read model.
    pub(crate) async fn rewind(&self, reset: impl FnOnce()) -> Result<(), SubscriptionError> {
        let mut progress = self.progress.lock().await;
        reset();
        progress.stopped = None;
        progress.loaded = true;
        self.save(&mut progress, 0).await
    }

    pub(crate) async fn status(&self) -> Result<SubscriberStatus, SubscriptionError> {
        let (checkpoint, stopped) = {
            let progress = self.progress.lock().await;
            let checkpoint = if progress.loaded {
                progress.checkpoint
            } else {
                self.checkpoints
                    .load(&self.name)
                    .await
                    .map_err(|e| self.store_error(e))?
                    .unwrap_or(Position::START)
            };
            (checkpoint, progress.stopped.clone())
        };
        let head = self.store.head().await.map_err(|e| self.store_error(e))?;
        let oldest = self
            .store
            .read_all(checkpoint, 1, &self.filter)
            .await
            .map_err(|e| self.store_error(e))?;
        let now = Timestamp::now();
        let oldest_unprocessed_age = oldest
            .first()
            .and_then(|e| e.metadata.timestamp)
            .map(|t| Duration::from_micros(u64::try_from(now.0.saturating_sub(t.0)).unwrap_or(0)));
        let dead_letters = self
            .dead_letters
            .list(&self.name)
            .await
            .map_err(|e| self.store_error(e))?
            .len();
        Ok(SubscriberStatus {
            name: self.name.clone(),
            checkpoint,
            head,
            events_behind: head.0.saturating_sub(checkpoint.0),
            oldest_unprocessed_age,
            dead_letters,
            stopped,
        })
    }

    pub(crate) async fn dead_letters(&self) -> Result<Vec<DeadLetter>, SubscriptionError> {
        self.dead_letters
            .list(&self.name)
            .await
            .map_err(|e| self.store_error(e))
    }

    /// Follows the log until `shutdown` fires: catch up, then wait for the
    /// head to move (or the poll interval).
    pub(crate) async fn follow(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut head = self.store.watch_head();
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.catch_up(None).await {
                Ok(_) => {}
                Err(SubscriptionError::Stopped { .. }) => {}
                Err(e) => tracing::warn!(subscriber = %self.name, error = %e, "catch-up failed; retrying"),
            }
            let wait = async {
                match head.as_mut() {
                    Some(h) => {
                        let changed =
                            tokio::time::timeout(self.config.poll_interval.max(Duration::from_secs(1)), h.changed());
                        if let Ok(Err(_)) = changed.await {
                            // The store dropped its watch: fall back to polling.
                            tokio::time::sleep(self.config.poll_interval).await;
                        }
                    }
                    None => tokio::time::sleep(self.config.poll_interval).await,
                }
            };
            tokio::select! {
                () = wait => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
