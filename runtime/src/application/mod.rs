//! The application layer: the builder and the user's handle. Wiring only:
//! everything it runs lives in the layers below.

mod background;
mod builder;
mod config;
mod error;
mod handle;
mod intercept;
mod tenant;
mod wiring;

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::{Identity, Layer};
use tower_service::Service;

pub use self::builder::ApplicationBuilder;
use self::builder::{OutboxRelay, StartPoller};
pub use self::config::ProjectionConfig;
pub use self::error::{BuildError, QueryError};
pub use self::handle::SubscriberHandle;
use self::intercept::{CommandInterceptors, QueryInterceptors};
pub use self::intercept::{QueryContext, Rejection};
pub use self::tenant::TenantHandle;
use crate::domain::aggregate::{Aggregate, Loaded};
use crate::domain::command::HandledCommand;
use crate::domain::ids::{AggregateId, Position, TenantId, Timestamp};
use crate::domain::unwind::catch_panic;
use crate::pipeline::bus::CommandBus;
use crate::pipeline::dispatcher::Dispatcher;
use crate::pipeline::error::{CommandError, LoadError};
use crate::pipeline::middleware::{CommandRequest, CoreService, IntoCommandError};
use crate::pipeline::options::{AsOf, DispatchOptions, Dispatched};
use crate::processes::projection::{HandledQuery, Projection};
use crate::processes::relay::drain_outbox;
use crate::processes::saga::Saga;
use crate::processes::saga::deadlines::fire_due;
use crate::processes::subscriber::{Subscriber, SubscriberStatus, SubscriptionError};
use crate::store::{EventStore, EventTransport, SagaStateStore};

struct ProjectionEntry {
    name: &'static str,
    model: Arc<dyn std::any::Any + Send + Sync>,
    /// One per segment (one when it is not split).
    subscribers: Vec<Arc<Subscriber>>,
}

/// What every clone of an application shares.
pub(crate) struct Inner {
    dispatcher: Arc<Dispatcher>,
    /// What `event_store()` hands out: rewrites through it invalidate.
    store_view: Arc<dyn EventStore>,
    sagas_store: Arc<dyn SagaStateStore>,
    outboxes: Vec<OutboxRelay>,
    relays: Vec<Arc<Subscriber>>,
    consume_from: Option<(Arc<dyn EventTransport>, String)>,
    projections: HashMap<TypeId, ProjectionEntry>,
    sagas: HashMap<TypeId, Arc<Subscriber>>,
    deadline_pollers: parking_lot::Mutex<Vec<(StartPoller, Duration, Arc<Subscriber>)>>,
    interceptors: CommandInterceptors,
    query_interceptors: QueryInterceptors,
    /// The layered service of each command type dispatched so far.
    stacks: parking_lot::RwLock<HashMap<TypeId, Box<dyn std::any::Any + Send + Sync>>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Background subscribers and pollers stop with the last handle.
        self.shutdown.send_replace(true);
    }
}

impl Inner {
    /// Every projection's (segment's) and saga's subscriber.
    fn subscribers(&self) -> impl Iterator<Item = &Arc<Subscriber>> {
        self.projections
            .values()
            .flat_map(|p| &p.subscribers)
            .chain(self.sagas.values())
    }
}

/// A running application: dispatches commands to aggregates over the
/// configured backends. Cheap to clone and share between tasks. `L` is the
/// stack of tower layers commands go through ([`ApplicationBuilder::layer`]).
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
pub struct Application<L = Identity> {
    inner: Arc<Inner>,
    layer: L,
}

impl<L> std::fmt::Debug for Application<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let dispatcher = &self.inner.dispatcher;
        f.debug_struct("Application")
            .field(
                "aggregates",
                &dispatcher.aggregates.values().map(|r| r.name).collect::<Vec<_>>(),
            )
            .field("services", &dispatcher.services)
            .field("settings", &dispatcher.settings)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Starts building an application.
    pub fn builder() -> ApplicationBuilder {
        ApplicationBuilder::new()
    }
}

