//! The application: registered aggregates and services over the backends,
//! and the command pipeline (load, handle, append, retry on conflict).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::aggregate::{Aggregate, Loaded};
use crate::cache::AggregateCache;
use crate::command::{HandledCommand, HandlerError};
use crate::error::{BuildError, CommandError, LoadError, QueryError};
use crate::event::EventSet;
use crate::ids::{AggregateId, CausationId, CommandId, CorrelationId, EventId, Position, StreamId, Timestamp, Version};
use crate::middleware::{CommandContext, Core, Layer, LayerError, Next, Outcome, Rejection};
use crate::projection::{HandledQuery, Projection, ProjectionHandler};
use crate::saga::Saga;
use crate::services::Services;
use crate::store::{self as idempotency, Claim, IdempotencyRecord, IdempotencyStore, MemoryIdempotencyStore};
use crate::store::{
    BoxFuture, EventFilter, EventMetadata, EventStore, ExpectedVersion, Headers, MemoryEventStore, NewEvent,
    RecordedEvent, StoreError,
};
use crate::store::{CheckpointStore, DeadLetter, DeadLetterStore, MemoryCheckpointStore, MemoryDeadLetterStore};
use crate::store::{MemorySagaStateStore, SagaStateStore};
use crate::store::{MemorySnapshotStore, Snapshot, SnapshotStore};
use crate::subscription::{Subscriber, SubscriberConfig, SubscriberStatus, SubscriptionError};

type ErasedState = Box<dyn Any + Send>;
type EncodeState = fn(&(dyn Any + Send)) -> Option<Result<Vec<u8>, serde_json::Error>>;
type DecodeState = fn(&[u8]) -> Result<ErasedState, serde_json::Error>;

#[derive(Clone, Copy)]
struct SnapshotCodec {
    every: u64,
    encode: EncodeState,
    decode: DecodeState,
}

/// How one aggregate type is run; passed to [`ApplicationBuilder::aggregate_with`].
///
/// # Examples
///
/// ```
/// # use interlock::prelude::*;
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

struct Registration {
    name: &'static str,
    /// The name, shared by every stream id of the aggregate (no allocation per command).
    shared_name: Arc<str>,
    type_name: &'static str,
    snapshot: Option<SnapshotCodec>,
    skip_unknown_events: bool,
    required_services: fn() -> Vec<crate::services::ServiceKey>,
}

/// Settings of the command pipeline.
#[derive(Clone, Debug)]
struct Settings {
    max_attempts: u32,
    cache_capacity: usize,
    max_event_bytes: usize,
    idempotency_ttl: Duration,
    idempotency_lease: Duration,
    idempotency_purge_every: Duration,
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

/// Builds an [`Application`]; start with [`Application::builder`].
#[must_use = "call `.build().await` to get the application"]
pub struct ApplicationBuilder {
    store: Option<Arc<dyn EventStore>>,
    snapshots: Option<Arc<dyn SnapshotStore>>,
    idempotency: Option<Arc<dyn IdempotencyStore>>,
    checkpoints: Option<Arc<dyn CheckpointStore>>,
    dead_letters: Option<Arc<dyn DeadLetterStore>>,
    sagas_store: Option<Arc<dyn SagaStateStore>>,
    services: Services,
    aggregates: Vec<(TypeId, Registration)>,
    projections: Vec<PendingProjection>,
    sagas: Vec<PendingSaga>,
    layers: Vec<Arc<dyn Layer>>,
    interceptors: HashMap<TypeId, Vec<Interceptor>>,
    query_interceptors: Vec<(Option<TypeId>, QueryInterceptor)>,
    settings: Settings,
    background: bool,
    publish_to: Vec<(String, Arc<dyn crate::store::EventTransport>)>,
    consume_from: Option<(Arc<dyn crate::store::EventTransport>, String)>,
    outboxes: Vec<OutboxRelay>,
}

/// An outbox and the transport its events go to.
type OutboxRelay = (Arc<dyn crate::store::Outbox>, Arc<dyn crate::store::EventTransport>);

type Interceptor = Arc<dyn Fn(&mut dyn Any, &mut CommandContext) -> Result<(), Rejection> + Send + Sync>;
type QueryInterceptor = Arc<dyn Fn(&dyn Any, &QueryContext) -> Result<(), Rejection> + Send + Sync>;

/// A query on its way to its projection, as interceptors see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryContext {
    /// The query's Rust type name.
    pub query: &'static str,
    /// The projection that answers it.
    pub projection: &'static str,
}

/// How a projection is run; see [`ApplicationBuilder::projection_with`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct ProjectionConfig {
    inline: bool,
    subscriber: SubscriberConfig,
}

impl ProjectionConfig {
    /// Catch-up: a background subscriber follows the log (the default).
    pub fn catch_up() -> Self {
        Self::default()
    }

    /// Inline: `dispatch` also brings the projection up to the command's
    /// events before it returns (read-your-writes).
    pub fn inline() -> Self {
        Self {
            inline: true,
            ..Self::default()
        }
    }

    /// Sets retries, failure policy, batch size and poll interval.
    pub fn subscriber(mut self, config: SubscriberConfig) -> Self {
        self.subscriber = config;
        self
    }
}

type MakeSubscriber =
    Box<dyn FnOnce(&SubscriberDeps, std::sync::Weak<Inner>) -> (Arc<Subscriber>, Arc<dyn Any + Send + Sync>) + Send>;

struct PendingProjection {
    type_id: TypeId,
    name: &'static str,
    inline: bool,
    make: MakeSubscriber,
}

struct PendingSaga {
    type_id: TypeId,
    name: &'static str,
    make: MakeSubscriber,
    deadlines: fn(std::sync::Weak<Inner>, Duration, tokio::sync::watch::Receiver<bool>) -> BoxFuture<'static, ()>,
    poll: Duration,
}

/// What a subscriber needs from the application.
pub(crate) struct SubscriberDeps {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) checkpoints: Arc<dyn CheckpointStore>,
    pub(crate) dead_letters: Arc<dyn DeadLetterStore>,
}

impl SubscriberDeps {
    /// A subscriber named `name` over the events named `names`.
    fn subscriber(
        &self,
        name: String,
        names: &'static [&'static str],
        config: SubscriberConfig,
        handler: Box<dyn crate::subscription::ErasedHandler>,
    ) -> Arc<Subscriber> {
        Arc::new(Subscriber::new(
            name,
            EventFilter::all().event_names(names.iter().copied()),
            config,
            Arc::clone(&self.store),
            Arc::clone(&self.checkpoints),
            Arc::clone(&self.dead_letters),
            handler,
        ))
    }
}

