//! Idempotency: processed command ids and their recorded outcomes.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use super::StoreError;
use crate::domain::fingerprint::CommandFingerprint;
use crate::domain::ids::{CommandId, StreamId, Timestamp, Version};
use crate::future::BoxFuture;

/// The recorded outcome of a processed command.
#[derive(Clone, Debug, PartialEq)]
pub struct IdempotencyRecord {
    /// The command.
    pub command_id: CommandId,
    /// The stream it appended to.
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: Version,
    /// The handler's output, as JSON.
    pub output: Bytes,
    /// When the command completed.
    pub recorded_at: Timestamp,
    /// After this time the record may be purged.
    pub expires_at: Timestamp,
    /// The fingerprint of the command that ran (`None` in records written
    /// before fingerprints were kept): a later command with the same id and
    /// another fingerprint is refused, not answered with this outcome.
    pub fingerprint: Option<CommandFingerprint>,
}

/// The header of the last event of an idempotent command holding its
/// output (JSON): with it, a command whose process died after its events
/// were committed but before its outcome was recorded is replayed from its
/// events, not run twice. Copy it with the events when migrating a store.
pub const OUTCOME_HEADER: &str = "interlock.outcome";

/// The header beside [`OUTCOME_HEADER`] holding the command's
/// fingerprint (16 hex digits).
pub const FINGERPRINT_HEADER: &str = "interlock.fingerprint";

/// The answer to a claim on a command id.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// The id is new (or its record expired): the caller runs the command,
    /// then completes or releases it.
    Claimed,
    /// The id is the caller's now, but an earlier claim on it expired
    /// without an outcome: its holder died, perhaps after the command's
    /// events were committed. The caller looks for them before running the
    /// command again.
    Reclaimed,
    /// The command already ran; here is its outcome.
    Completed(IdempotencyRecord),
    /// Another caller holds an unexpired claim on the id.
    InProgress,
}

/// Storage of processed command ids.
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `command_id` for `lease`, or reports its recorded outcome.
    /// An expired claim (its holder crashed) can be claimed again.
    fn claim(&self, command_id: CommandId, now: Timestamp, lease: Duration)
    -> BoxFuture<'_, Result<Claim, StoreError>>;

    /// Records the outcome of a claimed command.
    fn complete(&self, record: IdempotencyRecord) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Gives up a claim without an outcome (the command was rejected or failed),
    /// so the id can be tried again.
    fn release(&self, command_id: CommandId) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Deletes recorded outcomes that expired before `now`; returns how
    /// many. Claims are kept, expired or not: a claim whose holder died
    /// must be answered `Reclaimed` to whoever takes it over.
    fn purge_expired(&self, now: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>>;
}

#[derive(Debug)]
enum Entry {
    Claimed { until: Timestamp },
    Done(IdempotencyRecord),
}

/// Command ids kept in process memory.
#[derive(Debug, Default)]
pub struct MemoryIdempotencyStore {
    entries: Mutex<HashMap<CommandId, Entry>>,
}

impl MemoryIdempotencyStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

impl IdempotencyStore for MemoryIdempotencyStore {
    fn claim(
        &self,
        command_id: CommandId,
        now: Timestamp,
        lease: Duration,
    ) -> BoxFuture<'_, Result<Claim, StoreError>> {
        let mut entries = self.entries.lock();
        let claim = match entries.get(&command_id) {
            Some(Entry::Done(record)) if record.expires_at > now => Claim::Completed(record.clone()),
            Some(Entry::Claimed { until }) if *until > now => Claim::InProgress,
            earlier => {
                let abandoned = matches!(earlier, Some(Entry::Claimed { .. }));
                entries.insert(command_id, Entry::Claimed { until: now.plus(lease) });
                if abandoned { Claim::Reclaimed } else { Claim::Claimed }
            }
        };
        Box::pin(std::future::ready(Ok(claim)))
    }

    fn complete(&self, record: IdempotencyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        self.entries.lock().insert(record.command_id, Entry::Done(record));
        Box::pin(std::future::ready(Ok(())))
    }

    fn release(&self, command_id: CommandId) -> BoxFuture<'_, Result<(), StoreError>> {
        let mut entries = self.entries.lock();
        if matches!(entries.get(&command_id), Some(Entry::Claimed { .. })) {
            entries.remove(&command_id);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn purge_expired(&self, now: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        let mut entries = self.entries.lock();
        let before = entries.len();
        // Only outcomes: an expired claim stays, so that whoever takes it
        // over learns its holder died (`Claim::Reclaimed`).
        entries.retain(|_, e| match e {
            Entry::Done(r) => r.expires_at > now,
            Entry::Claimed { .. } => true,
        });
        let purged = (before - entries.len()) as u64;
        Box::pin(std::future::ready(Ok(purged)))
    }
}

impl<S: IdempotencyStore + ?Sized> IdempotencyStore for std::sync::Arc<S> {
    fn claim(
        &self,
        command_id: CommandId,
        now: Timestamp,
        lease: Duration,
    ) -> BoxFuture<'_, Result<Claim, StoreError>> {
        (**self).claim(command_id, now, lease)
    }
    fn complete(&self, record: IdempotencyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).complete(record)
    }
    fn release(&self, command_id: CommandId) -> BoxFuture<'_, Result<(), StoreError>> {
        (**self).release(command_id)
    }
    fn purge_expired(&self, now: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        (**self).purge_expired(now)
    }
}
