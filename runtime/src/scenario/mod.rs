//! Given/when/then tests of aggregates, projections and sagas, without an
//! application or a store. (A layer beside the application: nothing
//! imports it.)

mod aggregate;
mod projection;
mod saga;

use std::future::Future;

pub use self::aggregate::{AggregateScenario, ScenarioOutcome};
pub use self::projection::ProjectionScenario;
pub use self::saga::{SagaOutcome, SagaScenario};
use crate::domain::event::EventSet;

/// Encodes `event` and decodes it into the event set `S` of `owner`, as a
/// store would hand it over; a scenario given an event its subject does
/// not take fails the test with `missing`.
#[track_caller]
#[allow(clippy::panic)] // a failed expectation is a failed test
pub(crate) fn into_set<S: EventSet, E: crate::domain::event::Event>(event: &E, owner: &str, missing: &str) -> S {
    let payload = match event.encode_payload() {
        Ok(p) => p,
        Err(e) => panic!("cannot encode `{}`: {e}", E::NAME),
    };
    match S::decode(E::NAME, E::VERSION, &payload) {
        Ok(d) => d,
        Err(e) => panic!("{owner} {missing} `{}`: {e}", E::NAME),
    }
}

/// Runs a handler's future to completion on a tokio current-thread runtime
/// with timers, so handlers that sleep or time out work in scenarios. Inside
/// an async test (a runtime is already running on this thread) it runs on a
/// scoped thread of its own, since one thread cannot block on two runtimes.
#[track_caller]
#[allow(clippy::panic)]
pub(crate) fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let run = move || match tokio::runtime::Builder::new_current_thread().enable_time().build() {
        Ok(runtime) => runtime.block_on(future),
        Err(e) => panic!("cannot start a runtime for the scenario: {e}"),
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|scope| match scope.spawn(run).join() {
        Ok(output) => output,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}
