//! The command bus: the narrow way processes (sagas) send commands, without
//! knowing the application. The pipeline's dispatcher implements it; the
//! recording bus of `SagaScenario` implements it too.

use std::any::Any;

use super::options::DispatchOptions;
use crate::domain::services::Services;
use crate::future::BoxFuture;

/// A command with its type erased, as it crosses the bus.
pub(crate) type AnyCommand = Box<dyn Any + Send>;
/// The typed `Result<C::Output, CommandError<C::Error>>` of a command, erased.
pub(crate) type AnyOutcome = Box<dyn Any + Send>;

/// Runs an erased command of one known type on a live dispatcher; made by
/// the typed caller (`SagaContext::dispatch::<C>`), so the bus needs no
/// registry of command types.
pub(crate) type LiveDispatch =
    for<'a> fn(&'a super::dispatcher::Dispatcher, AnyCommand, DispatchOptions) -> BoxFuture<'a, AnyOutcome>;

/// Where a saga's commands go.
pub(crate) trait CommandBus: Send + Sync + 'static {
    /// Sends `command` (of the type `live` was made for) and answers its
    /// typed outcome, erased.
    fn send(
        &self,
        command: AnyCommand,
        name: &'static str,
        options: DispatchOptions,
        live: LiveDispatch,
    ) -> BoxFuture<'_, AnyOutcome>;

    /// The services handlers may ask for.
    fn services(&self) -> &Services;
}

impl CommandBus for super::dispatcher::Dispatcher {
    fn send(
        &self,
        command: AnyCommand,
        _name: &'static str,
        options: DispatchOptions,
        live: LiveDispatch,
    ) -> BoxFuture<'_, AnyOutcome> {
        live(self, command, options)
    }

    fn services(&self) -> &Services {
        &self.services
    }
}

/// What a bus answers when it has no outcome for a command (a scenario
/// without a responder for it); the typed caller decides the default.
pub(crate) struct NoResponse;
