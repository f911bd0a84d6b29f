//! The idempotency layer: a command with an id runs once; a repeated id
//! returns the recorded outcome.

use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::request::CommandRequest;
use crate::domain::command::HandledCommand;
use crate::future::BoxFuture;
use crate::pipeline::dispatcher::Dispatcher;
use crate::pipeline::error::CommandError;
use crate::pipeline::idempotency::{Identity, idempotent};
use crate::pipeline::options::Dispatched;

/// Makes dispatch idempotent by command id (the options' id, else the
/// command's `#[command_id]`): the layer of every application's core stack
/// ([`CoreService`](super::CoreService)) under the user's layers.
#[derive(Clone)]
pub struct Idempotent<S> {
    inner: S,
    dispatcher: Arc<Dispatcher>,
}

impl<S> std::fmt::Debug for Idempotent<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Idempotent")
    }
}

impl<S> Idempotent<S> {
    pub(crate) fn new(inner: S, dispatcher: Arc<Dispatcher>) -> Self {
        Self { inner, dispatcher }
    }
}

impl<C, S> Service<CommandRequest<C>> for Idempotent<S>
where
    C: HandledCommand,
    S: Service<CommandRequest<C>, Response = Dispatched<C::Output>, Error = CommandError<C::Error>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Dispatched<C::Output>;
    type Error = CommandError<C::Error>;
    type Future = BoxFuture<'static, Result<Dispatched<C::Output>, CommandError<C::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: CommandRequest<C>) -> Self::Future {
        // The service that was polled ready runs this request (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let dispatcher = Arc::clone(&self.dispatcher);
        Box::pin(async move {
            let Some(id) = request
                .context
                .options
                .command_id
                .or_else(|| request.command.command_id())
            else {
                return inner.call(request).await;
            };
            request.context.options.command_id = Some(id);
            let tenant = request.context.options.tenant.clone();
            let identity = Identity::of(&request.command, tenant.as_ref());
            request.context.fingerprint = Some(identity.fingerprint());
            let registration = dispatcher.registration::<C::Aggregate>()?;
            let stream = dispatcher.stream_keyed(registration, request.command.stream_key(), tenant.as_ref());
            idempotent(
                dispatcher.idempotency.as_ref(),
                dispatcher.repository.store.as_ref(),
                &dispatcher.settings,
                &stream,
                id,
                identity,
                || inner.call(request),
            )
            .await
        })
    }
}
