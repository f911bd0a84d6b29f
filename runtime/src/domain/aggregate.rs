//! Aggregates: state folded from events, and the commands that change it.

use crate::domain::event::EventSet;

/// An aggregate: a consistency boundary whose state is folded from its events.
///
/// Implemented by `#[aggregate(name = "...")]` on an impl block; never by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not an aggregate",
    label = "not an aggregate",
    note = "add `#[aggregate(name = \"...\")]` to an impl block of `{Self}` with `#[handles_command]` and `#[applies_event]` methods"
)]
pub trait Aggregate: Default + Send + Sync + 'static {
    /// The stable aggregate type name, the first part of its stream ids.
    const NAME: &'static str;
    /// The schema version of the state, for snapshots: a snapshot taken with
    /// another version is ignored and the state is rebuilt from events.
    const STATE_VERSION: u32;
    /// The events this aggregate applies (a generated enum).
    type Event: EventSet;

    /// Folds one event into the state.
    #[doc(hidden)]
    fn apply(&mut self, event: &Self::Event);

    /// The services any handler of this aggregate takes, checked by `build()`.
    #[doc(hidden)]
    fn required_services() -> Vec<crate::domain::services::ServiceKey>;
}

/// An aggregate's state together with the version it was loaded at.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The version of the last event applied (0 for a new aggregate).
    pub version: crate::domain::ids::Version,
}
