//! The exported conformance suites against the machine's Redis
//! (`INTERLOCK_REDIS_URL`), each test under a key prefix of its own
//! (`itest:<ulid>:`). A suite takes its store by value, so a test cannot
//! clean up after itself; each one deletes the prefixes of tests that
//! started over ten minutes ago instead, so what tests leave is bounded.

// A required server that cannot be opened fails the test loudly.
#![allow(clippy::panic)]

use interlock_redis::{RedisConfig, RedisStore};

/// A store under a fresh prefix, or `None` without a URL (a loud skip, or
/// a failure under `INTERLOCK_REQUIRE_SERVICES=1`).
async fn redis() -> Option<RedisStore> {
    let Some(url) = std::env::var(RedisConfig::URL_VAR).ok().filter(|u| !u.is_empty()) else {
        interlock::testing::skip_or_fail("Redis (set INTERLOCK_REDIS_URL, e.g. redis://127.0.0.1:6379)");
        return None;
    };
    let prefix = format!("itest:{}:", ulid::Ulid::new());
    match RedisStore::open(RedisConfig::new(url.clone()).prefix(prefix)).await {
        Ok(store) => {
            sweep(&url).await;
            Some(store)
        }
        Err(e) => {
            if interlock::testing::services_required() {
                panic!("Redis is required but cannot be opened: {e}");
            }
            eprintln!("!!!!!!!! Redis not reachable: {e}");
            None
        }
    }
}

interlock::aggregate_cache_conformance!(redis_aggregate_cache, redis);
interlock::snapshot_store_conformance!(redis_snapshot_store, redis);
interlock::checkpoint_store_conformance!(redis_checkpoint_store, redis);
interlock::idempotency_store_conformance!(redis_idempotency_store, redis);
interlock::saga_state_store_conformance!(redis_saga_state_store, redis);

/// Deletes the keys of test prefixes older than ten minutes.
async fn sweep(url: &str) {
    let cutoff = ulid::Ulid::from_datetime(std::time::SystemTime::now() - std::time::Duration::from_secs(600));
    let Ok(client) = redis::Client::open(url) else { return };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = {
        let Ok(mut scan) = redis::AsyncCommands::scan_match::<_, String>(&mut connection, "itest:*").await else {
            return;
        };
        let mut keys = Vec::new();
        while let Some(Ok(key)) = scan.next_item().await {
            keys.push(key);
        }
        keys
    };
    let stale: Vec<&String> = keys
        .iter()
        .filter(|k| {
            k.split(':')
                .nth(1)
                .and_then(|id| id.parse::<ulid::Ulid>().ok())
                .is_some_and(|id| id < cutoff)
        })
        .collect();
    for batch in stale.chunks(500) {
        let _: Result<u64, _> = redis::cmd("UNLINK").arg(batch).query_async(&mut connection).await;
    }
}
