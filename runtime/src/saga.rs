//! Sagas: long-running processes that react to events, keep state per key,
//! dispatch commands and schedule deadlines.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ulid::Ulid;

use crate::application::{Application, DispatchOptions};
use crate::command::HandledCommand;
use crate::error::CommandError;
use crate::event::{Event, EventSet};
use crate::ids::{CausationId, CommandId, CorrelationId, Timestamp};
use crate::store::ScheduledDeadline;

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

/// Why a saga step failed. Steps return `SagaResult`; `?` works on command
/// errors and any other error type.
#[derive(Debug)]
pub struct SagaError(pub Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for SagaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for SagaError {
    fn from(e: E) -> Self {
        Self(Box::new(e))
    }
}

impl SagaError {
    /// A failure with this message.
    pub fn msg(message: impl Into<String>) -> Self {
        Self(message.into().into())
    }
}

/// What a saga step returns.
pub type SagaResult = Result<(), SagaError>;

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
    fn route(event: &Self::Event) -> SagaRoute;

    /// Runs the step for `event`.
    fn step<'a>(
        &'a mut self,
        event: Self::Event,
        ctx: &'a mut SagaContext,
    ) -> impl Future<Output = SagaResult> + Send + 'a;

    /// Runs the deadline handler for `deadline`; returns whether it ends the saga.
    fn deadline<'a>(
        &'a mut self,
        deadline: Self::Deadline,
        ctx: &'a mut SagaContext,
    ) -> impl Future<Output = Result<bool, SagaError>> + Send + 'a;
}

/// What caused the step now running.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cause {
    pub(crate) id: Ulid,
    pub(crate) causation: CausationId,
    pub(crate) correlation: Option<CorrelationId>,
}

type Responder = std::sync::Arc<dyn Fn(&dyn Any) -> Option<Box<dyn Any + Send>> + Send + Sync>;

enum Mode {
    Live(Application),
    Recording {
        dispatched: Vec<(&'static str, Box<dyn Any + Send>)>,
        responders: std::sync::Arc<HashMap<TypeId, Responder>>,
        services: std::sync::Arc<crate::services::Services>,
    },
}

/// What a saga step can do besides changing its state: dispatch commands,
/// schedule deadlines, end the saga.
pub struct SagaContext {
    mode: Mode,
    saga: &'static str,
    key: String,
    cause: Cause,
    dispatch_count: u32,
    schedule_count: u32,
    pub(crate) scheduled: Vec<ScheduledDeadline>,
    pub(crate) cancelled: Vec<Ulid>,
    pub(crate) completed: bool,
    pub(crate) schedule_error: Option<SagaError>,
}

impl fmt::Debug for SagaContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaContext")
            .field("saga", &self.saga)
            .field("key", &self.key)
            .field("scheduled", &self.scheduled.len())
            .field("completed", &self.completed)
            .finish_non_exhaustive()
    }
}

impl SagaContext {
    pub(crate) fn live(app: Application, saga: &'static str, key: String, cause: Cause) -> Self {
        Self::with_mode(Mode::Live(app), saga, key, cause)
    }

    fn with_mode(mode: Mode, saga: &'static str, key: String, cause: Cause) -> Self {
        Self {
            mode,
            saga,
            key,
            cause,
            dispatch_count: 0,
            schedule_count: 0,
            scheduled: Vec::new(),
            cancelled: Vec::new(),
            completed: false,
            schedule_error: None,
        }
    }

    /// The key of the saga instance.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The correlation id flowing through this saga step.
    #[must_use]
    pub fn correlation_id(&self) -> Option<CorrelationId> {
        self.cause.correlation
    }

    /// A service registered on the application (or the scenario), if any.
    #[must_use]
    pub fn service<T: Any>(&self) -> Option<&T> {
        match &self.mode {
            Mode::Live(app) => app.services().get::<T>().ok(),
            Mode::Recording { services, .. } => services.get::<T>().ok(),
        }
    }

