//! The command loop: load, handle, append; on a conflict bring the state
//! forward and run the handler again.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::combine::Combiner;
use super::config::{Registration, Settings};
use super::error::{CommandError, LoadError};
use super::idempotency::{Identity, idempotent};
use super::options::{DispatchOptions, Dispatched};
use super::repository::Repository;
use super::turns::Turns;
use super::views::Views;
use crate::domain::aggregate::Aggregate;
use crate::domain::backoff::Backoff;
use crate::domain::command::{HandledCommand, HandlerError};
use crate::domain::fingerprint::CommandFingerprint;
use crate::domain::ids::{
    AggregateId, CausationId, CommandId, CorrelationId, EventId, Position, StreamId, TenantId, Timestamp, Version,
    next_ulid,
};
use crate::domain::services::Services;
use crate::domain::unwind::{catch_panic, catch_panic_sync};
use crate::domain::view::Consistency;
use crate::future::BoxFuture;
use crate::store::{EventMetadata, ExpectedVersion, IdempotencyStore, NewEvent, StoreError};
use crate::store::{FINGERPRINT_HEADER, OUTCOME_HEADER};

/// Waits between re-runs after conflicts with other writers: short, since a
/// re-run reads only the events written since.
pub(super) const CONFLICT_BACKOFF: Backoff =
    Backoff::new(u32::MAX, Duration::from_micros(50), Duration::from_millis(2));

/// What runs after every commit, before `dispatch` returns: inline
/// projections (read-your-writes). Implemented by the processes layer.
pub(crate) trait AfterCommit: Send + Sync + 'static {
    /// The command's events are committed up to `position`. Failures are
    /// the hook's own business: the events are committed whatever happens.
    fn committed(&self, position: Position) -> BoxFuture<'_, ()>;
}

/// The command pipeline below the middleware: registered aggregates, the
/// repository, idempotency and the command loop.
pub(crate) struct Dispatcher {
    pub(crate) repository: Repository,
    pub(crate) idempotency: Arc<dyn IdempotencyStore>,
    pub(crate) services: Services,
    pub(crate) aggregates: HashMap<TypeId, Registration, foldhash::fast::RandomState>,
    pub(crate) settings: Settings,
    pub(crate) after_commit: Vec<Arc<dyn AfterCommit>>,
    pub(crate) turns: Turns,
    /// Appends of commands to one aggregate combined (stores that commit later).
    pub(crate) combiner: Arc<Combiner>,
    /// The views of handlers with a category or log consistency.
    pub(crate) views: Views,
}

impl Dispatcher {
    /// The registration of aggregate `A`.
    pub(crate) fn registration<A: Aggregate>(&self) -> Result<&Registration, LoadError> {
        self.aggregates.get(&TypeId::of::<A>()).ok_or(LoadError::NotRegistered {
            aggregate: A::NAME,
            type_name: std::any::type_name::<A>(),
        })
    }

    /// The stream of the registered aggregate with id `id`, in `tenant`.
    pub(crate) fn stream_of(
        &self,
        registration: &Registration,
        id: &(impl AggregateId + ?Sized),
        tenant: Option<&TenantId>,
    ) -> StreamId {
        self.stream_keyed(registration, id.to_shared_key(), tenant)
    }

    /// The stream of the registered aggregate whose id has key `key`.
    pub(crate) fn stream_keyed(
        &self,
        registration: &Registration,
        key: smol_str::SmolStr,
        tenant: Option<&TenantId>,
    ) -> StreamId {
        let stream = StreamId::new(Arc::clone(&registration.shared_name), key);
        match tenant {
            None => stream,
            Some(tenant) => stream.in_tenant(Some(tenant.clone())),
        }
    }

    /// Idempotency, then the command loop: the whole pipeline without user
    /// layers.
    pub(crate) async fn dispatch<C: HandledCommand>(
        &self,
        command: C,
        options: DispatchOptions,
    ) -> Result<Dispatched<C::Output>, CommandError<C::Error>> {
        let registration = self.registration::<C::Aggregate>()?;
        let stream = self.stream_keyed(registration, command.stream_key(), options.tenant.as_ref());
        match options.command_id.or_else(|| command.command_id()) {
            None => {
                // One clock read for the command id and the events' time.
                let now = Timestamp::now();
                let id = CommandId(next_ulid(now.as_millis()));
                self.run(registration, stream, command, id, now, options, None).await
            }
            // Boxed: the idempotent path's future holds a second command
            // loop, which would double the size (and the copies) of every
            // dispatch's future.
            Some(id) => {
                let identity = Identity::of(&command, options.tenant.as_ref());
                let fingerprint = identity.fingerprint();
                let target = stream.clone();
                Box::pin(idempotent(
                    self.idempotency.as_ref(),
                    self.repository.store.as_ref(),
                    &self.settings,
                    &target,
                    id,
                    identity,
                    || {
                        self.run(
                            registration,
                            stream,
                            command,
                            id,
                            Timestamp::now(),
                            options,
                            Some(fingerprint),
                        )
                    },
                ))
                .await
            }
        }
    }