impl<L: 'static> Application<L> {
    /// Dispatches `command` to the aggregate that handles it and returns the
    /// handler's output once its events are committed.
    ///
    /// # Errors
    ///
    /// [`CommandError::Domain`] when the handler rejects the command; the
    /// other variants for infrastructure failures.
    pub async fn dispatch<C>(&self, command: C) -> Result<C::Output, CommandError<C::Error>>
    where
        C: HandledCommand,
        L: CommandLayer<C>,
    {
        self.dispatch_with(command, DispatchOptions::default())
            .await
            .map(|d| d.output)
    }

    /// Dispatches with explicit ids and headers, returning the full result.
    ///
    /// # Errors
    ///
    /// As [`Application::dispatch`].
    pub async fn dispatch_with<C>(
        &self,
        command: C,
        options: DispatchOptions,
    ) -> Result<Dispatched<C::Output>, CommandError<C::Error>>
    where
        C: HandledCommand,
        L: CommandLayer<C>,
    {
        let inner = &*self.inner;
        // No layers and no interceptors: straight into the pipeline, without
        // building a request or boxing a service future.
        if TypeId::of::<L>() == TypeId::of::<Identity>() && inner.interceptors.is_empty() {
            return inner.dispatcher.dispatch(command, options).await;
        }
        let mut request = CommandRequest::new(command, options);
        inner
            .interceptors
            .run(&mut request.command, &mut request.context)
            .map_err(|r| CommandError::Rejected {
                layer: "interceptor".into(),
                reason: r.0,
            })?;
        let mut service = self.stack::<C>();
        std::future::poll_fn(|cx| service.poll_ready(cx))
            .await
            .map_err(IntoCommandError::into_command_error)?;
        service
            .call(request)
            .await
            .map_err(IntoCommandError::into_command_error)
    }
}

impl<L: 'static> Application<L> {
    /// The layered service for commands of type `C`: built once per command
    /// type and cloned per dispatch, so layers with shared state (a
    /// concurrency limit, a rate limit) see every command of the type.
    fn stack<C>(&self) -> L::Service
    where
        C: HandledCommand,
        L: CommandLayer<C>,
    {
        let key = TypeId::of::<C>();
        if let Some(service) = self
            .inner
            .stacks
            .read()
            .get(&key)
            .and_then(|s| s.downcast_ref::<L::Service>())
        {
            return service.clone();
        }
        // Built under the write lock, after looking again: two first
        // dispatches racing here would otherwise each build a stack, and
        // a layer's shared state (a concurrency limit's semaphore) would
        // not be shared between them.
        let mut stacks = self.inner.stacks.write();
        if let Some(service) = stacks.get(&key).and_then(|s| s.downcast_ref::<L::Service>()) {
            return service.clone();
        }
        let service = self.layer.layer_command(self.inner.dispatcher.core_service::<C>());
        stacks.insert(key, Box::new(service.clone()));
        service
    }
}

