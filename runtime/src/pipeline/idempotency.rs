//! Idempotent dispatch: a command id is claimed before the command runs;
//! a repeated id returns the recorded outcome and runs nothing.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::config::Settings;
use super::error::CommandError;
use super::options::Dispatched;
use crate::domain::aggregate::Aggregate;
use crate::domain::backoff::Backoff;
use crate::domain::command::HandledCommand;
use crate::domain::fingerprint::{CommandFingerprint, Fingerprinter};
use crate::domain::ids::{AggregateId, StreamId, TenantId};
use crate::domain::ids::{CommandId, Timestamp};
use crate::store::{
    Claim, EventStore, FINGERPRINT_HEADER, IdempotencyRecord, IdempotencyStore, OUTCOME_HEADER, Scan, ScanPages,
};

/// What a command id stands for: the command, its target and its values.
pub(crate) struct Identity {
    command: &'static str,
    aggregate: &'static str,
    id: String,
    /// The stream key of the command's peer, if it names one.
    peer: Option<String>,
    /// The tenant of its streams.
    tenant: Option<TenantId>,
    fingerprint: CommandFingerprint,
}

impl Identity {
    /// The identity of `command` in `tenant`: its name, target and field
    /// values.
    pub(crate) fn of<C: HandledCommand>(command: &C, tenant: Option<&TenantId>) -> Self {
        let aggregate = <C::Aggregate as Aggregate>::NAME;
        let id = command.aggregate_id().to_stream_key();
        let mut fp = Fingerprinter::new();
        fp.str(C::NAME);
        fp.str(aggregate);
        fp.str(&id);
        // Only with a tenant: fingerprints of commands of no tenant stay
        // what they were before tenants.
        if let Some(tenant) = tenant {
            fp.str("tenant");
            fp.str(tenant.as_str());
        }
        command.fingerprint(&mut fp);
        Self {
            command: C::NAME,
            aggregate,
            id,
            peer: command.peer_id().map(AggregateId::to_stream_key),
            tenant: tenant.cloned(),
            fingerprint: fp.finish(),
        }
    }

    /// The stream of the command's peer, if it names one.
    fn peer_stream(&self) -> Option<StreamId> {
        self.peer
            .as_ref()
            .map(|key| StreamId::new(self.aggregate, key.as_str()).in_tenant(self.tenant.clone()))
    }

    /// The command's fingerprint.
    pub(crate) fn fingerprint(&self) -> CommandFingerprint {
        self.fingerprint
    }

    /// Whether `record` is the outcome of this command. A record without a
    /// fingerprint (written before they were kept) is checked by its stream.
    fn recorded_in(&self, record: &IdempotencyRecord) -> bool {
        let same_stream = record.stream.tenant() == self.tenant.as_ref()
            && record.stream.aggregate_type() == self.aggregate
            && record.stream.aggregate_id() == self.id;
        same_stream && record.fingerprint.is_none_or(|f| f == self.fingerprint)
    }
}

/// Claims `command_id`, runs `run` if the claim is ours, records its
/// outcome; returns the recorded outcome if the id was processed before.
/// A rejected or failed command releases its claim, so it may be retried
/// with the same id.
///
/// A claim whose earlier holder died (`Claim::Reclaimed`), or one still held
/// by another caller, may belong to a command whose events are committed
/// while its outcome is not recorded (the process died in between): the
/// command's stream (and its peer's, for a command that names one) is
/// searched for events with its id first, and if they are there, the
/// outcome they carry is replayed instead of running the command a second
/// time.
pub(crate) async fn idempotent<O, E, F, Fut>(
    store: &dyn IdempotencyStore,
    events: &dyn EventStore,
    settings: &Settings,
    stream: &StreamId,
    command_id: CommandId,
    identity: Identity,
    run: F,
) -> Result<Dispatched<O>, CommandError<E>>
where
    O: Serialize + DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Dispatched<O>, CommandError<E>>>,
{
    let lease = settings.idempotency_lease;
    // Another caller holds the id: wait for its outcome, up to the lease.
    let mut waits = Backoff::new(u32::MAX, Duration::from_millis(1), Duration::from_millis(100)).delays();
    let waited_since = std::time::Instant::now();
    let mut polls = 0u32;
    loop {
        match store
            .claim(command_id, Timestamp::now(), lease)
            .await
            .map_err(CommandError::Store)?
        {
            Claim::Claimed => break,
            Claim::Reclaimed => {
                if let Some(record) = committed(events, stream, command_id, settings, &identity).await? {
                    return replay(store, record, command_id, &identity, true).await;
                }
                break;
            }
            Claim::Completed(record) => return replay(store, record, command_id, &identity, false).await,
            Claim::InProgress => {
                // Its holder may be gone with the events committed: look
                // at the first wait, then every tenth (reading the stream
                // is not free; a live holder records its outcome soon).
                if polls.is_multiple_of(10)
                    && let Some(record) = committed(events, stream, command_id, settings, &identity).await?
                {
                    return replay(store, record, command_id, &identity, false).await;
                }
                polls += 1;
                if waited_since.elapsed() >= lease {
                    return Err(CommandError::InProgress(command_id));
                }
                tokio::time::sleep(waits.next().unwrap_or(Duration::from_millis(100))).await;
            }
        }
    }
    let result = run().await;
    match &result {
        Ok(done) => match serde_json::to_vec(&done.output) {
            Ok(output) => {
                let now = Timestamp::now();
                let record = IdempotencyRecord {
                    command_id,
                    stream: done.stream.clone(),
                    version: done.version,
                    output: Bytes::from(output),
                    recorded_at: now,
                    expires_at: now.plus(settings.idempotency_ttl),
                    fingerprint: Some(identity.fingerprint),
                };
                store.complete(record).await.map_err(CommandError::Store)?;
            }
            Err(e) => {
                // The events are committed; the outcome cannot be recorded,
                // so keep the claim until its lease ends.
                tracing::warn!(%command_id, error = %e, "command output cannot be recorded for idempotency");
            }
        },
        // Another instance took the claim over and ran the command: the
        // claim is its own now, not to be released.
        Err(CommandError::InProgress(_)) => {}
        Err(_) => store.release(command_id).await.map_err(CommandError::Store)?,
    }
    result
}