struct ProjectionEntry {
    name: &'static str,
    inline: bool,
    model: Arc<dyn Any + Send + Sync>,
    subscriber: Arc<Subscriber>,
}

impl ApplicationBuilder {
    fn new() -> Self {
        Self {
            store: None,
            snapshots: None,
            idempotency: None,
            checkpoints: None,
            dead_letters: None,
            sagas_store: None,
            services: Services::new(),
            aggregates: Vec::new(),
            projections: Vec::new(),
            sagas: Vec::new(),
            layers: Vec::new(),
            interceptors: HashMap::new(),
            query_interceptors: Vec::new(),
            settings: Settings::default(),
            background: true,
            publish_to: Vec::new(),
            consume_from: None,
            outboxes: Vec::new(),
        }
    }

    /// Publishes the events recorded in a transactional `outbox` (a SQL
    /// store with its outbox enabled, say) to `transport`: in the background,
    /// and on [`Application::publish_pending`].
    pub fn publish_outbox_to(
        mut self,
        outbox: impl crate::store::Outbox,
        transport: impl crate::store::EventTransport,
    ) -> Self {
        self.outboxes.push((Arc::new(outbox), Arc::new(transport)));
        self
    }

    /// Relays every committed event of this application's log to
    /// `transport`, at least once, from a checkpoint named `relay:<name>`.
    pub fn publish_to(mut self, name: impl Into<String>, transport: impl crate::store::EventTransport) -> Self {
        self.publish_to.push((name.into(), Arc::new(transport)));
        self
    }

    /// Feeds this application's projections and sagas from `transport`
    /// (as consumer `consumer`) instead of from its own event store; their
    /// checkpoints are the producer's global positions, so re-deliveries
    /// are skipped. Inline projections are fed from the transport too.
    pub fn consume_from(mut self, consumer: impl Into<String>, transport: impl crate::store::EventTransport) -> Self {
        self.consume_from = Some((Arc::new(transport), consumer.into()));
        self
    }

    /// Whether `build()` starts the background followers of projections and
    /// sagas and the deadline pollers (default `true`). Without them,
    /// subscribers run only when driven: inline projections by dispatch,
    /// the others by [`SubscriberHandle::catch_up`] and
    /// [`Application::fire_due_deadlines`] (deterministic tests, batch jobs).
    pub fn background(mut self, enabled: bool) -> Self {
        self.background = enabled;
        self
    }

    /// Registers a catch-up projection: a background subscriber feeds it
    /// from the global log, resuming from its checkpoint.
    pub fn projection<P: Projection>(self, projection: P) -> Self {
        self.projection_with(projection, ProjectionConfig::catch_up())
    }

    /// Registers a projection with `config` (inline or catch-up, retries,
    /// failure policy).
    pub fn projection_with<P: Projection>(mut self, projection: P, config: ProjectionConfig) -> Self {
        let model = Arc::new(tokio::sync::RwLock::new(projection));
        let subscriber_config = config.subscriber.clone();
        let make: MakeSubscriber = Box::new(move |deps, _app| {
            let subscriber = deps.subscriber(
                format!("projection:{}", P::NAME),
                <P::Event as EventSet>::NAMES,
                subscriber_config,
                Box::new(ProjectionHandler {
                    model: Arc::clone(&model),
                }),
            );
            (subscriber, model as Arc<dyn Any + Send + Sync>)
        });
        self.projections.retain(|p| p.type_id != TypeId::of::<P>());
        self.projections.push(PendingProjection {
            type_id: TypeId::of::<P>(),
            name: P::NAME,
            inline: config.inline,
            make,
        });
        self
    }

    /// Registers saga `S`, with the default subscriber configuration.
    pub fn saga<S: Saga>(self) -> Self {
        self.saga_with::<S>(SubscriberConfig::default())
    }

    /// Registers saga `S`: a background subscriber runs its steps, and a
    /// poller fires its due deadlines every `config.poll_interval`.
    pub fn saga_with<S: Saga>(mut self, config: SubscriberConfig) -> Self {
        let poll = config.poll_interval;
        let make: MakeSubscriber = Box::new(move |deps, app| {
            let subscriber = deps.subscriber(
                format!("saga:{}", S::NAME),
                <S::Event as EventSet>::NAMES,
                config,
                Box::new(crate::saga_runner::SagaHandler::<S>::new(app)),
            );
            (subscriber, Arc::new(()) as Arc<dyn Any + Send + Sync>)
        });
        self.sagas.retain(|p| p.type_id != TypeId::of::<S>());
        self.sagas.push(PendingSaga {
            type_id: TypeId::of::<S>(),
            name: S::NAME,
            make,
            deadlines: crate::saga_runner::deadline_poller::<S>,
            poll,
        });
        self
    }

    /// Adds a middleware layer around dispatch. The first added is the
    /// outermost.
    pub fn layer(mut self, layer: impl Layer) -> Self {
        self.layers.push(Arc::new(layer));
        self
    }

