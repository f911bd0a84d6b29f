//! Fires sagas' due deadlines.
//!
//! Each due deadline is fired on its own: a handler that fails is retried
//! under the saga's retry policy, then parked as a dead letter of the
//! saga's subscriber (in a stream of kind [`DEADLINE_STREAM`]) and taken off
//! the schedule, so one deadline that cannot be handled never holds back
//! the others. Replaying the saga's dead letters fires a parked deadline
//! again.
//!
//! Two instances polling one store may both pick a deadline up: the one
//! whose state change lands first fires it; the other, on its version
//! conflict, finds the deadline off the schedule and stops. The commands a
//! handler dispatches have ids derived from the deadline, so even a
//! handler that ran in both dispatches each command once.

use std::sync::Arc;
use std::time::Duration;

use super::compensation::{compensate, fail_and_compensate};
use super::{Cause, Saga, SagaContext};
use crate::domain::event::EventSet;
use crate::domain::ids::{CausationId, EventId, Position, StreamId, Timestamp, Version};
use crate::domain::unwind::catch_panic;
use crate::future::BoxFuture;
use crate::pipeline::bus::CommandBus;
use crate::processes::subscriber::{HandlerFailure, Subscriber};
use crate::store::{
    EventMetadata, RecordedEvent, SagaChange, SagaFailure, SagaStateStore, ScheduledDeadline, StoreError,
};

/// The aggregate type of the stream a parked deadline is filed under; its
/// id is `<saga>/<key>`.
pub(crate) const DEADLINE_STREAM: &str = "interlock.saga_deadline";

/// Deadlines fetched per poll.
const PER_POLL: usize = 100;

/// Fires the due deadlines of saga `S`; returns how many fired.
///
/// # Errors
///
/// When the saga state store or the dead-letter store fails (a failing
/// handler is parked, not an error).
pub(crate) async fn fire_due<S: Saga>(
    bus: &Arc<dyn CommandBus>,
    store: &dyn SagaStateStore,
    subscriber: &Subscriber,
    now: Timestamp,
) -> Result<usize, HandlerFailure> {
    let due = store.due(S::NAME, now, PER_POLL).await?;
    let mut fired = 0;
    for deadline in due {
        match fire_with_retry::<S>(bus, store, subscriber, &deadline).await {
            Ok(true) => fired += 1,
            Ok(false) => {}
            Err((failure, _)) if S::COMPENSATES => {
                let failure = SagaFailure {
                    during: deadline.name.clone(),
                    error: failure.to_string(),
                    refused: false,
                    cause: CausationId::Deadline(deadline.id),
                    correlation_id: deadline.correlation_id,
                };
                if let Err(e) = fail_and_compensate::<S>(bus, store, &deadline.key, failure, None).await {
                    // The failure is recorded: the next poll compensates again.
                    tracing::error!(saga = S::NAME, key = %deadline.key, error = %e, "compensation failed");
                }
            }
            Err((failure, attempts)) => {
                tracing::error!(
                    saga = S::NAME,
                    key = %deadline.key,
                    deadline = %deadline.name,
                    error = %failure,
                    "deadline failed after its retries; parked"
                );
                subscriber.park(&parked(S::NAME, &deadline), &failure, attempts).await?;
                unschedule::<S>(store, &deadline).await?;
            }
        }
    }
    Ok(fired)
}

/// Fires `deadline`, retrying a failing handler under the subscriber's
/// policy; the last failure and the number of runs when it keeps failing.
async fn fire_with_retry<S: Saga>(
    bus: &Arc<dyn CommandBus>,
    store: &dyn SagaStateStore,
    subscriber: &Subscriber,
    deadline: &ScheduledDeadline,
) -> Result<bool, (HandlerFailure, u32)> {
    let mut waits = subscriber.retry().delays();
    let mut runs = 0;
    loop {
        runs += 1;
        match fire_one::<S>(bus, store, deadline, true).await {
            Ok(fired) => return Ok(fired),
            Err(failure) => {
                tracing::warn!(saga = S::NAME, key = %deadline.key, attempt = runs, error = %failure, "deadline failed");
                match waits.next() {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => return Err((failure, runs)),
                }
            }
        }
    }
}

