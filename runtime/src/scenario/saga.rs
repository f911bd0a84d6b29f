//! Given/when/then tests of one saga, over a recording command bus.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use parking_lot::Mutex;
use ulid::Ulid;

use crate::domain::command::HandledCommand;
use crate::domain::event::Event;
use crate::domain::ids::CausationId;
use crate::domain::services::Services;
use crate::future::BoxFuture;
use crate::pipeline::bus::{AnyCommand, AnyOutcome, CommandBus, LiveDispatch, NoResponse};
use crate::pipeline::error::CommandError;
use crate::pipeline::options::DispatchOptions;
use crate::processes::saga::{Cause, Saga, SagaContext, StepKind};
use crate::store::SagaFailure;
use crate::store::ScheduledDeadline;

/// A test of one saga: events in, commands and deadlines out, no runtime.
#[must_use]
pub struct SagaScenario<S: Saga> {
    state: Option<S>,
    services: Arc<Services>,
    responders: Arc<HashMap<TypeId, Responder>>,
    ended: bool,
}

type Responder = Arc<dyn Fn(&dyn Any) -> Option<AnyOutcome> + Send + Sync>;

/// The command bus of a scenario: records what a step sends and answers
/// from the scenario's responders.
struct RecordingBus {
    dispatched: Mutex<Vec<(&'static str, AnyCommand)>>,
    responders: Arc<HashMap<TypeId, Responder>>,
    services: Arc<Services>,
}

impl CommandBus for RecordingBus {
    fn send(
        &self,
        command: AnyCommand,
        name: &'static str,
        _options: DispatchOptions,
        _live: LiveDispatch,
    ) -> BoxFuture<'_, AnyOutcome> {
        let response = self
            .responders
            .get(&(*command).type_id())
            .and_then(|respond| respond(&*command))
            .unwrap_or_else(|| Box::new(NoResponse));
        self.dispatched.lock().push((name, command));
        Box::pin(std::future::ready(response))
    }

    fn services(&self) -> &Services {
        &self.services
    }
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
    dispatched: Vec<(&'static str, AnyCommand)>,
    scheduled: Vec<ScheduledDeadline>,
    cancelled: Vec<Ulid>,
}

#[allow(clippy::panic)] // a failed expectation is a failed test
impl<S: Saga> SagaScenario<S> {
    /// A scenario with no saga instance yet.
    pub fn new() -> Self {
        Self {
            state: None,
            services: Arc::new(Services::new()),
            responders: Arc::new(HashMap::new()),
            ended: false,
        }
    }

    /// Answers dispatches of command `C` with `respond` (commands whose
    /// output is `()` succeed by default).
    pub fn respond<C: HandledCommand>(
        mut self,
        respond: impl Fn(&C) -> Result<C::Output, CommandError<C::Error>> + Send + Sync + 'static,
    ) -> Self {
        let responder: Responder =
            Arc::new(move |any: &dyn Any| any.downcast_ref::<C>().map(|c| Box::new(respond(c)) as AnyOutcome));
        Arc::make_mut(&mut self.responders).insert(TypeId::of::<C>(), responder);
        self
    }

    /// Registers a service that steps read with `ctx.service::<T>()`.
    pub fn service<T: Any + Send + Sync>(mut self, service: T) -> Self {
        Arc::make_mut(&mut self.services).insert(service);
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
        let decoded: S::Event = super::into_set(&event, &format!("saga `{}`", S::NAME), "has no step for");
        let route = S::route(&decoded);
        let cause = Cause {
            id: Ulid::new(),
            causation: CausationId::Event(crate::domain::ids::EventId::new()),
            correlation: None,
            tenant: None,
        };
        let bus = self.bus();
        let mut ctx = SagaContext::new(bus.clone(), S::NAME, route.key.clone(), cause.clone());
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
        let result = super::block_on(state.step(decoded, &mut ctx)).map_err(|e| e.to_string());
        // As the runtime does: a refused command makes a saga with a
        // `#[saga_compensation]` compensate at once, then end.
        if let Err(error) = &result
            && S::COMPENSATES
            && ctx.refused.is_some()
        {
            let failure = SagaFailure {
                during: E::NAME.to_owned(),
                error: error.clone(),
                refused: true,
                cause: cause.causation,
                correlation_id: None,
            };
            let cause = Cause {
                id: Ulid::new(),
                ..cause
            };
            let mut undo = SagaContext::new(bus.clone(), S::NAME, route.key.clone(), cause);
            let compensated = super::block_on(state.compensate(&failure, &mut undo)).map_err(|e| e.to_string());
            return self.finish(state, undo, &bus, compensated, true);
        }
        let end = route.kind == StepKind::End || ctx.completed;
        self.finish(state, ctx, &bus, result, end)
    }

    /// Fires a deadline on the current instance.
    #[track_caller]
    #[must_use = "check the outcome with a `then_*` method"]
    pub fn when_deadline<D: Event>(mut self, deadline: D) -> SagaOutcome<S> {
        let decoded: S::Deadline =
            super::into_set(&deadline, &format!("saga `{}`", S::NAME), "has no deadline handler for");
        let Some(mut state) = self.state.take() else {
            panic!("saga `{}` has no instance for the deadline to fire on", S::NAME);
        };
        let cause = Cause {
            id: Ulid::new(),
            causation: CausationId::Deadline(Ulid::new()),
            correlation: None,
            tenant: None,
        };
        let bus = self.bus();
        let mut ctx = SagaContext::new(bus.clone(), S::NAME, "scenario".into(), cause);
        let result = super::block_on(state.deadline(decoded, &mut ctx)).map_err(|e| e.to_string());
        let end = matches!(result, Ok(true)) || ctx.completed;
        self.finish(state, ctx, &bus, result.map(|_| ()), end)
    }

    fn bus(&self) -> Arc<RecordingBus> {
        Arc::new(RecordingBus {
            dispatched: Mutex::new(Vec::new()),
            responders: Arc::clone(&self.responders),
            services: Arc::clone(&self.services),
        })
    }

    fn finish(
        mut self,
        state: S,
        ctx: SagaContext<S>,
        bus: &RecordingBus,
        result: Result<(), String>,
        end: bool,
    ) -> SagaOutcome<S> {
        let result = match (&ctx.schedule_error, result) {
            (Some(e), Ok(())) => Err(e.to_string()),
            (_, r) => r,
        };
        if result.is_ok() && end {
            self.ended = true;
        } else {
            self.state = Some(state);
        }
        let dispatched = std::mem::take(&mut *bus.dispatched.lock());
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