    /// Adds a typed interceptor for command `C`: it runs before the layers,
    /// may change the command and its options, or reject it.
    pub fn intercept<C: HandledCommand>(
        mut self,
        interceptor: impl Fn(&mut C, &mut CommandContext) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> Self {
        let erased: Interceptor =
            Arc::new(
                move |command: &mut dyn Any, ctx: &mut CommandContext| match command.downcast_mut::<C>() {
                    Some(c) => interceptor(c, ctx),
                    None => Ok(()),
                },
            );
        self.interceptors.entry(TypeId::of::<C>()).or_default().push(erased);
        self
    }

    /// Adds a typed interceptor for query `Q`.
    pub fn intercept_query<Q: HandledQuery>(
        mut self,
        interceptor: impl Fn(&Q, &QueryContext) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> Self {
        let erased: QueryInterceptor =
            Arc::new(
                move |query: &dyn Any, ctx: &QueryContext| match query.downcast_ref::<Q>() {
                    Some(q) => interceptor(q, ctx),
                    None => Ok(()),
                },
            );
        self.query_interceptors.push((Some(TypeId::of::<Q>()), erased));
        self
    }

    /// Adds an interceptor for every query.
    pub fn intercept_queries(
        mut self,
        interceptor: impl Fn(&QueryContext) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> Self {
        let erased: QueryInterceptor = Arc::new(move |_: &dyn Any, ctx: &QueryContext| interceptor(ctx));
        self.query_interceptors.push((None, erased));
        self
    }

    /// The checkpoint store of projections and sagas (in-memory when not set).
    pub fn checkpoint_store(mut self, store: impl CheckpointStore) -> Self {
        self.checkpoints = Some(Arc::new(store));
        self
    }

    /// The dead-letter store (in-memory when not set).
    pub fn dead_letter_store(mut self, store: impl DeadLetterStore) -> Self {
        self.dead_letters = Some(Arc::new(store));
        self
    }

    /// The saga state store (in-memory when not set).
    pub fn saga_state_store(mut self, store: impl SagaStateStore) -> Self {
        self.sagas_store = Some(Arc::new(store));
        self
    }

    /// Registers aggregate `A` with the default [`AggregateConfig`].
    pub fn aggregate<A: Aggregate>(self) -> Self {
        self.aggregate_with(AggregateConfig::<A>::new())
    }

    /// Registers aggregate `A` with `config`.
    pub fn aggregate_with<A: Aggregate>(mut self, config: AggregateConfig<A>) -> Self {
        let registration = Registration {
            name: A::NAME,
            shared_name: Arc::from(A::NAME),
            type_name: std::any::type_name::<A>(),
            snapshot: config.snapshot,
            skip_unknown_events: config.skip_unknown_events,
            required_services: A::required_services,
        };
        self.aggregates.retain(|(id, _)| *id != TypeId::of::<A>());
        self.aggregates.push((TypeId::of::<A>(), registration));
        self
    }

    /// Registers a service: handlers that take a `&T` parameter receive it.
    pub fn service<T: Any + Send + Sync>(mut self, service: T) -> Self {
        self.services.insert(service);
        self
    }

    /// Uses `backend` for every store: events, snapshots, idempotency,
    /// checkpoints, dead letters and saga state (a SQL backend, say).
    pub fn backend<B>(self, backend: B) -> Self
    where
        B: EventStore + SnapshotStore + IdempotencyStore + CheckpointStore + DeadLetterStore + SagaStateStore + Clone,
    {
        self.event_store(backend.clone())
            .snapshot_store(backend.clone())
            .idempotency_store(backend.clone())
            .checkpoint_store(backend.clone())
            .dead_letter_store(backend.clone())
            .saga_state_store(backend)
    }

    /// The event store (in-memory when not set).
    pub fn event_store(mut self, store: impl EventStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The event store, already shared.
    pub fn shared_event_store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The snapshot store (in-memory when not set).
    pub fn snapshot_store(mut self, store: impl SnapshotStore) -> Self {
        self.snapshots = Some(Arc::new(store));
        self
    }

    /// The idempotency store (in-memory when not set).
    pub fn idempotency_store(mut self, store: impl IdempotencyStore) -> Self {
        self.idempotency = Some(Arc::new(store));
        self
    }

    /// How many times a command runs when its append conflicts (default 16;
    /// at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.settings.max_attempts = attempts;
        self
    }

    /// How many aggregates the in-process cache holds (default 10 000; 0 disables it).
    pub fn cache_capacity(mut self, aggregates: usize) -> Self {
        self.settings.cache_capacity = aggregates;
        self
    }

    /// The largest encoded event accepted, in bytes (default 1 MiB).
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.settings.max_event_bytes = bytes;
        self
    }

    /// How often expired idempotency records are deleted in the background
    /// (default every 10 minutes; zero turns the cleanup off).
    pub fn idempotency_purge_every(mut self, interval: Duration) -> Self {
        self.settings.idempotency_purge_every = interval;
        self
    }

    /// How long a processed command id is remembered (default 24 h).
    pub fn idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.settings.idempotency_ttl = ttl;
        self
    }

    /// Validates the configuration and builds the application.
    ///
    /// # Errors
    ///
    /// [`BuildError`] for a missing service, two aggregates with one name, or
    /// an invalid setting.
    pub async fn build(self) -> Result<Application, BuildError> {
        let s = &self.settings;
        if s.max_attempts == 0 {
            return Err(BuildError::InvalidConfig {
                setting: "max_attempts",
                reason: "must be at least 1".into(),
            });
        }
        if s.max_event_bytes == 0 {
            return Err(BuildError::InvalidConfig {
                setting: "max_event_bytes",
                reason: "must be at least 1".into(),
            });
        }
        if s.idempotency_ttl.is_zero() {
            return Err(BuildError::InvalidConfig {
                setting: "idempotency_ttl",
                reason: "must be longer than zero".into(),
            });
        }
        let mut names: HashMap<&'static str, &'static str> = HashMap::new();
        for (_, reg) in &self.aggregates {
            if let Some(first) = names.insert(reg.name, reg.type_name) {
                return Err(BuildError::DuplicateAggregateName {
                    name: reg.name,
                    first,
                    second: reg.type_name,
                });
            }
            if reg.snapshot.is_some_and(|s| s.every == 0) {
                return Err(BuildError::InvalidConfig {
                    setting: "snapshot_every",
                    reason: format!("aggregate `{}`: must be at least 1", reg.name),
                });
            }
            if let Some(service) = (reg.required_services)()
                .into_iter()
                .find(|k| !self.services.contains(k))
            {
                return Err(BuildError::MissingService {
                    aggregate: reg.name,
                    service,
                });
            }
        }
        let mut subscriber_names: HashMap<String, &'static str> = HashMap::new();
        for name in self
            .projections
            .iter()
            .map(|p| format!("projection:{}", p.name))
            .chain(self.sagas.iter().map(|s| format!("saga:{}", s.name)))
        {
            if subscriber_names.insert(name.clone(), "").is_some() {
                return Err(BuildError::InvalidConfig {
                    setting: "projection/saga name",
                    reason: format!("two subscribers are named `{name}`"),
                });
            }
        }
        let deps = SubscriberDeps {
            store: self.store.unwrap_or_else(|| Arc::new(MemoryEventStore::new())),
            checkpoints: self
                .checkpoints
                .unwrap_or_else(|| Arc::new(MemoryCheckpointStore::new())),
            dead_letters: self
                .dead_letters
                .unwrap_or_else(|| Arc::new(MemoryDeadLetterStore::new())),
        };
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let projections = self.projections;
        let sagas = self.sagas;
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let mut projection_entries = HashMap::new();
            let mut saga_entries = HashMap::new();
            for pending in projections {
                let (subscriber, model) = (pending.make)(&deps, weak.clone());
                projection_entries.insert(
                    pending.type_id,
                    ProjectionEntry {
                        name: pending.name,
                        inline: pending.inline,
                        model,
                        subscriber,
                    },
                );
            }
            let mut deadline_pollers = Vec::new();
            for pending in sagas {
                let (subscriber, _) = (pending.make)(&deps, weak.clone());
                saga_entries.insert(pending.type_id, (pending.name, subscriber));
                deadline_pollers.push((pending.deadlines, pending.poll));
            }
            let relays = self
                .publish_to
                .into_iter()
                .map(|(name, transport)| {
                    Arc::new(Subscriber::new(
                        format!("relay:{name}"),
                        EventFilter::all(),
                        SubscriberConfig::default(),
                        Arc::clone(&deps.store),
                        Arc::clone(&deps.checkpoints),
                        Arc::clone(&deps.dead_letters),
                        Box::new(crate::processes::relay::RelayHandler { transport }),
                    ))
                })
                .collect();
            let consuming = self.consume_from.is_some();
            Inner {
                outboxes: self.outboxes,
                relays,
                consume_from: self.consume_from,
                store: Arc::clone(&deps.store),
                snapshots: self.snapshots.unwrap_or_else(|| Arc::new(MemorySnapshotStore::new())),
                idempotency: self
                    .idempotency
                    .unwrap_or_else(|| Arc::new(MemoryIdempotencyStore::new())),
                sagas_store: self
                    .sagas_store
                    .unwrap_or_else(|| Arc::new(MemorySagaStateStore::new())),
                cache: AggregateCache::new(self.settings.cache_capacity),
                services: self.services,
                aggregates: self.aggregates.into_iter().collect(),
                inline: projection_entries
                    .values()
                    .filter(|p| p.inline && !consuming)
                    .map(|p| Arc::clone(&p.subscriber))
                    .collect(),
                projections: projection_entries,
                sagas: saga_entries,
                deadline_pollers: parking_lot::Mutex::new(deadline_pollers),
                layers: self.layers,
                interceptors: self.interceptors,
                query_interceptors: self.query_interceptors,
                settings: self.settings,
                shutdown,
            }
        });
        let app = Application { inner };
        if self.background {
            app.start_background();
        }
        Ok(app)
    }
}

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
    pub positions: Vec<Position>,
    /// Whether this is the recorded outcome of an earlier dispatch with the same id.
    pub replayed: bool,
    /// How many times the handler ran (more than 1 after conflicts).
    pub attempts: u32,
}

