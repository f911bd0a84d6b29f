//! Relays: the log or an outbox published to a transport.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::future::BoxFuture;
use crate::processes::subscriber::{ErasedHandler, HandlerFailure};
use crate::store::{EventTransport, Outbox, RecordedEvent, StoreError};

/// Publishes each event of the log to a transport (the relay's handler):
/// a page at once (one pipelined publish: a broker's acknowledgements
/// are awaited together, not one round trip per event), or one event at
/// a time when the page failed.
pub(crate) struct RelayHandler {
    transport: Arc<dyn EventTransport>,
    /// The last position of the last page the transport acknowledged.
    published: AtomicU64,
}

impl RelayHandler {
    pub(crate) fn new(transport: Arc<dyn EventTransport>) -> Self {
        Self {
            transport,
            published: AtomicU64::new(0),
        }
    }
}

impl ErasedHandler for RelayHandler {
    fn prepare<'a>(&'a self, page: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), HandlerFailure>> {
        Box::pin(async move {
            let Some(last) = page.last() else { return Ok(()) };
            self.transport.publish(page).await?;
            self.published.fetch_max(last.position.0, Ordering::AcqRel);
            Ok(())
        })
    }

    fn handle<'a>(&'a self, event: &'a RecordedEvent) -> BoxFuture<'a, Result<(), HandlerFailure>> {
        Box::pin(async move {
            // Published with its page (a rewind to the start resets nothing
            // here: republishing is harmless, and the page publishes anyway).
            if event.position.0 <= self.published.load(Ordering::Acquire) {
                return Ok(());
            }
            self.transport.publish(std::slice::from_ref(event)).await?;
            Ok(())
        })
    }

    fn replay<'a>(&'a self, event: &'a RecordedEvent) -> BoxFuture<'a, Result<(), HandlerFailure>> {
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
