//! The aggregate cache shared by every instance of an application:
//! `cache:<tenant>:<type>:<id>`, a hash of `version`, `state_version` and
//! `state` (the state encoded as its snapshot is), expiring after the
//! configured TTL. Reads wait for the server (within the operation
//! timeout); writes go to one background task per store, in order, and a
//! put keeps the later version (a Lua script), so a command never waits on
//! them. A stale entry only costs the
//! command a conflict and a reload (see `interlock::store::AggregateCache`).

use std::collections::HashMap;

use bytes::Bytes;
use interlock::StreamId;
use interlock::Version;
use interlock::store::{AggregateCache, CacheEntry, CacheRead, CachedState};
use redis::{AsyncCommands, Script};

use crate::replies::{Fields, millis};
use crate::store::{CacheWrite, RedisStore};

const PUT: &str = r"
local stored = redis.call('HGET', KEYS[1], 'version')
if stored and tonumber(stored) and tonumber(stored) > tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'state_version', ARGV[2], 'state', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
";

/// Writes waiting at most; past them a write is dropped (an entry missing
/// or stale: a reload or a conflict, never a wrong state).
const QUEUE: usize = 4096;

impl RedisStore {
    /// Queues a cache write for this store's writer task (started on the
    /// first write), which applies them one at a time in order: a put and
    /// a later invalidation of one stream never swap.
    fn queue(&self, write: CacheWrite) {
        let sender = self.cache_writer.get_or_init(|| {
            let (sender, receiver) = tokio::sync::mpsc::channel(QUEUE);
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(self.clone().write_cache(receiver));
                }
                Err(_) => tracing::warn!("aggregate cache writes dropped: no tokio runtime"),
            }
            sender
        });
        if sender.try_send(write).is_err() {
            tracing::warn!("aggregate cache write dropped: the queue is full or closed");
            metrics_counter("queue");
        }
    }

    /// The writer: each queued write in order, until the store is dropped.
    async fn write_cache(self, mut writes: tokio::sync::mpsc::Receiver<CacheWrite>) {
        let ttl = millis(self.config.cache_ttl);
        let put = Script::new(PUT);
        while let Some(write) = writes.recv().await {
            let mut connection = self.connection();
            let (operation, key, done) = match write {
                CacheWrite::Put {
                    key,
                    version,
                    state_version,
                    state,
                } => {
                    let done: Result<i64, _> = put
                        .key(&key)
                        .arg(version.0)
                        .arg(state_version)
                        .arg(state.as_ref())
                        .arg(ttl)
                        .invoke_async(&mut connection)
                        .await;
                    ("put", key, done.map(|_| ()))
                }
                CacheWrite::Invalidate { key } => {
                    let done: Result<i64, _> = connection.del(&key).await;
                    ("invalidate", key, done.map(|_| ()))
                }
            };
            if let Err(e) = done {
                let e = self.fail(&key, e);
                tracing::warn!(key, operation, error = %e, "aggregate cache write failed");
                metrics_counter(operation);
            }
        }
    }
}

impl AggregateCache for RedisStore {
    fn take<'a>(&'a self, stream: &'a StreamId) -> CacheRead<'a> {
        CacheRead::Pending(Box::pin(async move {
            let key = self.keys.cache(stream);
            let mut connection = self.connection();
            let map: HashMap<String, Vec<u8>> = connection.hgetall(&key).await.map_err(|e| self.fail(&key, e))?;
            if map.is_empty() {
                return Ok(None);
            }
            let fields = Fields::new(&key, map);
            Ok(Some(CacheEntry {
                version: Version(fields.number("version")?),
                state_version: fields.number("state_version")?,
                state: CachedState::Encoded(Bytes::copy_from_slice(fields.bytes("state")?)),
            }))
        }))
    }

    fn put(&self, stream: StreamId, entry: CacheEntry) {
        let CachedState::Encoded(state) = entry.state else {
            // A live state cannot leave the process: nothing to share.
            return;
        };
        self.queue(CacheWrite::Put {
            key: self.keys.cache(&stream),
            version: entry.version,
            state_version: entry.state_version,
            state,
        });
    }

    fn invalidate(&self, stream: &StreamId) {
        self.queue(CacheWrite::Invalidate {
            key: self.keys.cache(stream),
        });
    }

    fn encoded(&self) -> bool {
        true
    }
}

/// Counts a failed cache write (the runtime counts failed reads).
fn metrics_counter(operation: &'static str) {
    metrics::counter!("interlock_cache_errors_total", "operation" => operation).increment(1);
}