/// Which state of an aggregate to load with [`Application::load_as_of`].
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

pub(crate) struct Inner {
    outboxes: Vec<OutboxRelay>,
    relays: Vec<Arc<Subscriber>>,
    consume_from: Option<(Arc<dyn crate::store::EventTransport>, String)>,
    store: Arc<dyn EventStore>,
    snapshots: Arc<dyn SnapshotStore>,
    idempotency: Arc<dyn IdempotencyStore>,
    pub(crate) sagas_store: Arc<dyn SagaStateStore>,
    cache: AggregateCache,
    services: Services,
    aggregates: HashMap<TypeId, Registration>,
    projections: HashMap<TypeId, ProjectionEntry>,
    inline: Vec<Arc<Subscriber>>,
    sagas: HashMap<TypeId, (&'static str, Arc<Subscriber>)>,
    #[allow(clippy::type_complexity)]
    deadline_pollers: parking_lot::Mutex<
        Vec<(
            fn(std::sync::Weak<Inner>, Duration, tokio::sync::watch::Receiver<bool>) -> BoxFuture<'static, ()>,
            Duration,
        )>,
    >,
    layers: Vec<Arc<dyn Layer>>,
    interceptors: HashMap<TypeId, Vec<Interceptor>>,
    query_interceptors: Vec<(Option<TypeId>, QueryInterceptor)>,
    settings: Settings,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Background subscribers and pollers stop with the last handle.
        self.shutdown.send_replace(true);
    }
}

/// A handle on one subscriber (a projection or a saga): health, dead
/// letters, replay, resume.
#[derive(Clone)]
pub struct SubscriberHandle {
    subscriber: Arc<Subscriber>,
}

impl std::fmt::Debug for SubscriberHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberHandle")
            .field("name", &self.subscriber.name)
            .finish()
    }
}

impl SubscriberHandle {
    /// The subscriber's name (`projection:<name>` or `saga:<name>`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.subscriber.name
    }

    /// Its checkpoint, lag and dead-letter count.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn status(&self) -> Result<SubscriberStatus, SubscriptionError> {
        self.subscriber.status().await
    }

    /// Processes everything up to the head of the log now.
    ///
    /// # Errors
    ///
    /// When a store fails, or the subscriber is stopped.
    pub async fn catch_up(&self) -> Result<Position, SubscriptionError> {
        self.subscriber.catch_up(None).await
    }

    /// Processes events until the checkpoint reaches `position` (or the head).
    ///
    /// # Errors
    ///
    /// When a store fails, or the subscriber is stopped.
    pub async fn catch_up_to(&self, position: Position) -> Result<Position, SubscriptionError> {
        self.subscriber.catch_up(Some(position)).await
    }

    /// The events it parked.
    ///
    /// # Errors
    ///
    /// When the dead-letter store fails.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, SubscriptionError> {
        self.subscriber.dead_letters().await
    }

    /// Runs the handler again on every parked event; those that succeed
    /// leave the dead-letter store. Returns how many succeeded.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn replay_dead_letters(&self) -> Result<usize, SubscriptionError> {
        self.subscriber.replay_dead_letters().await
    }

    /// Restarts a subscriber stopped by `FailurePolicy::ParkAndStop`: the
    /// event it stopped on is tried again.
    pub async fn resume(&self) {
        self.subscriber.resume().await;
    }
}

