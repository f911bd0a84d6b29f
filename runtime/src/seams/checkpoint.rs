//! The checkpoint seam: each subscriber's position in the global log, and
//! the lease that makes one instance of an application its owner.
//!
//! **Leases.** Several instances of an application share one store; each
//! catch-up subscriber must run in one of them at a time. An instance
//! claims the subscriber's lease for a while and renews it while alive;
//! when it stops renewing, another instance's claim takes it over after
//! it expires. Every takeover gives the lease a new, higher token, and
//! the owner saves its checkpoint *fenced* by its token: an owner that was
//! paused past its lease (a GC pause, a network stall) finds its save
//! refused with [`StoreError::LeaseLost`] and steps down, so it can never
//! overwrite the new owner's progress.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::StoreError;
use crate::domain::ids::{Position, Timestamp};
use crate::future::BoxFuture;

/// Who owns a subscriber's lease, until when, and its fencing token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The subscriber (or segment) leased.
    pub subscriber: String,
    /// The instance that holds it.
    pub owner: String,
    /// Increases at every change of owner; checkpoint saves carry it.
    pub token: u64,
    /// When it ends unless renewed.
    pub expires_at: Timestamp,
}

/// The answer to a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseClaim {
    /// The claimer holds the lease now (a first claim, a renewal with the
    /// same token, or a takeover of an expired lease with a new token).
    Held(Lease),
    /// Another instance holds it, unexpired.
    Taken(Lease),
}

/// Storage of subscribers' positions in the global log, and of their
/// ownership leases.
///
/// Implementations must pass the exported conformance suite
/// (`interlock::testing::checkpoint_store_conformance!`).
pub trait CheckpointStore: Send + Sync + 'static {
    /// The last position `subscriber` processed, if it ever saved one.
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>>;

    /// Records that `subscriber` processed everything up to `position`
    /// (unfenced: a subscriber no instance leases, a reset).
    fn save<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Moves `subscriber`'s checkpoint to `position` only if that is
    /// forward (or it has none), atomically: for a subscriber that several
    /// instances run without a lease (an inline projection), where a
    /// plain save of a slower instance would move it back.
    fn advance<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Claims `subscriber`'s lease for `owner` until `now + duration`: a
    /// first claim, or a renewal by its owner (same token), or a takeover
    /// when it expired at `now` (token + 1). Atomic: of concurrent
    /// claimers of a free or expired lease exactly one holds it.
    fn claim_lease<'a>(
        &'a self,
        subscriber: &'a str,
        owner: &'a str,
        now: Timestamp,
        duration: Duration,
    ) -> BoxFuture<'a, Result<LeaseClaim, StoreError>>;

    /// Gives the lease up, if `token` still holds it (another instance may
    /// then claim it at once).
    fn release_lease<'a>(&'a self, subscriber: &'a str, token: u64) -> BoxFuture<'a, Result<(), StoreError>>;

    /// [`CheckpointStore::save`] fenced by the lease: saved only while
    /// `token` is the lease's current token.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseLost`] when the lease changed hands (or was
    /// never claimed); nothing is saved.
    fn save_fenced<'a>(
        &'a self,
        subscriber: &'a str,
        position: Position,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Every lease, for status reports.
    fn leases(&self) -> BoxFuture<'_, Result<Vec<Lease>, StoreError>>;
}

/// Checkpoints and leases kept in process memory.
#[derive(Debug, Default)]
pub struct MemoryCheckpointStore {
    positions: Mutex<HashMap<String, Position>>,
    leases: Mutex<HashMap<String, Lease>>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

fn lease_lost(subscriber: &str, token: u64) -> StoreError {
    StoreError::LeaseLost {
        subscriber: subscriber.to_owned(),
        token,
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>> {
        let position = self.positions.lock().get(subscriber).copied();
        Box::pin(std::future::ready(Ok(position)))
    }

    fn save<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        self.positions.lock().insert(subscriber.to_owned(), position);
        Box::pin(std::future::ready(Ok(())))
    }

    fn advance<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut positions = self.positions.lock();
        let stored = positions.entry(subscriber.to_owned()).or_insert(position);
        *stored = (*stored).max(position);
        Box::pin(std::future::ready(Ok(())))
    }

    fn claim_lease<'a>(
        &'a self,
        subscriber: &'a str,
        owner: &'a str,
        now: Timestamp,
        duration: Duration,
    ) -> BoxFuture<'a, Result<LeaseClaim, StoreError>> {
        let mut leases = self.leases.lock();
        let expires_at = now.plus(duration);
        let claim = match leases.get_mut(subscriber) {
            Some(lease) if lease.owner == owner => {
                lease.expires_at = expires_at;
                LeaseClaim::Held(lease.clone())
            }
            Some(lease) if lease.expires_at > now => LeaseClaim::Taken(lease.clone()),
            Some(lease) => {
                lease.owner = owner.to_owned();
                lease.token += 1;
                lease.expires_at = expires_at;
                LeaseClaim::Held(lease.clone())
            }
            None => {
                let lease = Lease {
                    subscriber: subscriber.to_owned(),
                    owner: owner.to_owned(),
                    token: 1,
                    expires_at,
                };
                leases.insert(subscriber.to_owned(), lease.clone());
                LeaseClaim::Held(lease)
            }
        };
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn release_lease<'a>(&'a self, subscriber: &'a str, token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        if let Some(lease) = self.leases.lock().get_mut(subscriber)
            && lease.token == token
        {
            // Expired now, token kept: the next claimer takes it over
            // with a new token.
            lease.expires_at = Timestamp(i64::MIN);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn save_fenced<'a>(
        &'a self,
        subscriber: &'a str,
        position: Position,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let leases = self.leases.lock();
        let result = match leases.get(subscriber) {
            Some(lease) if lease.token == token => {
                self.positions.lock().insert(subscriber.to_owned(), position);
                Ok(())
            }
            _ => Err(lease_lost(subscriber, token)),
        };
        Box::pin(std::future::ready(result))
    }

    fn leases(&self) -> BoxFuture<'_, Result<Vec<Lease>, StoreError>> {
        let mut leases: Vec<Lease> = self.leases.lock().values().cloned().collect();
        leases.sort_by(|a, b| a.subscriber.cmp(&b.subscriber));
        Box::pin(std::future::ready(Ok(leases)))
    }
}

impl<S: CheckpointStore + ?Sized> CheckpointStore for Arc<S> {
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>> {
        (**self).load(subscriber)
    }
    fn save<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).save(subscriber, position)
    }
    fn advance<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).advance(subscriber, position)
    }
    fn claim_lease<'a>(
        &'a self,
        subscriber: &'a str,
        owner: &'a str,
        now: Timestamp,
        duration: Duration,
    ) -> BoxFuture<'a, Result<LeaseClaim, StoreError>> {
        (**self).claim_lease(subscriber, owner, now, duration)
    }
    fn release_lease<'a>(&'a self, subscriber: &'a str, token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).release_lease(subscriber, token)
    }
    fn save_fenced<'a>(
        &'a self,
        subscriber: &'a str,
        position: Position,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).save_fenced(subscriber, position, token)
    }
    fn leases(&self) -> BoxFuture<'_, Result<Vec<Lease>, StoreError>> {
        (**self).leases()
    }
}