    /// The state a command decides on, with the turn held: the cached one,
    /// or (`fresh`) the store's once the stream's combined appends are done.
    pub(super) async fn load<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
    ) -> Result<(Box<A>, Version, bool), LoadError> {
        if let Some((state, version)) = self.repository.take_cached::<A>(registration, stream).await {
            return Ok((state, version, false));
        }
        self.load_fresh::<A>(registration, stream).await
    }

    /// The store's state of `stream`, once nothing of it is being appended
    /// (before that the store lags the commands already decided).
    pub(super) async fn load_fresh<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
    ) -> Result<(Box<A>, Version, bool), LoadError> {
        self.combiner.idle(stream).await;
        self.repository.load_latest::<A>(registration, stream, false).await
    }

    /// Whether a state taken from the cache at `version` may be behind:
    /// holding events of this instance that did not commit (waits for the
    /// stream's appends, then asks if one failed), or missing events
    /// another instance (sharing the store, and maybe the cache) appended
    /// since. Asked before an answer without an append; an append finds
    /// out by its expected version. A store that cannot answer counts as
    /// stale: the reload that follows reports its error.
    pub(super) async fn stale(&self, stream: &StreamId, version: Version) -> bool {
        self.combiner.idle(stream).await;
        if self.combiner.poisoned(stream) {
            return true;
        }
        self.repository
            .store
            .read_stream(stream, version.next(), Some(version.next()))
            .await
            .map_or(true, |newer| !newer.is_empty())
    }

    /// The command loop: load, handle, append; on conflict bring the state
    /// forward and re-run. With `outcome` (an idempotent command's
    /// fingerprint), the last event carries the command's output and
    /// fingerprint, so its outcome survives a crash before it is recorded.
    // The command and what came with it, each used by the loop.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn run<C: HandledCommand>(
        &self,
        registration: &Registration,
        stream: StreamId,
        command: C,
        command_id: CommandId,
        now: Timestamp,
        options: DispatchOptions,
        outcome: Option<CommandFingerprint>,
    ) -> Result<Dispatched<C::Output>, CommandError<C::Error>> {
        let repository = &self.repository;
        let settings = &self.settings;
        let metadata = EventMetadata {
            timestamp: Some(now),
            correlation_id: Some(options.correlation_id.unwrap_or(CorrelationId(command_id.0))),
            causation_id: Some(options.causation_id.unwrap_or(CausationId::Command(command_id))),
            command_id: Some(command_id),
            headers: options.headers,
        };
        if C::CONSISTENCY != Consistency::Stream || C::HAS_PEER {
            // Boxed: most commands never take this path.
            return Box::pin(self.run_scoped(registration, stream, command, command_id, metadata, outcome)).await;
        }
        // Commands to one aggregate take turns in this instance: they never
        // conflict with each other, only with other processes.
        let mut turn = self.turns.wait(&stream).await;
        let mut last_conflict = (Version::INITIAL, Version::INITIAL);
        // Made on the first conflict: most commands never need it.
        let mut conflict_waits = None;
        let (mut state, mut version, mut fresh) = self.load::<C::Aggregate>(registration, &stream).await?;
        for attempt in 1..=settings.max_attempts {
            // A panicking handler is a typed failure, not a panic in the
            // caller (pinned on the stack: no allocation on the hot path).
            let handled = catch_panic(std::pin::pin!(C::handle(
                &*state,
                command.clone(),
                &self.services,
                &C::View::default(),
                None,
            )))
            .await;
            let handled = match handled {
                Ok(handled) => handled,
                Err(message) => {
                    repository.cache_put(registration, stream, state, version);
                    return Err(CommandError::HandlerPanicked {
                        command: C::NAME,
                        message,
                    });
                }
            };
            let decision = match handled {
                Ok(d) => d,
                Err(HandlerError::Domain(e)) => {
                    // An answer without an append must not rest on events
                    // that never commit, nor on a cached state another
                    // instance has appended past.
                    if !fresh && self.stale(&stream, version).await {
                        repository.cache.invalidate(&stream);
                        (state, version, fresh) = self.load_fresh::<C::Aggregate>(registration, &stream).await?;
                        continue;
                    }
                    repository.cache_put(registration, stream, state, version);
                    return Err(CommandError::Domain(e));
                }
                Err(HandlerError::MissingService(m)) => {
                    return Err(CommandError::MissingService(m));
                }
                Err(HandlerError::NoPeer) => return Err(CommandError::NoPeer { command: C::NAME }),
            };
            if !decision.peer_events.is_empty() {
                repository.cache_put(registration, stream, state, version);
                return Err(CommandError::NoPeer { command: C::NAME });
            }
            if decision.events.is_empty() {
                if !fresh && self.stale(&stream, version).await {
                    repository.cache.invalidate(&stream);
                    (state, version, fresh) = self.load_fresh::<C::Aggregate>(registration, &stream).await?;
                    continue;
                }
                repository.cache_put(registration, stream.clone(), state, version);
                return Ok(Dispatched {
                    output: decision.output,
                    command_id,
                    stream,
                    version,
                    positions: crate::store::Positions::new(),
                    replayed: false,
                    attempts: attempt,
                });
            }
            let mut new_events = encode(&decision.events, &metadata, settings.max_event_bytes)?;
            if let Some(fingerprint) = outcome {
                carry_outcome(&mut new_events, &decision.output, fingerprint);
            }
            let expected = ExpectedVersion::Exact(version);
            let appended = match repository.store.try_append_now(&stream, expected, new_events) {
                Ok(done) => done,
                // A store that commits later: the next command of the
                // aggregate goes on from this one's state while it commits,
                // and their events share an append (`combine.rs`).
                Err(new_events) => {
                    if let Err(message) = apply_all(&mut *state, &decision.events) {
                        repository.cache.invalidate(&stream);
                        return Err(CommandError::Load(LoadError::ApplierPanicked {
                            aggregate: registration.name,
                            id: stream.aggregate_id().to_owned(),
                            version: Version(version.0 + new_events.len() as u64),
                            event: new_events.last().map_or_else(String::new, |e| e.name.to_string()),
                            message,
                        }));
                    }
                    let after = Version(version.0 + new_events.len() as u64);
                    let snapshot = repository.snapshot_if_due(registration, &stream, &*state, version, after);
                    let shared = repository.cache_put_uncommitted(registration, &stream, state, after);
                    let joined = self.combiner.join(
                        &repository.store,
                        &repository.snapshots,
                        &stream,
                        version,
                        new_events,
                        snapshot,
                        fresh,
                    );
                    drop(turn);
                    let committed = joined.await.unwrap_or_else(|_| {
                        Err(StoreError::Backend {
                            backend: "combined append",
                            source: "the append's task ended without an outcome".into(),
                        })
                    });
                    match committed {
                        Ok(committed) => {
                            if let Some(entry) = shared {
                                repository.cache.put(stream.clone(), entry);
                            }
                            return Ok(self.committed(committed, decision.output, command_id, attempt).await);
                        }
                        Err(StoreError::Conflict { actual, .. }) => {
                            tracing::debug!(%stream, expected = %version, %actual, attempt, "combined append conflict; re-running command");
                            last_conflict = (version, actual);
                            back_off(attempt, &mut conflict_waits, || CONFLICT_BACKOFF.delays()).await;
                            // The cached state may hold events that did not
                            // commit: reload from the store, in turn.
                            turn = self.turns.wait(&stream).await;
                            repository.cache.invalidate(&stream);
                            if outcome.is_some() && self.committed_since(&stream, version, command_id).await? {
                                return Err(CommandError::InProgress(command_id));
                            }
                            (state, version, fresh) = self.load_fresh::<C::Aggregate>(registration, &stream).await?;
                            continue;
                        }
                        Err(e) => {
                            repository.cache.invalidate(&stream);
                            return Err(CommandError::Store(e));
                        }
                    }
                }
            };
            match appended {
                Ok(committed) => {
                    match apply_all(&mut *state, &decision.events) {
                        Ok(()) => {
                            repository
                                .maybe_snapshot(registration, &stream, &*state, version, committed.version)
                                .await;
                            repository.cache_put(registration, stream, state, committed.version);
                        }
                        // The events are committed: the command succeeded. The
                        // half-applied state is dropped, not cached; the next
                        // load reports the applier's panic as a typed error.
                        Err(message) => {
                            tracing::error!(%stream, command = C::NAME, %message, "an event applier panicked after the commit");
                            repository.cache.invalidate(&stream);
                        }
                    }
                    drop(turn);
                    return Ok(self.committed(committed, decision.output, command_id, attempt).await);
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    tracing::debug!(%stream, expected = %version, %actual, attempt, "append conflict; re-running command");
                    repository.cache.invalidate(&stream);
                    last_conflict = (version, actual);
                    back_off(attempt, &mut conflict_waits, || CONFLICT_BACKOFF.delays()).await;
                    if outcome.is_some() && self.committed_since(&stream, version, command_id).await? {
                        return Err(CommandError::InProgress(command_id));
                    }
                    (state, version) = repository.load_forward(registration, &stream, *state, version).await?;
                    fresh = true;
                }
                Err(e) => {
                    repository.cache.invalidate(&stream);
                    return Err(CommandError::Store(e));
                }
            }
        }
        Err(CommandError::Conflict {
            stream,
            expected: last_conflict.0,
            actual: last_conflict.1,
            attempts: settings.max_attempts,
        })
    }
}

