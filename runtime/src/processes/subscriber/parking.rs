//! Parking: events that keep failing (or cannot be read) become dead
//! letters of the subscriber, and can be replayed once fixed.

use super::{FailurePolicy, HandlerFailure, Progress, Subscriber, SubscriptionError};
use crate::domain::ids::{Position, Timestamp};
use crate::store::{DeadLetter, RecordedEvent};

impl Subscriber {
    /// Parks an event that cannot be read as a dead letter of its
    /// position, with what could be salvaged of it, then applies the
    /// failure policy: go on past it, or stop before it.
    pub(super) async fn park_unreadable(
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
}
