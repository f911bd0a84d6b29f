//! Checkpoints (`ckpt:<subscriber>`, the position as a decimal string)
//! and ownership leases (`lease:<subscriber>`, a hash of `owner`, `token`,
//! `expires_at` in µs). Claims, advances and fenced saves are Lua
//! scripts: each reads and writes atomically, so of concurrent claimers of
//! a free lease exactly one holds it, and a save carrying a token that no
//! longer holds the lease changes nothing.

use std::time::Duration;

use interlock::store::{BoxFuture, CheckpointStore, Lease, LeaseClaim, StoreError};
use interlock::{Position, Timestamp};
use redis::{AsyncCommands, Script, Value};

use crate::keys::corrupt;
use crate::replies::{Fields, bulk_list, status};
use crate::store::RedisStore;

const ADVANCE: &str = r"
local raw = redis.call('GET', KEYS[1])
if raw then
  local stored = tonumber(raw)
  if stored == nil then return redis.error_reply('CORRUPT the position is not a number') end
  if stored >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
";

const CLAIM: &str = r"
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner then
  local token = redis.call('HGET', KEYS[1], 'token')
  local expires = redis.call('HGET', KEYS[1], 'expires_at')
  if tonumber(token) == nil or tonumber(expires) == nil then
    return redis.error_reply('CORRUPT the lease has no numeric token or expiry')
  end
  if owner == ARGV[1] then
    redis.call('HSET', KEYS[1], 'expires_at', ARGV[3])
    return {'held', owner, token, ARGV[3]}
  end
  if tonumber(expires) > tonumber(ARGV[2]) then return {'taken', owner, token, expires} end
  local next = redis.call('HINCRBY', KEYS[1], 'token', 1)
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'expires_at', ARGV[3])
  return {'held', ARGV[1], tostring(next), ARGV[3]}
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.error_reply('CORRUPT a lease without an owner')
end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'token', '1', 'expires_at', ARGV[3])
return {'held', ARGV[1], '1', ARGV[3]}
";

const RELEASE: &str = r"
if redis.call('TYPE', KEYS[1]).ok == 'hash' and redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'expires_at', '-9223372036854775808')
end
return 0
";

const SAVE_FENCED: &str = r"
if redis.call('TYPE', KEYS[1]).ok ~= 'hash' or redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
";

fn text(key: &str, value: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(value.to_vec()).map_err(|_| corrupt(key, "a lease field is not UTF-8"))
}

fn number<T: std::str::FromStr>(key: &str, value: &[u8], what: &str) -> Result<T, StoreError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| corrupt(key, format!("the lease's {what} is not a number")))
}

impl CheckpointStore for RedisStore {
    fn load<'a>(&'a self, subscriber: &'a str) -> BoxFuture<'a, Result<Option<Position>, StoreError>> {
        Box::pin(async move {
            let key = self.keys.checkpoint(subscriber);
            let mut connection = self.connection();
            let raw: Option<Vec<u8>> = connection.get(&key).await.map_err(|e| self.fail(&key, e))?;
            raw.map(|raw| {
                std::str::from_utf8(&raw)
                    .ok()
                    .and_then(|t| t.parse().ok())
                    .map(Position)
                    .ok_or_else(|| corrupt(&key, "the position is not a number"))
            })
            .transpose()
        })
    }

    fn save<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.keys.checkpoint(subscriber);
            let mut connection = self.connection();
            let _: () = connection.set(&key, position.0).await.map_err(|e| self.fail(&key, e))?;
            Ok(())
        })
    }

    fn advance<'a>(&'a self, subscriber: &'a str, position: Position) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.keys.checkpoint(subscriber);
            let mut connection = self.connection();
            let _: i64 = Script::new(ADVANCE)
                .key(&key)
                .arg(position.0)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.fail(&key, e))?;
            Ok(())
        })
    }

    fn claim_lease<'a>(
        &'a self,
        subscriber: &'a str,
        owner: &'a str,
        now: Timestamp,
        duration: Duration,
    ) -> BoxFuture<'a, Result<LeaseClaim, StoreError>> {
        Box::pin(async move {
            let key = self.keys.lease(subscriber);
            let mut connection = self.connection();
            let reply: Value = Script::new(CLAIM)
                .key(&key)
                .arg(owner)
                .arg(now.as_micros())
                .arg(now.plus(duration).as_micros())
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.fail(&key, e))?;
            let (word, rest) = status(&key, reply)?;
            let parts = bulk_list(&key, Value::Array(rest))?;
            let [holder, token, expires] = parts.as_slice() else {
                return Err(corrupt(&key, "a lease claim answered with the wrong number of fields"));
            };
            let lease = Lease {
                subscriber: subscriber.to_owned(),
                owner: text(&key, holder)?,
                token: number(&key, token, "token")?,
                expires_at: Timestamp(number(&key, expires, "expiry")?),
            };
            match word.as_str() {
                "held" => Ok(LeaseClaim::Held(lease)),
                "taken" => Ok(LeaseClaim::Taken(lease)),
                _ => Err(corrupt(&key, format!("a lease claim answered `{word}`"))),
            }
        })
    }

    fn release_lease<'a>(&'a self, subscriber: &'a str, token: u64) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.keys.lease(subscriber);
            let mut connection = self.connection();
            let _: i64 = Script::new(RELEASE)
                .key(&key)
                .arg(token)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.fail(&key, e))?;
            Ok(())
        })
    }

    fn save_fenced<'a>(
        &'a self,
        subscriber: &'a str,
        position: Position,
        token: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let lease = self.keys.lease(subscriber);
            let key = self.keys.checkpoint(subscriber);
            let mut connection = self.connection();
            let saved: i64 = Script::new(SAVE_FENCED)
                .key(&lease)
                .key(&key)
                .arg(position.0)
                .arg(token)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.fail(&key, e))?;
            if saved == 1 {
                Ok(())
            } else {
                Err(StoreError::LeaseLost {
                    subscriber: subscriber.to_owned(),
                    token,
                })
            }
        })
    }

    fn leases(&self) -> BoxFuture<'_, Result<Vec<Lease>, StoreError>> {
        Box::pin(async move {
            let pattern = self.keys.pattern("lease");
            let mut connection = self.connection();
            let keys = self.scan(&pattern).await?;
            let mut leases = Vec::with_capacity(keys.len());
            for key in keys {
                let Some(subscriber) = self.keys.subscriber_of_lease(&key) else {
                    continue;
                };
                let map: std::collections::HashMap<String, Vec<u8>> =
                    connection.hgetall(&key).await.map_err(|e| self.fail(&key, e))?;
                if map.is_empty() {
                    continue;
                }
                let fields = Fields::new(&key, map);
                leases.push(Lease {
                    subscriber,
                    owner: fields.text("owner")?.to_owned(),
                    token: fields.number("token")?,
                    expires_at: Timestamp(fields.number("expires_at")?),
                });
            }
            leases.sort_by(|a, b| a.subscriber.cmp(&b.subscriber));
            Ok(leases)
        })
    }
}
