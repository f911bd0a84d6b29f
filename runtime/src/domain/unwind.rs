//! Panics in user code caught at the framework's boundary, as values.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// The message of a panic payload (`panic!("...")` gives a `&str` or a
/// `String`; anything else is named as such).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-text payload".to_owned()
    }
}

/// Runs `f`, turning a panic into `Err(message)`. The caller drops what
/// `f` was changing (a half-folded state) rather than use it again.
pub(crate) fn catch_panic_sync<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(payload.as_ref()))
}

/// Runs `future`, turning a panic while it is polled into `Err(message)`.
/// The future must be `Unpin`: a boxed future, or one pinned on the stack
/// with `std::pin::pin!` (no allocation), so no pin projection is needed.
pub(crate) fn catch_panic<F: Future + Unpin>(future: F) -> CatchPanic<F> {
    CatchPanic { future: Some(future) }
}

/// The future of [`catch_panic`].
pub(crate) struct CatchPanic<F> {
    future: Option<F>,
}

impl<F: Future + Unpin> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(future) = self.future.as_mut() else {
            return Poll::Ready(Err("polled after it panicked".to_owned()));
        };
        // The future is dropped after a panic, never polled again, so a
        // state it left half-changed is not observed through it.
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *future).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => {
                self.future = None;
                Poll::Ready(Err(panic_message(payload.as_ref())))
            }
        }
    }
}