impl<L> Application<L> {
    /// The event store, for reads, and for rewrites (schema migrations of
    /// stored events): a rewrite through this handle waits for the
    /// stream's in-flight command and drops its cached state and snapshot,
    /// so no later command decides on the old event.
    #[must_use]
    pub fn event_store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store_view
    }

    /// Loads the current state of aggregate `A` with id `id`.
    ///
    /// # Errors
    ///
    /// [`LoadError`] when the store fails or a stored event does not decode.
    pub async fn load<A: Aggregate>(&self, id: &(impl AggregateId + ?Sized)) -> Result<Loaded<A>, LoadError> {
        self.load_in::<A>(None, id).await
    }

    /// [`Application::load`] of the instance of `tenant` (or of none).
    pub(crate) async fn load_in<A: Aggregate>(
        &self,
        tenant: Option<&TenantId>,
        id: &(impl AggregateId + ?Sized),
    ) -> Result<Loaded<A>, LoadError> {
        let dispatcher = &self.inner.dispatcher;
        let registration = dispatcher.registration::<A>()?;
        let stream = dispatcher.stream_of(registration, id, tenant);
        dispatcher.repository.load::<A>(registration, &stream).await
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
        self.load_as_of_in::<A>(None, id, as_of.into()).await
    }

    /// [`Application::load_as_of`] of the instance of `tenant` (or of none).
    pub(crate) async fn load_as_of_in<A: Aggregate>(
        &self,
        tenant: Option<&TenantId>,
        id: &(impl AggregateId + ?Sized),
        as_of: AsOf,
    ) -> Result<Loaded<A>, LoadError> {
        let dispatcher = &self.inner.dispatcher;
        let registration = dispatcher.registration::<A>()?;
        let stream = dispatcher.stream_of(registration, id, tenant);
        dispatcher
            .repository
            .load_as_of::<A>(registration, &stream, as_of)
            .await
    }

    /// Answers `query` from the projection that handles it.
    ///
    /// # Errors
    ///
    /// [`QueryError::NotRegistered`] when the projection is not registered,
    /// [`QueryError::Rejected`] when an interceptor refuses the query.
    pub async fn query<Q: HandledQuery>(&self, query: Q) -> Result<Q::Output, QueryError> {
        let not_registered = || QueryError::NotRegistered {
            projection: <Q::Projection as Projection>::NAME,
        };
        let entry = self
            .inner
            .projections
            .get(&TypeId::of::<Q::Projection>())
            .ok_or_else(not_registered)?;
        if !self.inner.query_interceptors.is_empty() {
            let ctx = QueryContext {
                query: std::any::type_name::<Q>(),
                projection: entry.name,
            };
            self.inner
                .query_interceptors
                .run(&query, &ctx)
                .map_err(|r| QueryError::Rejected {
                    query: ctx.query,
                    reason: r.0,
                })?;
        }
        let model = Arc::clone(&entry.model)
            .downcast::<tokio::sync::RwLock<Q::Projection>>()
            .map_err(|_| not_registered())?;
        let guard = model.read().await;
        catch_panic(std::pin::pin!(Q::handle(&guard, query)))
            .await
            .map_err(|message| QueryError::HandlerPanicked {
                query: std::any::type_name::<Q>(),
                message,
            })
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
                name: format!("projection:{}", P::NAME),
                subscribers: p.subscribers.clone(),
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
            .map(|s| SubscriberHandle {
                name: s.name.clone(),
                subscribers: vec![Arc::clone(s)],
            })
            .ok_or(SubscriptionError::NotRegistered(S::NAME))
    }

    /// The status of every projection (of each segment of a split one) and
    /// saga, for health checks: checkpoint, lag, dead letters, and which
    /// instance owns it until when.
    ///
    /// # Errors
    ///
    /// When a store fails.
    pub async fn subscriber_statuses(&self) -> Result<Vec<SubscriberStatus>, SubscriptionError> {
        let mut statuses = Vec::new();
        for subscriber in self.inner.subscribers() {
            statuses.push(subscriber.status().await?);
        }
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(statuses)
    }

    /// Rebuilds projection `P` from position 0: its read model is replaced
    /// by `fresh`, its checkpoint reset, and the whole log replayed into it.
    /// With several instances, the one that owns the projection (every
    /// segment of a split one) rebuilds it.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError`] when `P` is not registered or a store fails;
    /// [`SubscriptionError::OwnedElsewhere`] when another instance owns it
    /// (or one of its segments).
    pub async fn rebuild_projection<P: Projection>(&self, fresh: P) -> Result<Position, SubscriptionError> {
        let entry = self
            .inner
            .projections
            .get(&TypeId::of::<P>())
            .ok_or(SubscriptionError::NotRegistered(P::NAME))?;
        let model = Arc::clone(&entry.model)
            .downcast::<tokio::sync::RwLock<P>>()
            .map_err(|_| SubscriptionError::NotRegistered(P::NAME))?;
        for subscriber in &entry.subscribers {
            if !subscriber.owns().await? {
                return Err(SubscriptionError::OwnedElsewhere {
                    subscriber: subscriber.name.clone(),
                });
            }
        }
        let mut fresh = Some(fresh);
        for subscriber in &entry.subscribers {
            let model = Arc::clone(&model);
            let fresh = fresh.take();
            subscriber
                .rewind(|| async move {
                    if let Some(fresh) = fresh {
                        *model.write().await = fresh;
                    }
                })
                .await?;
        }
        catch_up_all(&entry.subscribers, None).await
    }

    /// Fires the deadlines of saga `S` that are due now, and returns how
    /// many fired. The background poller does this every poll interval;
    /// tests call it to fire deadlines deterministically.
    ///
    /// # Errors
    ///
    /// [`SubscriptionError::NotRegistered`] for an unregistered saga; a store
    /// failure (deadlines not fired stay scheduled). A deadline whose
    /// handler keeps failing is no error: it is retried under the saga's
    /// retry policy, then parked as a dead letter of the saga and taken off
    /// the schedule, and the others still fire.
    pub async fn fire_due_deadlines<S: Saga>(&self) -> Result<usize, SubscriptionError> {
        let bus = Arc::clone(&self.inner.dispatcher) as Arc<dyn CommandBus>;
        let subscriber = self
            .inner
            .sagas
            .get(&TypeId::of::<S>())
            .ok_or(SubscriptionError::NotRegistered(S::NAME))?;
        fire_due::<S>(&bus, self.inner.sagas_store.as_ref(), subscriber, Timestamp::now())
            .await
            .map_err(|e| SubscriptionError::Deadline {
                saga: S::NAME,
                source: e.0,
            })
    }

    /// Publishes the log's events not yet relayed to every `publish_to`
    /// transport, and the pending events of every outbox; returns the last
    /// position relayed. (The background relays do this continuously.)
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
            drain_outbox(outbox.as_ref(), transport.as_ref())
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
        self.inner.consume(max, wait).await
    }

    /// Stops the background subscribers and deadline pollers. (They also
    /// stop when the last clone of the application is dropped.)
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

