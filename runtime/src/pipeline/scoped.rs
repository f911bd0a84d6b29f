//! The command loop of handlers that decide on more than their own stream:
//! a view of their category or of the log (`consistency = category | log`),
//! the state of a peer (a `#[peer_id]` field), or both. One atomic append
//! commits everything the handler decided: its own stream and the peer's,
//! each at the version the handler saw, and (with a view) only if the
//! scope is unchanged since the view's position. When another writer
//! moved a stream or the scope first, the view and the states are brought
//! forward and the handler decides again.
//!
//! The view stays locked from catch-up to the end of the append, so the
//! commands of one instance reading the same view take turns and never
//! conflict with each other, only with other processes (the promise the
//! stream turns make). The two streams' turns are taken in the order of
//! their slots in the turn table, so opposite transfers never wait on each
//! other. These appends are
//! atomic appends of their own (no combining, no group commit): their cost
//! is one transaction each.

use std::borrow::Cow;

use super::config::Registration;
use super::dispatcher::{CONFLICT_BACKOFF, Dispatcher, apply_all, back_off, carry_outcome, encode};
use super::error::CommandError;
use super::options::Dispatched;
use crate::domain::aggregate::Aggregate;
use crate::domain::command::{HandledCommand, HandlerError};
use crate::domain::fingerprint::CommandFingerprint;
use crate::domain::ids::{CommandId, Position, StreamId, Version};
use crate::domain::unwind::catch_panic;
use crate::domain::view::Consistency;
use crate::store::{AtomicAppend, Committed, EventMetadata, ExpectedVersion, Scope, StoreError};

/// The scope a command of consistency `consistency` on aggregate `A`
/// decides against (`None` for its stream alone): its tenant's, for a
/// command of a tenant.
fn scope_of<A: Aggregate>(consistency: Consistency, stream: &StreamId) -> Option<Scope> {
    let category = Cow::Borrowed(A::NAME);
    match (consistency, stream.tenant()) {
        (Consistency::Stream, _) => None,
        (Consistency::Category, None) => Some(Scope::Category(category)),
        (Consistency::Category, Some(tenant)) => Some(Scope::TenantCategory(tenant.clone(), category)),
        (Consistency::Log, None) => Some(Scope::Log),
        (Consistency::Log, Some(tenant)) => Some(Scope::Tenant(tenant.clone())),
    }
}

/// How the last attempt lost: to a writer of a stream or of the scope.
enum Lost {
    Stream {
        stream: StreamId,
        expected: Version,
        actual: Version,
    },
    Scope {
        since: Position,
        actual: Position,
    },
}

