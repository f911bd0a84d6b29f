//! How projections are run.

use crate::processes::subscriber::SubscriberConfig;

/// How a projection is run; see [`ApplicationBuilder::projection_with`](crate::ApplicationBuilder::projection_with).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct ProjectionConfig {
    pub(crate) inline: bool,
    pub(crate) subscriber: SubscriberConfig,
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

    /// Sets retries, failure policy, batch size and poll interval.
    pub fn subscriber(mut self, config: SubscriberConfig) -> Self {
        self.subscriber = config;
        self
    }
}