/// A running application: dispatches commands to aggregates over the
/// configured backends. Cheap to clone and share between tasks.
///
/// # Examples
///
/// ```
/// # use interlock::prelude::*;
/// # #[derive(Default)] struct Counter { n: u64 }
/// # #[derive(Event, Serialize, Deserialize)] #[event(name = "counter.incremented")] struct Incremented;
/// # #[derive(Command, Clone)] struct Increment { #[aggregate_id] id: u64 }
/// # #[aggregate(name = "counter")]
/// # impl Counter {
/// #     #[handles_command] fn increment(&self, _: Increment) -> Incremented { Incremented }
/// #     #[applies_event] fn incremented(&mut self, _: &Incremented) { self.n += 1 }
/// # }
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let app = Application::builder().aggregate::<Counter>().build().await?;
/// app.dispatch(Increment { id: 1 }).await?;
/// let counter = app.load::<Counter>(&1).await?;
/// assert_eq!(counter.state.n, 1);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Application {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field(
                "aggregates",
                &self.inner.aggregates.values().map(|r| r.name).collect::<Vec<_>>(),
            )
            .field("services", &self.inner.services)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Starts building an application.
    pub fn builder() -> ApplicationBuilder {
        ApplicationBuilder::new()
    }

    /// The event store.
    #[must_use]
    pub fn event_store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    pub(crate) fn services(&self) -> &Services {
        &self.inner.services
    }

    pub(crate) fn saga_store(&self) -> &Arc<dyn SagaStateStore> {
        &self.inner.sagas_store
    }

    /// Fires the deadlines of saga `S` that are due now, and returns how
    /// many fired. The background poller does this every poll interval;
    /// tests call it to fire deadlines deterministically.
    ///
    /// # Errors
    ///
    /// The first deadline handler or store failure; deadlines not fired stay
    /// scheduled.
    pub async fn fire_due_deadlines<S: Saga>(&self) -> Result<usize, SubscriptionError> {
        crate::saga_runner::fire_due::<S>(self, Timestamp::now())
            .await
            .map_err(|e| SubscriptionError::Deadline {
                saga: S::NAME,
                source: e.0,
            })
    }

    fn start_background(&self) {
        let inner = &self.inner;
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no tokio runtime: projections and sagas are not followed in the background");
            return;
        };
        for relay in &inner.relays {
            runtime.spawn(Arc::clone(relay).follow(inner.shutdown.subscribe()));
        }
        for (outbox, transport) in &inner.outboxes {
            runtime.spawn(outbox_loop(
                Arc::clone(outbox),
                Arc::clone(transport),
                inner.shutdown.subscribe(),
            ));
        }
        if inner.consume_from.is_some() {
            runtime.spawn(consume_loop(Arc::downgrade(inner), inner.shutdown.subscribe()));
        } else {
            let subscribers = inner
                .projections
                .values()
                .map(|p| Arc::clone(&p.subscriber))
                .chain(inner.sagas.values().map(|(_, s)| Arc::clone(s)));
            for subscriber in subscribers {
                runtime.spawn(subscriber.follow(inner.shutdown.subscribe()));
            }
        }
        if !inner.settings.idempotency_purge_every.is_zero() {
            runtime.spawn(purge_loop(
                Arc::clone(&inner.idempotency),
                inner.settings.idempotency_purge_every,
                inner.shutdown.subscribe(),
            ));
        }
        for (poller, poll) in inner.deadline_pollers.lock().drain(..) {
            runtime.spawn(poller(Arc::downgrade(inner), poll, inner.shutdown.subscribe()));
        }
    }

    /// Publishes the log's events not yet relayed to every `publish_to`
    /// transport; returns the last position relayed. (The background relay
    /// does this whenever the log moves.)
    ///
    /// # Errors
    ///
    /// When the store or the transport fails.
    pub async fn publish_pending(&self) -> Result<Position, SubscriptionError> {
        let mut last = Position::START;
        for relay in &self.inner.relays {
            last = relay.catch_up(None).await?;
        }
        for (outbox, transport) in &self.inner.outboxes {
            crate::processes::relay::drain_outbox(outbox.as_ref(), transport.as_ref())
                .await
                .map_err(|source| SubscriptionError::Store {
                    subscriber: "outbox".into(),
                    source,
                })?;
        }
        Ok(last)
    }

    /// Receives up to `max` events from the `consume_from` transport (waiting
    /// up to `wait`), feeds them to every projection and saga, and
    /// acknowledges them; returns how many were received. (The background
    /// consumer does this in a loop.)
    ///
    /// # Errors
    ///
    /// When the transport or a store fails, or a subscriber is stopped: the
    /// deliveries are then not acknowledged and come again.
    pub async fn consume_transport(&self, max: usize, wait: Duration) -> Result<usize, SubscriptionError> {
        let Some((transport, consumer)) = &self.inner.consume_from else {
            return Ok(0);
        };
        let store_error = |source| SubscriptionError::Store {
            subscriber: format!("consumer:{consumer}"),
            source,
        };
        let deliveries = transport.receive(consumer, max, wait).await.map_err(store_error)?;
        for delivery in &deliveries {
            let subscribers = self
                .inner
                .projections
                .values()
                .map(|p| &p.subscriber)
                .chain(self.inner.sagas.values().map(|(_, s)| s));
            for subscriber in subscribers {
                subscriber.deliver(&delivery.event).await?;
            }
            transport.ack(consumer, delivery.offset).await.map_err(store_error)?;
        }
        Ok(deliveries.len())
    }

    /// Stops the background subscribers and deadline pollers. (They also
    /// stop when the last clone of the application is dropped.)
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Answers `query` from the projection that handles it.
    ///
    /// # Errors
    ///
    /// [`QueryError::NotRegistered`] when the projection is not registered,
    /// [`QueryError::Rejected`] when an interceptor refuses the query.
    pub async fn query<Q: HandledQuery>(&self, query: Q) -> Result<Q::Output, QueryError> {
        let entry = self
            .inner
            .projections
            .get(&TypeId::of::<Q::Projection>())
            .ok_or(QueryError::NotRegistered {
                projection: <Q::Projection as Projection>::NAME,
            })?;
        if !self.inner.query_interceptors.is_empty() {
            let ctx = QueryContext {
                query: std::any::type_name::<Q>(),
                projection: entry.name,
            };
            for (target, interceptor) in &self.inner.query_interceptors {
                if target.is_none_or(|t| t == TypeId::of::<Q>()) {
                    interceptor(&query, &ctx).map_err(|r| QueryError::Rejected {
                        query: ctx.query,
                        reason: r.0,
                    })?;
                }
            }
        }
        let model = Arc::clone(&entry.model)
            .downcast::<tokio::sync::RwLock<Q::Projection>>()
            .map_err(|_| QueryError::NotRegistered {
                projection: <Q::Projection as Projection>::NAME,
            })?;
        let guard = model.read().await;
        Ok(Q::handle(&guard, query).await)
    }

    /// The subscriber of projection `P`.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::NotRegistered`] when `P` is not registered.
    pub fn projection_handle<P: Projection>(&self) -> Result<SubscriberHandle, SubscriptionError> {
        self.inner
            .projections
            .get(&TypeId::of::<P>())
            .map(|p| SubscriberHandle {
                subscriber: Arc::clone(&p.subscriber),
            })
            .ok_or(SubscriptionError::NotRegistered(P::NAME))
    }

    /// The subscriber of saga `S`.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::NotRegistered`] when `S` is not registered.
    pub fn saga_handle<S: Saga>(&self) -> Result<SubscriberHandle, SubscriptionError> {
        self.inner
            .sagas
            .get(&TypeId::of::<S>())
            .map(|(_, s)| SubscriberHandle {
                subscriber: Arc::clone(s),
            })
            .ok_or(SubscriptionError::NotRegistered(S::NAME))
    }

    /// The status of every projection and saga, for health checks.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn subscriber_statuses(&self) -> Result<Vec<SubscriberStatus>, SubscriptionError> {
        let mut statuses = Vec::new();
        let subscribers = self
            .inner
            .projections
            .values()
            .map(|p| &p.subscriber)
            .chain(self.inner.sagas.values().map(|(_, s)| s));
        for subscriber in subscribers {
            statuses.push(subscriber.status().await?);
        }
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(statuses)
    }

    /// Rebuilds projection `P` from position 0: its read model is replaced
    /// by `fresh`, its checkpoint reset, and the whole log replayed into it.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError`] when `P` is not registered or a store fails.
    pub async fn rebuild_projection<P: Projection>(&self, fresh: P) -> Result<Position, SubscriptionError> {
        let entry = self
            .inner
            .projections
            .get(&TypeId::of::<P>())
            .ok_or(SubscriptionError::NotRegistered(P::NAME))?;
        let model = Arc::clone(&entry.model)
            .downcast::<tokio::sync::RwLock<P>>()
            .map_err(|_| SubscriptionError::NotRegistered(P::NAME))?;
        let mut guard = model.write().await;
        entry.subscriber.rewind(|| *guard = fresh).await?;
        drop(guard);
        entry.subscriber.catch_up(None).await
    }

    /// Dispatches `command` to the aggregate that handles it and returns the
    /// handler's output once its events are committed.
    ///
    /// # Errors
    ///
    /// [`CommandError::Domain`] when the handler rejects the command; the
    /// other variants for infrastructure failures.
    pub async fn dispatch<C: HandledCommand>(&self, command: C) -> Result<C::Output, CommandError<C::Error>> {
        self.dispatch_with(command, DispatchOptions::default())
            .await
            .map(|d| d.output)
    }

    /// Dispatches with explicit ids and headers, returning the full result.
    ///
    /// # Errors
    ///
    /// As [`Application::dispatch`].
    pub async fn dispatch_with<C: HandledCommand>(
        &self,
        mut command: C,
        options: DispatchOptions,
    ) -> Result<Dispatched<C::Output>, CommandError<C::Error>> {
        let registration = self.registration::<C::Aggregate>()?;
        let aggregate_id = command.aggregate_id().to_stream_key();
        let inner = &*self.inner;
        if inner.layers.is_empty() && inner.interceptors.is_empty() {
            let stream = StreamId::new(Arc::clone(&registration.shared_name), aggregate_id);
            return self.dispatch_core(registration, stream, command, options).await;
        }
        let mut ctx = CommandContext {
            command: C::NAME,
            aggregate: <C::Aggregate as Aggregate>::NAME,
            aggregate_id,
            options,
        };
        if let Some(interceptors) = inner.interceptors.get(&TypeId::of::<C>()) {
            for interceptor in interceptors {
                interceptor(&mut command, &mut ctx).map_err(|r| CommandError::Rejected {
                    layer: "interceptor".into(),
                    reason: r.0,
                })?;
            }
        }
        let stream = StreamId::new(Arc::clone(&registration.shared_name), ctx.aggregate_id.clone());
        let core = TypedCore {
            app: self,
            registration,
            stream,
            command: parking_lot::Mutex::new(command),
            result: parking_lot::Mutex::new(None),
        };
        let layered = Next::new(&inner.layers, &core).run(&mut ctx).await;
        let result = core.result.into_inner();
        match (layered, result) {
            (Err(LayerError::Rejected { layer, reason }), _) => Err(CommandError::Rejected { layer, reason }),
            (Err(LayerError::Timeout(after)), _) => Err(CommandError::Timeout(after)),
            (Ok(_), Some(result)) => result,
            (Ok(_), None) => Err(CommandError::Rejected {
                layer: "middleware".into(),
                reason: "a layer returned without running the command".into(),
            }),
        }
    }

    /// Idempotency, then the command loop.
    async fn dispatch_core<C: HandledCommand>(
        &self,
        registration: &Registration,
        stream: StreamId,
        command: C,
        options: DispatchOptions,
    ) -> Result<Dispatched<C::Output>, CommandError<C::Error>> {
        let explicit_id = options.command_id.or_else(|| command.command_id());
        let Some(command_id) = explicit_id else {
            return self.run(registration, stream, command, CommandId::new(), options).await;
        };
        // Idempotent path: claim the id, or return its recorded outcome.
        let store = &self.inner.idempotency;
        let lease = self.inner.settings.idempotency_lease;
        let mut wait = Duration::from_millis(1);
        let waited_since = std::time::Instant::now();
        loop {
            match store
                .claim(command_id, Timestamp::now(), lease)
                .await
                .map_err(CommandError::Store)?
            {
                Claim::Claimed => break,
                Claim::Completed(record) => {
                    let output = serde_json::from_slice(&record.output)
                        .map_err(|source| CommandError::RecordedOutcome { command_id, source })?;
                    return Ok(Dispatched {
                        output,
                        command_id,
                        stream: record.stream,
                        version: record.version,
                        positions: Vec::new(),
                        replayed: true,
                        attempts: 0,
                    });
                }
                Claim::InProgress => {
                    if waited_since.elapsed() >= lease {
                        return Err(CommandError::InProgress(command_id));
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(100));
                }
            }
        }
        let result = self.run(registration, stream, command, command_id, options).await;
        match &result {
            Ok(done) => {
                let output = serde_json::to_vec(&done.output);
                let now = Timestamp::now();
                match output {
                    Ok(output) => {
                        let record = IdempotencyRecord {
                            command_id,
                            stream: done.stream.clone(),
                            version: done.version,
                            output: Bytes::from(output),
                            recorded_at: now,
                            expires_at: idempotency::after(now, self.inner.settings.idempotency_ttl),
                        };
                        store.complete(record).await.map_err(CommandError::Store)?;
                    }
                    Err(e) => {
                        // The events are committed; the outcome cannot be
                        // recorded, so keep the claim until its lease ends.
                        tracing::warn!(%command_id, error = %e, "command output cannot be recorded for idempotency");
                    }
                }
            }
            Err(_) => store.release(command_id).await.map_err(CommandError::Store)?,
        }
        result
    }

    fn registration<A: Aggregate>(&self) -> Result<&Registration, LoadError> {
        self.inner
            .aggregates
            .get(&TypeId::of::<A>())
            .ok_or(LoadError::NotRegistered {
                aggregate: A::NAME,
                type_name: std::any::type_name::<A>(),
            })
    }

    /// The command loop: load, handle, append; on conflict reload and re-run.
    async fn run<C: HandledCommand>(
        &self,
        registration: &Registration,
        stream: StreamId,
        command: C,
        command_id: CommandId,
        options: DispatchOptions,
    ) -> Result<Dispatched<C::Output>, CommandError<C::Error>> {
        let inner = &*self.inner;
        let settings = &inner.settings;
        let metadata = EventMetadata {
            timestamp: None,
            correlation_id: Some(options.correlation_id.unwrap_or(CorrelationId(command_id.0))),
            causation_id: Some(options.causation_id.unwrap_or(CausationId::Command(command_id))),
            command_id: Some(command_id),
            headers: options.headers,
        };
        let mut last_conflict = (Version::INITIAL, Version::INITIAL);
        let (mut state, mut version) = self.load_latest::<C::Aggregate>(registration, &stream, true).await?;
        for attempt in 1..=settings.max_attempts {
            let decision = match C::handle(&*state, command.clone(), &inner.services).await {
                Ok(d) => d,
                Err(HandlerError::Domain(e)) => {
                    inner.cache.put(stream, state, version);
                    return Err(CommandError::Domain(e));
                }
                Err(HandlerError::MissingService(m)) => {
                    return Err(CommandError::MissingService(m));
                }
            };
            if decision.events.is_empty() {
                inner.cache.put(stream.clone(), state, version);
                return Ok(Dispatched {
                    output: decision.output,
                    command_id,
                    stream,
                    version,
                    positions: Vec::new(),
                    replayed: false,
                    attempts: attempt,
                });
            }
            let now = Timestamp::now();
            let mut new_events = Vec::with_capacity(decision.events.len());
            for event in &decision.events {
                let encoded = event.encode().map_err(|source| CommandError::Encode {
                    event: event.name(),
                    source,
                })?;
                if encoded.payload.len() > settings.max_event_bytes {
                    return Err(CommandError::EventTooLarge {
                        event: encoded.name,
                        size: encoded.payload.len(),
                        limit: settings.max_event_bytes,
                    });
                }
                let mut metadata = metadata.clone();
                metadata.timestamp = Some(now);
                new_events.push(NewEvent {
                    event_id: EventId::new(),
                    name: encoded.name.into(),
                    schema_version: encoded.version,
                    payload: encoded.payload,
                    metadata,
                });
            }
            match inner
                .store
                .append(&stream, ExpectedVersion::Exact(version), new_events)
                .await
            {
                Ok(committed) => {
                    for event in &decision.events {
                        state.apply(event);
                    }
                    self.maybe_snapshot(registration, &stream, &*state, version, committed.version)
                        .await;
                    inner.cache.put(stream, state, committed.version);
                    if let Some(last) = committed.positions.last() {
                        self.update_inline(*last).await;
                    }
                    return Ok(Dispatched {
                        output: decision.output,
                        command_id,
                        stream: committed.stream,
                        version: committed.version,
                        positions: committed.positions,
                        replayed: false,
                        attempts: attempt,
                    });
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    tracing::debug!(%stream, expected = %version, %actual, attempt, "append conflict; re-running command");
                    inner.cache.invalidate(&stream);
                    last_conflict = (version, actual);
                    // Under contention, back off a little (jittered) so the
                    // writers that keep colliding spread out.
                    if attempt > 1 {
                        let jitter = u64::from(command_id.0.random() as u8) % 64;
                        let micros = (50 * u64::from(attempt.min(20)) + jitter * 4).min(2_000);
                        tokio::time::sleep(Duration::from_micros(micros)).await;
                    }
                    // The state is right up to `version`: bring it forward with
                    // the events written since, instead of reloading it all.
                    let newer = inner
                        .store
                        .read_stream_for_load(&stream, version.next())
                        .await
                        .map_err(CommandError::Store)?;
                    let (forward, at) = fold(registration, &stream, *state, version, &newer, None)?;
                    (state, version) = (Box::new(forward), at);
                }
                Err(e) => {
                    inner.cache.invalidate(&stream);
                    return Err(CommandError::Store(e));
                }
            }
        }
        Err(CommandError::Conflict {
            stream,
            expected: last_conflict.0,
            actual: last_conflict.1,
            attempts: settings.max_attempts,
        })
    }

    /// Brings inline projections up to `position` (read-your-writes). The
    /// events are committed whatever happens here: a failure is logged, and
    /// the event dead-lettered by the subscriber's policy.
    async fn update_inline(&self, position: Position) {
        for subscriber in &self.inner.inline {
            if let Err(e) = subscriber.catch_up(Some(position)).await {
                tracing::warn!(subscriber = %subscriber.name, error = %e, "inline projection not updated");
            }
        }
    }

    async fn maybe_snapshot<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        state: &A,
        before: Version,
        after: Version,
    ) {
        let Some(codec) = registration.snapshot else {
            return;
        };
        if codec.every == 0 || before.0 / codec.every == after.0 / codec.every {
            return;
        }
        let erased: &(dyn Any + Send) = state;
        match (codec.encode)(erased) {
            Some(Ok(payload)) => {
                let snapshot = Snapshot {
                    version: after,
                    state_version: A::STATE_VERSION,
                    payload: Bytes::from(payload),
                    taken_at: Timestamp::now(),
                };
                if let Err(e) = self.inner.snapshots.save(stream, snapshot).await {
                    tracing::warn!(%stream, error = %e, "snapshot not saved");
                }
            }
            Some(Err(e)) => tracing::warn!(%stream, error = %e, "snapshot not encoded"),
            None => {}
        }
    }

    /// The latest state: from the cache if allowed, else snapshot plus events.
    async fn load_latest<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        use_cache: bool,
    ) -> Result<(Box<A>, Version), LoadError> {
        // Boxed: a cached state goes back to the cache in the same box.
        if use_cache
            && let Some((state, version)) = self.inner.cache.take(stream)
            && let Ok(state) = state.downcast::<A>()
        {
            return Ok((state, version));
        }
        let (state, version) = self.load_snapshot::<A>(registration, stream, None).await;
        let events = self.inner.store.read_stream_for_load(stream, version.next()).await?;
        let (state, version) = fold(registration, stream, state, version, &events, None)?;
        Ok((Box::new(state), version))
    }

    async fn load_snapshot<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        at_most: Option<Version>,
    ) -> (A, Version) {
        let Some(codec) = registration.snapshot else {
            return (A::default(), Version::INITIAL);
        };
        match self.inner.snapshots.load(stream).await {
            Ok(Some(s)) if s.state_version == A::STATE_VERSION && at_most.is_none_or(|v| s.version <= v) => {
                match (codec.decode)(&s.payload).map(|b| b.downcast::<A>()) {
                    Ok(Ok(state)) => return (*state, s.version),
                    Ok(Err(_)) => {}
                    Err(e) => {
                        tracing::warn!(%stream, error = %e, "snapshot ignored: cannot decode it")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%stream, error = %e, "snapshot store failed; loading from events")
            }
        }
        (A::default(), Version::INITIAL)
    }

    /// Loads the current state of aggregate `A` with id `id`.
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the store fails or a stored event does not decode.
    pub async fn load<A: Aggregate>(&self, id: &(impl AggregateId + ?Sized)) -> Result<Loaded<A>, LoadError> {
        let registration = self.registration::<A>()?;
        let stream = StreamId::new(A::NAME, id.to_stream_key());
        let (state, version) = self.load_snapshot::<A>(registration, &stream, None).await;
        let events = self.inner.store.read_stream_for_load(&stream, version.next()).await?;
        let (state, version) = fold(registration, &stream, state, version, &events, None)?;
        Ok(Loaded { state, version })
    }

    /// Loads the state of aggregate `A` as it was at a version or a time
    /// (temporal query). Past the end of the stream this is the current state.
    ///
    /// # Errors
    ///
    /// As [`Application::load`].
    pub async fn load_as_of<A: Aggregate>(
        &self,
        id: &(impl AggregateId + ?Sized),
        as_of: impl Into<AsOf>,
    ) -> Result<Loaded<A>, LoadError> {
        let registration = self.registration::<A>()?;
        let stream = StreamId::new(A::NAME, id.to_stream_key());
        let (state, version, until, time) = match as_of.into() {
            AsOf::Version(v) => {
                let (state, version) = self.load_snapshot::<A>(registration, &stream, Some(v)).await;
                (state, version, Some(v), None)
            }
            AsOf::Time(t) => (A::default(), Version::INITIAL, None, Some(t)),
        };
        if until.is_some_and(|u| u <= version) {
            return Ok(Loaded { state, version });
        }
        let events = self.inner.store.read_stream(&stream, version.next(), until).await?;
        let (state, version) = fold(registration, &stream, state, version, &events, time)?;
        Ok(Loaded { state, version })
    }
}

