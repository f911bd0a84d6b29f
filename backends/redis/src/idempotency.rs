//! Idempotency records: one hash per command id (`idem:<id>`), `state`
//! `claimed` (with `until`, the claim's lease, in µs) or `done` (with the
//! outcome: `stream` as JSON, `version`, `output`, `recorded_at`,
//! `expires_at`, `fingerprint` in decimal). Claims and releases are Lua
//! scripts, so of concurrent claimers exactly one wins. Records expire by
//! themselves: a done record lives as long as its outcome is kept
//! (`expires_at - recorded_at`), a claim for the configured retention.

use std::time::Duration;

use bytes::Bytes;
use interlock::store::{BoxFuture, Claim, IdempotencyRecord, IdempotencyStore, StoreError};
use interlock::{CommandFingerprint, CommandId, StreamId, Timestamp, Version};
use redis::{Script, Value};

use crate::keys::corrupt;
use crate::replies::{Fields, bulk_list, millis, status};
use crate::store::RedisStore;

const CLAIM: &str = r"
local state = redis.call('HGET', KEYS[1], 'state')
local now = tonumber(ARGV[1])
local reclaimed = false
if state == 'done' then
  local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at'))
  if expires == nil then return redis.error_reply('CORRUPT `expires_at` is not a number') end
  if expires > now then return {'done', redis.call('HGETALL', KEYS[1])} end
elseif state == 'claimed' then
  local held = tonumber(redis.call('HGET', KEYS[1], 'until'))
  if held == nil then return redis.error_reply('CORRUPT `until` is not a number') end
  if held > now then return {'busy'} end
  reclaimed = true
elseif state then
  return redis.error_reply('CORRUPT unknown state')
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('CORRUPT a hash without a state')
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'claimed', 'until', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if reclaimed then return {'reclaimed'} end
return {'claimed'}
";

const RELEASE: &str = r"
if redis.call('TYPE', KEYS[1]).ok == 'hash' and redis.call('HGET', KEYS[1], 'state') == 'claimed' then
  redis.call('DEL', KEYS[1])
end
return 0
";

const PURGE_ONE: &str = r"
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' or redis.call('HGET', KEYS[1], 'state') ~= 'done' then return 0 end
local expires = tonumber(redis.call('HGET', KEYS[1], 'expires_at'))
if expires ~= nil and expires <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// A `done` hash as a record.
fn record_of(command_id: CommandId, fields: &Fields<'_>) -> Result<IdempotencyRecord, StoreError> {
    let stream: StreamId = serde_json::from_slice(fields.bytes("stream")?)
        .map_err(|e| corrupt(fields.key, format!("`stream` is not a stream id: {e}")))?;
    let fingerprint = match fields.optional("fingerprint") {
        None => None,
        Some(_) => Some(CommandFingerprint(fields.number("fingerprint")?)),
    };
    Ok(IdempotencyRecord {
        command_id,
        stream,
        version: Version(fields.number("version")?),
        output: Bytes::copy_from_slice(fields.bytes("output")?),
        recorded_at: Timestamp(fields.number("recorded_at")?),
        expires_at: Timestamp(fields.number("expires_at")?),
        fingerprint,
    })
}

impl IdempotencyStore for RedisStore {
    fn claim(
        &self,
        command_id: CommandId,
        now: Timestamp,
        lease: Duration,
    ) -> BoxFuture<'_, Result<Claim, StoreError>> {
        Box::pin(async move {
            let key = self.keys.idempotency(&command_id.0);
            let mut connection = self.connection();
            let reply: Value = Script::new(CLAIM)
                .key(&key)
                .arg(now.as_micros())
                .arg(now.plus(lease).as_micros())
                .arg(millis(self.config.claim_retention.max(lease)))
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.fail(&key, e))?;
            let (word, mut rest) = status(&key, reply)?;
            match word.as_str() {
                "claimed" => Ok(Claim::Claimed),
                "reclaimed" => Ok(Claim::Reclaimed),
                "busy" => Ok(Claim::InProgress),
                "done" if !rest.is_empty() => {
                    let fields = Fields::from_flat(&key, bulk_list(&key, rest.remove(0))?)?;
                    Ok(Claim::Completed(record_of(command_id, &fields)?))
                }
                _ => Err(corrupt(&key, format!("a claim answered `{word}`"))),
            }
        })
    }

    fn complete(&self, record: IdempotencyRecord) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.keys.idempotency(&record.command_id.0);
            let stream = serde_json::to_vec(&record.stream).map_err(|e| StoreError::Backend {
                backend: crate::store::BACKEND,
                source: e.into(),
            })?;
            let kept = Duration::from_micros(
                u64::try_from(
                    record
                        .expires_at
                        .as_micros()
                        .saturating_sub(record.recorded_at.as_micros()),
                )
                .unwrap_or(0),
            );
            let fingerprint = record.fingerprint.map(|f| f.0.to_string()).unwrap_or_default();
            let mut connection = self.connection();
            redis::pipe()
                .atomic()
                .del(&key)
                .ignore()
                .hset_multiple(
                    &key,
                    &[
                        ("state", b"done".as_slice()),
                        ("stream", &stream),
                        ("version", record.version.0.to_string().as_bytes()),
                        ("output", &record.output),
                        ("recorded_at", record.recorded_at.as_micros().to_string().as_bytes()),
                        ("expires_at", record.expires_at.as_micros().to_string().as_bytes()),
                        ("fingerprint", fingerprint.as_bytes()),
                    ],
                )
                .ignore()
                .pexpire(
                    &key,
                    i64::try_from(millis(kept.max(Duration::from_secs(1)))).unwrap_or(i64::MAX),
                )
                .ignore()
                .exec_async(&mut connection)
                .await
                .map_err(|e| self.fail(&key, e))
        })
    }

    fn release(&self, command_id: CommandId) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.keys.idempotency(&command_id.0);
            let mut connection = self.connection();
            let _: i64 = Script::new(RELEASE)
                .key(&key)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.fail(&key, e))?;
            Ok(())
        })
    }

    fn purge_expired(&self, now: Timestamp) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let pattern = self.keys.pattern("idem");
            let mut connection = self.connection();
            let keys = self.scan(&pattern).await?;
            let script = Script::new(PURGE_ONE);
            let mut purged = 0;
            for key in keys {
                let deleted: i64 = script
                    .key(&key)
                    .arg(now.as_micros())
                    .invoke_async(&mut connection)
                    .await
                    .map_err(|e| self.fail(&key, e))?;
                purged += u64::from(deleted == 1);
            }
            Ok(purged)
        })
    }
}
