//! The tracing layer: a `dispatch` span per command.

use std::task::{Context, Poll};
use std::time::Instant;

use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;

use super::request::CommandRequest;
use crate::future::BoxFuture;
use crate::pipeline::error::CommandError;
use crate::pipeline::options::Dispatched;

/// Traces every command with the `tracing` crate: a `dispatch` span with
/// the command name, aggregate, id, outcome and latency.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingLayer;

impl<S> Layer<S> for TracingLayer {
    type Service = Traced<S>;
    fn layer(&self, inner: S) -> Traced<S> {
        Traced { inner }
    }
}

/// The service of [`TracingLayer`].
#[derive(Clone, Debug)]
pub struct Traced<S> {
    inner: S,
}

impl<C, O, E, S> Service<CommandRequest<C>> for Traced<S>
where
    S: Service<CommandRequest<C>, Response = Dispatched<O>, Error = CommandError<E>>,
    S::Future: Send + 'static,
{
    type Response = Dispatched<O>;
    type Error = CommandError<E>;
    type Future = BoxFuture<'static, Result<Dispatched<O>, CommandError<E>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: CommandRequest<C>) -> Self::Future {
        let ctx = &request.context;
        let span = tracing::info_span!(
            "dispatch",
            command = ctx.command,
            aggregate = ctx.aggregate,
            id = %ctx.aggregate_id,
            outcome = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        let record = span.clone();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let result = future.await;
                let outcome = match &result {
                    Ok(_) => "committed",
                    Err(CommandError::Domain(_)) => "rejected",
                    Err(CommandError::Rejected { .. }) => "refused",
                    Err(CommandError::Timeout(_)) => "timeout",
                    Err(_) => "failed",
                };
                record.record("outcome", outcome);
                record.record(
                    "latency_us",
                    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                );
                tracing::info!(outcome, "command dispatched");
                result
            }
            .instrument(span),
        )
    }
}
