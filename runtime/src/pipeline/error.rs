//! The errors of the command pipeline: loading an aggregate and running a
//! command.

use crate::domain::event::EventDecodeError;
use crate::domain::ids::{CommandId, Position, StreamId, Version};
use crate::domain::services::MissingService;
use crate::store::StoreError;

/// Why loading an aggregate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event of the stream could not be decoded.
    #[error("cannot decode event `{event}` (version {version} of `{aggregate}/{id}`, position {position}): {source}")]
    Decode {
        /// The aggregate type.
        aggregate: &'static str,
        /// The aggregate id.
        id: String,
        /// The event's version in the stream.
        version: Version,
        /// The stored event name.
        event: String,
        /// The event's global position.
        position: Position,
        /// What went wrong.
        #[source]
        source: EventDecodeError,
    },
    /// An `#[applies_event]` method panicked while the state was folded.
    #[error("the applier of event `{event}` (version {version} of `{aggregate}/{id}`) panicked: {message}")]
    ApplierPanicked {
        /// The aggregate type.
        aggregate: &'static str,
        /// The aggregate id.
        id: String,
        /// The event's version in the stream.
        version: Version,
        /// The stored event name.
        event: String,
        /// The panic's message.
        message: String,
    },
    /// A stored event of a command's view scope could not be decoded; the
    /// view is rebuilt from the start of its scope on the next command.
    #[error("view `{view}` cannot decode event `{event}` at position {position}: {source}")]
    ViewDecode {
        /// The view's type.
        view: &'static str,
        /// The stored event name.
        event: String,
        /// The event's global position.
        position: Position,
        /// What went wrong.
        #[source]
        source: EventDecodeError,
    },
    /// A view's `#[handles_event]` method panicked while it was caught up;
    /// the view is rebuilt from the start of its scope on the next command.
    #[error("the handler of event `{event}` (position {position}) in view `{view}` panicked: {message}")]
    ViewPanicked {
        /// The view's type.
        view: &'static str,
        /// The stored event name.
        event: String,
        /// The event's global position.
        position: Position,
        /// The panic's message.
        message: String,
    },
    /// The stream's versions are not 1, 2, 3 ... as read.
    #[error("stream `{stream}` is corrupt: expected version {expected}, read {found}")]
    Gap {
        /// The stream.
        stream: StreamId,
        /// The version that should have come next.
        expected: Version,
        /// The version that came.
        found: Version,
    },
    /// The aggregate type was not registered on the application.
    #[error("aggregate `{aggregate}` is not registered; add `.aggregate::<{type_name}>()` to the application builder")]
    NotRegistered {
        /// The aggregate name.
        aggregate: &'static str,
        /// The Rust type.
        type_name: &'static str,
    },
}

/// Why a command failed. `Domain` is the handler's own rejection; every other
/// variant is an infrastructure or programming failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<E> {
    /// The handler rejected the command; nothing was appended.
    #[error("command rejected: {0}")]
    Domain(#[source] E),
    /// The stream kept changing under the command until the attempts ran out.
    #[error("conflict on stream `{stream}`: expected version {expected}, found {actual} (after {attempts} attempts)")]
    Conflict {
        /// The stream.
        stream: StreamId,
        /// The version the last attempt expected.
        expected: Version,
        /// The version the stream was at.
        actual: Version,
        /// How many times the command was run.
        attempts: u32,
    },
    /// The command's consistency scope (its aggregate's category, or the
    /// log) kept changing under it until the attempts ran out.
    #[error("{scope} kept changing: last decided at position {since}, found {actual} (after {attempts} attempts)")]
    ScopeChanged {
        /// The scope.
        scope: crate::store::Scope,
        /// The position the last attempt decided at.
        since: Position,
        /// The position of the scope's last event then.
        actual: Position,
        /// How many times the command was run.
        attempts: u32,
    },
    /// The aggregate could not be loaded (store failure, corrupt stream,
    /// unregistered aggregate).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Appending the events, or recording the outcome, failed in the store.
    #[error(transparent)]
    Store(StoreError),
    /// The command handler panicked; nothing was appended.
    #[error("the handler of `{command}` panicked: {message}")]
    HandlerPanicked {
        /// The command.
        command: &'static str,
        /// The panic's message.
        message: String,
    },
    /// An emitted event could not be serialized.
    #[error("cannot encode event `{event}`: {source}")]
    Encode {
        /// The event name.
        event: &'static str,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// An emitted event is larger than the configured limit; nothing was appended.
    #[error("event `{event}` is {size} bytes, above the limit of {limit} bytes")]
    EventTooLarge {
        /// The event name.
        event: &'static str,
        /// Its encoded size.
        size: usize,
        /// The limit (`ApplicationBuilder::max_event_bytes`).
        limit: usize,
    },
    /// The handler emitted events for a peer (`Peer(...)`), or takes a
    /// `#[peer]`, but the command names none; nothing was appended.
    #[error(
        "the handler of `{command}` emits to a peer, but the command names none: mark the field naming the other instance with `#[peer_id]`"
    )]
    NoPeer {
        /// The command.
        command: &'static str,
    },
    /// A handler parameter names a service that is not registered.
    #[error(transparent)]
    MissingService(MissingService),
    /// Another caller is processing a command with the same id.
    #[error("command `{0}` is being processed by another caller")]
    InProgress(CommandId),
    /// The command id was already used for a different command (another
    /// command type, another aggregate, or other field values); the recorded
    /// outcome belongs to that one, so nothing ran and nothing is replayed.
    #[error(
        "command id `{command_id}` was already used for a different command (recorded on `{recorded_stream}`); `{command}` did not run: give each command its own id"
    )]
    CommandIdReused {
        /// The reused id.
        command_id: CommandId,
        /// The command that was refused.
        command: &'static str,
        /// The stream of the command the id was first used for.
        recorded_stream: StreamId,
    },
    /// A middleware layer or interceptor refused the command; nothing was appended.
    #[error("command refused by {layer}: {reason}")]
    Rejected {
        /// The layer or interceptor.
        layer: String,
        /// Why.
        reason: String,
    },
    /// The command did not complete within the timeout layer's limit.
    #[error("command timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// A tower layer of the user's failed the command with an error of its
    /// own (a load shed, a rate limit, ...).
    #[error("middleware failed: {0}")]
    Layer(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The recorded outcome of an already processed command cannot be decoded.
    #[error("recorded outcome of command `{command_id}` cannot be decoded: {source}")]
    RecordedOutcome {
        /// The command.
        command_id: CommandId,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
}

impl<E> CommandError<E> {
    /// The domain error, if the handler rejected the command.
    pub fn domain(&self) -> Option<&E> {
        match self {
            CommandError::Domain(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the store was unreachable (the command may succeed later).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            CommandError::Store(StoreError::Unavailable { .. })
                | CommandError::Load(LoadError::Store(StoreError::Unavailable { .. }))
        )
    }
}
