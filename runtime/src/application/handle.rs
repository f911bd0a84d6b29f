//! A handle on one subscriber.

use std::sync::Arc;

use crate::domain::ids::Position;
use crate::processes::subscriber::{Subscriber, SubscriberStatus, SubscriptionError};
use crate::store::DeadLetter;

/// A handle on one subscriber (a projection or a saga): health, dead
/// letters, replay, resume.
#[derive(Clone)]
pub struct SubscriberHandle {
    pub(super) subscriber: Arc<Subscriber>,
}

impl std::fmt::Debug for SubscriberHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberHandle")
            .field("name", &self.subscriber.name)
            .finish()
    }
}

impl SubscriberHandle {
    /// The subscriber's name (`projection:<name>` or `saga:<name>`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.subscriber.name
    }

    /// Its checkpoint, lag and dead-letter count.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn status(&self) -> Result<SubscriberStatus, SubscriptionError> {
        self.subscriber.status().await
    }

    /// Processes everything up to the head of the log now.
    ///
    /// # Errors
    ///
    /// When a store fails, or the subscriber is stopped.
    pub async fn catch_up(&self) -> Result<Position, SubscriptionError> {
        self.subscriber.catch_up(None).await
    }

    /// Processes events until the checkpoint reaches `position` (or the head).
    ///
    /// # Errors
    ///
    /// When a store fails, or the subscriber is stopped.
    pub async fn catch_up_to(&self, position: Position) -> Result<Position, SubscriptionError> {
        self.subscriber.catch_up(Some(position)).await
    }

    /// The events it parked.
    ///
    /// # Errors
    ///
    /// When the dead-letter store fails.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, SubscriptionError> {
        self.subscriber.dead_letters().await
    }

    /// Runs the handler again on every parked event; those that succeed
    /// leave the dead-letter store. Returns how many succeeded.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn replay_dead_letters(&self) -> Result<usize, SubscriptionError> {
        self.subscriber.replay_dead_letters().await
    }

    /// Restarts a subscriber stopped by `FailurePolicy::ParkAndStop`: the
    /// event it stopped on is tried again.
    pub async fn resume(&self) {
        self.subscriber.resume().await;
    }
}
