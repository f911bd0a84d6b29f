//! The saga state seam: saga instances by saga and key, with optimistic
//! versions, and their scheduled deadlines.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use ulid::Ulid;

use super::StoreError;
use crate::domain::ids::{CausationId, CorrelationId, Position, SchemaVersion, Timestamp, Version};
use crate::future::BoxFuture;

/// A deadline scheduled by a saga.
#[derive(Clone, Debug, PartialEq)]
pub struct ScheduledDeadline {
    /// The deadline's id.
    pub id: Ulid,
    /// The saga.
    pub saga: String,
    /// The instance key.
    pub key: String,
    /// When it fires.
    pub due: Timestamp,
    /// The payload's event name.
    pub name: String,
    /// The payload's schema version.
    pub schema_version: SchemaVersion,
    /// The payload (JSON).
    pub payload: Bytes,
    /// The correlation id of the step that scheduled it.
    pub correlation_id: Option<CorrelationId>,
}

/// Why a saga instance failed, recorded with it until its compensation has
/// run: a step whose dispatched command was refused, or a step or deadline
/// that kept failing after its retries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SagaFailure {
    /// The name of the event (or deadline) whose handler failed.
    pub during: String,
    /// What went wrong.
    pub error: String,
    /// Whether a command the handler dispatched was refused by its
    /// aggregate (a domain rejection, compensated at once) rather than the
    /// handler failing after its retries.
    pub refused: bool,
    /// The event or deadline that caused the failing handler to run.
    pub cause: CausationId,
    /// The correlation id flowing through it.
    pub correlation_id: Option<CorrelationId>,
}

/// A saga instance's persisted state.
#[derive(Clone, Debug, PartialEq)]
pub struct SagaInstance {
    /// The state (JSON).
    pub state: Bytes,
    /// Its version: 1 after the first save, +1 per save.
    pub version: Version,
    /// The global position of the last event a step handled, so a
    /// re-delivered event is not applied twice.
    pub last_position: Position,
    /// Set when the instance failed and its compensation has not run yet:
    /// the runtime runs it (again, after a crash) before anything else.
    pub failure: Option<SagaFailure>,
}

/// One atomic change of a saga instance.
#[derive(Clone, Debug, PartialEq)]
// One change per saga step, moved once into the store: its size is not worth
// a box.
#[allow(clippy::large_enum_variant)]
pub enum SagaChange {
    /// Store the new state, schedule and cancel deadlines.
    Save {
        /// The new state.
        state: Bytes,
        /// The position of the event handled (unchanged for a deadline).
        last_position: Position,
        /// Deadlines to add.
        schedule: Vec<ScheduledDeadline>,
        /// Deadlines to remove (the one that fired, cancelled ones).
        cancel: Vec<Ulid>,
        /// The failure awaiting compensation (see [`SagaInstance::failure`]).
        failure: Option<SagaFailure>,
    },
    /// Delete the instance and all its deadlines.
    Delete,
}

/// Storage of saga instances and their deadlines, with optimistic versions.
pub trait SagaStateStore: Send + Sync + 'static {
    /// The instance of `saga` with `key`.
    fn load<'a>(&'a self, saga: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<SagaInstance>, StoreError>>;

    /// Applies `change` if the instance is at `expected` (`Version::INITIAL`:
    /// must not exist); returns the new version.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] (stream `saga.<name>/<key>`) on a version mismatch.
    fn apply<'a>(
        &'a self,
        saga: &'a str,
        key: &'a str,
        expected: Version,
        change: SagaChange,
    ) -> BoxFuture<'a, Result<Version, StoreError>>;

    /// Up to `limit` deadlines of `saga` due at `now`, earliest first.
    fn due<'a>(
        &'a self,
        saga: &'a str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ScheduledDeadline>, StoreError>>;

    /// Whether deadline `id` of `saga` is still scheduled (not fired,
    /// cancelled or deleted with its instance): checked after loading the
    /// instance, so that of two instances of the application that read the
    /// same due deadline, only one fires it.
    fn is_scheduled<'a>(&'a self, saga: &'a str, id: Ulid) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// Saga instances kept in process memory.
#[derive(Debug, Default)]
pub struct MemorySagaStateStore {
    inner: Mutex<MemorySagas>,
}

#[derive(Debug, Default)]
struct MemorySagas {
    instances: HashMap<(String, String), SagaInstance>,
    deadlines: Vec<ScheduledDeadline>,
}

impl MemorySagaStateStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl SagaStateStore for MemorySagaStateStore {
    fn load<'a>(&'a self, saga: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<SagaInstance>, StoreError>> {
        let instance = self
            .inner
            .lock()
            .instances
            .get(&(saga.to_owned(), key.to_owned()))
            .cloned();
        Box::pin(std::future::ready(Ok(instance)))
    }

    fn apply<'a>(
        &'a self,
        saga: &'a str,
        key: &'a str,
        expected: Version,
        change: SagaChange,
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        let mut inner = self.inner.lock();
        let id = (saga.to_owned(), key.to_owned());
        let actual = inner.instances.get(&id).map_or(Version::INITIAL, |i| i.version);
        let result = if actual != expected {
            Err(StoreError::saga_conflict(saga, key, expected, actual))
        } else {
            match change {
                SagaChange::Save {
                    state,
                    last_position,
                    schedule,
                    cancel,
                    failure,
                } => {
                    let version = actual.next();
                    inner.instances.insert(
                        id,
                        SagaInstance {
                            state,
                            version,
                            last_position,
                            failure,
                        },
                    );
                    inner.deadlines.retain(|d| !cancel.contains(&d.id));
                    inner.deadlines.extend(schedule);
                    Ok(version)
                }
                SagaChange::Delete => {
                    inner.instances.remove(&id);
                    inner.deadlines.retain(|d| !(d.saga == saga && d.key == key));
                    Ok(Version::INITIAL)
                }
            }
        };
        Box::pin(std::future::ready(result))
    }

    fn due<'a>(
        &'a self,
        saga: &'a str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ScheduledDeadline>, StoreError>> {
        let inner = self.inner.lock();
        let mut due: Vec<_> = inner
            .deadlines
            .iter()
            .filter(|d| d.saga == saga && d.due <= now)
            .cloned()
            .collect();
        due.sort_by_key(|d| (d.due, d.id));
        due.truncate(limit);
        Box::pin(std::future::ready(Ok(due)))
    }

    fn is_scheduled<'a>(&'a self, saga: &'a str, id: Ulid) -> BoxFuture<'a, Result<bool, StoreError>> {
        let scheduled = self.inner.lock().deadlines.iter().any(|d| d.id == id && d.saga == saga);
        Box::pin(std::future::ready(Ok(scheduled)))
    }
}

impl<S: SagaStateStore + ?Sized> SagaStateStore for Arc<S> {
    fn load<'a>(&'a self, saga: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<SagaInstance>, StoreError>> {
        (**self).load(saga, key)
    }
    fn apply<'a>(
        &'a self,
        saga: &'a str,
        key: &'a str,
        expected: Version,
        change: SagaChange,
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        (**self).apply(saga, key, expected, change)
    }
    fn due<'a>(
        &'a self,
        saga: &'a str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ScheduledDeadline>, StoreError>> {
        (**self).due(saga, now, limit)
    }
    fn is_scheduled<'a>(&'a self, saga: &'a str, id: Ulid) -> BoxFuture<'a, Result<bool, StoreError>> {
        (**self).is_scheduled(saga, id)
    }
}
