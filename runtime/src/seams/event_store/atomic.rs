//! Appends made under conditions: several streams at once, all or nothing,
//! each with its own expected version, and scopes (a category, the log)
//! that must not have changed since the position a decision was based on.

use std::fmt;

use super::ExpectedVersion;
use super::{NewEvent, Scope};
use crate::domain::ids::{Position, StreamId};

/// One stream's part of an append: its events and the version the writer
/// expects it to be at.
#[derive(Clone, Debug, PartialEq)]
pub struct AppendRequest {
    /// The stream.
    pub stream: StreamId,
    /// The version the writer expects the stream to be at.
    pub expected: ExpectedVersion,
    /// The events, in order.
    pub events: Vec<NewEvent>,
}

/// A condition of an [`AtomicAppend`]: no event of `scope` has a position
/// after `since` (the position the writer's decision was based on).
///
/// With `Scope::Category` this serializes the writers of one category: of
/// several concurrent "claim username X" appends made after reading the
/// category up to the same position, exactly one commits. With
/// `Scope::Log` every writer is serialized against every other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unchanged {
    /// The scope that must not have changed.
    pub scope: Scope,
    /// The position the decision was based on: the scope's last event then
    /// (`Position::START` when it had none).
    pub since: Position,
}

impl fmt::Display for Unchanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} unchanged since position {}", self.scope, self.since)
    }
}

/// An append to one or more streams that commits all or nothing: every
/// stream's expected version holds and every [`Unchanged`] condition holds,
/// or nothing is written.
///
/// The four ways to serialize writers, from the cheapest:
/// - none: `ExpectedVersion::Any` and no condition;
/// - stream (the default of commands): `ExpectedVersion::Exact` per stream;
/// - category: [`AtomicAppend::unchanged`] with `Scope::Category`;
/// - log: [`AtomicAppend::unchanged`] with `Scope::Log`.
///
/// ```
/// # use interlock::store::{AtomicAppend, ExpectedVersion, Scope};
/// # use interlock::{Position, StreamId, Version};
/// let append = AtomicAppend::new()
///     .stream(StreamId::new("bank.account", "a"), ExpectedVersion::Exact(Version(3)), vec![])
///     .stream(StreamId::new("bank.account", "b"), ExpectedVersion::Exact(Version(7)), vec![])
///     .unchanged(Scope::Category("bank.account".into()), Position(41));
/// assert_eq!(append.streams.len(), 2);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct AtomicAppend {
    /// The streams' parts, committed in this order (positions increase
    /// through them). Two parts for one stream are applied in order, the
    /// second expecting the version the first leaves.
    pub streams: Vec<AppendRequest>,
    /// The conditions, all checked before anything is written.
    pub conditions: Vec<Unchanged>,
}

impl AtomicAppend {
    /// An append with no streams and no conditions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `events` for `stream`, which must be at `expected`.
    pub fn stream(mut self, stream: StreamId, expected: ExpectedVersion, events: Vec<NewEvent>) -> Self {
        self.streams.push(AppendRequest {
            stream,
            expected,
            events,
        });
        self
    }

    /// Adds the condition that no event of `scope` has a position after
    /// `since`.
    pub fn unchanged(mut self, scope: Scope, since: Position) -> Self {
        self.conditions.push(Unchanged { scope, since });
        self
    }

    /// The number of events of every stream.
    #[must_use]
    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }
}
