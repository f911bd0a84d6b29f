//! Relays: the log or an outbox published to a transport.

use std::sync::Arc;

use crate::future::BoxFuture;
use crate::processes::subscriber::{ErasedHandler, HandlerFailure};
use crate::store::{EventTransport, Outbox, RecordedEvent, StoreError};

/// Publishes each event of the log to a transport (the relay's handler).
pub(crate) struct RelayHandler {
    pub(crate) transport: Arc<dyn EventTransport>,
}

impl ErasedHandler for RelayHandler {
    fn handle<'a>(&'a self, event: &'a RecordedEvent) -> BoxFuture<'a, Result<(), HandlerFailure>> {
        Box::pin(async move {
            self.transport.publish(std::slice::from_ref(event)).await?;
            Ok(())
        })
    }
}

/// Publishes everything pending in `outbox` to `transport`; returns how
/// many events were published. Marks a page published only after the
/// transport accepted it.
///
/// # Errors
///
/// The outbox's or the transport's failure; what was not marked stays pending.
pub(crate) async fn drain_outbox(outbox: &dyn Outbox, transport: &dyn EventTransport) -> Result<usize, StoreError> {
    let mut published = 0;
    loop {
        let page = outbox.pending(256).await?;
        if page.is_empty() {
            return Ok(published);
        }
        transport.publish(&page).await?;
        let positions: Vec<_> = page.iter().map(|e| e.position).collect();
        outbox.mark_published(&positions).await?;
        published += page.len();
    }
}