impl Dispatcher {
    /// Whether events of `command_id` were committed to `stream` after
    /// `version`: another instance took the command's idempotency claim
    /// over (this one was paused past its lease) and ran it. Running it
    /// again on the newer state would apply it twice; the caller answers
    /// `InProgress`, and the id's recorded outcome is replayed from then on.
    async fn committed_since<E>(
        &self,
        stream: &StreamId,
        version: Version,
        command_id: CommandId,
    ) -> Result<bool, CommandError<E>> {
        let newer = self
            .repository
            .store
            .read_stream(stream, Version(version.0 + 1), None)
            .await
            .map_err(CommandError::Store)?;
        Ok(newer.iter().any(|e| e.metadata.command_id == Some(command_id)))
    }

    /// A command whose events are committed: the after-commit hooks, then
    /// its outcome.
    pub(super) async fn committed<O>(
        &self,
        committed: crate::store::Committed,
        output: O,
        command_id: CommandId,
        attempts: u32,
    ) -> Dispatched<O> {
        if let Some(last) = committed.positions.last() {
            for hook in &self.after_commit {
                hook.committed(*last).await;
            }
        }
        Dispatched {
            output,
            command_id,
            stream: committed.stream,
            version: committed.version,
            positions: committed.positions,
            replayed: false,
            attempts,
        }
    }
}

