//! Given/when/then tests of aggregates, without a runtime or a store.

#![allow(clippy::panic)] // a failed expectation is a failed test

use std::fmt::Debug;

use crate::domain::aggregate::Aggregate;
use crate::domain::command::{Decision, HandledCommand, HandlerError, HandlerOutcome, IntoEvents};
use crate::domain::event::EventSet;
use crate::domain::services::Services;

/// A test of one aggregate: the events it has seen, the command it gets,
/// and what it must emit, return or refuse.
///
/// # Examples
///
/// ```
/// # use interlock::prelude::*;
/// # #[derive(Default)] struct Counter { n: u64 }
/// # #[derive(Event, Serialize, Deserialize)] #[event(name = "counter.incremented")] struct Incremented { by: u64 }
/// # #[derive(Command, Clone)] struct Increment { #[aggregate_id] id: u64, by: u64 }
/// # #[aggregate(name = "counter")]
/// # impl Counter {
/// #     #[handles_command] fn increment(&self, c: Increment) -> Incremented { Incremented { by: c.by } }
/// #     #[applies_event] fn incremented(&mut self, e: &Incremented) { self.n += e.by }
/// # }
/// AggregateScenario::<Counter>::new()
///     .given(Incremented { by: 2 })
///     .when(Increment { id: 1, by: 3 })
///     .then_emits(Incremented { by: 3 })
///     .then_state(|c| assert_eq!(c.n, 5));
/// ```
#[must_use = "a scenario does nothing until `.when(...)` and a `then_*` check"]
pub struct AggregateScenario<A: Aggregate> {
    state: A,
    services: Services,
    /// The state of the command's peer, once `peer_given` was called.
    peer: Option<A>,
}

const NO_PEER: &str = "the handler takes a `#[peer]`: give the peer's past events with `.peer_given(...)`";

impl<A: Aggregate> Default for AggregateScenario<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate> AggregateScenario<A> {
    /// A scenario starting from the default state.
    pub fn new() -> Self {
        Self {
            state: A::default(),
            services: Services::new(),
            peer: None,
        }
    }

    /// Registers a service the handlers take.
    pub fn service<T: std::any::Any + Send + Sync>(mut self, service: T) -> Self {
        self.services.insert(service);
        self
    }

    /// Applies past events: an event, a tuple or a `Vec` of them.
    pub fn given(mut self, events: impl IntoEvents<A>) -> Self {
        for e in events.into_events() {
            self.state.apply(&e);
        }
        self
    }

    /// Applies past events to the command's peer (the instance its
    /// `#[peer_id]` names), which a `#[peer]` handler reads.
    pub fn peer_given(mut self, events: impl IntoEvents<A>) -> Self {
        let peer = self.peer.get_or_insert_with(A::default);
        for e in events.into_events() {
            peer.apply(&e);
        }
        self
    }

    /// Runs the handler of `command` on the state (and, for a handler that
    /// reads a `#[view]`, on an empty view: see
    /// [`AggregateScenario::when_viewing`]).
    #[must_use = "check the outcome with a `then_*` method"]
    pub fn when<C: HandledCommand<Aggregate = A>>(self, command: C) -> ScenarioOutcome<A, C> {
        self.when_viewing(command, &C::View::default())
    }

    /// Runs the handler of `command` on the state and `view`, for a handler
    /// declared `consistency = category` or `log` (build the view with its
    /// projection's handlers, or a `ProjectionScenario`).
    #[must_use = "check the outcome with a `then_*` method"]
    pub fn when_viewing<C: HandledCommand<Aggregate = A>>(self, command: C, view: &C::View) -> ScenarioOutcome<A, C> {
        let result = super::block_on(C::handle(
            &self.state,
            command,
            &self.services,
            view,
            self.peer.as_ref(),
        ));
        ScenarioOutcome {
            state: self.state,
            result,
        }
    }
}

/// The result of [`AggregateScenario::when`], checked with `then_*`.
pub struct ScenarioOutcome<A: Aggregate, C: HandledCommand<Aggregate = A>> {
    state: A,
    result: HandlerOutcome<C>,
}

