//! `build()`: validates the configuration and wires the layers together.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use super::builder::{ApplicationBuilder, Parts, SubscriberDeps};
use super::error::BuildError;
use super::{Application, Inner, ProjectionEntry};
use crate::domain::event::EventType;
use crate::pipeline::bus::CommandBus;
use crate::pipeline::config::Settings;
use crate::pipeline::dispatcher::{AfterCommit, Dispatcher};
use crate::pipeline::repository::Repository;
use crate::pipeline::rewrite::ApplicationStore;
use crate::pipeline::turns::Turns;
use crate::pipeline::views::Views;
use crate::processes::inline::InlineProjections;
use crate::processes::projection::ModelStorage;
use crate::processes::relay::RelayHandler;
use crate::processes::subscriber::{MAX_SEGMENTS, Ownership, Subscriber, SubscriberConfig};
use crate::store::MemoryAggregateCache;
use crate::store::{
    EventFilter, MemoryCheckpointStore, MemoryDeadLetterStore, MemoryEventStore, MemoryIdempotencyStore,
    MemorySagaStateStore, MemorySnapshotStore,
};

/// The environment variable that makes an application one of several
/// instances, named by its value, when the builder did not name it.
pub(crate) const INSTANCE_ID_VAR: &str = "INTERLOCK_INSTANCE_ID";

fn invalid(setting: &'static str, reason: impl Into<String>) -> BuildError {
    BuildError::InvalidConfig {
        setting,
        reason: reason.into(),
    }
}

fn validate(settings: &Settings) -> Result<(), BuildError> {
    if settings.max_attempts == 0 {
        return Err(invalid("max_attempts", "must be at least 1"));
    }
    if settings.max_event_bytes == 0 {
        return Err(invalid("max_event_bytes", "must be at least 1"));
    }
    if settings.idempotency_ttl.is_zero() {
        return Err(invalid("idempotency_ttl", "must be longer than zero"));
    }
    if settings.idempotency_lease.is_zero() {
        return Err(invalid("idempotency_lease", "must be longer than zero"));
    }
    Ok(())
}

/// Refuses two event types stored under one name outside one upcaster
/// chain, across every aggregate, projection and saga (within one of them
/// the macros refuse it at compile time).
fn check_event_names(parts: &Parts) -> Result<(), BuildError> {
    let owners = parts
        .aggregates
        .iter()
        .map(|(_, reg)| (format!("aggregate `{}`", reg.name), reg.events))
        .chain(
            parts
                .projections
                .iter()
                .map(|p| (format!("projection `{}`", p.name), p.events)),
        )
        .chain(parts.sagas.iter().map(|s| (format!("saga `{}`", s.name), s.events)));
    let mut seen: HashMap<&'static str, Vec<(EventType, std::rc::Rc<str>)>> = HashMap::new();
    for (owner, events) in owners {
        let owner: std::rc::Rc<str> = owner.into();
        for event in events() {
            let same_name = seen.entry(event.name).or_default();
            if let Some((first, first_owner)) = same_name.iter().find(|(other, _)| other.clashes_with(&event)) {
                return Err(BuildError::EventNameClash {
                    name: event.name,
                    first: first.type_name,
                    first_owner: first_owner.to_string(),
                    second: event.type_name,
                    second_owner: owner.to_string(),
                });
            }
            same_name.push((event, std::rc::Rc::clone(&owner)));
        }
    }
    Ok(())
}

