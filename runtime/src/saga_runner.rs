//! Runs sagas: steps as a subscriber of the log, deadlines by a poller.

use std::marker::PhantomData;
use std::sync::Weak;
use std::time::Duration;

use crate::application::{Application, Inner};
use crate::event::EventSet;
use crate::ids::{CausationId, Timestamp, Version};
use crate::saga::{Cause, Saga, SagaContext, SagaError, StepKind};
use crate::store::SagaChange;
use crate::store::{BoxFuture, RecordedEvent, StoreError};
use crate::subscription::{ErasedHandler, HandlerFailure};

/// Runs the steps of saga `S` on the events of the log.
pub(crate) struct SagaHandler<S> {
    app: Weak<Inner>,
    _saga: PhantomData<fn() -> S>,
}

impl<S> SagaHandler<S> {
    pub(crate) fn new(app: Weak<Inner>) -> Self {
        Self {
            app,
            _saga: PhantomData,
        }
    }
}

fn failure(e: SagaError) -> HandlerFailure {
    HandlerFailure(e.0)
}

impl<S: Saga> ErasedHandler for SagaHandler<S> {
    fn handle<'a>(&'a self, event: &'a RecordedEvent) -> BoxFuture<'a, Result<(), HandlerFailure>> {
        Box::pin(async move {
            let Some(inner) = self.app.upgrade() else {
                return Err(HandlerFailure::msg("the application was dropped"));
            };
            let app = Application::from_inner(inner);
            let store = std::sync::Arc::clone(app.saga_store());
            loop {
                let decoded = S::Event::decode(&event.name, event.schema_version, &event.payload)?;
                let route = S::route(&decoded);
                let instance = store.load(S::NAME, &route.key).await?;
                let (mut state, expected) = match (instance, route.kind) {
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
                };
                let mut ctx = SagaContext::live(app.clone(), S::NAME, route.key.clone(), cause);
                state.step(decoded, &mut ctx).await.map_err(failure)?;
                if let Some(e) = ctx.schedule_error.take() {
                    return Err(failure(e));
                }
                let change = if route.kind == StepKind::End || ctx.completed {
                    SagaChange::Delete
                } else {
                    SagaChange::Save {
                        state: serde_json::to_vec(&state)?.into(),
                        last_position: event.position,
                        schedule: std::mem::take(&mut ctx.scheduled),
                        cancel: std::mem::take(&mut ctx.cancelled),
                    }
                };
                match store.apply(S::NAME, &route.key, expected, change).await {
                    Ok(_) => return Ok(()),
                    // Another runner moved the instance: run the step again on
                    // fresh state; its commands have the same ids.
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        })
    }
}

/// Fires the due deadlines of saga `S`.
pub(crate) async fn fire_due<S: Saga>(app: &Application, now: Timestamp) -> Result<usize, SagaError> {
    let store = std::sync::Arc::clone(app.saga_store());
    let due = store.due(S::NAME, now, 100).await?;
    let mut fired = 0;
    for deadline in due {
        loop {
            let Some(instance) = store.load(S::NAME, &deadline.key).await? else {
                // The saga ended: drop its leftover deadlines.
                store
                    .apply(S::NAME, &deadline.key, Version::INITIAL, SagaChange::Delete)
                    .await?;
                break;
            };
            let mut state = serde_json::from_slice::<S>(&instance.state)?;
            let decoded = S::Deadline::decode(&deadline.name, deadline.schema_version, &deadline.payload)?;
            let cause = Cause {
                id: deadline.id,
                causation: CausationId::Deadline(deadline.id),
                correlation: deadline.correlation_id,
            };
            let mut ctx = SagaContext::live(app.clone(), S::NAME, deadline.key.clone(), cause);
            let ends = state.deadline(decoded, &mut ctx).await?;
            if let Some(e) = ctx.schedule_error.take() {
                return Err(e);
            }
            let change = if ends || ctx.completed {
                SagaChange::Delete
            } else {
                let mut cancel = std::mem::take(&mut ctx.cancelled);
                cancel.push(deadline.id);
                SagaChange::Save {
                    state: serde_json::to_vec(&state)?.into(),
                    last_position: instance.last_position,
                    schedule: std::mem::take(&mut ctx.scheduled),
                    cancel,
                }
            };
            match store.apply(S::NAME, &deadline.key, instance.version, change).await {
                Ok(_) => {
                    fired += 1;
                    break;
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(fired)
}

/// Polls for due deadlines of saga `S` until shutdown.
pub(crate) fn deadline_poller<S: Saga>(
    app: Weak<Inner>,
    poll: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> BoxFuture<'static, ()> {
    Box::pin(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            let Some(inner) = app.upgrade() else { return };
            let app = Application::from_inner(inner);
            if let Err(e) = fire_due::<S>(&app, Timestamp::now()).await {
                tracing::warn!(saga = S::NAME, error = %e, "deadline failed; it stays scheduled");
            }
        }
    })
}
