//! How a subscriber runs (retries, failure policy, batches, polling) and
//! what its status reports.

use std::time::Duration;

use crate::domain::ids::Position;

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