/// Folds a decision's events into the state; a panicking applier is the
/// panic's message (the state is then half-applied: drop it).
pub(super) fn apply_all<A: crate::domain::aggregate::Aggregate>(
    state: &mut A,
    events: &[A::Event],
) -> Result<(), String> {
    catch_panic_sync(|| {
        for event in events {
            state.apply(event);
        }
    })
}

/// After a conflict: back off a little (jittered) so the writers that keep
/// colliding spread out; the first re-run is immediate.
/// `waits` is made on the first conflict: most commands never need it.
pub(super) async fn back_off<I: Iterator<Item = std::time::Duration>>(
    attempt: u32,
    waits: &mut Option<I>,
    make: impl FnOnce() -> I,
) {
    if attempt > 1
        && let Some(wait) = waits.get_or_insert_with(make).next()
    {
        tokio::time::sleep(wait).await;
    }
}

/// Puts an idempotent command's output and fingerprint on its last event.
/// An output that cannot be encoded is left out (the outcome is then not
/// recorded either, and the claim stays until its lease ends).
pub(super) fn carry_outcome<O: serde::Serialize>(events: &mut [NewEvent], output: &O, fingerprint: CommandFingerprint) {
    let Some(last) = events.last_mut() else { return };
    let headers = &mut last.metadata.headers;
    // Without the output (it cannot be encoded), the fingerprint alone
    // tells a recovery that the outcome is lost, rather than `null`.
    if let Ok(json) = serde_json::to_string(output) {
        headers.insert(OUTCOME_HEADER.to_owned(), json);
    }
    headers.insert(FINGERPRINT_HEADER.to_owned(), fingerprint.to_string());
}

/// Encodes a decision's events for the store, each stamped with the
/// command's metadata (its time, read once when the command came in).
pub(super) fn encode<E: crate::domain::event::EventSet, X>(
    events: &[E],
    metadata: &EventMetadata,
    max_event_bytes: usize,
) -> Result<Vec<NewEvent>, CommandError<X>> {
    let ms = metadata.timestamp.unwrap_or_else(Timestamp::now).as_millis();
    let mut new_events = Vec::with_capacity(events.len());
    for event in events {
        let encoded = event.encode().map_err(|source| CommandError::Encode {
            event: event.name(),
            source,
        })?;
        if encoded.payload.len() > max_event_bytes {
            return Err(CommandError::EventTooLarge {
                event: encoded.name,
                size: encoded.payload.len(),
                limit: max_event_bytes,
            });
        }
        new_events.push(NewEvent {
            event_id: EventId(next_ulid(ms)),
            name: encoded.name.into(),
            schema_version: encoded.version,
            payload: encoded.payload,
            metadata: metadata.clone(),
        });
    }
    Ok(new_events)
}
