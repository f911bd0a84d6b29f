//! Compensation, run by the runtime: when a command a saga step dispatched
//! is refused, or a step or deadline keeps failing after its retries, the
//! failure is first recorded with the saga instance, then the saga's
//! `#[saga_compensation]` method runs, then the instance is deleted.
//!
//! The record comes first so that a crash between the failure and the
//! compensation loses nothing: the failing event is delivered again (its
//! checkpoint never moved past it), the runner finds the recorded failure
//! and runs the compensation instead of the step. The compensation's
//! commands have ids derived from the saga, the key and the failure, so a
//! compensation that runs twice dispatches each command once.

use std::sync::Arc;

use bytes::Bytes;

use super::{Cause, Saga, SagaContext};
use crate::domain::ids::{CommandId, Position, Version};
use crate::domain::unwind::catch_panic;
use crate::pipeline::bus::CommandBus;
use crate::processes::subscriber::HandlerFailure;
use crate::store::{SagaChange, SagaFailure, SagaStateStore, StoreError};

/// Records `failure` on the instance of `key` (created for a start step
/// that failed), with `state` as the state to compensate from (the stored
/// one when `None`), then compensates.
pub(crate) async fn fail_and_compensate<S: Saga>(
    bus: &Arc<dyn CommandBus>,
    store: &dyn SagaStateStore,
    key: &str,
    failure: SagaFailure,
    state: Option<Bytes>,
) -> Result<(), HandlerFailure> {
    tracing::warn!(saga = S::NAME, %key, during = %failure.during, error = %failure.error, "saga failed; compensating");
    loop {
        let instance = store.load(S::NAME, key).await?;
        let (stored, version, last_position) = match &instance {
            Some(i) => (i.state.clone(), i.version, i.last_position),
            None => (
                Bytes::from(serde_json::to_vec(&S::default())?),
                Version::INITIAL,
                Position::START,
            ),
        };
        if let Some(recorded) = instance.and_then(|i| i.failure) {
            // Recorded before (a crash, a re-delivery): compensate that one.
            return compensate::<S>(bus, store, key, &recorded).await;
        }
        let record = SagaChange::Save {
            state: state.clone().unwrap_or(stored),
            last_position,
            schedule: Vec::new(),
            cancel: Vec::new(),
            failure: Some(failure.clone()),
        };
        match store.apply(S::NAME, key, version, record).await {
            Ok(_) => return compensate::<S>(bus, store, key, &failure).await,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Runs the compensation of the failed instance of `key`, then deletes it
/// (and its deadlines). Nothing to do when the instance is gone (another
/// instance of the application compensated it).
pub(crate) async fn compensate<S: Saga>(
    bus: &Arc<dyn CommandBus>,
    store: &dyn SagaStateStore,
    key: &str,
    failure: &SagaFailure,
) -> Result<(), HandlerFailure> {
    loop {
        let Some(instance) = store.load(S::NAME, key).await? else {
            return Ok(());
        };
        let mut state = serde_json::from_slice::<S>(&instance.state)?;
        let cause = Cause {
            // One compensation per failure (recorded before it runs, so
            // stable across re-runs): its commands' ids derive from this.
            id: CommandId::derived(&[
                S::NAME.as_bytes(),
                key.as_bytes(),
                b"compensation",
                failure.cause.to_string().as_bytes(),
            ])
            .0,
            causation: failure.cause,
            correlation: failure.correlation_id,
            tenant: super::split_instance_key(key).0,
        };
        let mut ctx = SagaContext::<S>::new(Arc::clone(bus), S::NAME, key.to_owned(), cause);
        catch_panic(std::pin::pin!(state.compensate(failure, &mut ctx)))
            .await
            .map_err(|panic| HandlerFailure::msg(format!("the compensation panicked: {panic}")))??;
        if let Some(e) = ctx.schedule_error.take() {
            return Err(e);
        }
        match store.apply(S::NAME, key, instance.version, SagaChange::Delete).await {
            Ok(_) => {
                tracing::info!(saga = S::NAME, %key, "saga compensated");
                return Ok(());
            }
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
}
