//! The command loop of handlers declared `consistency = category` or
//! `log`: catch the view up, decide on it and the aggregate's state, and
//! append under "the scope is unchanged since the view's position"; when
//! another writer moved the scope (or the stream) first, catch up and
//! decide again.
//!
//! The view stays locked from catch-up to the end of the append, so the
//! commands of one instance reading the same view take turns and never
//! conflict with each other, only with other processes (the same promise
//! the stream turns make). These appends are atomic appends of their own
//! (no combining, no group commit): their cost is one transaction each.

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
use crate::store::{AtomicAppend, EventMetadata, ExpectedVersion, Scope, StoreError};

/// The scope a command of consistency `consistency` on aggregate `A`
/// decides against.
fn scope_of<A: Aggregate>(consistency: Consistency) -> Scope {
    match consistency {
        Consistency::Log => Scope::Log,
        Consistency::Category | Consistency::Stream => Scope::Category(Cow::Borrowed(A::NAME)),
    }
}

/// How the last attempt lost: to a writer of the stream or of the scope.
enum Lost {
    Stream { expected: Version, actual: Version },
    Scope { since: Position, actual: Position },
}

impl Dispatcher {
    /// The command loop under a category or log constraint.
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
        let scope = scope_of::<C::Aggregate>(C::CONSISTENCY);
        let slot = self.views.slot::<C::View>(&scope);
        let mut conflict_waits = None;
        let mut lost = Lost::Stream {
            expected: Version::INITIAL,
            actual: Version::INITIAL,
        };
        // The cached state on the first attempt; the store's after a loss.
        let mut fresh = false;
        for attempt in 1..=settings.max_attempts {
            let caught = slot.catch_up(&*repository.store, &scope).await?;
            let turn = self.turns.wait(&stream).await;
            let (state, version, loaded_fresh) = if fresh {
                self.load_fresh::<C::Aggregate>(registration, &stream).await?
            } else {
                self.load::<C::Aggregate>(registration, &stream).await?
            };
            let handled = catch_panic(std::pin::pin!(C::handle(
                &*state,
                command.clone(),
                &self.services,
                &caught.view
            )))
            .await;
            let decision = match handled {
                Ok(Ok(decision)) => decision,
                Ok(Err(HandlerError::Domain(e))) => {
                    // An answer must not rest on a cached state holding
                    // events that never commit.
                    if !loaded_fresh && self.stale(&stream).await {
                        repository.cache.invalidate(&stream);
                        fresh = true;
                        continue;
                    }
                    repository.cache.put(stream, state, version);
                    return Err(CommandError::Domain(e));
                }
                Ok(Err(HandlerError::MissingService(m))) => return Err(CommandError::MissingService(m)),
                Err(message) => {
                    repository.cache.put(stream, state, version);
                    return Err(CommandError::HandlerPanicked {
                        command: C::NAME,
                        message,
                    });
                }
            };
            if decision.events.is_empty() {
                if !loaded_fresh && self.stale(&stream).await {
                    repository.cache.invalidate(&stream);
                    fresh = true;
                    continue;
                }
                repository.cache.put(stream.clone(), state, version);
                return Ok(Dispatched {
                    output: decision.output,
                    command_id,
                    stream,
                    version,
                    positions: Vec::new(),
                    replayed: false,
                    attempts: attempt,
                });
            }
            let mut new_events = encode(&decision.events, &metadata, settings.max_event_bytes)?;
            if let Some(fingerprint) = outcome {
                carry_outcome(&mut new_events, &decision.output, fingerprint);
            }
            let append = AtomicAppend::new()
                .stream(stream.clone(), ExpectedVersion::Exact(version), new_events)
                .unchanged(scope.clone(), caught.position);
            match repository.store.append_atomic(append).await {
                Ok(committed) => {
                    let Some(committed) = committed.into_iter().next() else {
                        repository.cache.invalidate(&stream);
                        return Err(CommandError::Store(StoreError::Backend {
                            backend: "atomic append",
                            source: "the store answered no outcome for the append's stream".into(),
                        }));
                    };
                    let mut state = state;
                    match apply_all(&mut *state, &decision.events) {
                        Ok(()) => {
                            repository
                                .maybe_snapshot(registration, &stream, &*state, version, committed.version)
                                .await;
                            repository.cache.put(stream, state, committed.version);
                        }
                        Err(message) => {
                            tracing::error!(%stream, command = C::NAME, %message, "an event applier panicked after the commit");
                            repository.cache.invalidate(&stream);
                        }
                    }
                    drop(turn);
                    drop(caught);
                    return Ok(self.committed(committed, decision.output, command_id, attempt).await);
                }
                Err(StoreError::Conflict { actual, .. }) => {
                    tracing::debug!(%stream, expected = %version, %actual, attempt, "append conflict; re-running command");
                    lost = Lost::Stream {
                        expected: version,
                        actual,
                    };
                }
                Err(StoreError::ScopeChanged { since, actual, .. }) => {
                    tracing::debug!(%stream, %scope, %since, %actual, attempt, "scope changed; re-running command");
                    lost = Lost::Scope { since, actual };
                }
                Err(e) => {
                    repository.cache.invalidate(&stream);
                    return Err(CommandError::Store(e));
                }
            }
            repository.cache.invalidate(&stream);
            fresh = true;
            drop(turn);
            drop(caught);
            back_off(attempt, &mut conflict_waits, || CONFLICT_BACKOFF.delays()).await;
        }
        Err(match lost {
            Lost::Stream { expected, actual } => CommandError::Conflict {
                stream,
                expected,
                actual,
                attempts: settings.max_attempts,
            },
            Lost::Scope { since, actual } => CommandError::ScopeChanged {
                scope,
                since,
                actual,
                attempts: settings.max_attempts,
            },
        })
    }
}
