//! The application builder: what to run, on which backends, with which
//! settings and layers.

use std::any::{Any, TypeId};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use tower_layer::{Identity, Stack};

use super::config::ProjectionConfig;
use super::intercept::{CommandInterceptors, QueryContext, QueryInterceptors, Rejection};
use crate::domain::aggregate::Aggregate;
use crate::domain::command::HandledCommand;
use crate::domain::event::{EventSet, EventType};
use crate::domain::services::Services;
use crate::future::BoxFuture;
use crate::pipeline::bus::CommandBus;
use crate::pipeline::config::{AggregateConfig, Registration, Settings};
use crate::pipeline::middleware::CommandContext;
use crate::processes::projection::{HandledQuery, ModelStorage, Projection, ProjectionHandler};
use crate::processes::saga::Saga;
use crate::processes::saga::deadlines::deadline_poller;
use crate::processes::saga::runner::SagaHandler;
use crate::processes::subscriber::{
    Balance, ErasedHandler, Ownership, Segment, Subscriber, SubscriberConfig, segment_name,
};
use crate::store::{
    Backend, CheckpointStore, DeadLetterStore, EventFilter, EventStore, EventTransport, IdempotencyStore,
    MemoryCheckpointStore, Outbox, SagaStateStore, SnapshotStore,
};

/// Builds an [`Application`](super::Application); start with
/// [`Application::builder`](super::Application::builder). `L` is the stack
/// of tower layers added with [`ApplicationBuilder::layer`].
#[must_use = "call `.build().await` to get the application"]
pub struct ApplicationBuilder<L = Identity> {
    pub(super) parts: Parts,
    pub(super) layer: L,
}

/// Everything but the layers.
pub(super) struct Parts {
    pub(super) store: Option<Arc<dyn EventStore>>,
    pub(super) snapshots: Option<Arc<dyn SnapshotStore>>,
    pub(super) cache: Option<Arc<dyn crate::store::AggregateCache>>,
    pub(super) idempotency: Option<Arc<dyn IdempotencyStore>>,
    pub(super) checkpoints: Option<Arc<dyn CheckpointStore>>,
    pub(super) dead_letters: Option<Arc<dyn DeadLetterStore>>,
    pub(super) sagas_store: Option<Arc<dyn SagaStateStore>>,
    pub(super) services: Services,
    pub(super) aggregates: Vec<(TypeId, Registration)>,
    pub(super) projections: Vec<PendingProjection>,
    pub(super) sagas: Vec<PendingSaga>,
    pub(super) interceptors: CommandInterceptors,
    pub(super) query_interceptors: QueryInterceptors,
    pub(super) settings: Settings,
    pub(super) background: bool,
    pub(super) publish_to: Vec<(String, Arc<dyn EventTransport>)>,
    pub(super) consume_from: Option<(Arc<dyn EventTransport>, String)>,
    pub(super) outboxes: Vec<OutboxRelay>,
    /// This instance's id and its subscribers' leases, when the
    /// application is one of several instances on its store.
    pub(super) ownership: Option<Ownership>,
}

/// An outbox and the transport its events go to.
pub(super) type OutboxRelay = (Arc<dyn Outbox>, Arc<dyn EventTransport>);

/// Makes a projection's subscriber and its model, once the stores are known.
/// Its subscribers are one per segment (one when it is not split).
pub(super) type MakeProjection =
    Box<dyn FnOnce(&SubscriberDeps) -> (Vec<Arc<Subscriber>>, Arc<dyn Any + Send + Sync>) + Send>;
/// Makes a saga's subscriber, once the stores and the command bus are known.
pub(super) type MakeSaga = Box<dyn FnOnce(&SubscriberDeps, Arc<dyn CommandBus>) -> Arc<Subscriber> + Send>;
/// Starts a saga's deadline poller.
pub(super) type StartPoller = fn(
    Arc<dyn CommandBus>,
    Arc<dyn SagaStateStore>,
    Arc<Subscriber>,
    Duration,
    tokio::sync::watch::Receiver<bool>,
) -> BoxFuture<'static, ()>;

