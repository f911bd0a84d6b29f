//! Redis beside a durable event store, as applications run it: two
//! instances sharing command ids in Redis apply each command once; two
//! sharing the aggregate cache keep balances exact; a Redis that stops
//! mid-run fails what needs it promptly with a typed error while the rest
//! of dispatch goes on (the cache bypassed), then serves again once it is
//! back, without restarting the application. The server that stops is a
//! throwaway `redis-server` on a free loopback port, never the machine's.

use std::sync::Arc;
use std::time::{Duration, Instant};

use interlock::prelude::*;
use interlock::redis::{RedisConfig, RedisStore};
use interlock::store::{CheckpointStore, IdempotencyStore, MemoryEventStore, StoreError};
use interlock::{AggregateConfig, CommandError, Position, Timestamp};
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

/// A throwaway server of the test's own and a store on it with
/// `timeout`; `None` (a loud skip, or a failure when services are
/// required) without the machine's Redis or `redis-server`.
async fn throwaway(timeout: Duration) -> Option<(u16, Server, RedisStore)> {
    redis_url()?;
    let port = Server::free_port();
    let Some(server) = Server::start(port).await else {
        interlock::testing::skip_or_fail("a throwaway redis-server (is redis-server installed?)");
        return None;
    };
    let redis = RedisStore::open(RedisConfig::new(server.url()).timeouts(timeout, timeout))
        .await
        .expect("open");
    Some((port, server, redis))
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
    let Some((port, mut server, redis)) = throwaway(Duration::from_millis(500)).await else {
        return;
    };
    let timeout = Duration::from_millis(500);
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

/// The bank with snapshots configured (which gives its state an encoding,
/// so a shared cache can hold it).
fn cached_bank(events: Arc<MemoryEventStore>, cache: RedisStore) -> interlock::ApplicationBuilder {
    Application::builder()
        .aggregate_with(AggregateConfig::<BankAccount>::new().snapshot_every(1_000))
        .service(FeePolicy { fee: 0 })
        .shared_event_store(events)
        .aggregate_cache(cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_the_redis_cache_lose_no_update() {
    let Some(redis) = shared_redis().await else { return };
    let events = Arc::new(MemoryEventStore::new());
    let a = cached_bank(events.clone(), redis.clone()).build().await.expect("build");
    let b = cached_bank(events.clone(), redis.clone()).build().await.expect("build");
    let accounts: Vec<Ulid> = (0..3).map(|_| Ulid::new()).collect();
    for account in &accounts {
        a.dispatch(OpenAccount {
            account: *account,
            owner: "cached".into(),
        })
        .await
        .expect("open");
        a.dispatch(Deposit {
            account: *account,
            amount: 100,
            id: None,
        })
        .await
        .expect("first deposit");
    }
    // 120 deposits and 30 withdrawals over 3 accounts, half through each
    // instance, all at once: each instance decides on states the other
    // cached, some stale.
    let mut tasks = Vec::new();
    for i in 0..150u64 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let account = accounts[(i % 3) as usize];
        tasks.push(tokio::spawn(async move {
            if i % 5 == 4 {
                app.dispatch(Withdraw { account, amount: 1 }).await.map(|_| ())
            } else {
                app.dispatch(Deposit {
                    account,
                    amount: 3,
                    id: None,
                })
                .await
                .map(|_| ())
            }
        }));
    }
    for task in tasks {
        task.await.expect("join").expect("every command succeeds");
    }
    for account in &accounts {
        // 100, then 40 deposits of 3 and 10 withdrawals of 1 each.
        assert_eq!(balance(&a, *account).await, 100 + 40 * 3 - 10);
    }
    let statistics = redis.statistics().await.expect("statistics");
    assert!(
        statistics.keys_by_kind.get("cache").copied().unwrap_or(0) >= 1,
        "states were cached in Redis: {statistics:?}"
    );
    redis.clear().await.expect("clean up");
}

/// The cache is read: an entry at the stream's version is what a command
/// decides on (here a doctored one, saying the account is closed); an
/// entry that is not a state is a miss, and the store decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_state_at_the_stream_s_version_is_what_commands_decide_on() {
    let Some(redis) = shared_redis().await else { return };
    let events = Arc::new(MemoryEventStore::new());
    let app = cached_bank(events, redis.clone()).build().await.expect("build");
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "read".into(),
    })
    .await
    .expect("open");
    let stream = interlock::StreamId::new("bank.account", account.to_string());
    let closed = BankAccount::default();
    let entry = interlock::store::CacheEntry {
        version: interlock::Version(1),
        state_version: <BankAccount as interlock::Aggregate>::STATE_VERSION,
        state: interlock::store::CachedState::Encoded(serde_json::to_vec(&closed).expect("encode").into()),
    };
    // After the application's own write of version 1, in the same queue.
    tokio::time::sleep(Duration::from_millis(200)).await;
    interlock::store::AggregateCache::invalidate(&redis, &stream);
    interlock::store::AggregateCache::put(&redis, stream.clone(), entry);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let deposit = Deposit {
        account,
        amount: 5,
        id: None,
    };
    match app.dispatch(deposit.clone()).await {
        Err(CommandError::Domain(BankError::NotOpen)) => {}
        other => panic!("expected the cached (closed) state to decide, got {other:?}"),
    }
    write_junk(&redis, &stream).await;
    app.dispatch(deposit).await.expect("the store's state (open) decides");
    assert_eq!(balance(&app, account).await, 5);
    redis.clear().await.expect("clean up");
}

