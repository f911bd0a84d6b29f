//! The subscriber engine: followers of the global log with checkpoints,
//! retry with backoff, dead letters and lag. Projections and sagas both run as subscribers.
//!
//! One mechanism serves both ways of running: [`Subscriber::catch_up`]
//! reads the log after the persisted checkpoint, hands each event to the
//! handler (retrying with backoff), parks an event that keeps failing in the
//! dead-letter store, and saves the checkpoint. A background follower calls
//! it whenever the head moves (or on a poll interval); an *inline*
//! projection is also caught up by `dispatch` before it returns.
//!
//! Beside this file: `ownership` (leases, when several instances share
//! the store), `segment` (splitting by stream), `parking` (dead letters),
//! `status`, `config`, `handler` and `error`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::domain::ids::Position;
use crate::domain::unwind::catch_panic;
mod config;
mod error;
mod handler;
mod ownership;
mod parking;
mod segment;
mod status;

pub(crate) use self::config::Own;
pub use self::config::{FailurePolicy, SubscriberConfig, SubscriberStatus};
pub use self::error::SubscriptionError;
pub(crate) use self::handler::ErasedHandler;
pub use self::handler::{EventHandlerResult, HandlerFailure};
pub(crate) use self::ownership::Ownership;
use self::ownership::failed_on_lost_lease;
pub(crate) use self::segment::{Balance, MAX_SEGMENTS, Segment, segment_name};
use crate::store::{CheckpointStore, DeadLetterStore, EventFilter, EventStore, Lease, RecordedEvent, StoreError};

