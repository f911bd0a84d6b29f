//! The repository: loads aggregates (cache -> snapshot -> events), folds
//! stored events into state, and takes snapshots by policy.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;

use super::config::Registration;
use super::error::LoadError;
use super::options::AsOf;
use crate::domain::aggregate::{Aggregate, Loaded};
use crate::domain::event::{EventDecodeError, EventSet};
use crate::domain::ids::{StreamId, Timestamp, Version};
use crate::domain::unwind::catch_panic_sync;
use crate::store::{
    AggregateCache, CacheEntry, CacheRead, CachedState, EventStore, RecordedEvent, Snapshot, SnapshotStore, StoreError,
};

/// Where aggregates come from and go back to.
pub(crate) struct Repository {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) snapshots: Arc<dyn SnapshotStore>,
    pub(crate) cache: Arc<dyn AggregateCache>,
}

impl Repository {
    /// The latest state: from the cache if allowed, else snapshot plus
    /// events. Boxed: a cached state goes back to the cache in the same box.
    /// The flag says whether it was loaded from the store (not the cache).
    pub(crate) async fn load_latest<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        use_cache: bool,
    ) -> Result<(Box<A>, Version, bool), LoadError> {
        if use_cache && let Some((state, version)) = self.take_cached::<A>(registration, stream).await {
            return Ok((state, version, false));
        }
        let (state, version) = self.load_snapshot::<A>(registration, stream, None).await;
        let events = self.store.read_stream_for_load(stream, version.next()).await?;
        let (state, version) = fold(registration, stream, state, version, &events, None)?;
        Ok((Box::new(state), version, true))
    }

    /// The cached state of `stream`, checked out: `None` on a miss, for
    /// an entry of another state version, and when the cache fails (with
    /// a warning and `interlock_cache_errors_total`: the caller loads from
    /// the store).
    pub(crate) async fn take_cached<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
    ) -> Option<(Box<A>, Version)> {
        let entry = match self.cache.take(stream) {
            CacheRead::Ready(entry) => entry?,
            CacheRead::Pending(read) => match read.await {
                Ok(entry) => entry?,
                Err(e) => {
                    cache_failed(stream, "read", &e);
                    return None;
                }
            },
        };
        if entry.state_version != A::STATE_VERSION {
            return None;
        }
        match entry.state {
            CachedState::Live(state) => state.downcast::<A>().ok().map(|state| (state, entry.version)),
            CachedState::Encoded(bytes) => {
                let codec = registration.snapshot.as_ref()?;
                match (codec.decode)(&bytes).map(|state| state.downcast::<A>()) {
                    Ok(Ok(state)) => Some((state, entry.version)),
                    Ok(Err(_)) => None,
                    Err(e) => {
                        let e = StoreError::Corrupt {
                            backend: "aggregate cache",
                            location: stream.to_string(),
                            reason: e.to_string(),
                        };
                        cache_failed(stream, "decode", &e);
                        self.cache.invalidate(stream);
                        None
                    }
                }
            }
        }
    }

    /// Puts a state back in the cache at `version`: live, or encoded as
    /// its snapshot for a shared cache (an aggregate without snapshots is
    /// not cached there).
    pub(crate) fn cache_put<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: StreamId,
        state: Box<A>,
        version: Version,
    ) {
        if let Some(entry) = self.cache_entry(registration, &stream, state, version) {
            self.cache.put(stream, entry);
        }
    }

    /// [`Repository::cache_put`] for a state whose events are still being
    /// committed: a cache in this process takes it now (the next command
    /// goes on from it; `combine.rs` tells it if the commit fails); for a
    /// shared cache the entry is returned, to be put once the commit
    /// succeeded: another instance must never decide on events that may
    /// not commit.
    pub(crate) fn cache_put_uncommitted<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        state: Box<A>,
        version: Version,
    ) -> Option<CacheEntry> {
        let entry = self.cache_entry(registration, stream, state, version)?;
        if self.cache.encoded() {
            return Some(entry);
        }
        self.cache.put(stream.clone(), entry);
        None
    }

    fn cache_entry<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        state: Box<A>,
        version: Version,
    ) -> Option<CacheEntry> {
        let state = if self.cache.encoded() {
            let codec = registration.snapshot.as_ref()?;
            match (codec.encode)(&*state as &(dyn Any + Send))? {
                Ok(bytes) => CachedState::Encoded(Bytes::from(bytes)),
                Err(e) => {
                    tracing::warn!(%stream, error = %e, "state not cached: cannot encode it");
                    return None;
                }
            }
        } else {
            CachedState::Live(state)
        };
        Some(CacheEntry {
            version,
            state_version: A::STATE_VERSION,
            state,
        })
    }

    /// Brings a state known to be right at `version` forward with the
    /// events written since (after a conflict), instead of reloading it all.
    pub(crate) async fn load_forward<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        state: A,
        version: Version,
    ) -> Result<(Box<A>, Version), LoadError> {
        let newer = self.store.read_stream_for_load(stream, version.next()).await?;
        let (state, version) = fold(registration, stream, state, version, &newer, None)?;
        Ok((Box::new(state), version))
    }

    /// The current state, not from the cache.
    pub(crate) async fn load<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
    ) -> Result<Loaded<A>, LoadError> {
        let (state, version) = self.load_snapshot::<A>(registration, stream, None).await;
        let events = self.store.read_stream_for_load(stream, version.next()).await?;
        let (state, version) = fold(registration, stream, state, version, &events, None)?;
        Ok(Loaded { state, version })
    }

    /// The state as it was at a version or a time.
    pub(crate) async fn load_as_of<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        as_of: AsOf,
    ) -> Result<Loaded<A>, LoadError> {
        let (state, version, until, time) = match as_of {
            AsOf::Version(v) => {
                let (state, version) = self.load_snapshot::<A>(registration, stream, Some(v)).await;
                (state, version, Some(v), None)
            }
            AsOf::Time(t) => (A::default(), Version::INITIAL, None, Some(t)),
        };
        if until.is_some_and(|u| u <= version) {
            return Ok(Loaded { state, version });
        }
        let events = self.store.read_stream(stream, version.next(), until).await?;
        let (state, version) = fold(registration, stream, state, version, &events, time)?;
        Ok(Loaded { state, version })
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
        match self.snapshots.load(stream).await {
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

    /// Takes a snapshot when the version crossed a multiple of the policy's
    /// interval. A failure is logged: the events are committed either way.
    pub(crate) async fn maybe_snapshot<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        state: &A,
        before: Version,
        after: Version,
    ) {
        if let Some(snapshot) = self.snapshot_if_due(registration, stream, state, before, after) {
            self.save_snapshot(stream, snapshot).await;
        }
    }

    /// The snapshot of `state` at `after` if the policy takes one between
    /// `before` and `after`.
    pub(crate) fn snapshot_if_due<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        state: &A,
        before: Version,
        after: Version,
    ) -> Option<Snapshot> {
        let codec = registration.snapshot?;
        if codec.every == 0 || before.0 / codec.every == after.0 / codec.every {
            return None;
        }
        let erased: &(dyn Any + Send) = state;
        match (codec.encode)(erased) {
            Some(Ok(payload)) => Some(Snapshot {
                version: after,
                state_version: A::STATE_VERSION,
                payload: Bytes::from(payload),
                taken_at: Timestamp::now(),
            }),
            Some(Err(e)) => {
                tracing::warn!(%stream, error = %e, "snapshot not encoded");
                None
            }
            None => None,
        }
    }

    /// Saves a snapshot taken by [`Repository::snapshot_if_due`] (its
    /// events committed).
    pub(crate) async fn save_snapshot(&self, stream: &StreamId, snapshot: Snapshot) {
        if let Err(e) = self.snapshots.save(stream, snapshot).await {
            tracing::warn!(%stream, error = %e, "snapshot not saved");
        }
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
            Ok(event) => {
                // A panicking applier is a typed load failure; the half-folded
                // state is dropped with the error.
                if let Err(message) = catch_panic_sync(|| state.apply(&event)) {
                    return Err(LoadError::ApplierPanicked {
                        aggregate: A::NAME,
                        id: stream.aggregate_id().to_owned(),
                        version: recorded.version,
                        event: recorded.name.to_string(),
                        message,
                    });
                }
            }
            Err(EventDecodeError::UnknownEvent { name }) if registration.skip_unknown_events => {
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

/// A cache that failed: bypassed, with a warning and a metric.
fn cache_failed(stream: &StreamId, operation: &'static str, error: &StoreError) {
    tracing::warn!(%stream, operation, %error, "aggregate cache bypassed");
    metrics::counter!("interlock_cache_errors_total", "operation" => operation).increment(1);
}