    /// Dispatches a command. Its id is derived from the saga, the key, the
    /// event (or deadline) being handled and the dispatch's index in the
    /// step, so a step that runs again for the same event dispatches the
    /// same ids and nothing twice. Correlation flows on; causation is the
    /// triggering event.
    ///
    /// # Errors
    ///
    /// The command's [`CommandError`].
    pub async fn dispatch<C: HandledCommand>(&mut self, command: C) -> Result<C::Output, CommandError<C::Error>> {
        self.dispatch_count += 1;
        let command_id = CommandId::derived(&[
            self.saga.as_bytes(),
            self.key.as_bytes(),
            &self.cause.id.to_bytes(),
            &self.dispatch_count.to_le_bytes(),
        ]);
        match &mut self.mode {
            Mode::Live(app) => {
                let mut options = DispatchOptions::new()
                    .command_id(command_id)
                    .causation_id(self.cause.causation);
                if let Some(c) = self.cause.correlation {
                    options = options.correlation_id(c);
                }
                app.dispatch_with(command, options).await.map(|d| d.output)
            }
            Mode::Recording {
                dispatched, responders, ..
            } => {
                let response = responders
                    .get(&TypeId::of::<C>())
                    .and_then(|respond| respond(&command))
                    .or_else(|| {
                        // Commands whose output is `()` succeed by default.
                        let unit: Box<dyn Any + Send> = Box::new(Ok::<(), CommandError<C::Error>>(()));
                        unit.downcast::<Result<C::Output, CommandError<C::Error>>>()
                            .ok()
                            .map(|b| b as Box<dyn Any + Send>)
                    });
                dispatched.push((std::any::type_name::<C>(), Box::new(command)));
                match response.and_then(|r| r.downcast::<Result<C::Output, CommandError<C::Error>>>().ok()) {
                    Some(result) => *result,
                    None => Err(CommandError::NotRegistered {
                        aggregate: "<scenario>",
                        type_name: "no response registered: add `.respond::<Command>(..)` to the SagaScenario",
                    }),
                }
            }
        }
    }

    /// Schedules `deadline` to fire at `due`: the saga's `#[saga_deadline]`
    /// method for its type runs then, even after a restart. Returns its id.
    pub fn schedule<D: Event>(&mut self, due: Timestamp, deadline: D) -> Ulid {
        self.schedule_count += 1;
        // Derived like command ids: a step re-run for the same cause
        // schedules the same deadline, not a second one.
        let id = CommandId::derived(&[
            self.saga.as_bytes(),
            self.key.as_bytes(),
            &self.cause.id.to_bytes(),
            &self.schedule_count.to_le_bytes(),
            b"deadline",
        ])
        .0;
        match deadline.encode_payload() {
            Ok(payload) => self.scheduled.push(ScheduledDeadline {
                id,
                saga: self.saga.to_owned(),
                key: self.key.clone(),
                due,
                name: D::NAME.to_owned(),
                schema_version: D::VERSION,
                payload: Bytes::from(payload),
                correlation_id: self.cause.correlation,
            }),
            Err(e) => self.schedule_error = Some(e.into()),
        }
        id
    }

    /// Schedules `deadline` to fire after `delay`.
    pub fn schedule_after<D: Event>(&mut self, delay: Duration, deadline: D) -> Ulid {
        let due = Timestamp(
            Timestamp::now()
                .0
                .saturating_add(i64::try_from(delay.as_micros()).unwrap_or(i64::MAX)),
        );
        self.schedule(due, deadline)
    }

    /// Cancels a deadline scheduled earlier.
    pub fn cancel(&mut self, deadline: Ulid) {
        self.scheduled.retain(|d| d.id != deadline);
        self.cancelled.push(deadline);
    }

    /// Ends the saga after this step (its state and deadlines are deleted).
    pub fn complete(&mut self) {
        self.completed = true;
    }
}

/// A test of one saga: events in, commands and deadlines out, no runtime.
#[must_use]
pub struct SagaScenario<S: Saga> {
    state: Option<S>,
    services: std::sync::Arc<crate::services::Services>,
    responders: std::sync::Arc<HashMap<TypeId, Responder>>,
    ended: bool,
}

