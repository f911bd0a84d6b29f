//! Redis beside a durable event store, as applications run it: two
//! instances sharing command ids in Redis apply each command once, and a
//! Redis that stops mid-run fails what needs it promptly with a typed
//! error while the rest of dispatch goes on, then serves again once it is
//! back, without restarting the application. The server that stops is a
//! throwaway `redis-server` on a free loopback port, never the machine's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use interlock::prelude::*;
use interlock::redis::{RedisConfig, RedisStore};
use interlock::store::{CheckpointStore, IdempotencyStore, MemoryEventStore, StoreError};
use interlock::{CommandError, Position, Timestamp};
use interlock_tests::bank::*;
use interlock_tests::redis_server::{Server, redis_url};

async fn shared_redis() -> Option<RedisStore> {
    let url = redis_url()?;
    let prefix = format!("itest:{}:", Ulid::new());
    Some(
        RedisStore::open(RedisConfig::new(url).prefix(prefix))
            .await
            .expect("the machine's Redis"),
    )
}

async fn balance(app: &Application, account: Ulid) -> u64 {
    app.load::<BankAccount>(&account).await.expect("load").state.balance
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_apply_each_command_once() {
    let Some(redis) = shared_redis().await else { return };
    let events = Arc::new(MemoryEventStore::new());
    let instance = || {
        bank_builder()
            .shared_event_store(events.clone())
            .idempotency_store(redis.clone())
            .checkpoint_store(redis.clone())
            .build()
    };
    let (a, b) = (instance().await.expect("build"), instance().await.expect("build"));
    let account = Ulid::new();
    a.dispatch(OpenAccount {
        account,
        owner: "shared".into(),
    })
    .await
    .expect("open");
    // 10 commands, each sent 4 times, to both instances at once; and 20
    // commands without an id, through both.
    let ids: Vec<CommandId> = (0..10).map(|_| CommandId::new()).collect();
    let mut tasks = Vec::new();
    for round in 0..4 {
        for (i, id) in ids.iter().enumerate() {
            let app = if (round + i) % 2 == 0 { a.clone() } else { b.clone() };
            let deposit = Deposit {
                account,
                amount: 10,
                id: Some(*id),
            };
            tasks.push(tokio::spawn(async move {
                loop {
                    match app.dispatch(deposit.clone()).await {
                        Err(CommandError::InProgress(_)) => tokio::time::sleep(Duration::from_millis(5)).await,
                        other => return other.map(|_| ()),
                    }
                }
            }));
        }
    }
    for i in 0..20 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            app.dispatch(Deposit {
                account,
                amount: 1,
                id: None,
            })
            .await
            .map(|_| ())
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("every dispatch succeeds or replays");
    }
    assert_eq!(balance(&a, account).await, 10 * 10 + 20);
    assert_eq!(balance(&b, account).await, 10 * 10 + 20);
    redis.clear().await.expect("clean up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_fails_promptly_and_serves_again_when_back() {
    if redis_url().is_none() {
        return;
    }
    let port = Server::free_port();
    let Some(mut server) = Server::start(port).await else {
        interlock::testing::skip_or_fail("a throwaway redis-server (is redis-server installed?)");
        return;
    };
    let timeout = Duration::from_millis(500);
    let redis = RedisStore::open(RedisConfig::new(server.url()).timeouts(timeout, timeout))
        .await
        .expect("open");
    let app = bank_builder()
        .event_store(MemoryEventStore::new())
        .idempotency_store(redis.clone())
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "faults".into(),
    })
    .await
    .expect("open");
    let deposit = |id| Deposit { account, amount: 5, id };
    app.dispatch(deposit(Some(CommandId::new())))
        .await
        .expect("idempotent, Redis up");
    assert!(redis.health_check().await.reachable);

    server.stop();
    // What needs Redis fails promptly, typed; the rest goes on.
    let started = Instant::now();
    match app.dispatch(deposit(Some(CommandId::new()))).await {
        Err(CommandError::Store(StoreError::Unavailable { backend: "redis", .. })) => {}
        other => panic!("expected Redis unavailable, got {other:?}"),
    }
    match redis.claim(CommandId::new(), Timestamp::now(), timeout).await {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    match CheckpointStore::save(&redis, "p", Position(3)).await {
        Err(StoreError::Unavailable { .. }) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "failed in {:?}, not promptly",
        started.elapsed()
    );
    app.dispatch(deposit(None))
        .await
        .expect("a command without an id needs no Redis");
    let health = redis.health_check().await;
    assert!(!health.reachable && health.error.is_some(), "{health:?}");

    // Back (empty: it kept nothing): the same application serves again.
    let _server = Server::start(port).await.expect("the server starts again");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match app.dispatch(deposit(Some(CommandId::new()))).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the application did not recover: {e}"),
        }
    }
    CheckpointStore::save(&redis, "p", Position(4)).await.expect("save");
    assert_eq!(
        CheckpointStore::load(&redis, "p").await.expect("load"),
        Some(Position(4))
    );
    assert_eq!(balance(&app, account).await, 5 + 5 + 5);
}
