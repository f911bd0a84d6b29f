//! How the pipeline runs each aggregate type, and its settings.

use std::any::Any;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::aggregate::Aggregate;

pub(crate) type ErasedState = Box<dyn Any + Send>;
type EncodeState = fn(&(dyn Any + Send)) -> Option<Result<Vec<u8>, serde_json::Error>>;
type DecodeState = fn(&[u8]) -> Result<ErasedState, serde_json::Error>;

#[derive(Clone, Copy)]
pub(crate) struct SnapshotCodec {
    pub(crate) every: u64,
    pub(crate) encode: EncodeState,
    pub(crate) decode: DecodeState,
}

/// How one aggregate type is run; passed to
/// [`ApplicationBuilder::aggregate_with`](crate::ApplicationBuilder::aggregate_with).
///
/// # Examples
///
/// ```
/// # use interlock::prelude::*;
/// use interlock::AggregateConfig;
/// # #[derive(Default, Serialize, Deserialize)] struct Account { n: u64 }
/// # #[derive(Event, Serialize, Deserialize)] #[event(name = "opened")] struct Opened;
/// # #[aggregate(name = "account")] impl Account { #[applies_event] fn opened(&mut self, _: &Opened) {} }
/// let config = AggregateConfig::<Account>::new().snapshot_every(100).skip_unknown_events();
/// ```
#[must_use]
pub struct AggregateConfig<A> {
    snapshot: Option<SnapshotCodec>,
    skip_unknown_events: bool,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> Default for AggregateConfig<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A: Aggregate> AggregateConfig<A> {
    /// The defaults: no snapshots, unknown stored events are an error.
    pub fn new() -> Self {
        Self {
            snapshot: None,
            skip_unknown_events: false,
            _aggregate: PhantomData,
        }
    }

    /// Skips stored events whose name the aggregate does not know, with a
    /// warning, instead of failing the load.
    pub fn skip_unknown_events(mut self) -> Self {
        self.skip_unknown_events = true;
        self
    }
}

impl<A: Aggregate + Serialize + DeserializeOwned> AggregateConfig<A> {
    /// Takes a snapshot each time the stream's version crosses a multiple of
    /// `every`; loads start from the latest snapshot whose state version is
    /// `A::STATE_VERSION`. `every` must be at least 1.
    pub fn snapshot_every(mut self, every: u64) -> Self {
        fn encode<A: Serialize + 'static>(state: &(dyn Any + Send)) -> Option<Result<Vec<u8>, serde_json::Error>> {
            state.downcast_ref::<A>().map(serde_json::to_vec)
        }
        fn decode<A: DeserializeOwned + Send + 'static>(payload: &[u8]) -> Result<ErasedState, serde_json::Error> {
            serde_json::from_slice::<A>(payload).map(|a| Box::new(a) as ErasedState)
        }
        self.snapshot = Some(SnapshotCodec {
            every,
            encode: encode::<A>,
            decode: decode::<A>,
        });
        self
    }
}

/// One registered aggregate type.
pub(crate) struct Registration {
    pub(crate) name: &'static str,
    /// The name, shared by every stream id of the aggregate (no allocation per command).
    pub(crate) shared_name: Arc<str>,
    pub(crate) type_name: &'static str,
    pub(crate) snapshot: Option<SnapshotCodec>,
    pub(crate) skip_unknown_events: bool,
    pub(crate) required_services: fn() -> Vec<crate::domain::services::ServiceKey>,
    /// The event types the aggregate applies, for `build()`'s name check.
    pub(crate) events: fn() -> Vec<crate::domain::event::EventType>,
}

impl<A: Aggregate> AggregateConfig<A> {
    /// The registration of `A` with this configuration.
    pub(crate) fn registration(self) -> Registration {
        Registration {
            name: A::NAME,
            shared_name: Arc::from(A::NAME),
            type_name: std::any::type_name::<A>(),
            snapshot: self.snapshot,
            skip_unknown_events: self.skip_unknown_events,
            required_services: A::required_services,
            events: <A::Event as crate::domain::event::EventSet>::event_types,
        }
    }
}

/// Settings of the command pipeline.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) max_attempts: u32,
    pub(crate) cache_capacity: usize,
    pub(crate) max_event_bytes: usize,
    pub(crate) idempotency_ttl: Duration,
    pub(crate) idempotency_lease: Duration,
    pub(crate) idempotency_purge_every: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_attempts: 16,
            cache_capacity: 10_000,
            max_event_bytes: 1024 * 1024,
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            idempotency_lease: Duration::from_secs(30),
            idempotency_purge_every: Duration::from_secs(10 * 60),
        }
    }
}
