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
    /// Into how many segments it is split (`None`: not split).
    pub(crate) segments: Option<u32>,
    /// The count of segments it takes over from.
    pub(crate) resegment_from: Option<u32>,
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

    /// Splits the projection into `count` segments by a hash of the stream
    /// id: each segment has its own checkpoint and lease, so the instances
    /// of an application (see [`ApplicationBuilder::instance_id`](crate::ApplicationBuilder::instance_id))
    /// share its work, each handling the events of its segments' streams in
    /// order. For a durable catch-up projection (1 to 1024 segments).
    ///
    /// Changing the count later: stop every instance running the old
    /// count, then start the new count with
    /// [`ProjectionConfig::resegment_from`] set to the old one.
    pub fn segments(mut self, count: u32) -> Self {
        self.segments = Some(count);
        self
    }

    /// Takes over from the projection's earlier split into `previous`
    /// segments (1: it was not split): each new segment starts from the
    /// old checkpoints and skips the events the old segments had handled,
    /// so nothing is applied twice or missed. Every instance running the
    /// old count must be stopped first. Remove the setting once the new
    /// segments have passed the old checkpoints (a rebuild refuses while
    /// it is set).
    pub fn resegment_from(mut self, previous: u32) -> Self {
        self.resegment_from = Some(previous);
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
