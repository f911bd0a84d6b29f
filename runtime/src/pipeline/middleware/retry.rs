//! The retry layer: rides out an unreachable store.

use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use super::request::CommandRequest;
use crate::domain::backoff::Backoff;
use crate::future::BoxFuture;
use crate::pipeline::error::CommandError;

/// Runs a command again, waiting by its [`Backoff`] policy, when it failed
/// because the store was unreachable. Conflicts are already retried inside
/// dispatch.
#[derive(Clone, Copy, Debug)]
pub struct RetryLayer(pub Backoff);

impl RetryLayer {
    /// Up to `max_attempts` runs, waits from `initial` doubling up to 5 s,
    /// with jitter.
    #[must_use]
    pub const fn new(max_attempts: u32, initial: Duration) -> Self {
        Self(Backoff::new(max_attempts, initial, Duration::from_secs(5)))
    }
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
            let mut waits = policy.0.delays();
            let mut attempt = 1;
            loop {
                let result = inner.call(request.clone()).await;
                let wait = match &result {
                    Err(e) if e.is_unavailable() => waits.next(),
                    _ => None,
                };
                match (result, wait) {
                    (Err(_), Some(wait)) => {
                        tracing::debug!(
                            command = request.context.command,
                            attempt,
                            "store unavailable; retrying"
                        );
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                    }
                    (result, _) => return result,
                }
            }
        })
    }
}