/// Runs the deadline handler of `deadline` and applies its change to the
/// saga instance; `false` when there is nothing to fire (the saga ended,
/// or, with `scheduled`, another instance fired it first).
pub(crate) async fn fire_one<S: Saga>(
    bus: &Arc<dyn CommandBus>,
    store: &dyn SagaStateStore,
    deadline: &ScheduledDeadline,
    scheduled: bool,
) -> Result<bool, HandlerFailure> {
    loop {
        let Some(instance) = store.load(S::NAME, &deadline.key).await? else {
            // The saga ended: drop its leftover deadlines.
            store
                .apply(S::NAME, &deadline.key, Version::INITIAL, SagaChange::Delete)
                .await?;
            return Ok(false);
        };
        // Checked after the load: if another instance fires it from here
        // on, it moves the version and this one's change conflicts.
        if scheduled && !store.is_scheduled(S::NAME, deadline.id).await? {
            return Ok(false);
        }
        // A failed instance is compensated, not moved on.
        if S::COMPENSATES
            && let Some(failure) = &instance.failure
        {
            compensate::<S>(bus, store, &deadline.key, failure).await?;
            return Ok(false);
        }
        let mut state = serde_json::from_slice::<S>(&instance.state)?;
        let decoded = S::Deadline::decode(&deadline.name, deadline.schema_version, &deadline.payload)?;
        let cause = Cause {
            id: deadline.id,
            causation: CausationId::Deadline(deadline.id),
            correlation: deadline.correlation_id,
            tenant: super::split_instance_key(&deadline.key).0,
        };
        let mut ctx = SagaContext::<S>::new(Arc::clone(bus), S::NAME, deadline.key.clone(), cause);
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
                failure: None,
            }
        };
        match store.apply(S::NAME, &deadline.key, instance.version, change).await {
            Ok(_) => return Ok(true),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Takes a parked deadline off the schedule, leaving the state as it is.
async fn unschedule<S: Saga>(store: &dyn SagaStateStore, deadline: &ScheduledDeadline) -> Result<(), StoreError> {
    loop {
        let Some(instance) = store.load(S::NAME, &deadline.key).await? else {
            return Ok(());
        };
        let change = SagaChange::Save {
            state: instance.state.clone(),
            last_position: instance.last_position,
            schedule: Vec::new(),
            cancel: vec![deadline.id],
            failure: instance.failure.clone(),
        };
        match store.apply(S::NAME, &deadline.key, instance.version, change).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
}

/// A parked deadline as the event of a dead letter: the deadline's id,
/// name, version and payload, in a stream `interlock.saga_deadline/<saga>/<key>`.
fn parked(saga: &str, deadline: &ScheduledDeadline) -> RecordedEvent {
    RecordedEvent {
        event_id: EventId(deadline.id),
        stream: StreamId::new(DEADLINE_STREAM, format!("{saga}/{}", deadline.key)),
        version: Version::INITIAL,
        position: Position::START,
        name: deadline.name.clone().into(),
        schema_version: deadline.schema_version,
        payload: deadline.payload.clone(),
        metadata: EventMetadata {
            timestamp: Some(deadline.due),
            correlation_id: deadline.correlation_id,
            ..EventMetadata::default()
        },
    }
}

/// The deadline a parked letter stands for, if `event` is one of saga `saga`.
pub(crate) fn unparked(saga: &str, event: &RecordedEvent) -> Option<ScheduledDeadline> {
    if event.stream.aggregate_type() != DEADLINE_STREAM {
        return None;
    }
    let key = event.stream.aggregate_id().strip_prefix(saga)?.strip_prefix('/')?;
    Some(ScheduledDeadline {
        id: event.event_id.0,
        saga: saga.to_owned(),
        key: key.to_owned(),
        due: event.metadata.timestamp.unwrap_or(Timestamp(0)),
        name: event.name.to_string(),
        schema_version: event.schema_version,
        payload: event.payload.clone(),
        correlation_id: event.metadata.correlation_id,
    })
}

/// Polls for due deadlines of saga `S` every `poll`, until shutdown.
pub(crate) fn deadline_poller<S: Saga>(
    bus: Arc<dyn CommandBus>,
    store: Arc<dyn SagaStateStore>,
    subscriber: Arc<Subscriber>,
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
            // With several instances, the saga's owner fires its deadlines
            // (and whoever takes the saga over fires those left).
            match subscriber.owns().await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(saga = S::NAME, error = %e, "cannot tell who owns the saga; deadlines wait");
                    continue;
                }
            }
            if let Err(e) = fire_due::<S>(&bus, store.as_ref(), &subscriber, Timestamp::now()).await {
                tracing::warn!(saga = S::NAME, error = %e, "deadlines could not be fired; they stay scheduled");
            }
        }
    })
}
