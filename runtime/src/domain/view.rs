//! Views: state folded from the events of a whole category (or the log),
//! which a command handler decides on under the matching write constraint.
//!
//! A handler declared `#[handles_command(consistency = category)]` takes a
//! parameter `#[view] name: &MyView`. Before it runs, the runtime brings
//! its copy of the view up to the category's last event (reading only the
//! events after those it folded before) and remembers that position; the
//! handler's events are then appended only if no event was written to the
//! category since. When one was, the command runs again on the newer view
//! and state, as after any conflict. That is how a rule spanning
//! aggregates (a username unique across every user) holds without a
//! second database.

use crate::domain::event::{EncodedEvent, EventDecodeError, EventSet};
use crate::domain::ids::SchemaVersion;
use crate::domain::meta::EventMeta;

/// What a command's decision is serialized against, from
/// `#[handles_command(consistency = ...)]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// The aggregate's own stream (the default): the events are appended
    /// if no other writer appended to the stream since it was loaded.
    #[default]
    Stream,
    /// The aggregate's category (every stream of its type): the events are
    /// appended if nothing was written to any stream of the type since the
    /// handler's view was caught up.
    Category,
    /// The whole log: the events are appended if nothing was written
    /// anywhere since the view was caught up.
    Log,
}

/// State a command handler reads under `consistency = category` or `log`:
/// folded from every event of that scope.
///
/// Implemented by `#[projection]` for a projection whose
/// `#[handles_event]` methods are plain `fn`s that return nothing and take
/// no transaction. The runtime keeps its own copy (from `Default`), apart
/// from any registered instance of the projection.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a view",
    label = "not a view",
    note = "a view is a `#[projection]` whose `#[handles_event]` methods are plain `fn`s (not `async`) that return nothing and take no transaction"
)]
pub trait View: Send + Sync + 'static {
    /// The events it folds.
    type Event: EventSet;

    /// Folds one event.
    #[doc(hidden)]
    fn fold(&mut self, event: Self::Event, meta: &EventMeta);
}

/// No view: the handlers of stream-consistent commands.
impl View for () {
    type Event = NoEvents;

    fn fold(&mut self, event: NoEvents, _: &EventMeta) {
        match event {}
    }
}

/// The empty event set, of the empty view.
#[doc(hidden)]
#[derive(Debug)]
pub enum NoEvents {}

impl EventSet for NoEvents {
    const NAMES: &'static [&'static str] = &[];

    fn name(&self) -> &'static str {
        match *self {}
    }

    fn encode(&self) -> Result<EncodedEvent, serde_json::Error> {
        match *self {}
    }

    fn decode(name: &str, _: SchemaVersion, _: &[u8]) -> Result<Self, EventDecodeError> {
        Err(EventDecodeError::UnknownEvent { name: name.to_owned() })
    }
}
