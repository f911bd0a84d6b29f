//! Sagas: long-running processes that react to events, keep state per key,
//! dispatch commands (through the command bus) and schedule deadlines.

pub(crate) mod compensation;
mod context;
pub(crate) mod deadlines;
pub(crate) mod runner;

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) use self::context::{Cause, instance_key, split_instance_key};
pub use self::context::{DeadlineOf, SagaContext};
use crate::domain::event::EventSet;
use crate::processes::subscriber::HandlerFailure;

/// How a step relates to the saga's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Creates the saga's state when none exists for the key.
    Start,
    /// Runs only when the saga's state exists.
    Step,
    /// Runs only when the state exists, then deletes it.
    End,
}

/// Which saga instance an event goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SagaRoute {
    /// The instance key (the `key = field` of the step).
    pub key: String,
    /// The step's kind.
    pub kind: StepKind,
}

/// What a saga step returns.
pub type SagaResult = Result<(), HandlerFailure>;

/// A process manager: state per key, steps per event, deadlines.
///
/// Implemented by `#[saga]` on an impl block; never by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a saga",
    label = "not a saga",
    note = "add `#[saga]` to an impl block of `{Self}` with `#[saga_step(start | end, key = field)]` methods"
)]
pub trait Saga: Default + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The saga's stable name.
    const NAME: &'static str;
    /// The events its steps take (a generated enum).
    type Event: EventSet;
    /// The deadline payloads its `#[saga_deadline]` methods take.
    type Deadline: EventSet;

    /// The instance and step kind of an event.
    #[doc(hidden)]
    fn route(event: &Self::Event) -> SagaRoute;

    /// Runs the step for `event`.
    #[doc(hidden)]
    fn step<'a>(
        &'a mut self,
        event: Self::Event,
        ctx: &'a mut SagaContext<Self>,
    ) -> impl Future<Output = SagaResult> + Send + 'a;

    /// Whether the saga has a `#[saga_compensation]` method.
    #[doc(hidden)]
    const COMPENSATES: bool;

    /// Runs the compensation of a failed instance (nothing without a
    /// `#[saga_compensation]` method).
    #[doc(hidden)]
    fn compensate<'a>(
        &'a mut self,
        failure: &'a crate::store::SagaFailure,
        ctx: &'a mut SagaContext<Self>,
    ) -> impl Future<Output = SagaResult> + Send + 'a;

    /// Runs the deadline handler for `deadline`; returns whether it ends the saga.
    #[doc(hidden)]
    fn deadline<'a>(
        &'a mut self,
        deadline: Self::Deadline,
        ctx: &'a mut SagaContext<Self>,
    ) -> impl Future<Output = Result<bool, HandlerFailure>> + Send + 'a;
}
