//! How a subscriber runs (retries, failure policy, batches, polling) and
//! what its status reports.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::backoff::Backoff;
use crate::domain::ids::{Position, TenantId};
use crate::store::CheckpointStore;

/// What a subscriber does with an event that still fails after its retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailurePolicy {
    /// Park it in the dead-letter store and go on with the next event.
    #[default]
    ParkAndContinue,
    /// Park it and stop the subscriber before it; `resume` retries it.
    ParkAndStop,
}

/// How a subscriber runs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct SubscriberConfig {
    /// Runs of a failing handler before the event is parked, and the waits
    /// between them.
    pub retry: Backoff,
    /// What to do after the retries.
    pub on_failure: FailurePolicy,
    /// Events read per batch.
    pub batch_size: usize,
    /// How often to poll a store that cannot announce new events.
    pub poll_interval: Duration,
    /// Where this subscriber's checkpoint is kept, when not in the
    /// application's checkpoint store.
    pub(crate) checkpoints: Own<dyn CheckpointStore>,
    /// The one tenant whose events the subscriber sees (every tenant's,
    /// and those of no tenant, when `None`).
    pub tenant: Option<TenantId>,
}

/// A store a subscriber has of its own, if any (else the application's).
/// Two configurations are equal when they name the same store.
pub(crate) struct Own<T: ?Sized>(pub(crate) Option<Arc<T>>);

impl<T: ?Sized> Default for Own<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T: ?Sized> Clone for Own<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized> PartialEq for Own<T> {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl<T: ?Sized> Eq for Own<T> {}

impl<T: ?Sized> std::fmt::Debug for Own<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "its own store"
        } else {
            "the application's store"
        })
    }
}

impl Default for SubscriberConfig {
    fn default() -> Self {
        Self {
            retry: Backoff::default(),
            on_failure: FailurePolicy::default(),
            batch_size: 512,
            poll_interval: Duration::from_millis(100),
            checkpoints: Own::default(),
            tenant: None,
        }
    }
}

impl SubscriberConfig {
    /// The defaults: 5 attempts from 50 ms backoff, then park and continue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the retries: `max_attempts` runs of a failing handler, waits
    /// from `initial_backoff` doubling up to `max_backoff`, with jitter.
    pub fn retry(mut self, max_attempts: u32, initial_backoff: Duration, max_backoff: Duration) -> Self {
        self.retry = Backoff::new(max_attempts, initial_backoff, max_backoff);
        self
    }

    /// Keeps this subscriber's checkpoint in `store` instead of the
    /// application's checkpoint store: in the database a durable
    /// projection writes its model to, or beside a saga's state. (A
    /// `model = memory` projection keeps its checkpoint in memory; giving
    /// it a store fails `build()`.)
    pub fn checkpoint_store(mut self, store: impl CheckpointStore) -> Self {
        self.checkpoints = Own(Some(Arc::new(store)));
        self
    }

    /// Sets the retries from a [`Backoff`] policy.
    pub fn backoff(mut self, policy: Backoff) -> Self {
        self.retry = policy;
        self
    }

    /// Sets the failure policy.
    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.on_failure = policy;
        self
    }

    /// Sees only the events of `tenant` (a projection of one tenant's
    /// read model, a saga of one tenant).
    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
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

    /// The first setting that cannot work, with why: checked by `build()`,
    /// so a bad value fails at start, not by a subscriber that spins or
    /// never retries.
    ///
    /// # Errors
    ///
    /// The setting's name and the reason.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.batch_size == 0 {
            return Err(("batch_size", "must be at least 1".into()));
        }
        if self.retry.max_attempts == 0 {
            return Err(("retry.max_attempts", "must be at least 1 (the first run counts)".into()));
        }
        if self.retry.initial > self.retry.max {
            return Err((
                "retry",
                format!(
                    "the first wait ({:?}) is longer than the longest ({:?})",
                    self.retry.initial, self.retry.max
                ),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(("poll_interval", "must be longer than zero".into()));
        }
        Ok(())
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
    /// The instance holding its lease, for a subscriber one instance of
    /// several runs (a durable catch-up projection, a saga, a relay).
    pub owner: Option<String>,
    /// When that lease ends unless renewed.
    pub lease_expires_at: Option<crate::domain::ids::Timestamp>,
    /// Whether this instance runs it (always, for one without a lease).
    pub owned_here: bool,
    /// For a projection split into segments (by
    /// [`SubscriberHandle::status`](crate::SubscriberHandle::status)): each
    /// segment's own status. The fields above then sum them up: the least
    /// advanced checkpoint, the largest lag, every dead letter, the owner
    /// when one instance owns all, `owned_here` when it owns any.
    pub segments: Vec<SubscriberStatus>,
}

impl SubscriberStatus {
    /// The status of a split subscriber named `name`, summed up from its
    /// segments' (see [`SubscriberStatus::segments`]).
    pub(crate) fn of_segments(name: String, segments: Vec<Self>) -> Self {
        let min_checkpoint = segments.iter().map(|s| s.checkpoint).min().unwrap_or(Position::START);
        let head = segments.iter().map(|s| s.head).max().unwrap_or(Position::START);
        let owners: std::collections::BTreeSet<_> = segments.iter().map(|s| s.owner.clone()).collect();
        let one_owner = if owners.len() == 1 {
            owners.into_iter().next().flatten()
        } else {
            None
        };
        Self {
            name,
            checkpoint: min_checkpoint,
            head,
            events_behind: segments.iter().map(|s| s.events_behind).max().unwrap_or(0),
            oldest_unprocessed_age: segments.iter().filter_map(|s| s.oldest_unprocessed_age).max(),
            dead_letters: segments.iter().map(|s| s.dead_letters).sum(),
            stopped: segments.iter().find_map(|s| s.stopped.clone()),
            lease_expires_at: one_owner
                .as_ref()
                .and_then(|_| segments.iter().filter_map(|s| s.lease_expires_at).min()),
            owner: one_owner,
            owned_here: segments.iter().any(|s| s.owned_here),
            segments,
        }
    }
}
