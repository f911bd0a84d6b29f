//! The retry layer: rides out an unreachable store.

use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::request::CommandRequest;
use crate::future::BoxFuture;
use crate::pipeline::error::CommandError;

/// Runs a command again, with backoff, when it failed because the store was
/// unreachable. Conflicts are already retried inside dispatch.
#[derive(Clone, Copy, Debug)]
pub struct RetryLayer {
    /// Runs in all (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failure, doubled after each.
    pub backoff: Duration,
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry { inner, policy: *self }
    }
}

/// The service of [`RetryLayer`].
#[derive(Clone, Debug)]
pub struct Retry<S> {
    inner: S,
    policy: RetryLayer,
}

impl<C, R, E, S> Service<CommandRequest<C>> for Retry<S>
where
    C: Clone + Send + 'static,
    S: Service<CommandRequest<C>, Response = R, Error = CommandError<E>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    R: Send + 'static,
    E: Send + 'static,
{
    type Response = R;
    type Error = CommandError<E>;
    type Future = BoxFuture<'static, Result<R, CommandError<E>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: CommandRequest<C>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let policy = self.policy;
        Box::pin(async move {
            let mut wait = policy.backoff;
            let mut attempt = 1;
            loop {
                let result = inner.call(request.clone()).await;
                let retry = matches!(&result, Err(e) if e.is_unavailable()) && attempt < policy.max_attempts;
                match result {
                    Err(_) if retry => {
                        tracing::debug!(
                            command = request.context.command,
                            attempt,
                            "store unavailable; retrying"
                        );
                        tokio::time::sleep(wait).await;
                        wait = wait.saturating_mul(2);
                        attempt += 1;
                        std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                    }
                    result => return result,
                }
            }
        })
    }
}