impl Inner {
    /// Feeds up to `max` deliveries of the `consume_from` transport to
    /// every subscriber, acknowledging each after all took it.
    async fn consume(&self, max: usize, wait: Duration) -> Result<usize, SubscriptionError> {
        let Some((transport, consumer)) = &self.consume_from else {
            return Ok(0);
        };
        let store_error = |source| SubscriptionError::Store {
            subscriber: format!("consumer:{consumer}"),
            source,
        };
        let deliveries = transport.receive(consumer, max, wait).await.map_err(store_error)?;
        let limit = transport.max_deliveries();
        for delivery in &deliveries {
            // Delivered more often than allowed: it crashed or stalled
            // its consumer every time; parked, not handled again.
            let poisoned = limit.is_some_and(|limit| delivery.attempt > limit);
            for subscriber in self.subscribers() {
                if poisoned {
                    subscriber
                        .deliver_poisoned(&delivery.event, delivery.attempt.saturating_sub(1))
                        .await?;
                } else {
                    subscriber.deliver(&delivery.event).await?;
                }
            }
            transport.ack(consumer, delivery.receipt).await.map_err(store_error)?;
        }
        Ok(deliveries.len())
    }
}

/// The tower layers an application can send commands of type `C` through:
/// every `tower::Layer` over the core service whose service takes a
/// [`CommandRequest<C>`] and answers `Dispatched<C::Output>` (errors:
/// `CommandError<C::Error>` or a boxed error). Implemented for every such
/// layer; not to be implemented by hand.
#[diagnostic::on_unimplemented(
    message = "the application's layers cannot carry the command `{C}`",
    note = "every layer's service must take `CommandRequest<C>` and answer `Dispatched<C::Output>` with `CommandError<C::Error>` or a boxed error"
)]
pub trait CommandLayer<C: HandledCommand>: Send + Sync + 'static {
    /// The service the layers make around the core.
    type Service: Service<CommandRequest<C>, Response = Dispatched<C::Output>, Error = Self::Error, Future = Self::Future>
        + Clone
        + Send
        + Sync
        + 'static;
    /// Its error.
    type Error: IntoCommandError<C::Error>;
    /// Its future.
    type Future: std::future::Future<Output = Result<Dispatched<C::Output>, Self::Error>> + Send;

    /// Wraps the core service.
    fn layer_command(&self, core: CoreService<C>) -> Self::Service;
}

#[diagnostic::do_not_recommend]
impl<C, L> CommandLayer<C> for L
where
    C: HandledCommand,
    L: Layer<CoreService<C>> + Send + Sync + 'static,
    L::Service: Service<CommandRequest<C>, Response = Dispatched<C::Output>> + Clone + Send + Sync + 'static,
    <L::Service as Service<CommandRequest<C>>>::Error: IntoCommandError<C::Error>,
    <L::Service as Service<CommandRequest<C>>>::Future: Send,
{
    type Service = L::Service;
    type Error = <L::Service as Service<CommandRequest<C>>>::Error;
    type Future = <L::Service as Service<CommandRequest<C>>>::Future;

    fn layer_command(&self, core: CoreService<C>) -> L::Service {
        self.layer(core)
    }
}

/// Catches every segment up (to `until`, or the head); the position all of
/// them reached.
pub(crate) async fn catch_up_all(
    subscribers: &[Arc<Subscriber>],
    until: Option<Position>,
) -> Result<Position, SubscriptionError> {
    let mut reached: Option<Position> = None;
    for subscriber in subscribers {
        let position = subscriber.catch_up(until).await?;
        reached = Some(reached.map_or(position, |r| r.min(position)));
    }
    Ok(reached.unwrap_or(Position::START))
}
