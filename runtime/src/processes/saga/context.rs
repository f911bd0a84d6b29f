//! What a saga step can do besides changing its state.

use std::any::Any;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ulid::Ulid;

use crate::domain::command::HandledCommand;
use crate::domain::event::Event;
use crate::domain::ids::{CausationId, CommandId, CorrelationId, TenantId, Timestamp};
use crate::future::BoxFuture;
use crate::pipeline::bus::{AnyCommand, AnyOutcome, CommandBus, LiveDispatch, NoResponse};
use crate::pipeline::dispatcher::Dispatcher;
use crate::pipeline::error::CommandError;
use crate::pipeline::options::DispatchOptions;
use crate::processes::subscriber::HandlerFailure;
use crate::store::ScheduledDeadline;

/// What caused the step now running.
#[derive(Clone, Debug)]
pub(crate) struct Cause {
    pub(crate) id: Ulid,
    pub(crate) causation: CausationId,
    pub(crate) correlation: Option<CorrelationId>,
    /// The tenant of the instance: its commands target that tenant's
    /// aggregates.
    pub(crate) tenant: Option<TenantId>,
}

/// The separator of a tenant's instance keys (no tenant id holds it).
const TENANT_SEPARATOR: char = '\u{1f}';

/// The key a saga instance is stored under: the event's key, prefixed with
/// its tenant for an event of a tenant, so two tenants' instances of one key
/// are two instances.
pub(crate) fn instance_key(tenant: Option<&TenantId>, key: &str) -> String {
    match tenant {
        None => key.to_owned(),
        Some(tenant) => format!("{tenant}{TENANT_SEPARATOR}{key}"),
    }
}

/// The tenant and the event's key of a stored instance key.
pub(crate) fn split_instance_key(stored: &str) -> (Option<TenantId>, &str) {
    match stored.split_once(TENANT_SEPARATOR) {
        Some((tenant, key)) => match TenantId::new(tenant) {
            Ok(tenant) => (Some(tenant), key),
            Err(_) => (None, stored),
        },
        None => (None, stored),
    }
}

/// What a saga step of saga `S` can do besides changing its state:
/// dispatch commands, schedule deadlines, end the saga.
///
/// Inside a `#[saga]` impl block, write `ctx: &mut SagaContext`: the macro
/// makes it `SagaContext<Self>`, so that scheduling a deadline the saga has
/// no `#[saga_deadline]` handler for does not compile. A helper function
/// outside the block names the saga: `ctx: &mut SagaContext<MySaga>`.
pub struct SagaContext<S: ?Sized = ()> {
    bus: Arc<dyn CommandBus>,
    saga: &'static str,
    key: String,
    cause: Cause,
    dispatch_count: u32,
    schedule_count: u32,
    pub(crate) scheduled: Vec<ScheduledDeadline>,
    pub(crate) cancelled: Vec<Ulid>,
    pub(crate) completed: bool,
    pub(crate) schedule_error: Option<HandlerFailure>,
    /// The first command of the step its aggregate refused: the step's
    /// failure is then permanent (compensated at once, not retried).
    pub(crate) refused: Option<&'static str>,
    _saga: PhantomData<fn() -> S>,
}

/// A deadline payload that saga `S` has a `#[saga_deadline]` handler for;
/// implemented by `#[saga]` for the type of each.
#[diagnostic::on_unimplemented(
    message = "saga `{S}` has no `#[saga_deadline]` handler for `{Self}`",
    label = "this deadline would never be handled",
    note = "add `#[saga_deadline] async fn name(&mut self, d: &{Self}, ctx: &mut SagaContext) -> SagaResult` to the `#[saga]` impl block of `{S}`"
)]
pub trait DeadlineOf<S: ?Sized>: Event {}

impl<S: ?Sized> fmt::Debug for SagaContext<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaContext")
            .field("saga", &self.saga)
            .field("key", &self.key)
            .field("scheduled", &self.scheduled.len())
            .field("completed", &self.completed)
            .finish_non_exhaustive()
    }
}

impl<S: ?Sized> SagaContext<S> {
    pub(crate) fn new(bus: Arc<dyn CommandBus>, saga: &'static str, key: String, cause: Cause) -> Self {
        Self {
            bus,
            saga,
            key,
            cause,
            dispatch_count: 0,
            schedule_count: 0,
            scheduled: Vec::new(),
            cancelled: Vec::new(),
            completed: false,
            schedule_error: None,
            refused: None,
            _saga: PhantomData,
        }
    }

    /// The key of the saga instance (the event's key field).
    #[must_use]
    pub fn key(&self) -> &str {
        split_instance_key(&self.key).1
    }

    /// The tenant of the saga instance, when its events are a tenant's.
    #[must_use]
    pub fn tenant(&self) -> Option<&TenantId> {
        self.cause.tenant.as_ref()
    }

    /// The correlation id flowing through this saga step.
    #[must_use]
    pub fn correlation_id(&self) -> Option<CorrelationId> {
        self.cause.correlation
    }

