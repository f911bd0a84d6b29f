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
use crate::domain::backoff::Backoff;
use crate::domain::ids::{CommandId, Timestamp};
use crate::store::{Claim, IdempotencyRecord, IdempotencyStore, after};

/// Claims `command_id`, runs `run` if the claim is ours, records its
/// outcome; returns the recorded outcome if the id was processed before.
/// A rejected or failed command releases its claim, so it may be retried
/// with the same id.
pub(crate) async fn idempotent<O, E, F, Fut>(
    store: &dyn IdempotencyStore,
    settings: &Settings,
    command_id: CommandId,
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
    loop {
        match store
            .claim(command_id, Timestamp::now(), lease)
            .await
            .map_err(CommandError::Store)?
        {
            Claim::Claimed => break,
            Claim::Completed(record) => {
                let output = serde_json::from_slice(&record.output)
                    .map_err(|source| CommandError::RecordedOutcome { command_id, source })?;
                return Ok(Dispatched {
                    output,
                    command_id,
                    stream: record.stream,
                    version: record.version,
                    positions: Vec::new(),
                    replayed: true,
                    attempts: 0,
                });
            }
            Claim::InProgress => {
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
                    expires_at: after(now, settings.idempotency_ttl),
                };
                store.complete(record).await.map_err(CommandError::Store)?;
            }
            Err(e) => {
                // The events are committed; the outcome cannot be recorded,
                // so keep the claim until its lease ends.
                tracing::warn!(%command_id, error = %e, "command output cannot be recorded for idempotency");
            }
        },
        Err(_) => store.release(command_id).await.map_err(CommandError::Store)?,
    }
    result
}