pub(super) struct PendingProjection {
    pub(super) type_id: TypeId,
    pub(super) name: &'static str,
    pub(super) model: ModelStorage,
    /// Whether its handlers take a transaction, and whether it was given
    /// a store to open them in.
    pub(super) transactional: (bool, bool),
    pub(super) inline: bool,
    pub(super) config: SubscriberConfig,
    /// Its segments, as configured (checked by `build()`), and the count
    /// it takes over from.
    pub(super) segments: (Option<u32>, Option<u32>),
    pub(super) make: MakeProjection,
    /// The event types it handles, for `build()`'s name check.
    pub(super) events: fn() -> Vec<EventType>,
}

pub(super) struct PendingSaga {
    pub(super) type_id: TypeId,
    pub(super) name: &'static str,
    pub(super) config: SubscriberConfig,
    pub(super) make: MakeSaga,
    pub(super) deadlines: StartPoller,
    pub(super) poll: Duration,
    /// The event types its steps take, for `build()`'s name check.
    pub(super) events: fn() -> Vec<EventType>,
}

/// What a subscriber needs from the application.
pub(super) struct SubscriberDeps {
    pub(super) store: Arc<dyn EventStore>,
    pub(super) checkpoints: Arc<dyn CheckpointStore>,
    pub(super) dead_letters: Arc<dyn DeadLetterStore>,
    pub(super) sagas: Arc<dyn SagaStateStore>,
    /// How shared subscribers are leased (`None` when a transport feeds
    /// them: their deliveries are the consumer's).
    pub(super) ownership: Option<Ownership>,
}

impl SubscriberDeps {
    /// A subscriber named `name` over the events named `names`; with
    /// `token`, it runs only in the instance holding its lease (the cell
    /// receives the lease's token).
    pub(super) fn subscriber(
        &self,
        name: String,
        names: &'static [&'static str],
        config: SubscriberConfig,
        checkpoints: Arc<dyn CheckpointStore>,
        handler: Box<dyn ErasedHandler>,
        token: Option<Arc<AtomicU64>>,
    ) -> Subscriber {
        let mut filter = EventFilter::all().event_names(names.iter().copied());
        filter.tenant = config.tenant.clone();
        let subscriber = Subscriber::new(
            name,
            filter,
            config,
            Arc::clone(&self.store),
            checkpoints,
            Arc::clone(&self.dead_letters),
            handler,
        );
        match (&self.ownership, token) {
            (Some(ownership), Some(token)) => subscriber.owned(ownership.clone(), token),
            _ => subscriber,
        }
    }
}

impl ApplicationBuilder {
    pub(super) fn new() -> Self {
        Self {
            parts: Parts {
                store: None,
                snapshots: None,
                cache: None,
                idempotency: None,
                checkpoints: None,
                dead_letters: None,
                sagas_store: None,
                services: Services::new(),
                aggregates: Vec::new(),
                projections: Vec::new(),
                sagas: Vec::new(),
                interceptors: CommandInterceptors::default(),
                query_interceptors: QueryInterceptors::default(),
                settings: Settings::default(),
                background: true,
                publish_to: Vec::new(),
                consume_from: None,
                outboxes: Vec::new(),
                ownership: None,
            },
            layer: Identity::new(),
        }
    }
}