    /// A service registered on the application (or the scenario), if any.
    #[must_use]
    pub fn service<T: Any>(&self) -> Option<&T> {
        self.bus.services().get::<T>().ok()
    }

    /// Dispatches a command. Its id is derived from the saga, the key, the
    /// event (or deadline) being handled and the dispatch's index in the
    /// step, so a step that runs again for the same event dispatches the
    /// same ids and nothing twice. Correlation flows on; causation is the
    /// triggering event.
    ///
    /// # Errors
    ///
    /// The command's [`CommandError`].
    pub async fn dispatch<C: HandledCommand>(&mut self, command: C) -> Result<C::Output, CommandError<C::Error>> {
        self.dispatch_count += 1;
        let command_id = CommandId::derived(&[
            self.saga.as_bytes(),
            self.key.as_bytes(),
            &self.cause.id.to_bytes(),
            &self.dispatch_count.to_le_bytes(),
        ]);
        let mut options = DispatchOptions::new()
            .command_id(command_id)
            .causation_id(self.cause.causation);
        if let Some(c) = self.cause.correlation {
            options = options.correlation_id(c);
        }
        if let Some(tenant) = &self.cause.tenant {
            options = options.tenant(tenant.clone());
        }
        let outcome = self
            .bus
            .send(Box::new(command), C::NAME, options, live_dispatch::<C> as LiveDispatch)
            .await;
        match outcome.downcast::<Result<C::Output, CommandError<C::Error>>>() {
            Ok(result) => {
                if matches!(*result, Err(CommandError::Domain(_))) {
                    self.refused.get_or_insert(C::NAME);
                }
                *result
            }
            // A recording bus with no response for this command: commands
            // whose output is `()` succeed by default.
            Err(other) if other.is::<NoResponse>() => {
                let unit: Box<dyn Any + Send> = Box::new(Ok::<(), CommandError<C::Error>>(()));
                match unit.downcast::<Result<C::Output, CommandError<C::Error>>>() {
                    Ok(result) => *result,
                    Err(_) => Err(CommandError::Rejected {
                        layer: "scenario".into(),
                        reason: format!(
                            "no response registered for `{}`: add `.respond::<{}>(..)` to the SagaScenario",
                            C::NAME,
                            std::any::type_name::<C>()
                        ),
                    }),
                }
            }
            Err(_) => Err(CommandError::Rejected {
                layer: "command bus".into(),
                reason: format!("the bus answered `{}` with another type", C::NAME),
            }),
        }
    }

    /// Schedules `deadline` to fire at `due`: the saga's `#[saga_deadline]`
    /// method for its type runs then, even after a restart. Returns its id.
    pub fn schedule<D: DeadlineOf<S>>(&mut self, due: Timestamp, deadline: D) -> Ulid {
        self.schedule_count += 1;
        // Derived like command ids: a step re-run for the same cause
        // schedules the same deadline, not a second one.
        let id = CommandId::derived(&[
            self.saga.as_bytes(),
            self.key.as_bytes(),
            &self.cause.id.to_bytes(),
            &self.schedule_count.to_le_bytes(),
            b"deadline",
        ])
        .0;
        match deadline.encode_payload() {
            Ok(payload) => self.scheduled.push(ScheduledDeadline {
                id,
                saga: self.saga.to_owned(),
                key: self.key.clone(),
                due,
                name: D::NAME.to_owned(),
                schema_version: D::VERSION,
                payload: Bytes::from(payload),
                correlation_id: self.cause.correlation,
            }),
            Err(e) => self.schedule_error = Some(e.into()),
        }
        id
    }

    /// Schedules `deadline` to fire after `delay`.
    pub fn schedule_after<D: DeadlineOf<S>>(&mut self, delay: Duration, deadline: D) -> Ulid {
        self.schedule(Timestamp::now().plus(delay), deadline)
    }

    /// Cancels a deadline scheduled earlier.
    pub fn cancel(&mut self, deadline: Ulid) {
        self.scheduled.retain(|d| d.id != deadline);
        self.cancelled.push(deadline);
    }

    /// Ends the saga after this step (its state and deadlines are deleted).
    pub fn complete(&mut self) {
        self.completed = true;
    }
}

/// Dispatches an erased command of type `C` on a live dispatcher.
fn live_dispatch<C: HandledCommand>(
    dispatcher: &Dispatcher,
    command: AnyCommand,
    options: DispatchOptions,
) -> BoxFuture<'_, AnyOutcome> {
    Box::pin(async move {
        let result: Result<C::Output, CommandError<C::Error>> = match command.downcast::<C>() {
            Ok(command) => dispatcher.dispatch(*command, options).await.map(|d| d.output),
            Err(_) => Err(CommandError::Rejected {
                layer: "command bus".into(),
                reason: format!("a command sent as `{}` has another type", C::NAME),
            }),
        };
        Box::new(result) as AnyOutcome
    })
}
