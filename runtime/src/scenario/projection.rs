//! Given/then tests of one projection.

use crate::domain::ids::{EventId, Position, StreamId, Version};
use crate::processes::projection::{EventMeta, HandledQuery, Projection};
use crate::store::EventMetadata;

/// A test of one projection: the events it sees, the queries it answers.
///
/// # Examples
///
/// ```
/// # use interlock::prelude::*;
/// # #[derive(Event, Serialize, Deserialize)] #[event(name = "deposited")] struct Deposited { amount: u64 }
/// # struct Total;
/// #[derive(Default)]
/// struct Sum { total: u64 }
///
/// #[projection(model = memory)]
/// impl Sum {
///     #[handles_event]
///     fn deposited(&mut self, e: &Deposited) { self.total += e.amount }
///     #[handles_query]
///     fn total(&self, _q: Total) -> u64 { self.total }
/// }
///
/// ProjectionScenario::new(Sum::default())
///     .given(Deposited { amount: 5 })
///     .given(Deposited { amount: 2 })
///     .then_query(Total, 7);
/// ```
pub struct ProjectionScenario<P: Projection> {
    projection: P,
    position: u64,
    stream: StreamId,
}

impl<P: Projection> ProjectionScenario<P> {
    /// A scenario over `projection`.
    #[must_use = "feed events with `given` and check with `then_query`"]
    pub fn new(projection: P) -> Self {
        Self {
            projection,
            position: 0,
            stream: StreamId::new("scenario", "1"),
        }
    }

    /// Sets the stream the following `given` events come from.
    pub fn from_stream(mut self, stream: StreamId) -> Self {
        self.stream = stream;
        self
    }

    /// Feeds an event to the projection.
    ///
    /// # Panics
    ///
    /// When the projection does not handle the event's type, or its handler fails.
    #[track_caller]
    #[allow(clippy::panic)]
    #[must_use = "check the read model with `then_query` or `then`"]
    pub fn given<E: crate::domain::event::Event>(mut self, event: E) -> Self {
        self.position += 1;
        let decoded: P::Event = super::into_set(&event, &format!("projection `{}`", P::NAME), "does not handle");
        let meta = EventMeta {
            event_id: EventId::new(),
            stream: self.stream.clone(),
            version: Version(self.position),
            position: Position(self.position),
            name: E::NAME.to_owned(),
            schema_version: E::VERSION,
            metadata: EventMetadata {
                timestamp: Some(crate::domain::ids::Timestamp::now()),
                ..EventMetadata::default()
            },
        };
        if let Err(e) = super::block_on(self.projection.handle(decoded, &meta, None)) {
            panic!("projection `{}` failed on `{}`: {e}", P::NAME, E::NAME);
        }
        self
    }

    /// Checks the answer to `query`.
    #[track_caller]
    pub fn then_query<Q>(self, query: Q, expected: Q::Output) -> Self
    where
        Q: HandledQuery<Projection = P>,
        Q::Output: PartialEq + std::fmt::Debug,
    {
        let answer = super::block_on(Q::handle(&self.projection, query));
        assert_eq!(answer, expected, "query answer differs");
        self
    }

    /// Checks the read model directly.
    #[track_caller]
    pub fn then(self, check: impl FnOnce(&P)) -> Self {
        check(&self.projection);
        self
    }

    /// The read model as folded, e.g. to decide on as a command handler's
    /// view (`AggregateScenario::when_viewing`).
    #[must_use]
    pub fn into_projection(self) -> P {
        self.projection
    }
}