fn describe<A: Aggregate>(events: &[A::Event]) -> Vec<(String, serde_json::Value)> {
    events
        .iter()
        .map(|e| match e.encode() {
            Ok(enc) => (
                format!("{} {}", enc.name, enc.version),
                serde_json::from_slice(&enc.payload).unwrap_or(serde_json::Value::Null),
            ),
            Err(err) => (
                e.name().to_owned(),
                serde_json::Value::String(format!("<cannot encode: {err}>")),
            ),
        })
        .collect()
}

impl<A: Aggregate, C: HandledCommand<Aggregate = A>> ScenarioOutcome<A, C> {
    fn decision(&self) -> &Decision<A, C::Output> {
        match &self.result {
            Ok(d) => d,
            Err(HandlerError::Domain(e)) => {
                panic!("expected the command to succeed, it was rejected: {e}")
            }
            Err(HandlerError::MissingService(m)) => panic!("{m}"),
            Err(HandlerError::NoPeer) => panic!("{NO_PEER}"),
        }
    }

    /// Checks the emitted events equal `expected` (compared by name, version
    /// and JSON payload, so events need no `PartialEq`).
    #[track_caller]
    pub fn then_emits(self, expected: impl IntoEvents<A>) -> Self {
        let expected = describe::<A>(&expected.into_events());
        let actual = describe::<A>(&self.decision().events);
        assert_eq!(actual, expected, "emitted events differ from the expected events");
        self
    }

    /// Checks the events emitted for the command's peer equal `expected`.
    #[track_caller]
    pub fn then_emits_to_peer(self, expected: impl IntoEvents<A>) -> Self {
        let expected = describe::<A>(&expected.into_events());
        let actual = describe::<A>(&self.decision().peer_events);
        assert_eq!(
            actual, expected,
            "events emitted to the peer differ from the expected events"
        );
        self
    }

    /// Checks the command emitted no event.
    #[track_caller]
    pub fn then_emits_nothing(self) -> Self {
        let actual = describe::<A>(&self.decision().events);
        assert!(actual.is_empty(), "expected no events, got {actual:?}");
        self
    }

    /// Checks the handler's output.
    #[track_caller]
    pub fn then_output(self, expected: C::Output) -> Self
    where
        C::Output: PartialEq + Debug,
    {
        assert_eq!(self.decision().output, expected, "handler output differs");
        self
    }

    /// Checks the state after applying the emitted events.
    #[track_caller]
    pub fn then_state(mut self, check: impl FnOnce(&A)) -> Self {
        if let Ok(d) = &self.result {
            for e in &d.events {
                self.state.apply(e);
            }
        }
        check(&self.state);
        self
    }

    /// Checks the command was rejected with `expected`.
    #[track_caller]
    pub fn then_error(self, expected: C::Error) -> Self
    where
        C::Error: PartialEq + Debug,
    {
        match &self.result {
            Err(HandlerError::Domain(e)) => assert_eq!(e, &expected, "rejected with another error"),
            Err(HandlerError::MissingService(m)) => panic!("{m}"),
            Err(HandlerError::NoPeer) => panic!("{NO_PEER}"),
            Ok(d) => panic!(
                "expected rejection {expected:?}, the command emitted {:?}",
                describe::<A>(&d.events)
            ),
        }
        self
    }

    /// Checks the command was rejected with an error for which `check` holds.
    #[track_caller]
    pub fn then_error_matches(self, check: impl FnOnce(&C::Error) -> bool) -> Self {
        match &self.result {
            Err(HandlerError::Domain(e)) => {
                assert!(check(e), "rejected with an unexpected error: {e}")
            }
            Err(HandlerError::MissingService(m)) => panic!("{m}"),
            Err(HandlerError::NoPeer) => panic!("{NO_PEER}"),
            Ok(d) => panic!(
                "expected a rejection, the command emitted {:?}",
                describe::<A>(&d.events)
            ),
        }
        self
    }

    /// The handler's result, for checks the `then_*` methods do not cover.
    pub fn into_result(self) -> Result<Decision<A, C::Output>, C::Error> {
        match self.result {
            Ok(d) => Ok(d),
            Err(HandlerError::Domain(e)) => Err(e),
            Err(HandlerError::MissingService(m)) => panic!("{m}"),
            Err(HandlerError::NoPeer) => panic!("{NO_PEER}"),
        }
    }
}
