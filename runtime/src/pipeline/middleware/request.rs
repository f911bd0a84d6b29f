//! The request a command is inside the tower stack.

use crate::domain::aggregate::Aggregate;
use crate::domain::command::HandledCommand;
use crate::domain::fingerprint::CommandFingerprint;
use crate::pipeline::options::DispatchOptions;

/// What every layer sees of a command, whatever its type.
#[derive(Clone, Debug)]
pub struct CommandContext {
    /// The command's name (`Command::NAME`).
    pub command: &'static str,
    /// The aggregate type it targets.
    pub aggregate: &'static str,
    /// The aggregate id it targets.
    pub aggregate_id: String,
    /// Ids and headers; layers may change them before calling the inner service.
    pub options: DispatchOptions,
    /// Set by the idempotency layer for a command with an id: its
    /// fingerprint, carried on its last event (computed once).
    pub(crate) fingerprint: Option<CommandFingerprint>,
}

/// A command of type `C` on its way through the stack.
#[derive(Clone, Debug)]
pub struct CommandRequest<C> {
    /// The command.
    pub command: C,
    /// Its context: names, target and options.
    pub context: CommandContext,
}

impl<C: HandledCommand> CommandRequest<C> {
    /// A request for `command` with `options`.
    pub fn new(command: C, options: DispatchOptions) -> Self {
        let aggregate_id = crate::domain::ids::AggregateId::to_stream_key(command.aggregate_id());
        Self {
            context: CommandContext {
                command: C::NAME,
                aggregate: <C::Aggregate as Aggregate>::NAME,
                aggregate_id,
                options,
                fingerprint: None,
            },
            command,
        }
    }
}