impl<L> ApplicationBuilder<L> {
    /// Validates the configuration and builds the application.
    ///
    /// # Errors
    ///
    /// [`BuildError`] for a missing service, two aggregates with one name, or
    /// an invalid setting.
    pub async fn build(self) -> Result<Application<L>, BuildError> {
        let mut parts = self.parts;
        validate(&parts.settings)?;
        // A deployment names its instances without a change of code.
        if parts.ownership.is_none()
            && let Ok(id) = std::env::var(INSTANCE_ID_VAR)
        {
            parts.ownership = Some(Ownership::of(Arc::from(id)));
        }
        if let Some(ownership) = &parts.ownership {
            if ownership.renew_every.is_zero() || ownership.renew_every >= ownership.lease {
                return Err(invalid(
                    "subscriber_leases",
                    format!(
                        "the renewal ({:?}) must be longer than zero and shorter than the lease ({:?})",
                        ownership.renew_every, ownership.lease
                    ),
                ));
            }
            if ownership.instance.is_empty() {
                return Err(invalid("instance_id", "must not be empty"));
            }
        }
        let mut names: HashMap<&'static str, &'static str> = HashMap::new();
        for (_, reg) in &parts.aggregates {
            if let Some(first) = names.insert(reg.name, reg.type_name) {
                return Err(BuildError::DuplicateAggregateName {
                    name: reg.name,
                    first,
                    second: reg.type_name,
                });
            }
            if reg.snapshot.is_some_and(|s| s.every == 0) {
                return Err(invalid(
                    "snapshot_every",
                    format!("aggregate `{}`: must be at least 1", reg.name),
                ));
            }
            if let Some(service) = (reg.required_services)()
                .into_iter()
                .find(|k| !parts.services.contains(k))
            {
                return Err(BuildError::MissingService {
                    aggregate: reg.name,
                    service,
                });
            }
        }
        for p in &parts.projections {
            let reason = match (p.transactional, p.model) {
                ((true, false), _) => {
                    "its handlers take a transaction: give it the store to open them in with `ProjectionConfig::transactions(store)`"
                }
                ((false, true), _) => {
                    "it was given transactions, but no handler takes one: add the transaction parameter (`tx: &mut SqliteTransaction`, ...) after the metadata, or drop `transactions`"
                }
                ((true, true), ModelStorage::Memory) => {
                    "a transactional projection writes its model to the database: declare `model = durable`"
                }
                _ => continue,
            };
            return Err(BuildError::InvalidSubscriberConfig {
                subscriber: format!("projection:{}", p.name),
                setting: "transactions",
                reason: reason.into(),
            });
        }
        if let Some(p) = parts
            .projections
            .iter()
            .find(|p| p.model == ModelStorage::Memory && p.config.checkpoints.0.is_some())
        {
            return Err(BuildError::InvalidSubscriberConfig {
                subscriber: format!("projection:{}", p.name),
                setting: "checkpoint_store",
                reason: "the projection keeps its model in memory (`model = memory`), so its checkpoint is kept in memory too: a saved checkpoint would outlive the model; remove the store, or declare `model = durable` if the model is written to a database".into(),
            });
        }
        for p in &parts.projections {
            let reason = match p.segments {
                (Some(n), _) if n == 0 || n > MAX_SEGMENTS => format!("must be 1 to {MAX_SEGMENTS}, not {n}"),
                (_, Some(m)) if m == 0 || m > MAX_SEGMENTS => {
                    format!("`resegment_from` must be 1 to {MAX_SEGMENTS}, not {m}")
                }
                (n, Some(m)) if n.unwrap_or(1) == m => {
                    format!("`resegment_from({m})` names the count it already has; remove it")
                }
                (Some(2..), _) | (_, Some(_)) if p.inline => {
                    "an inline projection is updated by the instance that dispatched: it cannot be split".into()
                }
                (Some(2..), _) | (_, Some(_)) if p.model == ModelStorage::Memory => {
                    "a projection with its model in memory runs whole in every instance: split a durable one (`model = durable`)".into()
                }
                _ => continue,
            };
            return Err(BuildError::InvalidSubscriberConfig {
                subscriber: format!("projection:{}", p.name),
                setting: "segments",
                reason,
            });
        }
        for (kind, name, config) in parts
            .projections
            .iter()
            .map(|p| ("projection", p.name, &p.config))
            .chain(parts.sagas.iter().map(|s| ("saga", s.name, &s.config)))
        {
            if let Err((setting, reason)) = config.validate() {
                return Err(BuildError::InvalidSubscriberConfig {
                    subscriber: format!("{kind}:{name}"),
                    setting,
                    reason,
                });
            }
        }
        check_event_names(&parts)?;
        let mut subscriber_names = std::collections::HashSet::new();
        for name in parts
            .projections
            .iter()
            .map(|p| format!("projection:{}", p.name))
            .chain(parts.sagas.iter().map(|s| format!("saga:{}", s.name)))
        {
            if !subscriber_names.insert(name.clone()) {
                return Err(invalid(
                    "projection/saga name",
                    format!("two subscribers are named `{name}`"),
                ));
            }
        }
        let deps = SubscriberDeps {
            store: parts.store.unwrap_or_else(|| Arc::new(MemoryEventStore::new())),
            checkpoints: parts
                .checkpoints
                .unwrap_or_else(|| Arc::new(MemoryCheckpointStore::new())),
            dead_letters: parts
                .dead_letters
                .unwrap_or_else(|| Arc::new(MemoryDeadLetterStore::new())),
            sagas: parts
                .sagas_store
                .unwrap_or_else(|| Arc::new(MemorySagaStateStore::new())),
            ownership: parts.ownership.clone().filter(|_| parts.consume_from.is_none()),
        };
        let consuming = parts.consume_from.is_some();

        // Projections first: the inline ones run after every commit.
        let mut projections = HashMap::new();
        let mut inline = Vec::new();
        for pending in parts.projections {
            let (subscribers, model): (Vec<Arc<Subscriber>>, Arc<dyn Any + Send + Sync>) = (pending.make)(&deps);
            if pending.inline && !consuming {
                inline.extend(subscribers.iter().cloned());
            }
            projections.insert(
                pending.type_id,
                ProjectionEntry {
                    name: pending.name,
                    model,
                    subscribers,
                },
            );
        }
        let mut after_commit: Vec<Arc<dyn AfterCommit>> = Vec::new();
        if !inline.is_empty() {
            after_commit.push(Arc::new(InlineProjections(inline)));
        }
        let dispatcher = Arc::new(Dispatcher {
            repository: Repository {
                store: Arc::clone(&deps.store),
                snapshots: parts.snapshots.unwrap_or_else(|| Arc::new(MemorySnapshotStore::new())),
                cache: parts
                    .cache
                    .unwrap_or_else(|| Arc::new(MemoryAggregateCache::new(parts.settings.cache_capacity))),
            },
            idempotency: parts
                .idempotency
                .unwrap_or_else(|| Arc::new(MemoryIdempotencyStore::new())),
            services: parts.services,
            aggregates: parts.aggregates.into_iter().collect(),
            settings: parts.settings,
            after_commit,
            turns: Turns::new(),
            combiner: Arc::default(),
            views: Views::default(),
        });

        // Sagas send their commands through the dispatcher, as a command bus.
        let bus = Arc::clone(&dispatcher) as Arc<dyn CommandBus>;
        let mut sagas = HashMap::new();
        let mut deadline_pollers = Vec::new();
        for pending in parts.sagas {
            let subscriber = (pending.make)(&deps, Arc::clone(&bus));
            deadline_pollers.push((pending.deadlines, pending.poll, Arc::clone(&subscriber)));
            sagas.insert(pending.type_id, subscriber);
        }
        let relays = parts
            .publish_to
            .into_iter()
            .map(|(name, transport)| {
                let relay = Subscriber::new(
                    format!("relay:{name}"),
                    EventFilter::all(),
                    SubscriberConfig::default(),
                    Arc::clone(&deps.store),
                    Arc::clone(&deps.checkpoints),
                    Arc::clone(&deps.dead_letters),
                    Box::new(RelayHandler::new(transport)),
                );
                // One instance publishes the log.
                Arc::new(match &deps.ownership {
                    Some(ownership) => relay.owned(ownership.clone(), Arc::default()),
                    None => relay,
                })
            })
            .collect();
        let (shutdown, _) = tokio::sync::watch::channel(false);
        let inner = Arc::new(Inner {
            store_view: Arc::new(ApplicationStore::new(Arc::clone(&dispatcher))),
            dispatcher,
            sagas_store: deps.sagas,
            outboxes: parts.outboxes,
            relays,
            consume_from: parts.consume_from,
            projections,
            sagas,
            deadline_pollers: parking_lot::Mutex::new(deadline_pollers),
            interceptors: parts.interceptors,
            query_interceptors: parts.query_interceptors,
            stacks: parking_lot::RwLock::new(HashMap::new()),
            shutdown,
        });
        if parts.background {
            inner.start_background();
        }
        Ok(Application {
            inner,
            layer: self.layer,
        })
    }
}