/// The recorded (or recovered) outcome of `command_id`, as a replay; with
/// `record`, it is recorded too (it was recovered from the events).
async fn replay<O: DeserializeOwned, E>(
    store: &dyn IdempotencyStore,
    record: IdempotencyRecord,
    command_id: CommandId,
    identity: &Identity,
    record_it: bool,
) -> Result<Dispatched<O>, CommandError<E>> {
    // A recovered outcome is what committed: recorded first, whatever this
    // caller asked, so the claim does not stay open.
    if record_it {
        store.complete(record.clone()).await.map_err(CommandError::Store)?;
    }
    if !identity.recorded_in(&record) {
        return Err(CommandError::CommandIdReused {
            command_id,
            command: identity.command,
            recorded_stream: record.stream,
        });
    }
    let output = serde_json::from_slice(&record.output)
        .map_err(|source| CommandError::RecordedOutcome { command_id, source })?;
    let (stream, version) = (record.stream.clone(), record.version);
    Ok(Dispatched {
        output,
        command_id,
        stream,
        version,
        positions: crate::store::Positions::new(),
        replayed: true,
        attempts: 0,
    })
}

/// The newest event of `stream` carrying `command_id`, if any.
async fn last_of_command<E>(
    events: &dyn EventStore,
    stream: &StreamId,
    command_id: CommandId,
) -> Result<Option<crate::store::RecordedEvent>, CommandError<E>> {
    // From the newest event back: the command's events are near the end.
    let mut pages = ScanPages::new(events, Scan::stream(stream.clone()).backward().limit(64));
    loop {
        let Some(page) = pages.next_page().await.map_err(CommandError::Store)? else {
            return Ok(None);
        };
        if let Some(found) = page.into_iter().find(|e| e.metadata.command_id == Some(command_id)) {
            return Ok(Some(found));
        }
    }
}

/// The outcome of `command_id` if its events are committed in `stream`
/// (or, when it wrote only there, in its peer's): the version of
/// `stream` after it, and the output and fingerprint its last event
/// carries (headers [`OUTCOME_HEADER`], [`FINGERPRINT_HEADER`]; `null` when
/// an event written before them carries none).
async fn committed<E>(
    events: &dyn EventStore,
    stream: &StreamId,
    command_id: CommandId,
    settings: &Settings,
    identity: &Identity,
) -> Result<Option<IdempotencyRecord>, CommandError<E>> {
    let (last, version) = match last_of_command(events, stream, command_id).await? {
        Some(last) => {
            let version = last.version;
            (last, version)
        }
        None => {
            let Some(peer) = identity.peer_stream() else {
                return Ok(None);
            };
            let Some(last) = last_of_command(events, &peer, command_id).await? else {
                return Ok(None);
            };
            // Only the peer's stream changed: the command's own stream
            // is where it left it.
            let version = events.stream_version(stream).await.map_err(CommandError::Store)?;
            (last, version)
        }
    };
    let headers = &last.metadata.headers;
    // A fingerprint without an output: the output could not be encoded, so
    // it cannot be replayed (events written before these headers carry
    // neither, and replay as `null`).
    let output = match (headers.get(OUTCOME_HEADER), headers.get(FINGERPRINT_HEADER)) {
        (Some(output), _) => output.as_str(),
        (None, None) => "null",
        (None, Some(_)) => {
            use serde::de::Error as _;
            return Err(CommandError::RecordedOutcome {
                command_id,
                source: serde_json::Error::custom("the command's output could not be recorded with its events"),
            });
        }
    };
    let fingerprint = match headers.get(FINGERPRINT_HEADER) {
        Some(hex) => match u64::from_str_radix(hex, 16) {
            Ok(f) => Some(CommandFingerprint(f)),
            // Unreadable: treat as another command's, never as ours.
            Err(_) => Some(CommandFingerprint(!identity.fingerprint.0)),
        },
        None => None,
    };
    let now = Timestamp::now();
    tracing::info!(%command_id, %stream, %version, "outcome recovered from committed events");
    Ok(Some(IdempotencyRecord {
        command_id,
        stream: stream.clone(),
        version,
        output: Bytes::copy_from_slice(output.as_bytes()),
        recorded_at: now,
        expires_at: now.plus(settings.idempotency_ttl),
        fingerprint,
    }))
}