impl<S: Saga> Default for SagaScenario<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// The result of [`SagaScenario::when`], checked with `then_*`.
pub struct SagaOutcome<S: Saga> {
    scenario: SagaScenario<S>,
    result: Result<(), String>,
    dispatched: Vec<(&'static str, Box<dyn Any + Send>)>,
    scheduled: Vec<ScheduledDeadline>,
    cancelled: Vec<Ulid>,
}

#[allow(clippy::panic)] // a failed expectation is a failed test
impl<S: Saga> SagaScenario<S> {
    /// A scenario with no saga instance yet.
    pub fn new() -> Self {
        Self {
            state: None,
            services: std::sync::Arc::new(crate::services::Services::new()),
            responders: std::sync::Arc::new(HashMap::new()),
            ended: false,
        }
    }

    /// Answers dispatches of command `C` with `respond` (commands whose
    /// output is `()` succeed by default).
    pub fn respond<C: HandledCommand>(
        mut self,
        respond: impl Fn(&C) -> Result<C::Output, CommandError<C::Error>> + Send + Sync + 'static,
    ) -> Self {
        let responder: Responder = std::sync::Arc::new(move |any: &dyn Any| {
            any.downcast_ref::<C>()
                .map(|c| Box::new(respond(c)) as Box<dyn Any + Send>)
        });
        std::sync::Arc::make_mut(&mut self.responders).insert(TypeId::of::<C>(), responder);
        self
    }

    /// Registers a service that steps read with `ctx.service::<T>()`.
    pub fn service<T: Any + Send + Sync>(mut self, service: T) -> Self {
        std::sync::Arc::make_mut(&mut self.services).insert(service);
        self
    }

    /// Runs the step for a past event, discarding what it dispatched.
    #[track_caller]
    pub fn given<E: Event>(self, event: E) -> Self {
        let outcome = self.when(event);
        if let Err(e) = &outcome.result {
            panic!("a `given` step failed: {e}");
        }
        outcome.scenario
    }

    /// Runs the step for `event`, recording what it dispatches and schedules.
    #[track_caller]
    #[must_use = "check the outcome with a `then_*` method"]
    pub fn when<E: Event>(mut self, event: E) -> SagaOutcome<S> {
        let decoded: S::Event = crate::scenario::into_set(&event, &format!("saga `{}`", S::NAME), "has no step for");
        let route = S::route(&decoded);
        let cause = Cause {
            id: Ulid::new(),
            causation: CausationId::Event(crate::ids::EventId::new()),
            correlation: None,
        };
        let mut ctx = self.context(route.key.clone(), cause);
        let state = match (self.state.take(), route.kind) {
            (Some(s), _) => Some(s),
            (None, StepKind::Start) => Some(S::default()),
            (None, _) => None,
        };
        let Some(mut state) = state else {
            return SagaOutcome {
                scenario: self,
                result: Ok(()),
                dispatched: Vec::new(),
                scheduled: Vec::new(),
                cancelled: Vec::new(),
            };
        };
        let result = crate::scenario::block_on(state.step(decoded, &mut ctx)).map_err(|e| e.to_string());
        let end = route.kind == StepKind::End || ctx.completed;
        self.finish(state, ctx, result, end)
    }

    /// Fires a deadline on the current instance.
    #[track_caller]
    #[must_use = "check the outcome with a `then_*` method"]
    pub fn when_deadline<D: Event>(mut self, deadline: D) -> SagaOutcome<S> {
        let decoded: S::Deadline =
            crate::scenario::into_set(&deadline, &format!("saga `{}`", S::NAME), "has no deadline handler for");
        let Some(mut state) = self.state.take() else {
            panic!("saga `{}` has no instance for the deadline to fire on", S::NAME);
        };
        let cause = Cause {
            id: Ulid::new(),
            causation: CausationId::Deadline(Ulid::new()),
            correlation: None,
        };
        let mut ctx = self.context("scenario".into(), cause);
        let result = crate::scenario::block_on(state.deadline(decoded, &mut ctx)).map_err(|e| e.to_string());
        let end = matches!(result, Ok(true)) || ctx.completed;
        self.finish(state, ctx, result.map(|_| ()), end)
    }

