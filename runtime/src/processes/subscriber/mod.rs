//! The subscriber engine: followers of the global log with checkpoints,
//! retry with backoff, dead letters and lag. Projections and sagas both run as subscribers.
//!
//! One mechanism serves both ways of running: [`Subscriber::catch_up`]
//! reads the log after the persisted checkpoint, hands each event to the
//! handler (retrying with backoff), parks an event that keeps failing in the
//! dead-letter store, and saves the checkpoint. A background follower calls
//! it whenever the head moves (or on a poll interval); an *inline*
//! projection is also caught up by `dispatch` before it returns.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::ids::{Position, Timestamp};
use crate::domain::unwind::catch_panic;
mod config;
mod error;
mod handler;

pub(crate) use self::config::Own;
pub use self::config::{FailurePolicy, SubscriberConfig, SubscriberStatus};
pub use self::error::SubscriptionError;
pub(crate) use self::handler::ErasedHandler;
pub use self::handler::{EventHandlerResult, HandlerFailure};
use crate::store::{CheckpointStore, DeadLetter, DeadLetterStore, EventFilter, EventStore, RecordedEvent, StoreError};

struct Progress {
    checkpoint: Position,
    loaded: bool,
    stopped: Option<String>,
    /// An unreadable event found ahead: until the checkpoint reaches it,
    /// the log is read one event at a time (a page would fail on it).
    unreadable_ahead: Option<Position>,
}

/// A page of the log, as a subscriber reads it.
enum Page {
    /// Events, and the limit they were read with (a page shorter than its
    /// limit reached the end of the log).
    Events(Vec<RecordedEvent>, usize),
    /// The next event cannot be read: its position, why, and what could be
    /// salvaged of it.
    Unreadable(Position, String, Box<RecordedEvent>),
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
                unreadable_ahead: None,
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
            let (batch, limit) = match self.next_page(&mut progress).await? {
                Page::Events(batch, limit) => (batch, limit),
                Page::Unreadable(position, reason, salvaged) => {
                    self.park_unreadable(&mut progress, position, reason, salvaged).await?;
                    continue;
                }
            };
            let full = batch.len() >= limit;
            let start = progress.checkpoint;
            for event in &batch {
                if let Err(failure) = self.handle_with_retry(event).await
                    && let Some(failure) = self.give_up(event, failure).await
                {
                    self.park(event, &failure, self.config.retry.max_attempts.max(1))
                        .await?;
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

    /// The next page after `after`: up to `batch_size` events. When the
    /// page holds an event that cannot be read, the events before it come
    /// one at a time, then the unreadable one itself.
    async fn next_page(&self, progress: &mut Progress) -> Result<Page, SubscriptionError> {
        let after = progress.checkpoint;
        if progress.unreadable_ahead.is_none_or(|p| p <= after) {
            progress.unreadable_ahead = None;
            let limit = self.config.batch_size;
            match self.store.read_all(after, limit, &self.filter).await {
                Ok(events) => return Ok(Page::Events(events, limit)),
                Err(StoreError::UnreadableEvent { position, .. }) => progress.unreadable_ahead = Some(position),
                Err(e) => return Err(self.store_error(e)),
            }
        }
        match self.store.read_all(after, 1, &self.filter).await {
            Ok(events) => Ok(Page::Events(events, 1)),
            Err(StoreError::UnreadableEvent {
                position,
                reason,
                salvaged,
                ..
            }) => Ok(Page::Unreadable(position, reason, salvaged)),
            Err(e) => Err(self.store_error(e)),
        }
    }

    /// Parks an event that cannot be read as a dead letter of its
    /// position, with what could be salvaged of it, then applies the
    /// failure policy: go on past it, or stop before it.
    async fn park_unreadable(
        &self,
        progress: &mut Progress,
        position: Position,
        reason: String,
        salvaged: Box<RecordedEvent>,
    ) -> Result<(), SubscriptionError> {
        let error = format!("the stored event at position {position} cannot be read: {reason}");
        tracing::error!(subscriber = %self.name, %position, %reason, "unreadable event parked");
        self.park(&salvaged, &HandlerFailure::msg(error.clone()), 0).await?;
        if self.config.on_failure == FailurePolicy::ParkAndStop {
            progress.stopped = Some(error.clone());
            return Err(SubscriptionError::Stopped {
                subscriber: self.name.clone(),
                reason: error,
            });
        }
        self.save(progress, position.0).await
    }

    async fn save(&self, progress: &mut Progress, position: u64) -> Result<(), SubscriptionError> {
        progress.checkpoint = Position(position);
        self.checkpoints
            .save(&self.name, Position(position))
            .await
            .map_err(|e| self.store_error(e))
    }

    async fn handle_with_retry(&self, event: &RecordedEvent) -> Result<(), HandlerFailure> {
        let mut waits = self.config.retry.delays();
        let mut failures = 0;
        loop {
            let outcome = catch_panic(self.handler.handle(event))
                .await
                .unwrap_or_else(|panic| Err(HandlerFailure::msg(format!("the handler panicked: {panic}"))));
            match outcome {
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
                    let Some(wait) = waits.next() else {
                        return Err(failure);
                    };
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// After the retries: lets the handler deal with the failure (a saga
    /// compensates); the failure to park if it does not, or if that fails.
    async fn give_up(&self, event: &RecordedEvent, failure: HandlerFailure) -> Option<HandlerFailure> {
        match catch_panic(self.handler.exhausted(event, &failure)).await {
            Ok(Ok(true)) => None,
            Ok(Ok(false)) => Some(failure),
            Ok(Err(e)) => Some(HandlerFailure::msg(format!("{failure}; then: {e}"))),
            Err(panic) => Some(HandlerFailure::msg(format!(
                "{failure}; then a handler panicked: {panic}"
            ))),
        }
    }

    /// The retry policy of the subscriber's handler.
    pub(crate) fn retry(&self) -> &crate::domain::backoff::Backoff {
        &self.config.retry
    }

    /// Parks `event` as a dead letter of this subscriber after `attempts`
    /// runs that ended in `failure`.
    pub(crate) async fn park(
        &self,
        event: &RecordedEvent,
        failure: &HandlerFailure,
        attempts: u32,
    ) -> Result<(), SubscriptionError> {
        let letter = DeadLetter {
            subscriber: self.name.clone(),
            event: event.clone(),
            error: failure.to_string(),
            attempts,
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
            && let Some(failure) = self.give_up(event, failure).await
        {
            self.park(event, &failure, self.config.retry.max_attempts.max(1))
                .await?;
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
    /// Resets the subscriber to position 0, running `reset` (which may
    /// take the handler's own locks: the read model) while the progress is
    /// locked. The order, progress then model, is the one catch-up takes,
    /// so a rebuild never deadlocks with a running follower.
    pub(crate) async fn rewind<F: std::future::Future<Output = ()>>(
        &self,
        reset: impl FnOnce() -> F,
    ) -> Result<(), SubscriptionError> {
        let mut progress = self.progress.lock().await;
        reset().await;
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
        let oldest = match self.store.read_all(checkpoint, 1, &self.filter).await {
            Err(StoreError::UnreadableEvent { salvaged, .. }) => vec![*salvaged],
            read => read.map_err(|e| self.store_error(e))?,
        };
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
