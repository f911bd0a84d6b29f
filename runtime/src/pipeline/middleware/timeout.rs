//! The timeout layer.

use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::request::CommandRequest;
use crate::future::BoxFuture;
use crate::pipeline::error::CommandError;

/// Fails a command that takes longer than the limit with
/// [`CommandError::Timeout`]. Events already committed stay committed.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer(pub Duration);

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout { inner, limit: self.0 }
    }
}

/// The service of [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    limit: Duration,
}

impl<C, R, E, S> Service<CommandRequest<C>> for Timeout<S>
where
    S: Service<CommandRequest<C>, Response = R, Error = CommandError<E>>,
    S::Future: Send + 'static,
{
    type Response = R;
    type Error = CommandError<E>;
    type Future = BoxFuture<'static, Result<R, CommandError<E>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: CommandRequest<C>) -> Self::Future {
        let limit = self.limit;
        let future = self.inner.call(request);
        Box::pin(async move {
            match tokio::time::timeout(limit, future).await {
                Ok(result) => result,
                Err(_) => Err(CommandError::Timeout(limit)),
            }
        })
    }
}