/// Folds stored events into a state, checking the versions are consecutive.
/// With `until_time`, stops at the first event recorded after it.
fn fold<A: Aggregate>(
    registration: &Registration,
    stream: &StreamId,
    mut state: A,
    mut version: Version,
    events: &[RecordedEvent],
    until_time: Option<Timestamp>,
) -> Result<(A, Version), LoadError> {
    for recorded in events {
        if until_time.is_some_and(|t| recorded.metadata.timestamp.is_some_and(|ts| ts > t)) {
            break;
        }
        if recorded.version != version.next() {
            return Err(LoadError::Gap {
                stream: stream.clone(),
                expected: version.next(),
                found: recorded.version,
            });
        }
        match A::Event::decode(&recorded.name, recorded.schema_version, &recorded.payload) {
            Ok(event) => state.apply(&event),
            Err(crate::event::EventDecodeError::UnknownEvent { name }) if registration.skip_unknown_events => {
                tracing::warn!(%stream, version = %recorded.version, event = %name, "skipping unknown event");
            }
            Err(source) => {
                return Err(LoadError::Decode {
                    aggregate: A::NAME,
                    id: stream.aggregate_id().to_owned(),
                    version: recorded.version,
                    event: recorded.name.to_string(),
                    position: recorded.position,
                    source,
                });
            }
        }
        version = recorded.version;
    }
    Ok((state, version))
}

