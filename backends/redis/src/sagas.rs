//! Saga instances (`saga:<saga>:<key>`, a hash of `state`, `version`,
//! `last_position`, `failure` as JSON) and their deadlines: one hash per
//! deadline (`dl:<saga>:<id>`), a sorted set of a saga's deadline ids by
//! due time in µs (`due:<saga>`), and the set of an instance's deadline
//! ids (`sagadl:<saga>:<key>`, to delete them with it). A change is one
//! Lua script: the version compared and set, the deadlines cancelled and
//! scheduled, atomically. Of two application instances firing one due
//! deadline, the second finds it no longer scheduled, or its save refused
//! by the version.

use std::collections::HashMap;

use bytes::Bytes;
use interlock::store::{
    BoxFuture, SagaChange, SagaFailure, SagaInstance, SagaStateStore, ScheduledDeadline, StoreError,
};
use interlock::{CorrelationId, Position, SchemaVersion, Timestamp, Version};
use redis::{AsyncCommands, Script, Value};
use ulid::Ulid;

use crate::keys::corrupt;
use crate::replies::{Fields, bulk_list, status};
use crate::store::{BACKEND, RedisStore};

const APPLY: &str = r"
local instance, owned, due = KEYS[1], KEYS[2], KEYS[3]
local deadline = ARGV[1]
local raw = redis.call('HGET', instance, 'version')
local actual = 0
if raw then
  actual = tonumber(raw)
  if actual == nil then return redis.error_reply('CORRUPT the version is not a number') end
elseif redis.call('EXISTS', instance) == 1 then
  return redis.error_reply('CORRUPT an instance without a version')
end
if actual ~= tonumber(ARGV[2]) then return {'conflict', tostring(actual)} end
if ARGV[3] == 'delete' then
  for _, id in ipairs(redis.call('SMEMBERS', owned)) do
    redis.call('ZREM', due, id)
    redis.call('DEL', deadline .. id)
  end
  redis.call('DEL', owned, instance)
  return {'ok', '0'}
end
local version = actual + 1
redis.call('HSET', instance, 'state', ARGV[4], 'version', tostring(version), 'last_position', ARGV[5], 'failure', ARGV[6])
local i = 7
local n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  local id = ARGV[i]
  redis.call('ZREM', due, id)
  redis.call('DEL', deadline .. id)
  redis.call('SREM', owned, id)
  i = i + 1
end
n = tonumber(ARGV[i])
i = i + 1
for _ = 1, n do
  local id = ARGV[i]
  redis.call('HSET', deadline .. id, 'key', ARGV[i + 1], 'due', ARGV[i + 2], 'name', ARGV[i + 3],
    'schema_version', ARGV[i + 4], 'payload', ARGV[i + 5], 'correlation_id', ARGV[i + 6])
  redis.call('ZADD', due, ARGV[i + 2], id)
  redis.call('SADD', owned, id)
  i = i + 7
end
return {'ok', tostring(version)}
";

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Backend {
        backend: BACKEND,
        source: e.into(),
    }
}

