//! Runs the steps of a saga as a subscriber of the log.

use std::marker::PhantomData;
use std::sync::Arc;

use super::compensation::{compensate, fail_and_compensate};
use super::{Cause, Saga, SagaContext, StepKind};
use crate::domain::event::EventSet;
use crate::domain::ids::{CausationId, Version};
use crate::future::BoxFuture;
use crate::pipeline::bus::CommandBus;
use crate::processes::subscriber::{ErasedHandler, HandlerFailure};
use crate::store::{RecordedEvent, SagaChange, SagaFailure, SagaStateStore, StoreError};

/// Runs the steps of saga `S` on the events of the log.
pub(crate) struct SagaHandler<S> {
    bus: Arc<dyn CommandBus>,
    store: Arc<dyn SagaStateStore>,
    _saga: PhantomData<fn() -> S>,
}

impl<S> SagaHandler<S> {
    pub(crate) fn new(bus: Arc<dyn CommandBus>, store: Arc<dyn SagaStateStore>) -> Self {
        Self {
            bus,
            store,
            _saga: PhantomData,
        }
    }
}

impl<S: Saga> ErasedHandler for SagaHandler<S> {
    fn handle<'a>(&'a self, event: &'a RecordedEvent) -> BoxFuture<'a, Result<(), HandlerFailure>> {
        Box::pin(async move {
            let store = &self.store;
            // A parked deadline, replayed from the dead letters: fire it.
            if let Some(deadline) = super::deadlines::unparked(S::NAME, event) {
                return super::deadlines::fire_one::<S>(&self.bus, store.as_ref(), &deadline, false)
                    .await
                    .map(|_| ());
            }
            loop {
                let decoded = S::Event::decode(&event.name, event.schema_version, &event.payload)?;
                let route = S::route(&decoded);
                let key = super::instance_key(event.stream.tenant(), &route.key);
                let instance = store.load(S::NAME, &key).await?;
                let (mut state, expected) = match (instance, route.kind) {
                    // A failure recorded, its compensation not run (a crash
                    // in between): run it now.
                    (Some(instance), _) if S::COMPENSATES && instance.failure.is_some() => {
                        let failure = instance.failure.unwrap_or_else(|| unreachable!("checked"));
                        return compensate::<S>(&self.bus, store.as_ref(), &key, &failure).await;
                    }
                    (Some(instance), _) => {
                        if instance.last_position >= event.position {
                            return Ok(()); // a re-delivered event: already handled
                        }
                        (serde_json::from_slice::<S>(&instance.state)?, instance.version)
                    }
                    (None, StepKind::Start) => (S::default(), Version::INITIAL),
                    (None, _) => return Ok(()), // no instance for this key: not ours
                };
                let cause = Cause {
                    id: event.event_id.0,
                    causation: CausationId::Event(event.event_id),
                    correlation: event.metadata.correlation_id,
                    tenant: event.stream.tenant().cloned(),
                };
                let mut ctx = SagaContext::new(Arc::clone(&self.bus), S::NAME, key.clone(), cause.clone());
                if let Err(failure) = state.step(decoded, &mut ctx).await {
                    // A refused command will be refused again: compensate now.
                    if S::COMPENSATES && ctx.refused.is_some() {
                        let failure = SagaFailure {
                            during: event.name.to_string(),
                            error: failure.to_string(),
                            refused: true,
                            cause: cause.causation,
                            correlation_id: cause.correlation,
                        };
                        let state = Some(serde_json::to_vec(&state)?.into());
                        return fail_and_compensate::<S>(&self.bus, store.as_ref(), &key, failure, state).await;
                    }
                    return Err(failure);
                }
                if let Some(e) = ctx.schedule_error.take() {
                    return Err(e);
                }
                let change = if route.kind == StepKind::End || ctx.completed {
                    SagaChange::Delete
                } else {
                    SagaChange::Save {
                        state: serde_json::to_vec(&state)?.into(),
                        last_position: event.position,
                        schedule: std::mem::take(&mut ctx.scheduled),
                        cancel: std::mem::take(&mut ctx.cancelled),
                        failure: None,
                    }
                };
                match store.apply(S::NAME, &key, expected, change).await {
                    Ok(_) => return Ok(()),
                    // Another runner moved the instance: run the step again on
                    // fresh state; its commands have the same ids.
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }

    /// A step that kept failing: compensate, if the saga can.
    fn exhausted<'a>(
        &'a self,
        event: &'a RecordedEvent,
        failure: &'a HandlerFailure,
    ) -> BoxFuture<'a, Result<bool, HandlerFailure>> {
        Box::pin(async move {
            if !S::COMPENSATES || super::deadlines::unparked(S::NAME, event).is_some() {
                return Ok(false);
            }
            let decoded = S::Event::decode(&event.name, event.schema_version, &event.payload)?;
            let route = S::route(&decoded);
            let key = super::instance_key(event.stream.tenant(), &route.key);
            let failure = SagaFailure {
                during: event.name.to_string(),
                error: failure.to_string(),
                refused: false,
                cause: CausationId::Event(event.event_id),
                correlation_id: event.metadata.correlation_id,
            };
            fail_and_compensate::<S>(&self.bus, self.store.as_ref(), &key, failure, None).await?;
            Ok(true)
        })
    }
}
