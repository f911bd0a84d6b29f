//! The SQL and MongoDB backends beyond the conformance suites: gap safety,
//! contention through the application, corrupt rows and documents, group
//! commit and batch outcomes, injection attempts, unreachable servers,
//! live notifications, health and statistics.

use interlock::AggregateConfig;
use std::collections::HashSet;
use std::time::Duration;

use interlock::prelude::*;
use interlock::store::{AppendRequest, BatchAppend, EventFilter, ExpectedVersion, NewEvent};
use interlock::store::{EventStore, StoreError};
use interlock::{CommandError, EventId, LoadError, Position, StreamId};
use interlock_sql::{PostgresConfig, PostgresStore, SqliteConfig, SqliteStore};
use interlock_tests::bank::*;
use interlock_tests::services::{mongodb, postgres, sqlite_file};

fn skip(what: &str) {
    interlock::testing::skip_or_fail(what);
}

fn event(name: &'static str, version: u32, payload: &str) -> NewEvent {
    NewEvent {
        event_id: EventId::new(),
        name: name.into(),
        schema_version: SchemaVersion(version),
        payload: payload.as_bytes().to_vec().into(),
        metadata: Default::default(),
    }
}

/// RELIABILITY.md gap safety: 8 writers append concurrently while a reader
/// follows the global log; it sees every committed event once, in order.
async fn gap_safety(store: impl EventStore + Clone) {
    const WRITERS: usize = 8;
    const EACH: usize = 100;
    let start = store.head().await.expect("head");
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let stream = StreamId::new("gap.writer", format!("{w}-{}", Ulid::new()));
            for i in 0..EACH {
                let batch = if i % 5 == 0 {
                    vec![event("gap.e", 1, "{}"), event("gap.e", 1, "{}")]
                } else {
                    vec![event("gap.e", 1, "{}")]
                };
                store
                    .append(&stream, ExpectedVersion::Any, batch)
                    .await
                    .expect("append");
            }
        }));
    }
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            let filter = EventFilter::all().aggregate_types(["gap.writer"]);
            let mut after = start;
            let mut seen = Vec::new();
            let expected = WRITERS * (EACH + EACH / 5);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while seen.len() < expected && tokio::time::Instant::now() < deadline {
                let page = store.read_all(after, 37, &filter).await.expect("read");
                for e in &page {
                    assert!(e.position > after, "positions only move forward");
                    after = e.position;
                    seen.push(e.event_id);
                }
                if page.is_empty() {
                    tokio::task::yield_now().await;
                }
            }
            seen
        })
    };
    for w in writers {
        w.await.expect("writer");
    }
    let seen = reader.await.expect("reader");
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    let all = store
        .read_all(start, 100_000, &EventFilter::all().aggregate_types(["gap.writer"]))
        .await
        .expect("read");
    assert_eq!(
        seen,
        all.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        "every event, in position order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_gap_safety() {
    let Some(store) = postgres().await else {
        return skip("postgres_gap_safety");
    };
    gap_safety(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongodb_gap_safety() {
    let Some(store) = mongodb().await else { return };
    gap_safety(store).await;
}

#[tokio::test]
async fn mongodb_outbox_is_written_with_the_events_and_relayed() {
    let Some(store) = mongodb().await else { return };
    let config = store.config().clone().outbox(true);
    let store = interlock::mongodb::MongoStore::open(config).await.expect("open");
    outbox_relay(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongodb_contention_loses_no_update() {
    let Some(store) = mongodb().await else { return };
    contention(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mongodb_group_commit_and_batches_keep_every_outcome_exact() {
    let Some(store) = mongodb().await else { return };
    group_commit_outcomes(store.clone()).await;
    batch_outcomes(store).await;
}

/// Documents written behind the store's back: wrong types, missing
/// fields, bad ids and metadata are typed errors naming the event; in the
/// log they are unreadable events with what could be salvaged.
#[tokio::test]
async fn mongodb_corrupt_documents_are_typed_errors() {
    let Some(store) = mongodb().await else { return };
    corrupt_rows(store.clone()).await;
    let uri = std::env::var("INTERLOCK_MONGODB_URI").expect("uri");
    let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
    let events = client
        .database(store.config().database_name())
        .collection::<mongodb::bson::Document>("events");
    let head = store.head().await.expect("head").0 as i64;
    let base = |position: i64, id: &str| {
        mongodb::bson::doc! {
            "_id": position, "event_id": EventId::new().to_string(), "tenant": "",
            "aggregate_type": "bank.account", "aggregate_id": id, "version": 1_i64,
            "name": "bank.account_opened", "schema_version": 1_i64,
            "payload": { "owner": "o" }, "metadata": {},
            "recorded_at": mongodb::bson::DateTime::now(),
        }
    };
    let mut broken = Vec::new();
    for (i, (field, value, says)) in [
        ("version", mongodb::bson::Bson::String("one".into()), "`version` is a"),
        (
            "event_id",
            mongodb::bson::Bson::String("not-an-id".into()),
            "event id `not-an-id`",
        ),
        ("metadata", mongodb::bson::Bson::Int32(7), "metadata"),
        (
            "schema_version",
            mongodb::bson::Bson::Int64(-3),
            "`schema_version` is -3",
        ),
        ("payload", mongodb::bson::Bson::Null, ""),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("broken-{i}");
        let mut document = base(head + 1 + i as i64, &id);
        if field == "payload" {
            document.remove("payload");
        } else {
            document.insert(field, value);
        }
        events.insert_one(document).await.expect("insert");
        broken.push((
            id,
            if field == "payload" {
                "`payload` is missing"
            } else {
                says
            },
        ));
    }
    for (i, (id, says)) in broken.iter().enumerate() {
        let stream = StreamId::new("bank.account", id.as_str());
        match store.read_stream(&stream, Version(1), None).await {
            Err(StoreError::Corrupt {
                backend: "mongodb",
                location,
                reason,
            }) => {
                assert!(location.contains(&format!("bank.account/{id}")), "{location}");
                assert!(reason.contains(says), "{reason}");
            }
            other => panic!("{id}: expected Corrupt, got {other:?}"),
        }
        let position = Position(head as u64 + i as u64);
        match store.read_all(position, 10, &EventFilter::all()).await {
            Err(StoreError::UnreadableEvent {
                position: at, salvaged, ..
            }) => {
                assert_eq!(at, Position(position.0 + 1));
                assert_eq!(salvaged.position, at);
            }
            other => panic!("{id}: expected UnreadableEvent, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_gap_safety() {
    let Some(store) = sqlite_file().await else { return };
    gap_safety(store).await;
}

/// 16 tasks on 4 accounts through the application, with conflict retry.
async fn contention<B>(backend: B)
where
    B: interlock::store::Backend + Clone,
{
    const EACH: u64 = 60;
    let app = Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 0 })
        .backend(backend)
        .build()
        .await
        .expect("build");
    let accounts: Vec<Ulid> = (0..4).map(|_| Ulid::new()).collect();
    for &account in &accounts {
        app.dispatch(OpenAccount {
            account,
            owner: "c".into(),
        })
        .await
        .expect("open");
    }
    let mut tasks = Vec::new();
    for t in 0..16u64 {
        let (app, accounts) = (app.clone(), accounts.clone());
        tasks.push(tokio::spawn(async move {
            let mut sums = [0u64; 4];
            for i in 0..EACH {
                let k = ((t + i) % 4) as usize;
                let amount = t * 1000 + i + 1;
                let done = app
                    .dispatch_with(
                        Deposit {
                            account: accounts[k],
                            amount,
                            id: None,
                        },
                        interlock::DispatchOptions::new(),
                    )
                    .await
                    .expect("deposit");
                // One instance: its commands never conflict with each
                // other, whether they share an append or not.
                assert_eq!(done.attempts, 1, "a retry inside one instance");
                sums[k] += amount;
            }
            sums
        }));
    }
    let mut expected = [0u64; 4];
    for t in tasks {
        for (k, v) in t.await.expect("join").into_iter().enumerate() {
            expected[k] += v;
        }
    }
    for (k, account) in accounts.iter().enumerate() {
        let loaded = app.load::<BankAccount>(account).await.expect("load");
        assert_eq!(loaded.state.balance, expected[k], "no lost update");
        let events = app
            .event_store()
            .read_stream(&StreamId::new("bank.account", account.to_string()), Version(1), None)
            .await
            .expect("read");
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.version, Version(i as u64 + 1));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_contention_loses_no_update() {
    let Some(store) = postgres().await else {
        return skip("postgres_contention_loses_no_update");
    };
    contention(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_contention_loses_no_update() {
    let Some(store) = sqlite_file().await else { return };
    contention(store).await;
}

async fn corrupt_rows(store: impl EventStore + Clone) {
    for (name, version, payload, expect) in [
        ("bank.money_deposited", 2, "{not json", "does not decode"),
        ("bank.unknown", 1, "{}", "unknown event name"),
        ("bank.money_deposited", 9, r#"{"amount":1}"#, "no schema version v9"),
        ("bank.money_deposited", 2, r#"{"amount":1}"#, "currency"),
    ] {
        let account = Ulid::new();
        let stream = StreamId::new("bank.account", account.to_string());
        store
            .append(
                &stream,
                ExpectedVersion::Exact(Version(0)),
                vec![
                    event("bank.account_opened", 1, r#"{"owner":"o"}"#),
                    event(name, version, payload),
                ],
            )
            .await
            .expect("append");
        let app = Application::builder()
            .aggregate::<BankAccount>()
            .service(FeePolicy { fee: 0 })
            .event_store(store.clone())
            .build()
            .await
            .expect("build");
        match app.load::<BankAccount>(&account).await {
            Err(LoadError::Decode {
                aggregate: "bank.account",
                id,
                version: Version(2),
                event,
                source,
                ..
            }) => {
                assert_eq!((id, event), (account.to_string(), name.to_owned()));
                assert!(source.to_string().contains(expect), "{source}");
            }
            other => panic!("expected a decode error, got {other:?}"),
        }
        let err = app
            .dispatch(Withdraw { account, amount: 1 })
            .await
            .expect_err("corrupt");
        assert!(matches!(err, CommandError::Load(LoadError::Decode { .. })), "{err}");
    }
}

#[tokio::test]
async fn postgres_corrupt_rows_are_typed_errors() {
    let Some(store) = postgres().await else {
        return skip("postgres_corrupt_rows_are_typed_errors");
    };
    corrupt_rows(store.clone()).await;
    // Metadata that is not JSON, written behind the store's back.
    let mut tx = store.begin().await.expect("begin");
    let table = format!("\"{}\".\"interlock_events\"", store.config().schema);
    let sql = format!(
        "INSERT INTO {table} (position, event_id, aggregate_type, aggregate_id, version, event_name, schema_version, payload, metadata, recorded_at)
         VALUES (1000000, 'bad', 'bank.account', 'broken', 1, 'bank.account_opened', 1, '\\x7b7d', '{{oops', 0)"
    );
    sqlx_exec(&mut tx, sql).await;
    tx.commit().await.expect("commit");
    let err = store
        .read_stream(&StreamId::new("bank.account", "broken"), Version(1), None)
        .await
        .expect_err("corrupt");
    assert!(
        matches!(&err, StoreError::Corrupt { backend: "postgres", location, .. } if location.contains("broken")),
        "{err}"
    );
}

async fn sqlx_exec(tx: &mut interlock_sql::PostgresTransaction, sql: String) {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut **tx)
        .await
        .expect("insert");
}

#[tokio::test]
async fn sqlite_corrupt_rows_are_typed_errors() {
    let Some(store) = sqlite_file().await else { return };
    corrupt_rows(store.clone()).await;
    let mut tx = store.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO interlock_events (position, event_id, aggregate_type, aggregate_id, version, event_name, schema_version, payload, metadata, recorded_at)
         VALUES (1000000, 'not-a-ulid', 'bank.account', 'broken', 1, 'bank.account_opened', 1, x'7b7d', '{}', 0)",
    )
    .execute(&mut *tx)
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
    let err = store
        .read_stream(&StreamId::new("bank.account", "broken"), Version(1), None)
        .await
        .expect_err("corrupt");
    assert!(
        matches!(&err, StoreError::Corrupt { backend: "sqlite", reason, .. } if reason.contains("event id")),
        "{err}"
    );
}

#[tokio::test]
async fn injection_through_configured_names_is_rejected() {
    for prefix in ["x; DROP TABLE interlock_events; --", "a\"b", "A", "1x", "x y", "x'--"] {
        let err = SqliteStore::open(SqliteConfig::memory().table_prefix(prefix))
            .await
            .expect_err("rejected");
        assert!(err.to_string().contains("invalid table prefix"), "{err}");
        let pg =
            PostgresStore::open(PostgresConfig::new("postgres://u@127.0.0.1:5432/test").table_prefix(prefix)).await;
        assert!(pg.expect_err("rejected").to_string().contains("invalid table prefix"));
        let pg = PostgresStore::open(PostgresConfig::new("postgres://u@127.0.0.1:5432/test").schema(prefix)).await;
        assert!(pg.expect_err("rejected").to_string().contains("invalid schema"));
    }
    // Values are bound, never spliced: a hostile aggregate id is just data.
    let store = SqliteStore::open(SqliteConfig::memory()).await.expect("open");
    let hostile = StreamId::new("bank.account", "x'); DROP TABLE interlock_events; --");
    store
        .append(&hostile, ExpectedVersion::Any, vec![event("e", 1, "{}")])
        .await
        .expect("append");
    let read = store.read_stream(&hostile, Version(1), None).await.expect("read");
    assert_eq!(read[0].stream, hostile);
    assert_eq!(store.head().await.expect("head"), Position(1));
}

#[tokio::test]
async fn an_unreachable_server_fails_at_open_with_a_redacted_url() {
    let config =
        PostgresConfig::new("postgres://bob:hunter2@127.0.0.1:1/test").connect_timeout(Duration::from_millis(500));
    let err = PostgresStore::open(config.clone()).await.expect_err("unreachable");
    let shown = format!("{err} / {err:?} / {config:?}");
    assert!(
        matches!(
            err,
            StoreError::Unavailable {
                backend: "postgres",
                ..
            }
        ),
        "{shown}"
    );
    assert!(shown.contains("127.0.0.1:1") && shown.contains("bob:***@"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let err = PostgresStore::open(PostgresConfig::new("mysql://bob:hunter2@x/y"))
        .await
        .expect_err("bad url");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let err = SqliteStore::open(SqliteConfig::file("/nonexistent-dir/x/y.db"))
        .await
        .expect_err("no such dir");
    assert!(
        matches!(err, StoreError::Unavailable { backend: "sqlite", .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_notifications_wake_subscribers_of_another_instance() {
    let Some(writer) = postgres().await else {
        return skip("postgres_notifications_wake_subscribers");
    };
    // A second store on the same schema: its head watch moves only by NOTIFY.
    let config = writer.config().clone();
    let reader = PostgresStore::open(config).await.expect("open");
    let mut head = reader.watch_head().expect("PostgreSQL offers a head watch");
    let stream = StreamId::new("notify.test", "1");
    let committed = writer
        .append(&stream, ExpectedVersion::Any, vec![event("e", 1, "{}")])
        .await
        .expect("append");
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while *head.borrow_and_update() < committed.positions[0] {
            head.changed().await.expect("watch");
        }
    })
    .await;
    assert!(seen.is_ok(), "the other instance was notified");
}

#[tokio::test]
async fn health_and_statistics() {
    let store = SqliteStore::open(SqliteConfig::memory()).await.expect("open");
    let app = Application::builder()
        .aggregate_with(AggregateConfig::<BankAccount>::new().snapshot_every(2))
        .service(FeePolicy { fee: 0 })
        .backend(store.clone())
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    app.dispatch(OpenAccount {
        account,
        owner: "h".into(),
    })
    .await
    .expect("open");
    app.dispatch(Deposit {
        account,
        amount: 1,
        id: None,
    })
    .await
    .expect("deposit");
    let health = store.health_check().await;
    assert!(health.reachable && health.schema_version == Some(6), "{health:?}");
    let stats = store.statistics().await.expect("stats");
    assert_eq!((stats.events, stats.streams, stats.snapshots), (2, 1, 1));
    assert_eq!(stats.events_by_name.get("bank.money_deposited"), Some(&1));
    assert_eq!(stats.events_by_aggregate_type.get("bank.account"), Some(&2));
    if let Some(pg) = postgres().await {
        let health = pg.health_check().await;
        assert!(health.reachable && health.pool_size >= 1, "{health:?}");
        assert_eq!(pg.statistics().await.expect("stats").events, 0);
    }
}

#[tokio::test]
async fn sqlite_state_survives_reopening() {
    let path = std::env::temp_dir().join(format!("interlock-reopen-{}.db", Ulid::new()));
    let account = Ulid::new();
    for (run, expected) in [(1, 10), (2, 20)] {
        let store = SqliteStore::open(SqliteConfig::file(&path)).await.expect("open");
        let app = app_on(store).await;
        if run == 1 {
            app.dispatch(OpenAccount {
                account,
                owner: "r".into(),
            })
            .await
            .expect("open");
        }
        app.dispatch(Deposit {
            account,
            amount: 10,
            id: None,
        })
        .await
        .expect("deposit");
        assert_eq!(
            app.load::<BankAccount>(&account).await.expect("load").state.balance,
            expected
        );
    }
}

/// Concurrent appends share transactions; each keeps its exact outcome.
async fn group_commit_outcomes(store: impl EventStore + Clone) {
    let mut tasks = Vec::new();
    for i in 0..48u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::new("group.commit", format!("{i}-{}", Ulid::new()));
            if i % 3 == 0 {
                store
                    .append(&stream, ExpectedVersion::Any, vec![event("g", 1, "{}")])
                    .await
                    .expect("seed");
            }
            // Every third stream is at version 1, the others are new; every
            // second append expects the wrong version.
            let expected = if i % 2 == 0 {
                Version(if i % 3 == 0 { 1 } else { 0 })
            } else {
                Version(7)
            };
            let outcome = store
                .append(
                    &stream,
                    ExpectedVersion::Exact(expected),
                    vec![event("g", 1, "{}"), event("g", 1, "{}")],
                )
                .await;
            (i, stream, outcome)
        }));
    }
    for t in tasks {
        let (i, stream, outcome) = t.await.expect("join");
        let seeded = u64::from(i % 3 == 0);
        match (i % 2 == 0, outcome) {
            (true, Ok(c)) => assert_eq!(c.version, Version(seeded + 2)),
            (false, Err(StoreError::Conflict { actual, .. })) => assert_eq!(actual, Version(seeded)),
            (ok, other) => panic!("append {i} (should succeed: {ok}) ended {other:?}"),
        }
        let stored = store.read_stream(&stream, Version(1), None).await.expect("read").len() as u64;
        assert_eq!(stored, seeded + if i % 2 == 0 { 2 } else { 0 });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_commit_keeps_every_outcome_exact() {
    for config in [
        SqliteConfig::memory(),
        SqliteConfig::memory().group_commit(1, Duration::ZERO),
        SqliteConfig::memory().group_commit(16, Duration::from_millis(2)),
    ] {
        group_commit_outcomes(SqliteStore::open(config).await.expect("open")).await;
    }
    if let Some(pg) = postgres().await {
        group_commit_outcomes(pg.clone()).await;
        let waiting = PostgresStore::open(pg.config().clone().group_commit(32, Duration::from_millis(2)))
            .await
            .expect("open");
        group_commit_outcomes(waiting).await;
    }
}

/// A transport that refuses every publish.
struct Down;

impl interlock::store::EventTransport for Down {
    fn publish<'a>(
        &'a self,
        _: &'a [interlock::store::RecordedEvent],
    ) -> interlock::store::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async {
            Err(StoreError::Unavailable {
                backend: "down",
                source: "broker unreachable".into(),
            })
        })
    }
    fn receive<'a>(
        &'a self,
        _: &'a str,
        _: usize,
        _: Duration,
    ) -> interlock::store::BoxFuture<'a, Result<Vec<interlock::store::Delivery>, StoreError>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn ack<'a>(
        &'a self,
        _: &'a str,
        _: interlock::store::Receipt,
    ) -> interlock::store::BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

/// Appends record outbox rows in their transaction; a relay elsewhere
/// publishes them in order and marks them; a failed publish leaves them.
async fn outbox_relay<S>(store: S)
where
    S: interlock::store::Outbox + interlock::store::EventStore + interlock::store::Backend + Clone,
{
    use interlock::store::{EventTransport, MemoryTransport};
    let writer = Application::builder()
        .aggregate::<BankAccount>()
        .service(FeePolicy { fee: 0 })
        .backend(store.clone())
        .background(false)
        .build()
        .await
        .expect("build");
    let account = Ulid::new();
    writer
        .dispatch(OpenAccount {
            account,
            owner: "o".into(),
        })
        .await
        .expect("open");
    writer
        .dispatch(Churn { account, amount: 5 })
        .await
        .expect("three events");
    assert_eq!(store.pending(100).await.expect("pending").len(), 4);

    // A failing broker: nothing is marked, everything stays pending.
    let failing = Application::builder()
        .publish_outbox_to(store.clone(), Down)
        .background(false)
        .build()
        .await
        .expect("build");
    assert!(failing.publish_pending().await.is_err());
    assert_eq!(store.pending(100).await.expect("pending").len(), 4);

    // A relay that runs apart from the writer publishes them, in order.
    let transport = std::sync::Arc::new(MemoryTransport::new());
    let relay = Application::builder()
        .publish_outbox_to(store.clone(), transport.clone())
        .background(false)
        .build()
        .await
        .expect("build");
    relay.publish_pending().await.expect("publish");
    assert!(store.pending(100).await.expect("pending").is_empty());
    let delivered = transport.receive("reader", 100, Duration::ZERO).await.expect("receive");
    let written = store
        .read_stream(&StreamId::new("bank.account", account.to_string()), Version(1), None)
        .await
        .expect("read");
    assert_eq!(
        delivered.iter().map(|d| d.event.event_id).collect::<Vec<_>>(),
        written.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn sqlite_outbox_is_written_with_the_events_and_relayed() {
    let store = SqliteStore::open(SqliteConfig::memory().outbox(true))
        .await
        .expect("open");
    outbox_relay(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outbox_is_written_with_the_events_and_relayed() {
    let Some(base) = postgres().await else {
        return skip("postgres_outbox");
    };
    let store = PostgresStore::open(base.config().clone().outbox(true))
        .await
        .expect("open");
    outbox_relay(store).await;
}

/// The batch append itself: one outcome per request, in order; appends to
/// one stream applied in order, each seeing the versions the earlier ones
/// wrote; a conflict failing alone; accepted appends at consecutive
/// positions in batch order. On PostgreSQL two appends to one stream take
/// the savepoint path.
async fn batch_outcomes(store: impl BatchAppend + EventStore) {
    let a = StreamId::new("batch.a", Ulid::new().to_string());
    let b = StreamId::new("batch.b", Ulid::new().to_string());
    let request = |stream: &StreamId, expected: ExpectedVersion, n: usize| AppendRequest {
        stream: stream.clone(),
        expected,
        events: (0..n).map(|_| event("batch.e", 1, "{}")).collect(),
    };
    let start = store.head().await.expect("head");
    let outcomes = store
        .append_batch(vec![
            request(&a, ExpectedVersion::Exact(Version(0)), 2),
            request(&b, ExpectedVersion::Any, 1),
            request(&a, ExpectedVersion::Exact(Version(0)), 1),
            request(&a, ExpectedVersion::Exact(Version(2)), 1),
            request(&b, ExpectedVersion::Exact(Version(1)), 0),
        ])
        .await;
    assert_eq!(outcomes.len(), 5, "{outcomes:?}");
    let mut outcomes = outcomes.into_iter();
    let mut next = |what: &str| outcomes.next().unwrap_or_else(|| panic!("no outcome for {what}"));
    let p = |i: u64| Position(start.0 + i);
    let first = next("a from 0").expect("a from 0");
    assert_eq!(
        (first.stream.clone(), first.version, first.positions.to_vec()),
        (a.clone(), Version(2), vec![p(1), p(2)])
    );
    let second = next("b any").expect("b any");
    assert_eq!((second.version, second.positions.to_vec()), (Version(1), vec![p(3)]));
    match next("a from 0 again") {
        Err(StoreError::Conflict { stream, actual, .. }) => assert_eq!((stream, actual), (a.clone(), Version(2))),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let fourth = next("a from 2").expect("a from 2");
    assert_eq!((fourth.version, fourth.positions.to_vec()), (Version(3), vec![p(4)]));
    let fifth = next("b empty").expect("b empty");
    assert_eq!((fifth.version, fifth.positions.to_vec()), (Version(1), vec![]));
    let stored = store.read_stream(&a, Version(1), None).await.expect("read");
    assert_eq!(
        stored.iter().map(|e| e.version).collect::<Vec<_>>(),
        [Version(1), Version(2), Version(3)]
    );
    assert_eq!(store.head().await.expect("head"), p(4));
}

#[tokio::test]
async fn batch_append_answers_every_request_in_order() {
    batch_outcomes(SqliteStore::open(SqliteConfig::memory()).await.expect("open")).await;
    match postgres().await {
        Some(pg) => batch_outcomes(pg).await,
        None => skip("postgres batch_append_answers_every_request_in_order"),
    }
}

/// Polls a future to completion on this thread, with no tokio runtime.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: std::sync::Arc<Self>) {}
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::yield_now();
    }
}

#[test]
fn opening_outside_a_tokio_runtime_is_a_typed_error() {
    let sqlite = block_on(SqliteStore::open(SqliteConfig::memory()));
    assert!(
        matches!(sqlite, Err(StoreError::Unavailable { backend: "sqlite", .. })),
        "{sqlite:?}"
    );
    let pg = block_on(PostgresStore::open(PostgresConfig::new(
        "postgres://u@127.0.0.1:5432/test",
    )));
    assert!(
        matches!(
            pg,
            Err(StoreError::Unavailable {
                backend: "postgres",
                ..
            })
        ),
        "{pg:?}"
    );
}

#[tokio::test]
async fn corrupt_numbers_in_snapshot_and_saga_rows_are_typed_errors_naming_the_row() {
    use interlock::store::{SagaStateStore, SnapshotStore};
    let Some(store) = sqlite_file().await else { return };
    let mut tx = store.begin().await.expect("begin");
    for sql in [
        "INSERT INTO interlock_snapshots (aggregate_type, aggregate_id, version, state_version, payload, taken_at)
         VALUES ('bank.account', 'negative', -3, 1, x'7b7d', 0)",
        "INSERT INTO interlock_snapshots (aggregate_type, aggregate_id, version, state_version, payload, taken_at)
         VALUES ('bank.account', 'huge-state', 3, 99999999999, x'7b7d', 0)",
        "INSERT INTO interlock_saga_instances (saga, saga_key, state, version, last_position)
         VALUES ('transfer', 'k1', x'7b7d', -1, 0)",
        "INSERT INTO interlock_checkpoints (subscriber, position) VALUES ('projection:broken', -5)",
        "INSERT INTO interlock_events (position, event_id, aggregate_type, aggregate_id, version, event_name, schema_version, payload, metadata, recorded_at)
         VALUES (-7, '01ARZ3NDEKTSV4RRFFQ69G5FAV', 'bank.account', 'negative-position', 1, 'bank.account_opened', 1, x'7b7d', '{}', 0)",
        "INSERT INTO interlock_events (position, event_id, aggregate_type, aggregate_id, version, event_name, schema_version, payload, metadata, recorded_at)
         VALUES (3000000, '01ARZ3NDEKTSV4RRFFQ69G5FAW', 'bank.account', 'negative-version', -1, 'bank.account_opened', 1, x'7b7d', '{}', 0)",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.expect("insert");
    }
    tx.commit().await.expect("commit");
    for (id, what) in [("negative", "version -3"), ("huge-state", "state version 99999999999")] {
        let err = SnapshotStore::load(&store, &StreamId::new("bank.account", id))
            .await
            .expect_err("corrupt snapshot");
        assert!(
            matches!(&err, StoreError::Corrupt { location, reason, .. } if location.contains(id) && reason.contains(what)),
            "{err}"
        );
    }
    let err = SagaStateStore::load(&store, "transfer", "k1")
        .await
        .expect_err("corrupt saga");
    assert!(
        matches!(&err, StoreError::Corrupt { location, .. } if location.contains("k1")),
        "{err}"
    );
    // A negative checkpoint is not "from the start".
    let err = interlock::store::CheckpointStore::load(&store, "projection:broken")
        .await
        .expect_err("corrupt checkpoint");
    assert!(
        matches!(&err, StoreError::Corrupt { location, .. } if location.contains("projection:broken")),
        "{err}"
    );
    // A stream whose stored version is negative: reading it, asking its
    // version and appending to it (through group commit) all fail, naming it.
    let err = store
        .read_stream(&StreamId::new("bank.account", "negative-position"), Version(1), None)
        .await
        .expect_err("corrupt event");
    assert!(
        matches!(&err, StoreError::Corrupt { location, reason, .. } if location.contains("negative-position") && reason.contains("-7")),
        "{err}"
    );
    let stream = StreamId::new("bank.account", "negative-version");
    let err = store.stream_version(&stream).await.expect_err("corrupt version");
    assert!(matches!(&err, StoreError::Corrupt { .. }), "{err}");
    let err = store
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![event("bank.account_opened", 1, "{}")],
        )
        .await
        .expect_err("no append on a corrupt stream");
    assert!(err.to_string().contains("negative-version"), "{err}");
}

/// A recorded fingerprint outlives the application: a reopened store
/// refuses a command id reused for other values, and replays the same one.
async fn fingerprints_persist<S>(store: S)
where
    S: interlock::store::EventStore + interlock::store::IdempotencyStore + Clone,
{
    let app = |store: S| async move {
        interlock_tests::bank::bank_builder()
            .event_store(store.clone())
            .idempotency_store(store)
            .build()
            .await
            .expect("build")
    };
    let first = app(store.clone()).await;
    let account = Ulid::new();
    first
        .dispatch(OpenAccount {
            account,
            owner: "ada".into(),
        })
        .await
        .expect("open");
    let id = CommandId::new();
    first
        .dispatch(Deposit {
            account,
            amount: 5,
            id: Some(id),
        })
        .await
        .expect("deposit");
    first.shutdown();

    let second = app(store).await;
    let reused = second
        .dispatch(Deposit {
            account,
            amount: 6,
            id: Some(id),
        })
        .await;
    assert!(
        matches!(reused, Err(CommandError::CommandIdReused { .. })),
        "{reused:?}"
    );
    let replay = second
        .dispatch_with(
            Deposit {
                account,
                amount: 5,
                id: Some(id),
            },
            interlock::DispatchOptions::new(),
        )
        .await
        .expect("replay");
    assert!(replay.replayed);
    assert_eq!(
        second.load::<BankAccount>(&account).await.expect("load").state.balance,
        5
    );
}

#[tokio::test]
async fn sqlite_fingerprints_persist() {
    let Some(store) = sqlite_file().await else { return };
    fingerprints_persist(store).await;
}

#[tokio::test]
async fn postgres_fingerprints_persist() {
    let Some(store) = postgres().await else { return };
    fingerprints_persist(store).await;
}

/// `PRAGMA name` on one of the store's connections.
async fn sqlite_pragma(store: &SqliteStore, name: &str) -> String {
    let mut tx = store.begin().await.expect("begin");
    let row: (String,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT CAST(({name}) AS TEXT)")))
        .fetch_one(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    tx.rollback().await.expect("rollback");
    row.0
}

#[tokio::test]
async fn sqlite_journal_mode_and_busy_timeout_are_applied() {
    let path = |tag: &str| std::env::temp_dir().join(format!("interlock-test-{tag}-{}.db", Ulid::new()));
    let wal = SqliteStore::open(SqliteConfig::file(path("wal")).busy_timeout(Duration::from_millis(4321)))
        .await
        .expect("open");
    assert_eq!(
        sqlite_pragma(&wal, "SELECT journal_mode FROM pragma_journal_mode").await,
        "wal"
    );
    assert_eq!(
        sqlite_pragma(&wal, "SELECT timeout FROM pragma_busy_timeout").await,
        "4321"
    );
    let mut config = SqliteConfig::file(path("rollback"));
    config.wal = false;
    let rollback = SqliteStore::open(config).await.expect("open");
    assert_eq!(
        sqlite_pragma(&rollback, "SELECT journal_mode FROM pragma_journal_mode").await,
        "delete"
    );
    assert_eq!(
        sqlite_pragma(&rollback, "SELECT timeout FROM pragma_busy_timeout").await,
        "5000"
    );
}

/// A second process's writer waits out the busy timeout instead of failing
/// at once while another holds the write lock.
#[tokio::test]
async fn sqlite_writers_of_two_stores_wait_for_the_lock() {
    let file = std::env::temp_dir().join(format!("interlock-test-busy-{}.db", Ulid::new()));
    let holder = SqliteStore::open(SqliteConfig::file(&file)).await.expect("open");
    let waiter = SqliteStore::open(SqliteConfig::file(&file).busy_timeout(Duration::from_secs(30)))
        .await
        .expect("open");
    let lock = holder.begin().await.expect("the write lock");
    let stream = StreamId::new("bank.account", Ulid::new().to_string());
    let append = {
        let waiter = waiter.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            waiter
                .append(
                    &stream,
                    ExpectedVersion::Exact(Version(0)),
                    vec![event("bank.account_opened", 1, "{}")],
                )
                .await
        })
    };
    // Let the append reach the lock, then release it: the append must
    // have waited, not failed with "database is locked".
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!append.is_finished(), "the append did not wait for the lock");
    lock.rollback().await.expect("release");
    append
        .await
        .expect("join")
        .expect("the append after the lock was released");
    assert_eq!(holder.stream_version(&stream).await.expect("version"), Version(1));
}

/// One append the database refuses fails alone, with the database's own
/// words in its error; every other append of its batch commits.
async fn refused_append_is_isolated(store: impl BatchAppend + EventStore) {
    let streams: Vec<StreamId> = (0..8)
        .map(|i| StreamId::new("batch.iso", format!("{i}-{}", Ulid::new())))
        .collect();
    let requests = streams
        .iter()
        .enumerate()
        .map(|(i, stream)| AppendRequest {
            stream: stream.clone(),
            expected: ExpectedVersion::Exact(Version(0)),
            events: vec![event(if i == 3 { "batch.poison" } else { "batch.ok" }, 1, "{}")],
        })
        .collect();
    let outcomes = store.append_batch(requests).await;
    assert_eq!(outcomes.len(), 8);
    for (i, outcome) in outcomes.into_iter().enumerate() {
        if i == 3 {
            let err = outcome.expect_err("the poisoned append is refused");
            assert!(
                err.to_string().contains("poison refused"),
                "the database's cause is kept: {err}"
            );
        } else {
            let done = outcome.unwrap_or_else(|e| panic!("append {i} failed with the poisoned one: {e}"));
            assert_eq!(done.version, Version(1));
        }
    }
    for (i, stream) in streams.iter().enumerate() {
        let expected = if i == 3 { Version(0) } else { Version(1) };
        assert_eq!(
            store.stream_version(stream).await.expect("version"),
            expected,
            "stream {i}"
        );
    }
}

#[tokio::test]
async fn sqlite_a_refused_append_fails_alone_in_its_batch() {
    let Some(store) = sqlite_file().await else { return };
    let mut tx = store.begin().await.expect("begin");
    sqlx::query(
        "CREATE TRIGGER refuse_poison BEFORE INSERT ON interlock_events
         WHEN NEW.event_name = 'batch.poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END",
    )
    .execute(&mut *tx)
    .await
    .expect("trigger");
    tx.commit().await.expect("commit");
    refused_append_is_isolated(store).await;
}

#[tokio::test]
async fn postgres_a_refused_append_fails_alone_in_its_batch() {
    let Some(url) = interlock_tests::services::postgres_url() else {
        return;
    };
    let schema = format!("iso_{}", Ulid::new().to_string().to_lowercase());
    let store = PostgresStore::open(PostgresConfig::new(url).schema(schema.as_str()))
        .await
        .expect("open");
    let mut tx = store.begin().await.expect("begin");
    for sql in [
        format!(
            "CREATE FUNCTION \"{schema}\".refuse_poison() RETURNS trigger AS $$
             BEGIN IF NEW.event_name = 'batch.poison' THEN RAISE EXCEPTION 'poison refused'; END IF; RETURN NEW; END
             $$ LANGUAGE plpgsql"
        ),
        format!(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON \"{schema}\".interlock_events
             FOR EACH ROW EXECUTE FUNCTION \"{schema}\".refuse_poison()"
        ),
    ] {
        sqlx_exec(&mut tx, sql).await;
    }
    tx.commit().await.expect("commit");
    refused_append_is_isolated(store).await;
}

/// Counts the deposits it sees.
#[derive(Default)]
pub struct DepositCount(u64);

#[projection(name = "tests.deposit_count", model = memory)]
impl DepositCount {
    #[handles_event]
    fn deposited(&mut self, e: &MoneyDeposited) {
        self.0 += e.amount;
    }

    #[handles_query]
    fn total(&self, _: TotalDeposited) -> u64 {
        self.0
    }
}

/// The sum of the deposits seen.
pub struct TotalDeposited;

/// A row whose metadata (or event id) cannot be read becomes a dead letter
/// of its position, with its raw bytes and the cause; the subscriber goes
/// on (or, with `ParkAndStop`, stops before it with the cause as reason).
async fn unreadable_rows_are_parked<S>(store: S, corrupt: impl AsyncFnOnce(&S, u64, u64))
where
    S: interlock::store::EventStore + interlock::store::DeadLetterStore + Clone,
{
    use interlock::{FailurePolicy, ProjectionConfig, SubscriberConfig};
    let writer = bank_builder().event_store(store.clone()).build().await.expect("build");
    let account = Ulid::new();
    writer
        .dispatch(OpenAccount {
            account,
            owner: "u".into(),
        })
        .await
        .expect("open");
    let mut positions = Vec::new();
    for amount in [1, 10, 100, 1000] {
        let done = writer
            .dispatch_with(
                Deposit {
                    account,
                    amount,
                    id: None,
                },
                interlock::DispatchOptions::new(),
            )
            .await
            .expect("deposit");
        positions.push(done.positions[0].0);
    }
    // The 10 loses its metadata, the 100 its event id.
    corrupt(&store, positions[1], positions[2]).await;

    let app = |policy| {
        let store = store.clone();
        async move {
            bank_builder()
                .event_store(store.clone())
                .dead_letter_store(store)
                .projection_with(
                    DepositCount::default(),
                    ProjectionConfig::catch_up().subscriber(SubscriberConfig::new().batch_size(100).on_failure(policy)),
                )
                .background(false)
                .build()
                .await
                .expect("build")
        }
    };
    let stopping = app(FailurePolicy::ParkAndStop).await;
    let handle = stopping.projection_handle::<DepositCount>().expect("handle");
    match handle.catch_up().await {
        Err(interlock::SubscriptionError::Stopped { reason, .. }) => assert!(reason.contains("metadata"), "{reason}"),
        other => panic!("expected a stop at the unreadable row, got {other:?}"),
    }
    let status = handle.status().await.expect("status");
    assert_eq!(status.checkpoint, Position(positions[1] - 1), "stopped before the row");
    assert!(status.stopped.is_some());
    stopping.shutdown();

    // Another policy: the rows are parked, the rest is processed, the
    // checkpoint reaches the head.
    let going_on = app(FailurePolicy::ParkAndContinue).await;
    let handle = going_on.projection_handle::<DepositCount>().expect("handle");
    handle.catch_up().await.expect("catch up past the unreadable rows");
    let letters = handle.dead_letters().await.expect("letters");
    let parked: Vec<u64> = letters.iter().map(|l| l.event.position.0).collect();
    assert_eq!(parked, [positions[1], positions[2]], "{letters:?}");
    let metadata_letter = &letters[0];
    assert!(metadata_letter.error.contains("metadata"), "{}", metadata_letter.error);
    assert_eq!(
        metadata_letter.event.payload.as_ref(),
        br#"{"amount":10,"currency":"EUR"}"#
    );
    assert_eq!(
        metadata_letter
            .event
            .metadata
            .headers
            .get(StoreError::RAW_METADATA_HEADER)
            .map(String::as_str),
        Some("{not json")
    );
    assert_eq!(
        metadata_letter.event.stream,
        StreamId::new("bank.account", account.to_string())
    );
    assert!(letters[1].error.contains("event id"), "{}", letters[1].error);
    let status = handle.status().await.expect("status");
    assert_eq!(status.checkpoint, status.head);
    // The readable deposits before and after the unreadable ones were seen.
    assert_eq!(going_on.query(TotalDeposited).await.expect("query"), 1 + 1000);
}

#[tokio::test]
async fn sqlite_unreadable_rows_become_dead_letters_of_their_position() {
    let Some(store) = sqlite_file().await else { return };
    unreadable_rows_are_parked(store, async |store: &SqliteStore, bad_metadata, bad_id| {
        let mut tx = store.begin().await.expect("begin");
        for sql in [
            format!("UPDATE interlock_events SET metadata = '{{not json' WHERE position = {bad_metadata}"),
            format!("UPDATE interlock_events SET event_id = 'not-an-id' WHERE position = {bad_id}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .expect("corrupt");
        }
        tx.commit().await.expect("commit");
    })
    .await;
}

#[tokio::test]
async fn postgres_unreadable_rows_become_dead_letters_of_their_position() {
    let Some(store) = postgres().await else { return };
    let schema = store.config().schema.clone();
    unreadable_rows_are_parked(store, async move |store: &PostgresStore, bad_metadata, bad_id| {
        let mut tx = store.begin().await.expect("begin");
        for sql in [
            format!("UPDATE \"{schema}\".interlock_events SET metadata = '{{not json' WHERE position = {bad_metadata}"),
            format!("UPDATE \"{schema}\".interlock_events SET event_id = 'not-an-id' WHERE position = {bad_id}"),
        ] {
            sqlx_exec(&mut tx, sql).await;
        }
        tx.commit().await.expect("commit");
    })
    .await;
}

/// 40 valid commands race one the database refuses (its trigger refuses a
/// deposit of 666), through the application and its group commit: the
/// hostile one fails alone with the database's cause, the 40 succeed.
async fn forty_race_one_hostile<S>(store: S)
where
    S: interlock::store::EventStore + Clone,
{
    forty_race_one_hostile_with(store, "hostile deposit").await;
}

/// [`forty_race_one_hostile`] with the database's message for the refusal.
async fn forty_race_one_hostile_with<S>(store: S, cause: &str)
where
    S: interlock::store::EventStore + Clone,
{
    let app = bank_builder().event_store(store).build().await.expect("build");
    let mut accounts = Vec::new();
    for _ in 0..41 {
        let account = Ulid::new();
        app.dispatch(OpenAccount {
            account,
            owner: "race".into(),
        })
        .await
        .expect("open");
        accounts.push(account);
    }
    let tasks: Vec<_> = accounts
        .iter()
        .enumerate()
        .map(|(i, account)| {
            let (app, account) = (app.clone(), *account);
            tokio::spawn(async move {
                app.dispatch(Deposit {
                    account,
                    amount: if i == 20 { 666 } else { 5 },
                    id: None,
                })
                .await
            })
        })
        .collect();
    let mut ok = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.expect("join") {
            Ok(()) => ok += 1,
            Err(e) => {
                assert_eq!(i, 20, "a valid command failed: {e}");
                assert!(e.to_string().contains(cause), "the database's cause: {e}");
            }
        }
    }
    assert_eq!(ok, 40);
    for (i, account) in accounts.iter().enumerate() {
        let balance = app.load::<BankAccount>(account).await.expect("load").state.balance;
        assert_eq!(balance, if i == 20 { 0 } else { 5 });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_forty_commands_race_one_the_database_refuses() {
    let Some(store) = mongodb().await else { return };
    // A validator on `events` refuses a deposit of 666.
    let uri = std::env::var("INTERLOCK_MONGODB_URI").expect("uri");
    let client = mongodb::Client::with_uri_str(&uri).await.expect("client");
    client
        .database(store.config().database_name())
        .run_command(mongodb::bson::doc! {
            "collMod": "events",
            "validator": { "payload.amount": { "$ne": 666 } },
            "validationAction": "error",
        })
        .await
        .expect("validator");
    forty_race_one_hostile_with(store, "failed validation").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_forty_commands_race_one_the_database_refuses() {
    let Some(store) = sqlite_file().await else { return };
    let mut tx = store.begin().await.expect("begin");
    sqlx::query(
        "CREATE TRIGGER refuse_hostile BEFORE INSERT ON interlock_events
         WHEN CAST(NEW.payload AS TEXT) LIKE '%\"amount\":666%' BEGIN SELECT RAISE(ABORT, 'hostile deposit'); END",
    )
    .execute(&mut *tx)
    .await
    .expect("trigger");
    tx.commit().await.expect("commit");
    forty_race_one_hostile(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_forty_commands_race_one_the_database_refuses() {
    let Some(store) = postgres().await else { return };
    let schema = store.config().schema.clone();
    let mut tx = store.begin().await.expect("begin");
    for sql in [
        format!(
            "CREATE FUNCTION \"{schema}\".refuse_hostile() RETURNS trigger AS $$
             BEGIN IF convert_from(NEW.payload, 'UTF8') LIKE '%\"amount\":666%' THEN RAISE EXCEPTION 'hostile deposit'; END IF; RETURN NEW; END
             $$ LANGUAGE plpgsql"
        ),
        format!(
            "CREATE TRIGGER refuse_hostile BEFORE INSERT ON \"{schema}\".interlock_events
             FOR EACH ROW EXECUTE FUNCTION \"{schema}\".refuse_hostile()"
        ),
    ] {
        sqlx_exec(&mut tx, sql).await;
    }
    tx.commit().await.expect("commit");
    forty_race_one_hostile(store).await;
}

/// Two instances of the application on one store, 8 tasks each, on the
/// same 3 accounts: each instance combines its own commands' appends, the
/// instances conflict with each other, and a combined append that loses
/// the race fails every command built on it; all re-run. No update is lost
/// and every stream's versions are 1..n.
async fn contention_across_instances<B>(backend: B)
where
    B: interlock::store::Backend + Clone,
{
    const EACH: u64 = 40;
    let app = || {
        Application::builder()
            .aggregate::<BankAccount>()
            .service(FeePolicy { fee: 0 })
            .backend(backend.clone())
            .max_attempts(10_000)
            .build()
    };
    let apps = [app().await.expect("build"), app().await.expect("build")];
    let accounts: Vec<Ulid> = (0..3).map(|_| Ulid::new()).collect();
    for &account in &accounts {
        apps[0]
            .dispatch(OpenAccount {
                account,
                owner: "x".into(),
            })
            .await
            .expect("open");
    }
    let mut tasks = Vec::new();
    let mut retried = Vec::new();
    for t in 0..16u64 {
        let (app, accounts) = (apps[(t % 2) as usize].clone(), accounts.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        retried.push(rx);
        tasks.push(tokio::spawn(async move {
            let mut sums = [0u64; 3];
            let mut retries = 0;
            for i in 0..EACH {
                let k = ((t + i) % 3) as usize;
                let amount = t * 1000 + i + 1;
                let done = app
                    .dispatch_with(
                        Deposit {
                            account: accounts[k],
                            amount,
                            id: None,
                        },
                        interlock::DispatchOptions::new(),
                    )
                    .await
                    .expect("deposit");
                retries += done.attempts - 1;
                sums[k] += amount;
            }
            let _ = tx.send(retries);
            sums
        }));
    }
    let mut expected = [0u64; 3];
    for t in tasks {
        for (k, v) in t.await.expect("join").into_iter().enumerate() {
            expected[k] += v;
        }
    }
    let mut retries = 0;
    for rx in retried {
        retries += rx.await.expect("retries");
    }
    for (k, account) in accounts.iter().enumerate() {
        for app in &apps {
            let loaded = app.load::<BankAccount>(account).await.expect("load");
            assert_eq!(
                loaded.state.balance, expected[k],
                "no lost update (after {retries} retries)"
            );
        }
        let events = apps[0]
            .event_store()
            .read_stream(&StreamId::new("bank.account", account.to_string()), Version(1), None)
            .await
            .expect("read");
        assert_eq!(
            events.len() as u64,
            EACH * 16 / 3 + u64::from(k < (EACH * 16 % 3) as usize) + 1
        );
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e.version, Version(i as u64 + 1));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_two_instances_contend_and_lose_no_update() {
    let Some(store) = postgres().await else { return };
    contention_across_instances(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_instances_contend_and_lose_no_update() {
    let Some(store) = sqlite_file().await else { return };
    contention_across_instances(store).await;
}
