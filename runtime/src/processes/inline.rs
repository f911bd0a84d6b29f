//! Inline projections: brought up to a command's events before `dispatch`
//! returns (read-your-writes).

use std::sync::Arc;

use crate::domain::ids::Position;
use crate::future::BoxFuture;
use crate::pipeline::dispatcher::AfterCommit;
use crate::processes::subscriber::Subscriber;

/// The inline subscribers, caught up after each commit.
pub(crate) struct InlineProjections(pub(crate) Vec<Arc<Subscriber>>);

impl AfterCommit for InlineProjections {
    /// The events are committed whatever happens here: a failure is logged,
    /// and the event dead-lettered by the subscriber's policy.
    fn committed(&self, position: Position) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for subscriber in &self.0 {
                if let Err(e) = subscriber.catch_up(Some(position)).await {
                    tracing::warn!(subscriber = %subscriber.name, error = %e, "inline projection not updated");
                }
            }
        })
    }
}