impl Dispatcher {
    /// The command loop with a view, a peer, or both.
    #[allow(clippy::too_many_lines)] // one loop, read top to bottom
    pub(crate) async fn run_scoped<C: HandledCommand>(
        &self,
        registration: &Registration,
        stream: StreamId,
        command: C,
        command_id: CommandId,
        metadata: EventMetadata,
        outcome: Option<CommandFingerprint>,
    ) -> Result<Dispatched<C::Output>, CommandError<C::Error>> {
        let repository = &self.repository;
        let settings = &self.settings;
        let scope = scope_of::<C::Aggregate>(C::CONSISTENCY, &stream);
        let slot = scope.as_ref().map(|scope| self.views.slot::<C::View>(scope));
        // A peer that is the aggregate itself reads (and appends to) its
        // own stream.
        let peer_stream = command
            .peer_id()
            .map(|id| self.stream_of(registration, id, stream.tenant()))
            .filter(|peer| *peer != stream);
        let no_view = C::View::default();
        let mut conflict_waits = None;
        let mut lost = Lost::Stream {
            stream: stream.clone(),
            expected: Version::INITIAL,
            actual: Version::INITIAL,
        };
        // The cached states on the first attempt; the store's after a loss.
        let mut fresh = false;
        for attempt in 1..=settings.max_attempts {
            let caught = match (&slot, &scope) {
                (Some(slot), Some(scope)) => Some(slot.catch_up(&*repository.store, scope).await?),
                _ => None,
            };
            let view = caught.as_ref().map_or(&no_view, |c| &c.view);
            let turns = match &peer_stream {
                Some(peer) => self.turns.wait_two(&stream, peer).await,
                None => (self.turns.wait(&stream).await, None),
            };
            let (state, version, loaded_fresh) = if fresh {
                self.load_fresh::<C::Aggregate>(registration, &stream).await?
            } else {
                self.load::<C::Aggregate>(registration, &stream).await?
            };
            let peer = match &peer_stream {
                Some(peer) if fresh => Some(self.load_fresh::<C::Aggregate>(registration, peer).await?),
                Some(peer) => Some(self.load::<C::Aggregate>(registration, peer).await?),
                None => None,
            };
            let peer_state = match &peer {
                Some((peer_state, _, _)) => Some(&**peer_state),
                None if C::HAS_PEER => Some(&*state),
                None => None,
            };
            let handled = catch_panic(std::pin::pin!(C::handle(
                &*state,
                command.clone(),
                &self.services,
                view,
                peer_state,
            )))
            .await;
            let put_back = |state, peer: Option<(Box<C::Aggregate>, Version, bool)>| {
                repository.cache_put(registration, stream.clone(), state, version);
                if let (Some(peer_stream), Some((peer_state, peer_version, _))) = (&peer_stream, peer) {
                    repository.cache_put(registration, peer_stream.clone(), peer_state, peer_version);
                }
            };
            let decision = match handled {
                Ok(Ok(decision)) => decision,
                Ok(Err(HandlerError::Domain(e))) => {
                    // An answer must not rest on a cached state holding
                    // events that never commit.
                    if self
                        .any_stale(&stream, (version, loaded_fresh), peer_stream.as_ref(), &peer)
                        .await
                    {
                        self.invalidate(&stream, peer_stream.as_ref());
                        fresh = true;
                        continue;
                    }
                    put_back(state, peer);
                    return Err(CommandError::Domain(e));
                }
                Ok(Err(HandlerError::MissingService(m))) => return Err(CommandError::MissingService(m)),
                Ok(Err(HandlerError::NoPeer)) => return Err(CommandError::NoPeer { command: C::NAME }),
                Err(message) => {
                    put_back(state, peer);
                    return Err(CommandError::HandlerPanicked {
                        command: C::NAME,
                        message,
                    });
                }
            };
            if !decision.peer_events.is_empty() && !C::HAS_PEER {
                put_back(state, peer);
                return Err(CommandError::NoPeer { command: C::NAME });
            }
            if decision.events.is_empty() && decision.peer_events.is_empty() {
                if self
                    .any_stale(&stream, (version, loaded_fresh), peer_stream.as_ref(), &peer)
                    .await
                {
                    self.invalidate(&stream, peer_stream.as_ref());
                    fresh = true;
                    continue;
                }
                put_back(state, peer);
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
            let mut own_events = encode(&decision.events, &metadata, settings.max_event_bytes)?;
            let mut peer_events = encode(&decision.peer_events, &metadata, settings.max_event_bytes)?;
            if let Some(fingerprint) = outcome {
                // On the own stream's last event, where a recovery looks;
                // on the peer's when the handler wrote only there.
                let carrier = if own_events.is_empty() || peer_stream.is_none() && !peer_events.is_empty() {
                    &mut peer_events
                } else {
                    &mut own_events
                };
                carry_outcome(carrier, &decision.output, fingerprint);
            }
            let mut append = AtomicAppend::new();
            match (&peer_stream, &peer) {
                (Some(peer_stream), Some((_, peer_version, _))) => {
                    append = append
                        .stream(stream.clone(), ExpectedVersion::Exact(version), own_events)
                        .stream(peer_stream.clone(), ExpectedVersion::Exact(*peer_version), peer_events);
                }
                // No peer, or the aggregate is its own peer: one part.
                _ => {
                    own_events.append(&mut peer_events);
                    append = append.stream(stream.clone(), ExpectedVersion::Exact(version), own_events);
                }
            }
            if let (Some(scope), Some(caught)) = (&scope, &caught) {
                append = append.unchanged(scope.clone(), caught.position);
            }
            match repository.store.append_atomic(append).await {
                Ok(parts) => {
                    let sent = if peer.is_some() { 2 } else { 1 };
                    if parts.len() != sent {
                        self.invalidate(&stream, peer_stream.as_ref());
                        return Err(CommandError::Store(StoreError::Backend {
                            backend: "atomic append",
                            source: format!("the store answered {} outcomes for {sent} streams", parts.len()).into(),
                        }));
                    }
                    let mut parts = parts.into_iter();
                    let Some(own) = parts.next() else {
                        self.invalidate(&stream, peer_stream.as_ref());
                        return Err(CommandError::Store(StoreError::Backend {
                            backend: "atomic append",
                            source: "the store answered no outcome for the command's stream".into(),
                        }));
                    };
                    let mut all_events = decision.events;
                    let mut positions = own.positions.clone();
                    match (parts.next(), peer) {
                        (Some(peer_done), Some((peer_state, peer_version, _))) => {
                            positions.extend(peer_done.positions.iter().copied());
                            if let Some(peer_stream) = &peer_stream {
                                self.settle(
                                    registration,
                                    peer_stream,
                                    peer_state,
                                    peer_version,
                                    &decision.peer_events,
                                    &peer_done,
                                )
                                .await;
                            }
                        }
                        _ => all_events.extend(decision.peer_events),
                    }
                    self.settle(registration, &stream, state, version, &all_events, &own)
                        .await;
                    drop(turns);
                    drop(caught);
                    let committed = Committed {
                        stream: own.stream,
                        version: own.version,
                        positions,
                    };
                    return Ok(self.committed(committed, decision.output, command_id, attempt).await);
                }
                Err(StoreError::Conflict {
                    stream: conflicted,
                    expected,
                    actual,
                }) => {
                    tracing::debug!(stream = %conflicted, %expected, %actual, attempt, "append conflict; re-running command");
                    let expected = match expected {
                        ExpectedVersion::Exact(v) => v,
                        ExpectedVersion::Any => Version::INITIAL,
                    };
                    lost = Lost::Stream {
                        stream: conflicted,
                        expected,
                        actual,
                    };
                }
                Err(StoreError::ScopeChanged { scope, since, actual }) => {
                    tracing::debug!(%stream, %scope, %since, %actual, attempt, "scope changed; re-running command");
                    lost = Lost::Scope { since, actual };
                }
                Err(e) => {
                    self.invalidate(&stream, peer_stream.as_ref());
                    return Err(CommandError::Store(e));
                }
            }
            self.invalidate(&stream, peer_stream.as_ref());
            fresh = true;
            drop(turns);
            drop(caught);
            back_off(attempt, &mut conflict_waits, || CONFLICT_BACKOFF.delays()).await;
        }
        Err(match lost {
            Lost::Stream {
                stream,
                expected,
                actual,
            } => CommandError::Conflict {
                stream,
                expected,
                actual,
                attempts: settings.max_attempts,
            },
            Lost::Scope { since, actual } => CommandError::ScopeChanged {
                scope: scope.unwrap_or(Scope::Log),
                since,
                actual,
                attempts: settings.max_attempts,
            },
        })
    }

    /// After a commit: folds a stream's committed events into its state,
    /// snapshots by policy and caches it (a panicking applier drops it).
    async fn settle<A: Aggregate>(
        &self,
        registration: &Registration,
        stream: &StreamId,
        mut state: Box<A>,
        version: Version,
        events: &[A::Event],
        committed: &Committed,
    ) {
        let repository = &self.repository;
        // Committed at the version it was loaded at: whatever combined
        // append of the stream failed before, this state is the truth.
        self.combiner.cure(stream);
        match apply_all(&mut *state, events) {
            Ok(()) => {
                repository
                    .maybe_snapshot(registration, stream, &*state, version, committed.version)
                    .await;
                repository.cache_put(registration, stream.clone(), state, committed.version);
            }
            Err(message) => {
                tracing::error!(%stream, %message, "an event applier panicked after the commit");
                repository.cache.invalidate(stream);
            }
        }
    }

    /// Whether a state taken from the cache (the own one at `version`
    /// unless `own_fresh`, the peer's unless it was loaded fresh) may be
    /// behind (`Dispatcher::stale`).
    async fn any_stale<A>(
        &self,
        stream: &StreamId,
        (version, own_fresh): (Version, bool),
        peer_stream: Option<&StreamId>,
        peer: &Option<(Box<A>, Version, bool)>,
    ) -> bool {
        if !own_fresh && self.stale(stream, version).await {
            return true;
        }
        match (peer_stream, peer) {
            (Some(peer_stream), Some((_, peer_version, false))) => self.stale(peer_stream, *peer_version).await,
            _ => false,
        }
    }

    /// Drops both streams' cached states.
    fn invalidate(&self, stream: &StreamId, peer: Option<&StreamId>) {
        self.repository.cache.invalidate(stream);
        if let Some(peer) = peer {
            self.repository.cache.invalidate(peer);
        }
    }
}