struct Progress {
    checkpoint: Position,
    loaded: bool,
    /// The lease this instance holds, and when it was last renewed.
    lease: Option<(Lease, std::time::Instant)>,
    stopped: Option<String>,
    /// An unreadable event found ahead: until the checkpoint reaches it,
    /// the log is read one event at a time (a page would fail on it).
    unreadable_ahead: Option<Position>,
    /// The checkpoints of the layout a segment takes over from (empty
    /// when none): events they cover were handled already.
    handed: Vec<Position>,
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
    /// `None`: the subscriber runs in every instance (a model in memory,
    /// an inline projection, a scenario).
    ownership: Option<Ownership>,
    /// The token of the lease held (0 when none), shared with a handler
    /// that saves the checkpoint itself (a transactional read model).
    token: Arc<AtomicU64>,
    /// The part of a split subscriber this one runs (`None`: all of it).
    segment: Option<Segment>,
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
                lease: None,
                stopped: None,
                unreadable_ahead: None,
                handed: Vec::new(),
            }),
            ownership: None,
            token: Arc::new(AtomicU64::new(0)),
            segment: None,
        }
    }

    /// Runs one segment of a split subscriber: only the events of its
    /// streams reach the handler.
    pub(crate) fn segment(mut self, segment: Segment) -> Self {
        self.segment = Some(segment);
        self
    }

    /// The stored checkpoint, and those of the layout a segment takes over
    /// from: a segment that never saved one starts from the least advanced
    /// of those.
    async fn stored(&self) -> Result<(Position, Vec<Position>), SubscriptionError> {
        let own = self
            .checkpoints
            .load(&self.name)
            .await
            .map_err(|e| self.store_error(e))?;
        let mut handed = Vec::new();
        if let Some((_, names)) = self.segment.as_ref().and_then(|s| s.previous.as_ref()) {
            for name in names {
                let old = self.checkpoints.load(name).await.map_err(|e| self.store_error(e))?;
                handed.push(old.unwrap_or(Position::START));
            }
        }
        let start = own.unwrap_or_else(|| handed.iter().copied().min().unwrap_or(Position::START));
        Ok((start, handed))
    }

    /// Loads the stored checkpoint into `progress`.
    async fn load(&self, progress: &mut Progress) -> Result<(), SubscriptionError> {
        let (checkpoint, handed) = self.stored().await?;
        progress.checkpoint = checkpoint;
        progress.handed = handed;
        progress.loaded = true;
        progress.unreadable_ahead = None;
        Ok(())
    }

    /// Whether this subscriber hands `event` to its handler: it is of its
    /// segment, and was not handled by the layout it took over from.
    fn takes(&self, progress: &Progress, event: &RecordedEvent) -> bool {
        match &self.segment {
            None => true,
            Some(segment) => {
                segment.covers(&event.stream)
                    && !segment.handled_before(&progress.handed, &event.stream, event.position)
            }
        }
    }

    /// Locks the progress, loading the checkpoint on first use; fails when
    /// the subscriber is stopped.
    async fn ready(&self) -> Result<tokio::sync::MutexGuard<'_, Progress>, SubscriptionError> {
        let mut progress = self.progress.lock().await;
        if !progress.loaded {
            self.load(&mut progress).await?;
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
        'pages: loop {
            // Another instance owns it: nothing to do here.
            if !self.hold(&mut progress).await? {
                return Ok(progress.checkpoint);
            }
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
            if let Ok(Err(e)) = catch_panic(self.handler.prepare(&batch)).await {
                tracing::debug!(subscriber = %self.name, error = %e, "the page could not be prepared at once; one event at a time");
            }
            for event in &batch {
                if !self.takes(&progress, event) {
                    progress.checkpoint = event.position;
                    continue;
                }
                let handled = self.handle_with_retry(event).await;
                // A store the handler needs is unreachable: the event is not
                // at fault, so it is not parked. The catch-up stops here
                // with the store's error, the event still to do; the
                // follower (or the next `catch_up`) tries again.
                let handled = match handled {
                    Err(failure) if store_unavailable(&failure) => {
                        let source = failure.0.downcast::<StoreError>().map_or_else(
                            |other| StoreError::Backend {
                                backend: "handler",
                                source: other,
                            },
                            |e| *e,
                        );
                        tracing::warn!(subscriber = %self.name, position = %event.position, error = %source, "a store is unavailable; the event waits");
                        return Err(SubscriptionError::Store {
                            subscriber: self.name.clone(),
                            source,
                        });
                    }
                    handled => handled,
                };
                if let Err(failure) = &handled
                    && applied_elsewhere(failure)
                {
                    // Another instance applied it (and maybe more): go on
                    // from the stored checkpoint.
                    tracing::debug!(subscriber = %self.name, position = %event.position, "applied by another instance; reloading the checkpoint");
                    self.load(&mut progress).await?;
                    continue 'pages;
                }
                if let Err(failure) = handled
                    && !self.lost_lease(&mut progress, &failure)
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
                if progress.lease.is_none() && self.ownership.is_some() {
                    return Ok(progress.checkpoint); // stepped down mid-page
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

    /// Saves the checkpoint, fenced by the lease when the subscriber is
    /// owned (a lost lease steps down: the new owner's progress stands),
    /// else only moving it forward (other instances may run it too).
    async fn save(&self, progress: &mut Progress, position: u64) -> Result<(), SubscriptionError> {
        let saved = match &progress.lease {
            Some((lease, _)) => {
                self.checkpoints
                    .save_fenced(&self.name, Position(position), lease.token)
                    .await
            }
            None if self.ownership.is_some() => return Ok(()),
            None => self.checkpoints.advance(&self.name, Position(position)).await,
        };
        match saved {
            Ok(()) => {
                progress.checkpoint = Position(position);
                Ok(())
            }
            Err(StoreError::LeaseLost { .. }) => {
                tracing::info!(subscriber = %self.name, "the lease was taken over; stepping down");
                self.step_down(progress);
                Ok(())
            }
            Err(e) => Err(self.store_error(e)),
        }
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
                // Retrying cannot bring the lease back, nor unapply; an
                // unreachable store is waited out by the caller, not here.
                Err(failure)
                    if failed_on_lost_lease(&failure) || applied_elsewhere(&failure) || store_unavailable(&failure) =>
                {
                    return Err(failure);
                }
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

    /// Handles one event delivered from a transport, unless the checkpoint
    /// is already past it; then moves the checkpoint to it. Events the
    /// filter does not select only move the checkpoint.
    pub(crate) async fn deliver(&self, event: &RecordedEvent) -> Result<(), SubscriptionError> {
        let mut progress = self.ready().await?;
        if event.position <= progress.checkpoint {
            return Ok(()); // a re-delivery
        }
        if self.filter.matches(event)
            && self.takes(&progress, event)
            && let Err(failure) = self.handle_with_retry(event).await
            && !applied_elsewhere(&failure)
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

    /// Parks an event a transport delivered `attempts` times without
    /// seeing it acknowledged (its consumer crashed or stalled on it each
    /// time), without handling it again, unless the checkpoint is already
    /// past it; then moves the checkpoint to it. The stop policy applies
    /// as to a failing handler; a dead-letter replay handles it later.
    pub(crate) async fn deliver_poisoned(&self, event: &RecordedEvent, attempts: u32) -> Result<(), SubscriptionError> {
        let mut progress = self.ready().await?;
        if event.position <= progress.checkpoint {
            return Ok(());
        }
        if self.filter.matches(event) && self.takes(&progress, event) {
            let reason = format!(
                "event `{}` at position {} was delivered {attempts} times without being acknowledged \
                 (its consumer crashed or stalled on it each time); parked without handling it again",
                event.name, event.position
            );
            tracing::error!(subscriber = %self.name, position = %event.position, attempts, "poison delivery parked");
            self.park(event, &HandlerFailure::msg(reason.clone()), attempts).await?;
            if self.config.on_failure == FailurePolicy::ParkAndStop {
                progress.stopped = Some(reason.clone());
                return Err(SubscriptionError::Stopped {
                    subscriber: self.name.clone(),
                    reason,
                });
            }
        }
        self.save(&mut progress, event.position.0).await
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
        if self.segment.as_ref().is_some_and(|s| s.previous.is_some()) {
            return Err(SubscriptionError::Resegmenting {
                subscriber: self.name.clone(),
            });
        }
        let mut progress = self.progress.lock().await;
        // Only the owner rebuilds (its saves are the ones that count).
        if !self.hold(&mut progress).await? {
            return Err(SubscriptionError::OwnedElsewhere {
                subscriber: self.name.clone(),
            });
        }
        reset().await;
        progress.stopped = None;
        progress.loaded = true;
        progress.handed.clear();
        if progress.lease.is_some() {
            return self.save(&mut progress, 0).await;
        }
        // Back to the start: a plain save (`save` only moves forward).
        self.checkpoints
            .save(&self.name, Position::START)
            .await
            .map_err(|e| self.store_error(e))?;
        progress.checkpoint = Position::START;
        Ok(())
    }

    /// Follows the log until `shutdown` fires: catch up, then wait for the
    /// head to move (or the poll interval).
    pub(crate) async fn follow(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut head = self.store.watch_head();
        // An owner wakes at least once a renewal interval, to renew its
        // lease (and membership) before it ends, even when the log is idle.
        let mut idle = self.config.poll_interval.max(Duration::from_secs(1));
        if let Some(own) = &self.ownership {
            idle = idle.min(own.renew_every);
        }
        loop {
            if *shutdown.borrow() {
                // Another instance takes over at once, not after the lease.
                self.release().await;
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
                        let changed = tokio::time::timeout(idle, h.changed());
                        if let Ok(Err(_)) = changed.await {
                            // The store dropped its watch: fall back to polling.
                            tokio::time::sleep(self.config.poll_interval).await;
                        }
                    }
                    None => tokio::time::sleep(self.config.poll_interval.min(idle)).await,
                }
            };
            tokio::select! {
                () = wait => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Whether a handler's failure says another instance applied the event
/// first (its checkpoint, saved with the read model, is already past it).
/// Whether a handler failed on a store it could not reach.
fn store_unavailable(failure: &HandlerFailure) -> bool {
    matches!(
        failure.0.downcast_ref::<StoreError>(),
        Some(StoreError::Unavailable { .. })
    )
}

fn applied_elsewhere(failure: &HandlerFailure) -> bool {
    matches!(
        failure.0.downcast_ref::<StoreError>(),
        Some(StoreError::AlreadyApplied { .. })
    )
}