    fn context(&self, key: String, cause: Cause) -> SagaContext {
        SagaContext::with_mode(
            Mode::Recording {
                dispatched: Vec::new(),
                responders: std::sync::Arc::clone(&self.responders),
                services: std::sync::Arc::clone(&self.services),
            },
            S::NAME,
            key,
            cause,
        )
    }

    fn finish(mut self, state: S, ctx: SagaContext, result: Result<(), String>, end: bool) -> SagaOutcome<S> {
        let result = match (&ctx.schedule_error, result) {
            (Some(e), Ok(())) => Err(e.to_string()),
            (_, r) => r,
        };
        if result.is_ok() && end {
            self.ended = true;
        } else {
            self.state = Some(state);
        }
        let Mode::Recording { dispatched, .. } = ctx.mode else {
            unreachable!("scenarios record")
        };
        SagaOutcome {
            scenario: self,
            result,
            dispatched,
            scheduled: ctx.scheduled,
            cancelled: ctx.cancelled,
        }
    }
}

#[allow(clippy::panic)] // a failed expectation is a failed test
impl<S: Saga> SagaOutcome<S> {
    /// Checks the step dispatched `expected` (compared with `PartialEq`).
    #[track_caller]
    pub fn then_dispatches<C: HandledCommand + PartialEq + fmt::Debug>(self, expected: C) -> Self {
        let found = self
            .dispatched
            .iter()
            .filter_map(|(_, c)| c.downcast_ref::<C>())
            .any(|c| *c == expected);
        if !found {
            let names: Vec<_> = self.dispatched.iter().map(|(n, _)| *n).collect();
            panic!("expected the step to dispatch {expected:?}; it dispatched {names:?}");
        }
        self
    }

    /// Checks how many commands the step dispatched.
    #[track_caller]
    pub fn then_dispatch_count(self, expected: usize) -> Self {
        assert_eq!(self.dispatched.len(), expected, "number of dispatched commands");
        self
    }

    /// Checks the step scheduled a deadline equal to `expected`.
    #[track_caller]
    pub fn then_schedules<D: Event + PartialEq + fmt::Debug>(self, expected: D) -> Self {
        let found = self
            .scheduled
            .iter()
            .filter(|d| d.name == D::NAME)
            .filter_map(|d| serde_json::from_slice::<D>(&d.payload).ok())
            .any(|d| d == expected);
        assert!(found, "expected the step to schedule {expected:?}");
        self
    }

    /// The deadlines the step scheduled.
    #[must_use]
    pub fn scheduled(&self) -> &[ScheduledDeadline] {
        &self.scheduled
    }

    /// The deadlines the step cancelled.
    #[must_use]
    pub fn cancelled(&self) -> &[Ulid] {
        &self.cancelled
    }

    /// Checks the step succeeded.
    #[track_caller]
    pub fn then_ok(self) -> Self {
        if let Err(e) = &self.result {
            panic!("the step failed: {e}");
        }
        self
    }

    /// Checks the step failed with an error whose text contains `text`.
    #[track_caller]
    pub fn then_fails_with(self, text: &str) -> Self {
        match &self.result {
            Err(e) => assert!(e.contains(text), "the step failed with `{e}`, not `{text}`"),
            Ok(()) => panic!("expected the step to fail with `{text}`"),
        }
        self
    }

    /// Checks the saga's state.
    #[track_caller]
    pub fn then_state(self, check: impl FnOnce(&S)) -> Self {
        match &self.scenario.state {
            Some(s) => check(s),
            None => panic!("the saga has no state (it ended, or never started)"),
        }
        self
    }

    /// Checks the saga ended.
    #[track_caller]
    pub fn then_ended(self) -> Self {
        assert!(self.scenario.ended, "expected the saga to end");
        self
    }

    /// Continues the scenario with the next event.
    pub fn and(self) -> SagaScenario<S> {
        self.scenario
    }
}
