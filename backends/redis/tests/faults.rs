//! Bad input: foreign values under the store's keys are typed errors
//! naming the key, and change nothing. (A server stopped mid-run:
//! `tests/tests/redis_stores.rs` of the integration tests.)

#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use interlock::store::{CheckpointStore, IdempotencyStore, SagaChange, SagaStateStore, SnapshotStore, StoreError};
use interlock::{CommandId, Position, StreamId, Timestamp, Version};
use interlock_redis::{RedisConfig, RedisStore};

fn machine_url() -> Option<String> {
    let url = std::env::var(RedisConfig::URL_VAR).ok().filter(|u| !u.is_empty());
    if url.is_none() {
        interlock::testing::skip_or_fail("Redis (set INTERLOCK_REDIS_URL, e.g. redis://127.0.0.1:6379)");
    }
    url
}

async fn raw(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection")
}

fn is_corrupt_at(result: Result<impl std::fmt::Debug, StoreError>, key: &str) {
    match result {
        Err(StoreError::Corrupt { location, .. }) => assert_eq!(location, key),
        other => panic!("expected corrupt data at {key}, got {other:?}"),
    }
}

#[tokio::test]
async fn foreign_values_under_our_keys_are_typed_errors() {
    let Some(url) = machine_url() else { return };
    let prefix = format!("itest:{}:", ulid::Ulid::new());
    let store = RedisStore::open(RedisConfig::new(url.as_str()).prefix(prefix.as_str()))
        .await
        .expect("open");
    let mut r = raw(&url).await;
    let set = |key: String, args: Vec<&'static str>| {
        let mut cmd = redis::cmd(args[0]);
        cmd.arg(&key);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd
    };
    let now = Timestamp(1_700_000_000_000_000);
    let lease = Duration::from_secs(30);

    // A string where a claim's hash belongs; a hash of an unknown state.
    let id = CommandId::new();
    let key = format!("{prefix}idem:{id}");
    let _: () = set(key.clone(), vec!["SET", "not a hash"])
        .query_async(&mut r)
        .await
        .unwrap();
    is_corrupt_at(store.claim(id, now, lease).await, &key);
    let id = CommandId::new();
    let key = format!("{prefix}idem:{id}");
    let _: () = set(key.clone(), vec!["HSET", "state", "weird"])
        .query_async(&mut r)
        .await
        .unwrap();
    is_corrupt_at(store.claim(id, now, lease).await, &key);
    // A done record whose stream is not a stream id.
    let id = CommandId::new();
    let key = format!("{prefix}idem:{id}");
    let _: () = set(
        key.clone(),
        vec![
            "HSET",
            "state",
            "done",
            "expires_at",
            "9999999999999999",
            "stream",
            "[1,2]",
            "version",
            "1",
            "output",
            "{}",
            "recorded_at",
            "1",
        ],
    )
    .query_async(&mut r)
    .await
    .unwrap();
    is_corrupt_at(store.claim(id, now, lease).await, &key);

    // A snapshot whose version is not a number.
    let stream = StreamId::new("acct", "1");
    let key = format!("{prefix}snap::acct:1");
    let _: () = set(
        key.clone(),
        vec![
            "HSET",
            "version",
            "ten",
            "state_version",
            "1",
            "payload",
            "{}",
            "taken_at",
            "1",
        ],
    )
    .query_async(&mut r)
    .await
    .unwrap();
    is_corrupt_at(SnapshotStore::load(&store, &stream).await, &key);

    // A checkpoint that is not a position; a lease without a token.
    let key = format!("{prefix}ckpt:p");
    let _: () = set(key.clone(), vec!["SET", "-3x"]).query_async(&mut r).await.unwrap();
    is_corrupt_at(CheckpointStore::load(&store, "p").await, &key);
    is_corrupt_at(store.advance("p", Position(5)).await, &key);
    let key = format!("{prefix}lease:q");
    let _: () = set(key.clone(), vec!["HSET", "owner", "a"])
        .query_async(&mut r)
        .await
        .unwrap();
    is_corrupt_at(store.claim_lease("q", "b", now, lease).await, &key);

    // A saga instance whose version is not a number: no load, no change.
    let key = format!("{prefix}saga:s:k");
    let _: () = set(
        key.clone(),
        vec![
            "HSET",
            "state",
            "{}",
            "version",
            "v2",
            "last_position",
            "0",
            "failure",
            "",
        ],
    )
    .query_async(&mut r)
    .await
    .unwrap();
    is_corrupt_at(SagaStateStore::load(&store, "s", "k").await, &key);
    let save = SagaChange::Save {
        state: bytes::Bytes::from_static(b"{}"),
        last_position: Position(1),
        schedule: Vec::new(),
        cancel: Vec::new(),
        failure: None,
    };
    is_corrupt_at(store.apply("s", "k", Version(2), save).await, &key);
    // Nothing was overwritten.
    let kept: String = redis::cmd("HGET")
        .arg(&key)
        .arg("version")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(kept, "v2");
    store.clear().await.expect("clear");
}
