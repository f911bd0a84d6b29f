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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::ids::{Position, Timestamp};
use crate::domain::unwind::catch_panic;
mod config;
mod error;
mod handler;
mod segment;

pub(crate) use self::config::Own;
pub use self::config::{FailurePolicy, SubscriberConfig, SubscriberStatus};
pub use self::error::SubscriptionError;
pub(crate) use self::handler::ErasedHandler;
pub use self::handler::{EventHandlerResult, HandlerFailure};
pub(crate) use self::segment::{Balance, MAX_SEGMENTS, Segment, segment_name};
use crate::store::{
    CheckpointStore, DeadLetter, DeadLetterStore, EventFilter, EventStore, Lease, LeaseClaim, RecordedEvent, StoreError,
};

/// How a subscriber shares the store with other instances of the
/// application: it runs only while it holds its lease.
#[derive(Clone, Debug)]
pub(crate) struct Ownership {
    /// This instance's id.
    pub(crate) instance: Arc<str>,
    /// How long a claim holds.
    pub(crate) lease: Duration,
    /// How often the owner renews.
    pub(crate) renew_every: Duration,
}

impl Ownership {
    /// Instance `instance` with the default leases: 10 s, renewed every 3 s.
    pub(crate) fn of(instance: Arc<str>) -> Self {
        Self {
            instance,
            lease: Duration::from_secs(10),
            renew_every: Duration::from_secs(3),
        }
    }
}

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

    /// Runs only while this instance holds the subscriber's lease; `token`
    /// is the cell the handler reads the lease's token from.
    pub(crate) fn owned(mut self, ownership: Ownership, token: Arc<AtomicU64>) -> Self {
        self.ownership = Some(ownership);
        self.token = token;
        self
    }

    /// Whether this instance may process now: without ownership always;
    /// with it, when it holds the lease (claiming or renewing it when due).
    /// A lease newly held reloads the checkpoint the previous owner left.
    async fn hold(&self, progress: &mut Progress) -> Result<bool, SubscriptionError> {
        let Some(own) = &self.ownership else {
            return Ok(true);
        };
        if let Some((_, renewed)) = &progress.lease
            && renewed.elapsed() < own.renew_every
        {
            return Ok(true);
        }
        if let Some(segment) = &self.segment {
            let share = segment
                .balance
                .share(self.checkpoints.as_ref(), own)
                .await
                .map_err(|e| self.store_error(e))?;
            if progress.lease.is_some() && segment.balance.release_if_over(segment.index, share) {
                tracing::info!(subscriber = %self.name, share, "more segments held than this instance's share; handing one over");
                self.release_held(progress).await;
                return Ok(false);
            }
            if progress.lease.is_none() && !segment.balance.has_room(share) {
                return Ok(false);
            }
        }
        let claim = self
            .checkpoints
            .claim_lease(&self.name, &own.instance, Timestamp::now(), own.lease)
            .await
            .map_err(|e| self.store_error(e))?;
        match claim {
            LeaseClaim::Held(lease) => {
                let held_before = progress.lease.as_ref().map(|(l, _)| l.token);
                if held_before != Some(lease.token) {
                    tracing::info_span!("subscriber_takeover", subscriber = %self.name).in_scope(|| {
                        tracing::info!(
                            instance = %own.instance,
                            token = lease.token,
                            "this instance owns the subscriber now"
                        );
                    });
                    metrics::counter!(
                        "interlock_subscriber_takeovers_total",
                        "subscriber" => self.name.clone(),
                        "instance" => own.instance.to_string()
                    )
                    .increment(1);
                    self.load(progress).await?;
                    if let Some(segment) = &self.segment {
                        segment.balance.claimed(segment.index);
                    }
                }
                self.token.store(lease.token, Ordering::Release);
                progress.lease = Some((lease, std::time::Instant::now()));
                Ok(true)
            }
            LeaseClaim::Taken(lease) => {
                if progress.lease.is_some() {
                    tracing::info!(subscriber = %self.name, owner = %lease.owner, "lost the subscriber to another instance");
                }
                self.step_down(progress);
                Ok(false)
            }
        }
    }

    /// Whether this instance runs the subscriber now (always, without
    /// ownership; else when it holds the lease, claiming or renewing it).
    pub(crate) async fn owns(&self) -> Result<bool, SubscriptionError> {
        let mut progress = self.progress.lock().await;
        self.hold(&mut progress).await
    }

    /// No longer the owner: nothing is processed until a claim holds again
    /// (which reloads the checkpoint).
    fn step_down(&self, progress: &mut Progress) {
        if progress.lease.is_some()
            && let Some(own) = &self.ownership
        {
            metrics::counter!(
                "interlock_subscriber_step_downs_total",
                "subscriber" => self.name.clone(),
                "instance" => own.instance.to_string()
            )
            .increment(1);
        }
        progress.lease = None;
        progress.loaded = false;
        self.token.store(0, Ordering::Release);
        if let Some(segment) = &self.segment {
            segment.balance.dropped(segment.index);
        }
    }

    /// Gives the lease up (at shutdown), so another instance takes over at
    /// once instead of after it expires.
    pub(crate) async fn release(&self) {
        let mut progress = self.progress.lock().await;
        self.release_held(&mut progress).await;
        if let (Some(segment), Some(own)) = (&self.segment, &self.ownership) {
            segment.balance.leave(self.checkpoints.as_ref(), own).await;
        }
    }

    /// Gives up the lease held, if any, and steps down.
    async fn release_held(&self, progress: &mut Progress) {
        if let Some((lease, _)) = progress.lease.take() {
            self.step_down(progress);
            if let Err(e) = self.checkpoints.release_lease(&self.name, lease.token).await {
                tracing::warn!(subscriber = %self.name, error = %e, "cannot release the lease; it expires by itself");
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
            for event in &batch {
                if !self.takes(&progress, event) {
                    progress.checkpoint = event.position;
                    continue;
                }
                let handled = self.handle_with_retry(event).await;
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

    /// Whether a handler failed because the lease it saved under is lost
    /// (a transactional read model's fenced checkpoint): the subscriber
    /// steps down instead of retrying or parking the event.
    fn lost_lease(&self, progress: &mut Progress, failure: &HandlerFailure) -> bool {
        let lost = failed_on_lost_lease(failure);
        if lost {
            tracing::info!(subscriber = %self.name, "the lease was taken over; stepping down");
            self.step_down(progress);
        }
        lost
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
                // Retrying cannot bring the lease back, nor unapply.
                Err(failure) if failed_on_lost_lease(&failure) || applied_elsewhere(&failure) => {
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
            match self.handler.replay(&letter.event).await {
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

    pub(crate) async fn status(&self) -> Result<SubscriberStatus, SubscriptionError> {
        let (checkpoint, stopped) = {
            let progress = self.progress.lock().await;
            let checkpoint = if progress.loaded {
                progress.checkpoint
            } else {
                self.stored().await?.0
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
        let lease = match &self.ownership {
            None => None,
            Some(_) => self
                .checkpoints
                .leases()
                .await
                .map_err(|e| self.store_error(e))?
                .into_iter()
                .find(|l| l.subscriber == self.name),
        };
        Ok(SubscriberStatus {
            owner: lease.as_ref().map(|l| l.owner.clone()),
            lease_expires_at: lease.as_ref().map(|l| l.expires_at),
            owned_here: match (&self.ownership, &lease) {
                (None, _) => true,
                (Some(own), Some(lease)) => *lease.owner == *own.instance,
                (Some(_), None) => false,
            },
            name: self.name.clone(),
            checkpoint,
            head,
            events_behind: head.0.saturating_sub(checkpoint.0),
            oldest_unprocessed_age,
            dead_letters,
            stopped,
            segments: Vec::new(),
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
fn applied_elsewhere(failure: &HandlerFailure) -> bool {
    matches!(
        failure.0.downcast_ref::<StoreError>(),
        Some(StoreError::AlreadyApplied { .. })
    )
}

/// Whether a handler's failure is a checkpoint save refused by the lease.
fn failed_on_lost_lease(failure: &HandlerFailure) -> bool {
    matches!(
        failure.0.downcast_ref::<StoreError>(),
        Some(StoreError::LeaseLost { .. })
    )
}
