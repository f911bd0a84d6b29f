//! What a caller passes with a command, and what it gets back.

use crate::domain::ids::{CausationId, CommandId, CorrelationId, StreamId, TenantId, Timestamp, Version};
use crate::store::Headers;

/// Per-dispatch options: ids, correlation and headers.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct DispatchOptions {
    /// The command id (overrides the command's own `#[command_id]`).
    pub command_id: Option<CommandId>,
    /// The correlation id (a new one when `None`).
    pub correlation_id: Option<CorrelationId>,
    /// What caused this command.
    pub causation_id: Option<CausationId>,
    /// Headers copied into every event's metadata.
    pub headers: Headers,
    /// The tenant whose instance of the aggregate the command targets
    /// (none: the store's streams of no tenant). Set by
    /// [`Application::tenant`](crate::Application::tenant).
    pub tenant: Option<TenantId>,
}

impl DispatchOptions {
    /// No options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the command id, making the dispatch idempotent.
    pub fn command_id(mut self, id: CommandId) -> Self {
        self.command_id = Some(id);
        self
    }

    /// Sets the correlation id.
    pub fn correlation_id(mut self, id: CorrelationId) -> Self {
        self.correlation_id = Some(id);
        self
    }

    /// Sets the causation id.
    pub fn causation_id(mut self, id: CausationId) -> Self {
        self.causation_id = Some(id);
        self
    }

    /// Targets the aggregate instance of `tenant`.
    pub fn tenant(mut self, tenant: TenantId) -> Self {
        self.tenant = Some(tenant);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }
}

/// The full result of a dispatch.
#[derive(Clone, Debug, PartialEq)]
pub struct Dispatched<O> {
    /// The handler's output.
    pub output: O,
    /// The command id (given, or generated).
    pub command_id: CommandId,
    /// The stream the command targeted.
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: Version,
    /// Global positions of the appended events (empty for a replayed outcome).
    pub positions: crate::store::Positions,
    /// Whether this is the recorded outcome of an earlier dispatch with the same id.
    pub replayed: bool,
    /// How many times the handler ran (more than 1 after conflicts).
    pub attempts: u32,
}

/// Which state of an aggregate to load with [`Application::load_as_of`](crate::Application::load_as_of).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AsOf {
    /// After the event with this version.
    Version(Version),
    /// After every event recorded at or before this time.
    Time(Timestamp),
}

impl From<Version> for AsOf {
    fn from(v: Version) -> Self {
        AsOf::Version(v)
    }
}

impl From<Timestamp> for AsOf {
    fn from(t: Timestamp) -> Self {
        AsOf::Time(t)
    }
}

impl From<std::time::SystemTime> for AsOf {
    fn from(t: std::time::SystemTime) -> Self {
        AsOf::Time(t.into())
    }
}
