//! Health and statistics: whether the server answers, and what is stored
//! under the prefix, by kind.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use interlock::store::StoreError;

use crate::config::scrub;
use crate::store::RedisStore;

/// Whether the server answers, and how fast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisHealth {
    /// Whether a `PING` succeeded just now.
    pub reachable: bool,
    /// How long it took.
    pub latency: Option<Duration>,
    /// The server's version, from `INFO server`.
    pub server_version: Option<String>,
    /// The error, when unreachable (without the password).
    pub error: Option<String>,
}

/// What the store holds under its prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedisStatistics {
    /// Keys by kind (`idem`, `snap`, `ckpt`, `lease`, `saga`, `dl`, ...).
    pub keys_by_kind: BTreeMap<String, u64>,
    /// Memory the server uses in all (`INFO memory`'s `used_memory`), bytes.
    pub used_memory: Option<u64>,
}

/// A field of an `INFO` section.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

impl RedisStore {
    /// Pings the server (within the operation timeout).
    pub async fn health_check(&self) -> RedisHealth {
        let mut connection = self.connection();
        let started = Instant::now();
        let pinged: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
        match pinged {
            Ok(_) => {
                let latency = started.elapsed();
                let info: Option<String> = redis::cmd("INFO").arg("server").query_async(&mut connection).await.ok();
                RedisHealth {
                    reachable: true,
                    latency: Some(latency),
                    server_version: info
                        .as_deref()
                        .and_then(|i| info_field(i, "redis_version"))
                        .map(str::to_owned),
                    error: None,
                }
            }
            Err(e) => RedisHealth {
                reachable: false,
                latency: None,
                server_version: None,
                error: Some(scrub(&e.to_string(), &self.config.url)),
            },
        }
    }

    /// Keys under the prefix by kind, and the server's memory.
    ///
    /// # Errors
    ///
    /// The server is unreachable.
    pub async fn statistics(&self) -> Result<RedisStatistics, StoreError> {
        let mut connection = self.connection();
        let pattern = self.keys.everything();
        let mut statistics = RedisStatistics::default();
        for key in self.scan(&pattern).await? {
            let rest = key.strip_prefix(self.keys.prefix()).unwrap_or(&key);
            let kind = rest.split(':').next().unwrap_or("").to_owned();
            *statistics.keys_by_kind.entry(kind).or_default() += 1;
        }
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut connection)
            .await
            .map_err(|e| self.fail("INFO memory", e))?;
        statistics.used_memory = info_field(&info, "used_memory").and_then(|v| v.parse().ok());
        Ok(statistics)
    }

    /// Deletes every key under the prefix (with `SCAN` and `UNLINK`, in
    /// batches); returns how many. For tests and for retiring a prefix:
    /// what it holds is gone.
    ///
    /// # Errors
    ///
    /// The server is unreachable.
    pub async fn clear(&self) -> Result<u64, StoreError> {
        let mut connection = self.connection();
        let pattern = self.keys.everything();
        let keys = self.scan(&pattern).await?;
        let mut cleared = 0;
        for batch in keys.chunks(500) {
            let n: u64 = redis::cmd("UNLINK")
                .arg(batch)
                .query_async(&mut connection)
                .await
                .map_err(|e| self.fail(&pattern, e))?;
            cleared += n;
        }
        Ok(cleared)
    }
}
