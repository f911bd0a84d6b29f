//! Snapshots: one hash per stream (`snap:<tenant>:<type>:<id>`) with
//! `version`, `state_version`, `payload`, `taken_at`; a save replaces it
//! unless a later version is stored (a Lua script), and expires after the
//! configured TTL, if any.

use bytes::Bytes;
use interlock::StreamId;
use interlock::store::{BoxFuture, Snapshot, SnapshotStore, StoreError};
use interlock::{Timestamp, Version};
use redis::{AsyncCommands, Script};

use crate::replies::{Fields, millis};
use crate::store::RedisStore;

const SAVE: &str = r"
local stored = redis.call('HGET', KEYS[1], 'version')
if stored and tonumber(stored) and tonumber(stored) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'state_version', ARGV[2], 'payload', ARGV[3], 'taken_at', ARGV[4])
if ARGV[5] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return 1
";

impl SnapshotStore for RedisStore {
    fn load<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<Option<Snapshot>, StoreError>> {
        Box::pin(async move {
            let key = self.keys.snapshot(stream);
            let mut connection = self.connection();
            let map: std::collections::HashMap<String, Vec<u8>> =
                connection.hgetall(&key).await.map_err(|e| self.fail(&key, e))?;
            if map.is_empty() {
                return Ok(None);
            }
            let fields = Fields::new(&key, map);
            Ok(Some(Snapshot {
                version: Version(fields.number("version")?),
                state_version: fields.number("state_version")?,
                payload: Bytes::copy_from_slice(fields.bytes("payload")?),
                taken_at: Timestamp(fields.number("taken_at")?),
            }))
        })
    }

    fn save<'a>(&'a self, stream: &'a StreamId, snapshot: Snapshot) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.keys.snapshot(stream);
            let ttl = self
                .config
                .snapshot_ttl
                .map(|t| millis(t).to_string())
                .unwrap_or_default();
            let mut connection = self.connection();
            let _: i64 = Script::new(SAVE)
                .key(&key)
                .arg(snapshot.version.0)
                .arg(snapshot.state_version)
                .arg(snapshot.payload.as_ref())
                .arg(snapshot.taken_at.as_micros())
                .arg(ttl)
                .invoke_async(&mut connection)
                .await
                .map_err(|e| self.fail(&key, e))?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, stream: &'a StreamId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let key = self.keys.snapshot(stream);
            let mut connection = self.connection();
            let _: i64 = connection.del(&key).await.map_err(|e| self.fail(&key, e))?;
            Ok(())
        })
    }
}
