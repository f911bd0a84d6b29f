//! The innermost service: the command loop for one command type.

use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::idempotency::Idempotent;
use super::request::CommandRequest;
use crate::domain::command::HandledCommand;
use crate::domain::ids::{CommandId, StreamId, Timestamp};
use crate::future::BoxFuture;
use crate::pipeline::dispatcher::Dispatcher;
use crate::pipeline::error::CommandError;
use crate::pipeline::options::Dispatched;

/// The stack under the user's layers: idempotency over the command loop.
pub type CoreService<C> = Idempotent<CommandService<C>>;

/// Runs commands of type `C`: load, handle, append, re-run on conflict.
/// The command id is the request's (set by [`Idempotent`]), or a new one.
pub struct CommandService<C> {
    dispatcher: Arc<Dispatcher>,
    _command: PhantomData<fn(C)>,
}

impl<C> CommandService<C> {
    pub(crate) fn new(dispatcher: Arc<Dispatcher>) -> Self {
        Self {
            dispatcher,
            _command: PhantomData,
        }
    }
}

impl<C> Clone for CommandService<C> {
    fn clone(&self) -> Self {
        Self::new(Arc::clone(&self.dispatcher))
    }
}

impl<C> std::fmt::Debug for CommandService<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandService")
            .field("command", &std::any::type_name::<C>())
            .finish()
    }
}

impl<C: HandledCommand> Service<CommandRequest<C>> for CommandService<C> {
    type Response = Dispatched<C::Output>;
    type Error = CommandError<C::Error>;
    type Future = BoxFuture<'static, Result<Dispatched<C::Output>, CommandError<C::Error>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: CommandRequest<C>) -> Self::Future {
        let dispatcher = Arc::clone(&self.dispatcher);
        Box::pin(async move {
            let registration = dispatcher.registration::<C::Aggregate>()?;
            let CommandRequest { command, context } = request;
            let stream = StreamId::new(Arc::clone(&registration.shared_name), context.aggregate_id);
            // The idempotency layer below the user's sets the id and the
            // fingerprint of every idempotent command: those carry their
            // outcome on their events.
            let command_id = context.options.command_id.unwrap_or_else(CommandId::new);
            dispatcher
                .run(
                    registration,
                    stream,
                    command,
                    command_id,
                    Timestamp::now(),
                    context.options,
                    context.fingerprint,
                )
                .await
        })
    }
}

impl Dispatcher {
    /// The core stack for commands of type `C`.
    pub(crate) fn core_service<C: HandledCommand>(self: &Arc<Self>) -> CoreService<C> {
        Idempotent::new(CommandService::new(Arc::clone(self)), Arc::clone(self))
    }
}
