//! What a subscriber's handler is: user handler results and failures, and
//! the type-erased handler the engine drives.

use std::fmt;

use crate::future::BoxFuture;
use crate::store::RecordedEvent;

/// Why an event handler failed (any error type, boxed).
#[derive(Debug)]
pub struct HandlerFailure(pub Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for HandlerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl HandlerFailure {
    /// A failure with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerFailure {
    fn from(e: E) -> Self {
        Self(Box::new(e))
    }
}

/// What an event handler may return: `()`, or a `Result<(), E>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned by an event handler",
    note = "an event handler returns nothing, or `Result<(), E>` with an error type `E` (its failures are retried, then dead-lettered)"
)]
pub trait EventHandlerResult {
    /// The result as a failure, if any.
    ///
    /// # Errors
    ///
    /// The handler's error, boxed.
    fn into_result(self) -> Result<(), HandlerFailure>;
}

impl EventHandlerResult for () {
    fn into_result(self) -> Result<(), HandlerFailure> {
        Ok(())
    }
}

impl EventHandlerResult for Result<(), HandlerFailure> {
    fn into_result(self) -> Result<(), HandlerFailure> {
        self
    }
}

impl<E: std::error::Error + Send + Sync + 'static> EventHandlerResult for Result<(), E> {
    fn into_result(self) -> Result<(), HandlerFailure> {
        self.map_err(HandlerFailure::from)
    }
}

/// The handler side of a subscriber, type-erased.
pub(crate) trait ErasedHandler: Send + Sync + 'static {
    /// Handles one event.
    fn handle<'a>(&'a self, event: &'a RecordedEvent) -> BoxFuture<'a, Result<(), HandlerFailure>>;

    /// Sees a page of the log before its events are handled one by one:
    /// a handler that does a page's work at once (a relay publishing it
    /// in one pipelined batch) does it here, and its `handle` then finds
    /// each event done. A failure here is not the events': they are then
    /// handled one by one, with the usual retries. Default: nothing.
    fn prepare<'a>(&'a self, page: &'a [RecordedEvent]) -> BoxFuture<'a, Result<(), HandlerFailure>> {
        let _ = page;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Handles `event` again, knowing it is behind the checkpoint (a
    /// replayed dead letter): a handler that tells events already applied
    /// apart by the checkpoint must apply it anyway.
    fn replay<'a>(&'a self, event: &'a RecordedEvent) -> BoxFuture<'a, Result<(), HandlerFailure>> {
        self.handle(event)
    }

    /// The handler failed on `event` after all its retries: `Ok(true)` when
    /// it dealt with that itself (a saga compensated), so the event is not
    /// parked; `Ok(false)` (the default) to park it.
    fn exhausted<'a>(
        &'a self,
        event: &'a RecordedEvent,
        failure: &'a HandlerFailure,
    ) -> BoxFuture<'a, Result<bool, HandlerFailure>> {
        let _ = (event, failure);
        Box::pin(std::future::ready(Ok(false)))
    }
}
