//! How projections are run.

use std::sync::Arc;

use crate::processes::subscriber::{Own, SubscriberConfig};
use crate::store::{CheckpointStore, ReadModelTransactions};

/// How a projection is run; see [`ApplicationBuilder::projection_with`](crate::ApplicationBuilder::projection_with).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct ProjectionConfig {
    pub(crate) inline: bool,
    pub(crate) subscriber: SubscriberConfig,
    pub(crate) transactions: Own<dyn ReadModelTransactions>,
}

impl ProjectionConfig {
    /// Catch-up: a background subscriber follows the log (the default).
    pub fn catch_up() -> Self {
        Self::default()
    }

    /// Inline: `dispatch` also brings the projection up to the command's
    /// events before it returns (read-your-writes).
    pub fn inline() -> Self {
        Self {
            inline: true,
            ..Self::default()
        }
    }

    /// Sets retries, failure policy, batch size and poll interval (keeping
    /// the checkpoint store [`ProjectionConfig::transactions`] chose).
    pub fn subscriber(mut self, config: SubscriberConfig) -> Self {
        let own = self.subscriber.checkpoints.clone();
        self.subscriber = config;
        if own.0.is_some() {
            self.subscriber.checkpoints = own;
        }
        self
    }

    /// Exactly-once read model in `store`'s database: each event is handled
    /// in a transaction of `store` (the handlers take it as a `&mut`
    /// parameter after the metadata) in which the checkpoint is saved too,
    /// so the rows and the checkpoint commit together; the projection's
    /// checkpoint lives in `store` (a transactional projection is durable).
    pub fn transactions<S: ReadModelTransactions + CheckpointStore + Clone>(mut self, store: S) -> Self {
        self.transactions = Own(Some(Arc::new(store.clone())));
        self.subscriber.checkpoints = Own(Some(Arc::new(store)));
        self
    }
}
