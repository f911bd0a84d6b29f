//! Fires sagas' due deadlines.

use std::sync::Arc;
use std::time::Duration;

use super::{Cause, Saga, SagaContext};
use crate::domain::event::EventSet;
use crate::domain::ids::{CausationId, Timestamp, Version};
use crate::domain::unwind::catch_panic;
use crate::future::BoxFuture;
use crate::pipeline::bus::CommandBus;
use crate::processes::subscriber::HandlerFailure;
use crate::store::{SagaChange, SagaStateStore, StoreError};

/// Fires the due deadlines of saga `S`.
pub(crate) async fn fire_due<S: Saga>(
    bus: &Arc<dyn CommandBus>,
    store: &dyn SagaStateStore,
    now: Timestamp,
) -> Result<usize, HandlerFailure> {
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
            let mut ctx = SagaContext::new(Arc::clone(bus), S::NAME, deadline.key.clone(), cause);
            let ends = catch_panic(std::pin::pin!(state.deadline(decoded, &mut ctx)))
                .await
                .map_err(|panic| HandlerFailure::msg(format!("the deadline handler panicked: {panic}")))??;
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

/// Polls for due deadlines of saga `S` every `poll`, until shutdown.
pub(crate) fn deadline_poller<S: Saga>(
    bus: Arc<dyn CommandBus>,
    store: Arc<dyn SagaStateStore>,
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
            if let Err(e) = fire_due::<S>(&bus, store.as_ref(), Timestamp::now()).await {
                tracing::warn!(saga = S::NAME, error = %e, "deadline failed; it stays scheduled");
            }
        }
    })
}