impl<L> ApplicationBuilder<L> {
    /// Makes this application one of several instances sharing its
    /// store, named `id` (stable across restarts of the same instance, so
    /// a restarted process takes its leases back at once): each durable
    /// catch-up projection, saga and relay then runs in one instance at a
    /// time, the one holding its lease (10 s, renewed every 3 s, unless
    /// [`ApplicationBuilder::subscriber_leases`] says otherwise), and its
    /// checkpoint saves are fenced by the lease. Without it (and without
    /// the `INTERLOCK_INSTANCE_ID` environment variable, read by `build()`
    /// when this is not called), every subscriber runs in this instance, as
    /// for a single process.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        let id = Arc::from(id.into());
        match &mut self.parts.ownership {
            Some(ownership) => ownership.instance = id,
            None => self.parts.ownership = Some(Ownership::of(id)),
        }
        self
    }

    /// How long a subscriber's lease holds (the time another instance
    /// waits before taking over from one that died without releasing it)
    /// and how often its owner renews it (shorter than the lease). Makes
    /// the application an instance of several (named `instance-<ULID>`
    /// unless [`ApplicationBuilder::instance_id`] names it).
    pub fn subscriber_leases(mut self, lease: Duration, renew_every: Duration) -> Self {
        let ownership = self
            .parts
            .ownership
            .get_or_insert_with(|| Ownership::of(Arc::from(format!("instance-{}", ulid::Ulid::new()))));
        ownership.lease = lease;
        ownership.renew_every = renew_every;
        self
    }

    /// Publishes the events recorded in a transactional `outbox` (a SQL
    /// store with its outbox enabled, say) to `transport`: in the background,
    /// and on [`Application::publish_pending`](crate::Application::publish_pending).
    pub fn publish_outbox_to(mut self, outbox: impl Outbox, transport: impl EventTransport) -> Self {
        self.parts.outboxes.push((Arc::new(outbox), Arc::new(transport)));
        self
    }

    /// Relays every committed event of this application's log to
    /// `transport`, at least once, from a checkpoint named `relay:<name>`.
    pub fn publish_to(mut self, name: impl Into<String>, transport: impl EventTransport) -> Self {
        self.parts.publish_to.push((name.into(), Arc::new(transport)));
        self
    }

    /// Feeds this application's projections and sagas from `transport`
    /// (as consumer `consumer`) instead of from its own event store; their
    /// checkpoints are the producer's global positions, so re-deliveries
    /// are skipped. Inline projections are fed from the transport too.
    pub fn consume_from(mut self, consumer: impl Into<String>, transport: impl EventTransport) -> Self {
        self.parts.consume_from = Some((Arc::new(transport), consumer.into()));
        self
    }

    /// Whether `build()` starts the background followers of projections and
    /// sagas and the deadline pollers (default `true`). Without them,
    /// subscribers run only when driven: inline projections by dispatch,
    /// the others by [`SubscriberHandle::catch_up`](crate::SubscriberHandle::catch_up) and
    /// [`Application::fire_due_deadlines`](crate::Application::fire_due_deadlines) (deterministic tests, batch jobs).
    pub fn background(mut self, enabled: bool) -> Self {
        self.parts.background = enabled;
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
        let transactions = config.transactions.0.clone();
        let inline = config.inline;
        let (segments, resegment_from) = (config.segments, config.resegment_from);
        let make: MakeProjection = Box::new(move |deps| {
            // The checkpoint lives with the model: in memory for a model in
            // memory (every start rebuilds it), else in the projection's own
            // store or the application's.
            let checkpoints: Arc<dyn CheckpointStore> = match P::MODEL {
                ModelStorage::Memory => Arc::new(MemoryCheckpointStore::new()),
                ModelStorage::Durable => subscriber_config
                    .checkpoints
                    .0
                    .clone()
                    .unwrap_or_else(|| Arc::clone(&deps.checkpoints)),
            };
            let base = format!("projection:{}", P::NAME);
            // A model in memory lives in every instance, and an inline one
            // is updated by the instance that dispatched: only a durable
            // catch-up projection is one owner's work.
            let owned = P::MODEL == ModelStorage::Durable && !inline;
            let count = segments.unwrap_or(1).max(1);
            let balance = Arc::new(Balance::new(&base, count));
            let subscribers = (0..count)
                .map(|index| {
                    let name = segment_name(&base, index, count);
                    let token = Arc::new(AtomicU64::new(0));
                    let handler = ProjectionHandler {
                        model: Arc::clone(&model),
                        subscriber: name.clone(),
                        transactions: transactions.clone(),
                        token: Arc::clone(&token),
                    };
                    let subscriber = deps.subscriber(
                        name,
                        <P::Event as EventSet>::NAMES,
                        subscriber_config.clone(),
                        Arc::clone(&checkpoints),
                        Box::new(handler),
                        owned.then_some(token),
                    );
                    Arc::new(if count > 1 || resegment_from.is_some() {
                        subscriber.segment(Segment::new(&base, index, count, resegment_from, Arc::clone(&balance)))
                    } else {
                        subscriber
                    })
                })
                .collect();
            (subscribers, model as Arc<dyn Any + Send + Sync>)
        });
        self.parts.projections.retain(|p| p.type_id != TypeId::of::<P>());
        self.parts.projections.push(PendingProjection {
            type_id: TypeId::of::<P>(),
            name: P::NAME,
            model: P::MODEL,
            transactional: (P::TRANSACTIONAL, config.transactions.0.is_some()),
            inline: config.inline,
            config: config.subscriber,
            segments: (config.segments, config.resegment_from),
            make,
            events: <P::Event as EventSet>::event_types,
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
        let subscriber_config = config.clone();
        let make: MakeSaga = Box::new(move |deps, bus| {
            let checkpoints = subscriber_config
                .checkpoints
                .0
                .clone()
                .unwrap_or_else(|| Arc::clone(&deps.checkpoints));
            Arc::new(deps.subscriber(
                format!("saga:{}", S::NAME),
                <S::Event as EventSet>::NAMES,
                subscriber_config,
                checkpoints,
                Box::new(SagaHandler::<S>::new(bus, Arc::clone(&deps.sagas))),
                Some(Arc::new(AtomicU64::new(0))),
            ))
        });
        self.parts.sagas.retain(|p| p.type_id != TypeId::of::<S>());
        self.parts.sagas.push(PendingSaga {
            type_id: TypeId::of::<S>(),
            name: S::NAME,
            config,
            make,
            deadlines: deadline_poller::<S>,
            poll,
            events: <S::Event as EventSet>::event_types,
        });
        self
    }

    /// Adds a tower layer around dispatch: any `tower::Layer` whose service
    /// takes a [`CommandRequest<C>`](crate::middleware::CommandRequest) and
    /// forwards its response (the built-in [`TracingLayer`](crate::middleware::TracingLayer),
    /// [`TimeoutLayer`](crate::middleware::TimeoutLayer) and
    /// [`RetryLayer`](crate::middleware::RetryLayer), or tower's own such as
    /// `ConcurrencyLimitLayer`). The first added is the outermost. Commands
    /// that sagas send go through the pipeline without these layers.
    pub fn layer<T>(self, layer: T) -> ApplicationBuilder<Stack<T, L>> {
        ApplicationBuilder {
            parts: self.parts,
            layer: Stack::new(layer, self.layer),
        }
    }

    /// Adds a typed interceptor for command `C`: it runs before the layers,
    /// may change the command and its options, or reject it.
    pub fn intercept<C: HandledCommand>(
        mut self,
        interceptor: impl Fn(&mut C, &mut CommandContext) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> Self {
        self.parts.interceptors.add::<C>(interceptor);
        self
    }

    /// Adds a typed interceptor for query `Q`.
    pub fn intercept_query<Q: HandledQuery>(
        mut self,
        interceptor: impl Fn(&Q, &QueryContext) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> Self {
        self.parts.query_interceptors.add::<Q>(interceptor);
        self
    }

    /// Adds an interceptor for every query.
    pub fn intercept_queries(
        mut self,
        interceptor: impl Fn(&QueryContext) -> Result<(), Rejection> + Send + Sync + 'static,
    ) -> Self {
        self.parts.query_interceptors.add_all(interceptor);
        self
    }

    /// The checkpoint store of projections and sagas (in-memory when not set).
    pub fn checkpoint_store(mut self, store: impl CheckpointStore) -> Self {
        self.parts.checkpoints = Some(Arc::new(store));
        self
    }

    /// The dead-letter store (in-memory when not set).
    pub fn dead_letter_store(mut self, store: impl DeadLetterStore) -> Self {
        self.parts.dead_letters = Some(Arc::new(store));
        self
    }

    /// The saga state store (in-memory when not set).
    pub fn saga_state_store(mut self, store: impl SagaStateStore) -> Self {
        self.parts.sagas_store = Some(Arc::new(store));
        self
    }

    /// Registers aggregate `A` with the default [`AggregateConfig`].
    pub fn aggregate<A: Aggregate>(self) -> Self {
        self.aggregate_with(AggregateConfig::<A>::new())
    }

    /// Registers aggregate `A` with `config`.
    pub fn aggregate_with<A: Aggregate>(mut self, config: AggregateConfig<A>) -> Self {
        let registration = config.registration();
        self.parts.aggregates.retain(|(id, _)| *id != TypeId::of::<A>());
        self.parts.aggregates.push((TypeId::of::<A>(), registration));
        self
    }

    /// Registers a service: handlers that take a `&T` parameter receive it.
    pub fn service<T: Any + Send + Sync>(mut self, service: T) -> Self {
        self.parts.services.insert(service);
        self
    }

    /// Uses the stores `backend` provides (a SQL store provides all of
    /// them: events, snapshots, idempotency, checkpoints, dead letters and
    /// saga state; a [`StoreSet`](crate::store::StoreSet) may provide some). Seams it does not cover
    /// keep what was set before, or the in-memory default.
    pub fn backend(mut self, backend: impl Backend) -> Self {
        let set = backend.stores();
        let parts = &mut self.parts;
        parts.store = set.events.or(parts.store.take());
        parts.snapshots = set.snapshots.or(parts.snapshots.take());
        parts.idempotency = set.idempotency.or(parts.idempotency.take());
        parts.checkpoints = set.checkpoints.or(parts.checkpoints.take());
        parts.dead_letters = set.dead_letters.or(parts.dead_letters.take());
        parts.sagas_store = set.sagas.or(parts.sagas_store.take());
        self
    }

    /// The event store (in-memory when not set).
    pub fn event_store(mut self, store: impl EventStore) -> Self {
        self.parts.store = Some(Arc::new(store));
        self
    }

    /// The event store, already shared.
    pub fn shared_event_store(mut self, store: Arc<dyn EventStore>) -> Self {
        self.parts.store = Some(store);
        self
    }

    /// The snapshot store (in-memory when not set).
    pub fn snapshot_store(mut self, store: impl SnapshotStore) -> Self {
        self.parts.snapshots = Some(Arc::new(store));
        self
    }

    /// The idempotency store (in-memory when not set).
    pub fn idempotency_store(mut self, store: impl IdempotencyStore) -> Self {
        self.parts.idempotency = Some(Arc::new(store));
        self
    }

    /// How many times a command runs when its append conflicts (default 16;
    /// at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.parts.settings.max_attempts = attempts;
        self
    }

    /// The aggregate cache (the in-process LRU of `cache_capacity` when not
    /// set): e.g. one shared by every instance of the application. See
    /// `interlock::store::AggregateCache` for its consistency rules.
    pub fn aggregate_cache(mut self, cache: impl crate::store::AggregateCache) -> Self {
        self.parts.cache = Some(Arc::new(cache));
        self
    }

    /// How many aggregates the in-process cache holds (default 10 000; 0 disables it).
    pub fn cache_capacity(mut self, aggregates: usize) -> Self {
        self.parts.settings.cache_capacity = aggregates;
        self
    }

    /// The largest encoded event accepted, in bytes (default 1 MiB).
    pub fn max_event_bytes(mut self, bytes: usize) -> Self {
        self.parts.settings.max_event_bytes = bytes;
        self
    }

    /// How often expired idempotency records are deleted in the background
    /// (default every 10 minutes; zero turns the cleanup off).
    pub fn idempotency_purge_every(mut self, interval: Duration) -> Self {
        self.parts.settings.idempotency_purge_every = interval;
        self
    }

    /// How long a processed command id is remembered (default 24 h).
    pub fn idempotency_ttl(mut self, ttl: Duration) -> Self {
        self.parts.settings.idempotency_ttl = ttl;
        self
    }

    /// How long a claim on a command id holds while its command runs
    /// (default 30 s). A caller with the same id waits for the outcome up
    /// to this long; a claim whose process died is taken over after it,
    /// and the command's stream is searched for its committed events
    /// before it runs again. Longer than the slowest command.
    pub fn idempotency_lease(mut self, lease: Duration) -> Self {
        self.parts.settings.idempotency_lease = lease;
        self
    }
}