impl SagaStateStore for RedisStore {
    fn load<'a>(&'a self, saga: &'a str, key: &'a str) -> BoxFuture<'a, Result<Option<SagaInstance>, StoreError>> {
        Box::pin(async move {
            let at = self.keys.saga(saga, key);
            let mut connection = self.connection();
            let map: HashMap<String, Vec<u8>> = connection.hgetall(&at).await.map_err(|e| self.fail(&at, e))?;
            if map.is_empty() {
                return Ok(None);
            }
            let fields = Fields::new(&at, map);
            let failure = match fields.optional("failure") {
                None => None,
                Some(json) => Some(
                    serde_json::from_slice::<SagaFailure>(json)
                        .map_err(|e| corrupt(&at, format!("`failure` is not a saga failure: {e}")))?,
                ),
            };
            Ok(Some(SagaInstance {
                state: Bytes::copy_from_slice(fields.bytes("state")?),
                version: Version(fields.number("version")?),
                last_position: Position(fields.number("last_position")?),
                failure,
            }))
        })
    }

    fn apply<'a>(
        &'a self,
        saga: &'a str,
        key: &'a str,
        expected: Version,
        change: SagaChange,
    ) -> BoxFuture<'a, Result<Version, StoreError>> {
        Box::pin(async move {
            let at = self.keys.saga(saga, key);
            let script = Script::new(APPLY);
            let mut invocation = script.prepare_invoke();
            invocation
                .key(&at)
                .key(self.keys.saga_deadlines(saga, key))
                .key(self.keys.due(saga))
                .arg(self.keys.deadline_prefix(saga))
                .arg(expected.0);
            match change {
                SagaChange::Delete => {
                    invocation.arg("delete");
                }
                SagaChange::Save {
                    state,
                    last_position,
                    schedule,
                    cancel,
                    failure,
                } => {
                    let failure = match &failure {
                        Some(f) => serde_json::to_vec(f).map_err(json_error)?,
                        None => Vec::new(),
                    };
                    invocation
                        .arg("save")
                        .arg(state.as_ref())
                        .arg(last_position.0)
                        .arg(failure)
                        .arg(cancel.len());
                    for id in &cancel {
                        invocation.arg(id.to_string());
                    }
                    invocation.arg(schedule.len());
                    for d in &schedule {
                        invocation
                            .arg(d.id.to_string())
                            .arg(&d.key)
                            .arg(d.due.as_micros())
                            .arg(&d.name)
                            .arg(d.schema_version.0)
                            .arg(d.payload.as_ref())
                            .arg(d.correlation_id.map(|c| c.to_string()).unwrap_or_default());
                    }
                }
            }
            let mut connection = self.connection();
            let reply: Value = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.fail(&at, e))?;
            let (word, rest) = status(&at, reply)?;
            let number = bulk_list(&at, Value::Array(rest))?
                .first()
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok())
                .ok_or_else(|| corrupt(&at, "a saga change answered without a version"))?;
            match word.as_str() {
                "ok" => Ok(Version(number)),
                "conflict" => Err(StoreError::saga_conflict(saga, key, expected, Version(number))),
                _ => Err(corrupt(&at, format!("a saga change answered `{word}`"))),
            }
        })
    }

    fn due<'a>(
        &'a self,
        saga: &'a str,
        now: Timestamp,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<ScheduledDeadline>, StoreError>> {
        Box::pin(async move {
            let set = self.keys.due(saga);
            let mut connection = self.connection();
            let limit = isize::try_from(limit).unwrap_or(isize::MAX);
            let ids: Vec<String> = connection
                .zrangebyscore_limit(&set, "-inf", now.as_micros(), 0, limit)
                .await
                .map_err(|e| self.fail(&set, e))?;
            let mut due = Vec::with_capacity(ids.len());
            for id in ids {
                let at = format!("{}{id}", self.keys.deadline_prefix(saga));
                let ulid = Ulid::from_string(&id).map_err(|_| corrupt(&set, format!("`{id}` is not a deadline id")))?;
                let map: HashMap<String, Vec<u8>> = connection.hgetall(&at).await.map_err(|e| self.fail(&at, e))?;
                // Deleted between the two reads: no longer due.
                if map.is_empty() {
                    continue;
                }
                let fields = Fields::new(&at, map);
                let correlation_id = match fields.optional("correlation_id") {
                    None => None,
                    Some(_) => Some(
                        fields
                            .text("correlation_id")?
                            .parse::<CorrelationId>()
                            .map_err(|_| corrupt(&at, "`correlation_id` is not a ULID"))?,
                    ),
                };
                due.push(ScheduledDeadline {
                    id: ulid,
                    saga: saga.to_owned(),
                    key: fields.text("key")?.to_owned(),
                    due: Timestamp(fields.number("due")?),
                    name: fields.text("name")?.to_owned(),
                    schema_version: SchemaVersion(fields.number("schema_version")?),
                    payload: Bytes::copy_from_slice(fields.bytes("payload")?),
                    correlation_id,
                });
            }
            Ok(due)
        })
    }

    fn is_scheduled<'a>(&'a self, saga: &'a str, id: Ulid) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let set = self.keys.due(saga);
            let mut connection = self.connection();
            let score: Option<f64> = connection
                .zscore(&set, id.to_string())
                .await
                .map_err(|e| self.fail(&set, e))?;
            Ok(score.is_some())
        })
    }
}
