//! A handle on one subscriber.

use std::sync::Arc;

use super::catch_up_all;
use crate::domain::ids::Position;
use crate::processes::subscriber::{Subscriber, SubscriberStatus, SubscriptionError};
use crate::store::DeadLetter;

/// A handle on one subscriber (a projection or a saga): health, dead
/// letters, replay, resume. For a projection split into segments, each
/// call covers every segment.
#[derive(Clone)]
pub struct SubscriberHandle {
    pub(super) name: String,
    /// One per segment (one when it is not split).
    pub(super) subscribers: Vec<Arc<Subscriber>>,
}

impl std::fmt::Debug for SubscriberHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberHandle")
            .field("name", &self.name)
            .field("segments", &self.subscribers.len())
            .finish()
    }
}

impl SubscriberHandle {
    /// The subscriber's name (`projection:<name>` or `saga:<name>`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its checkpoint, lag and dead-letter count (summed up over its
    /// segments, each listed in [`SubscriberStatus::segments`], when it is
    /// split).
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn status(&self) -> Result<SubscriberStatus, SubscriptionError> {
        if let [one] = self.subscribers.as_slice()
            && one.name == self.name
        {
            return one.status().await;
        }
        let mut segments = Vec::with_capacity(self.subscribers.len());
        for subscriber in &self.subscribers {
            segments.push(subscriber.status().await?);
        }
        Ok(SubscriberStatus::of_segments(self.name.clone(), segments))
    }

    /// Processes everything up to the head of the log now (in the segments
    /// this instance owns, when other instances share the work).
    ///
    /// # Errors
    ///
    /// When a store fails, or the subscriber is stopped.
    pub async fn catch_up(&self) -> Result<Position, SubscriptionError> {
        catch_up_all(&self.subscribers, None).await
    }

    /// Processes events until the checkpoint reaches `position` (or the head).
    ///
    /// # Errors
    ///
    /// When a store fails, or the subscriber is stopped.
    pub async fn catch_up_to(&self, position: Position) -> Result<Position, SubscriptionError> {
        catch_up_all(&self.subscribers, Some(position)).await
    }

    /// The events it parked.
    ///
    /// # Errors
    ///
    /// When the dead-letter store fails.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, SubscriptionError> {
        let mut letters = Vec::new();
        for subscriber in &self.subscribers {
            letters.extend(subscriber.dead_letters().await?);
        }
        Ok(letters)
    }

    /// Runs the handler again on every parked event; those that succeed
    /// leave the dead-letter store. Returns how many succeeded.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn replay_dead_letters(&self) -> Result<usize, SubscriptionError> {
        let mut replayed = 0;
        for subscriber in &self.subscribers {
            replayed += subscriber.replay_dead_letters().await?;
        }
        Ok(replayed)
    }

    /// Restarts a subscriber stopped by `FailurePolicy::ParkAndStop`: the
    /// event it stopped on is tried again.
    pub async fn resume(&self) {
        for subscriber in &self.subscribers {
            subscriber.resume().await;
        }
    }
}
