//! Middleware around dispatch, shaped like tower layers: each layer gets
//! the command's context and the rest of the stack as `next`, and may read
//! or change metadata, reject, time out, retry, or trace.
//!
//! Layers see every command type-erased (its name, aggregate, id, options);
//! typed interceptors (`ApplicationBuilder::intercept::<C>`) see one command
//! type, mutable, before the layers run.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::application::DispatchOptions;
use crate::ids::{CommandId, Version};
use crate::store::BoxFuture;

/// A command on its way through the middleware stack.
#[derive(Clone, Debug)]
pub struct CommandContext {
    /// The command's name (`Command::NAME`).
    pub command: &'static str,
    /// The aggregate type it targets.
    pub aggregate: &'static str,
    /// The aggregate id it targets.
    pub aggregate_id: String,
    /// Ids and headers; layers may change them before calling `next`.
    pub options: DispatchOptions,
}

/// How a dispatch ended, as layers see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The events were committed (or the recorded outcome was returned).
    Committed {
        /// The stream's version after the command.
        version: Version,
        /// The command id.
        command_id: CommandId,
        /// Whether it was a replayed outcome.
        replayed: bool,
    },
    /// The handler rejected the command.
    Rejected(String),
    /// An infrastructure failure; `retryable` when the store was unreachable.
    Failed {
        /// The error text.
        error: String,
        /// Whether trying again may succeed.
        retryable: bool,
    },
}

impl Outcome {
    /// A short label for traces: `committed`, `rejected` or `failed`.
    #[must_use]
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Committed { .. } => "committed",
            Outcome::Rejected(_) => "rejected",
            Outcome::Failed { .. } => "failed",
        }
    }
}

/// Why a layer stopped a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// A layer refused the command.
    #[error("rejected by {layer}: {reason}")]
    Rejected {
        /// The layer.
        layer: String,
        /// Why.
        reason: String,
    },
    /// The command did not complete in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// The rest of the stack, to be called by a layer.
#[derive(Clone, Copy)]
pub struct Next<'a> {
    layers: &'a [Arc<dyn Layer>],
    core: &'a (dyn Core + 'a),
}

impl fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next").field("layers", &self.layers.len()).finish()
    }
}

impl<'a> Next<'a> {
    pub(crate) fn new(layers: &'a [Arc<dyn Layer>], core: &'a (dyn Core + 'a)) -> Self {
        Self { layers, core }
    }

    /// Runs the rest of the stack (the next layer, or the command itself).
    /// May be called more than once (a retry layer does).
    pub fn run<'b>(self, ctx: &'b mut CommandContext) -> BoxFuture<'b, Result<Outcome, LayerError>>
    where
        'a: 'b,
    {
        match self.layers.split_first() {
            Some((layer, rest)) => layer.call(
                ctx,
                Next {
                    layers: rest,
                    core: self.core,
                },
            ),
            None => {
                let core = self.core;
                Box::pin(async move { Ok(core.call(ctx).await) })
            }
        }
    }
}

/// The innermost service: runs the typed command pipeline.
pub(crate) trait Core: Send + Sync {
    fn call<'a>(&'a self, ctx: &'a CommandContext) -> BoxFuture<'a, Outcome>;
}

/// A middleware layer around dispatch.
///
/// # Examples
///
/// ```
/// use interlock::middleware::{CommandContext, Layer, LayerError, Next, Outcome};
/// use interlock::store::BoxFuture;
///
/// /// Refuses commands without a `user` header.
/// struct RequireUser;
///
/// impl Layer for RequireUser {
///     fn call<'a>(&'a self, ctx: &'a mut CommandContext, next: Next<'a>) -> BoxFuture<'a, Result<Outcome, LayerError>> {
///         Box::pin(async move {
///             if !ctx.options.headers.contains_key("user") {
///                 return Err(LayerError::Rejected { layer: "require-user".into(), reason: "no user".into() });
///             }
///             next.run(ctx).await
///         })
///     }
/// }
/// ```
pub trait Layer: Send + Sync + 'static {
    /// Handles one command; call `next.run(ctx)` to go on.
    fn call<'a>(&'a self, ctx: &'a mut CommandContext, next: Next<'a>) -> BoxFuture<'a, Result<Outcome, LayerError>>;
}

/// Traces every command with the `tracing` crate: a `dispatch` span with the
/// command name, aggregate, id, outcome and latency.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingLayer;

impl Layer for TracingLayer {
    fn call<'a>(&'a self, ctx: &'a mut CommandContext, next: Next<'a>) -> BoxFuture<'a, Result<Outcome, LayerError>> {
        use tracing::Instrument;
        let span = tracing::info_span!(
            "dispatch",
            command = ctx.command,
            aggregate = ctx.aggregate,
            id = %ctx.aggregate_id,
            outcome = tracing::field::Empty,
            latency_us = tracing::field::Empty,
        );
        let record = span.clone();
        Box::pin(
            async move {
                let started = Instant::now();
                let result = next.run(ctx).await;
                let outcome = match &result {
                    Ok(o) => o.label(),
                    Err(LayerError::Rejected { .. }) => "refused",
                    Err(LayerError::Timeout(_)) => "timeout",
                };
                record.record("outcome", outcome);
                record.record("latency_us", started.elapsed().as_micros() as u64);
                tracing::info!(outcome, "command dispatched");
                result
            }
            .instrument(span),
        )
    }
}

/// Fails a command that takes longer than the limit with
/// `CommandError::Timeout`. Events already committed stay committed.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer(pub Duration);

impl Layer for TimeoutLayer {
    fn call<'a>(&'a self, ctx: &'a mut CommandContext, next: Next<'a>) -> BoxFuture<'a, Result<Outcome, LayerError>> {
        let limit = self.0;
        Box::pin(async move {
            match tokio::time::timeout(limit, next.run(ctx)).await {
                Ok(result) => result,
                Err(_) => Err(LayerError::Timeout(limit)),
            }
        })
    }
}

/// Runs a command again, with backoff, when it failed because the store was
/// unreachable. Conflicts are already retried inside dispatch.
#[derive(Clone, Copy, Debug)]
pub struct RetryLayer {
    /// Runs in all (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failure, doubled after each.
    pub backoff: Duration,
}

impl Layer for RetryLayer {
    fn call<'a>(&'a self, ctx: &'a mut CommandContext, next: Next<'a>) -> BoxFuture<'a, Result<Outcome, LayerError>> {
        Box::pin(async move {
            let mut wait = self.backoff;
            let mut attempt = 1;
            loop {
                let result = next.run(ctx).await;
                match &result {
                    Ok(Outcome::Failed { retryable: true, .. }) if attempt < self.max_attempts => {
                        tracing::debug!(command = ctx.command, attempt, "store unavailable; retrying");
                        tokio::time::sleep(wait).await;
                        wait = wait.saturating_mul(2);
                        attempt += 1;
                    }
                    _ => return result,
                }
            }
        })
    }
}

/// Why a query was refused by an interceptor.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

impl Rejection {
    /// A rejection with this reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}