/// The innermost layer: the typed pipeline, its result kept for `dispatch_with`.
struct TypedCore<'a, C: HandledCommand> {
    app: &'a Application,
    registration: &'a Registration,
    stream: StreamId,
    command: parking_lot::Mutex<C>,
    #[allow(clippy::type_complexity)]
    result: parking_lot::Mutex<Option<Result<Dispatched<C::Output>, CommandError<C::Error>>>>,
}

impl<C: HandledCommand> Core for TypedCore<'_, C> {
    fn call<'b>(&'b self, ctx: &'b CommandContext) -> BoxFuture<'b, Outcome> {
        Box::pin(async move {
            let command = self.command.lock().clone();
            let result = self
                .app
                .dispatch_core(self.registration, self.stream.clone(), command, ctx.options.clone())
                .await;
            let outcome = match &result {
                Ok(d) => Outcome::Committed {
                    version: d.version,
                    command_id: d.command_id,
                    replayed: d.replayed,
                },
                Err(CommandError::Domain(e)) => Outcome::Rejected(e.to_string()),
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                    retryable: e.is_unavailable(),
                },
            };
            *self.result.lock() = Some(result);
            outcome
        })
    }
}

/// Feeds the application's subscribers from its transport until shutdown.
async fn consume_loop(app: std::sync::Weak<Inner>, shutdown: tokio::sync::watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(inner) = app.upgrade() else { return };
        let app = Application::from_inner(inner);
        match app.consume_transport(256, Duration::from_millis(200)).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "consuming the transport failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Deletes expired idempotency records every `every`, until shutdown.
async fn purge_loop(
    store: Arc<dyn IdempotencyStore>,
    every: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        match store.purge_expired(Timestamp::now()).await {
            Ok(0) => {}
            Ok(purged) => tracing::debug!(purged, "expired idempotency records deleted"),
            Err(e) => tracing::warn!(error = %e, "idempotency cleanup failed; retrying later"),
        }
    }
}

/// Drains an outbox into its transport every 100 ms, until shutdown.
async fn outbox_loop(
    outbox: Arc<dyn crate::store::Outbox>,
    transport: Arc<dyn crate::store::EventTransport>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = crate::processes::relay::drain_outbox(outbox.as_ref(), transport.as_ref()).await {
            tracing::warn!(error = %e, "publishing the outbox failed; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
    }
}