/// Overwrites the stream's cache entry with something that is not a state.
async fn write_junk(redis: &RedisStore, stream: &interlock::StreamId) {
    let url = redis_url().expect("checked");
    let mut connection = redis::Client::open(url)
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("a connection");
    let key = format!(
        "{}cache::{}:{}",
        redis.config().key_prefix(),
        stream.aggregate_type(),
        stream.aggregate_id()
    );
    let _: () = redis::cmd("HSET")
        .arg(&key)
        .arg("version")
        .arg("9")
        .arg("state_version")
        .arg(<BankAccount as interlock::Aggregate>::STATE_VERSION)
        .arg("state")
        .arg("[not, a state")
        .query_async(&mut connection)
        .await
        .expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_redis_cache_is_bypassed() {
    let Some((port, mut server, redis)) = throwaway(Duration::from_millis(300)).await else {
        return;
    };
    let app = cached_bank(Arc::new(MemoryEventStore::new()), redis.clone())
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "bypassed".into(),
    })
    .await
    .expect("open");
    let deposit = Deposit {
        account,
        amount: 2,
        id: None,
    };
    app.dispatch(deposit.clone()).await.expect("Redis up");
    server.stop();
    let started = Instant::now();
    for _ in 0..5 {
        app.dispatch(deposit.clone())
            .await
            .expect("dispatch goes on from the event store");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let _server = Server::start(port).await.expect("the server starts again");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !redis.health_check().await.reachable && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.dispatch(deposit).await.expect("Redis back");
    assert_eq!(balance(&app, account).await, 7 * 2);
}

/// A saga whose state is in Redis, with Redis stopped: its step fails
/// within the timeout, typed, and is not lost; once Redis is back the same
/// application runs it, and the card is charged once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saga_step_waits_out_a_stopped_redis_and_runs_once_it_is_back() {
    use interlock_tests::payments::{Card, Payment, PlaceOrder, builder};
    let Some((port, mut server, redis)) = throwaway(Duration::from_millis(300)).await else {
        return;
    };
    let app = builder()
        .event_store(MemoryEventStore::new())
        .saga_state_store(redis.clone())
        .build()
        .await
        .expect("build");
    server.stop();
    let (order, card) = (Ulid::new(), Ulid::new());
    app.dispatch(PlaceOrder {
        order,
        card,
        amount: 30,
    })
    .await
    .expect("the order needs no Redis");
    let handle = app.saga_handle::<Payment>().expect("saga");
    let started = Instant::now();
    match handle.catch_up().await {
        Err(interlock::SubscriptionError::Store {
            source: StoreError::Unavailable { backend: "redis", .. },
            ..
        }) => {}
        other => panic!("expected the step to stop on Redis unavailable, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let status = handle.status().await.expect("status");
    assert_eq!(app.load::<Card>(&card).await.expect("load").state.charged, 0);
    assert_eq!(
        status.dead_letters, 0,
        "nothing parked while Redis was down: {status:?}"
    );

    let _server = Server::start(port).await.expect("the server starts again");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = handle.catch_up().await;
        if app.load::<Card>(&card).await.expect("load").state.charged == 30 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.load::<Card>(&card).await.expect("load").state.charged,
        30,
        "charged once, after Redis came back"
    );
}
