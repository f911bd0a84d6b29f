//! What a subscriber reports: its status (checkpoint, lag, dead letters,
//! lease) and its dead letters.

use std::time::Duration;

use super::{Subscriber, SubscriberStatus, SubscriptionError};
use crate::domain::ids::Timestamp;
use crate::store::{DeadLetter, StoreError};

impl Subscriber {
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
}
